/*
 * runra_obs.c — module entry point.
 *
 * Defines the settings, and, when loaded through shared_preload_libraries,
 * reserves shared memory for worker status and the safe watermark, and
 * registers the background workers.  Loaded any other way (a plain CREATE EXTENSION), the SQL API
 * works and no worker runs.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"

#include "citus/citus.h"
#include "consume/watermark.h"
#include "ingest/notify.h"
#include "guc.h"
#include "worker/worker_common.h"
#include "worker/worker_metrics.h"
#include "runra_obs.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
runra_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	runra_worker_shmem_request();
	worker_metrics_shmem_request();
	watermark_shmem_request();
	notify_sender_shmem_request();
}

static void
runra_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	runra_worker_shmem_startup();
	worker_metrics_shmem_startup();
	watermark_shmem_startup();
	notify_sender_shmem_startup();
}

void
_PG_init(void)
{
	runra_define_gucs();
	/* in every backend, preloaded or not: Citus plans through it */
	citus_install_planner_hook();

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = runra_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = runra_shmem_startup;

	notify_sender_install_hooks();
	runra_register_subsystem_workers();
}
