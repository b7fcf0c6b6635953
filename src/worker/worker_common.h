/*
 * worker_common.h — what every runra_obs background worker shares: signal
 * handling, registration, waiting for the extension, and a status slot in
 * shared memory that runra_obs.worker_status shows.
 */
#ifndef RUNRA_OBS_WORKER_COMMON_H
#define RUNRA_OBS_WORKER_COMMON_H

#include <signal.h>

#include "port/atomics.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#define RUNRA_WORKER_SLOTS 64
#define RUNRA_STATUS_TEXT 256

typedef struct RunraWorkerSlot
{
	slock_t		mutex;			/* protects the text fields below */
	pid_t		pid;			/* 0 when the slot is free */
	char		role[32];
	char		state[64];
	TimestampTz started_at;
	TimestampTz last_error_at;
	char		last_error[RUNRA_STATUS_TEXT];
	TimestampTz last_maintenance_at;
	char		last_maintenance[RUNRA_STATUS_TEXT];
	pg_atomic_uint64 events_ingested;
	pg_atomic_uint64 events_rejected;
} RunraWorkerSlot;

/* set by the SIGTERM handler; main loops exit when they see it */
extern volatile sig_atomic_t runra_got_sigterm;

/*
 * true while user code runs (a handler, a query rule): a SIGTERM then ends
 * the worker at the next CHECK_FOR_INTERRUPTS, as it ends a backend, since
 * user code never looks at runra_got_sigterm
 */
extern volatile sig_atomic_t runra_in_user_code;

/* the calling worker's slot, or NULL before runra_worker_attach() */
extern RunraWorkerSlot *MyRunraSlot;

extern void runra_worker_shmem_request(void);
extern void runra_worker_shmem_startup(void);

extern void runra_register_worker(const char *type, const char *function,
								  Datum arg, bool needs_database);
extern void runra_worker_setup_signals(void);
/* bgw_type of the workers other sessions wake (worker/wake.c) */
#define RUNRA_FORWARD_WORKER_TYPE "runra_obs forward"
#define RUNRA_ALERT_WORKER_TYPE "runra_obs alerts"

/* the search_path of every worker session */
#define RUNRA_WORKER_SEARCH_PATH "pg_catalog, pg_temp"

extern void runra_worker_attach(const char *role);
extern bool runra_worker_set_nice(int nice);
extern bool runra_worker_wait_for_extension(void);
extern void runra_worker_reload_if_needed(void);
extern void runra_worker_absorb_barriers(void);

extern void runra_worker_set_state(const char *state);
extern void runra_worker_report_error(const char *message);
extern void runra_worker_report_maintenance(const char *summary, bool failed);
extern void runra_worker_count_events(uint64 ingested, uint64 rejected);

#endif
