/*
 * http_worker.c — the HTTP ingest background worker: registration and the
 * event loop.
 *
 * runra_obs.http_workers copies run, each with its own bgw_main_arg, all
 * listening on the same port (SO_REUSEPORT).  Each waits in one
 * WaitEventSet on its latch (signals), postmaster death, and the epoll fds
 * of its libmicrohttpd daemons, for no longer than libmicrohttpd's own
 * timeout.  After every wake-up: MHD_run (collect bytes, call back), then the
 * group commit of whatever completed meanwhile (http_batch.c).  SIGTERM
 * answers what is queued with 503, sends those answers, stops the daemons
 * and exits; SIGHUP reloads the settings, the tokens and the TLS
 * certificate.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "utils/memutils.h"

#include "batch_memory.h"
#include "guc.h"
#include "ingest/http.h"
#include "worker/worker_common.h"

/* never sleep longer than this, whatever libmicrohttpd says */
#define MAX_SLEEP_MS 1000L
/* on SIGTERM, how long answers already made may take to leave */
#define SHUTDOWN_FLUSH_MS 1000L

PGDLLEXPORT void runra_http_worker_main(Datum arg);

/* Registers runra_obs.http_workers workers (from _PG_init, via workers.c). */
void
http_register_workers(void)
{
	if (runra_http_workers <= 0)
		return;
	http_metrics_install_shmem();
	http_shmem_install();
	for (int i = 0; i < runra_http_workers; i++)
		runra_register_worker("http", "runra_http_worker_main", Int32GetDatum(i), true);
}

/* The latch, postmaster death, and every daemon's epoll fd. */
static WaitEventSet *
make_wait_set(void)
{
	WaitEventSet *set = CreateWaitEventSet(TopMemoryContext, 2 + http_server_count());

	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < http_server_count(); i++)
		AddWaitEventToSet(set, WL_SOCKET_READABLE, http_server_epoll_fd(i), NULL, NULL);
	return set;
}

/* Sleeps until a signal, a socket, or libmicrohttpd's next timeout. */
static void
wait_for_work(WaitEventSet *set, long max_ms)
{
	WaitEvent	events[8];
	long		timeout = http_server_timeout_ms();
	int			n;

	if (timeout < 0 || timeout > max_ms)
		timeout = max_ms;
	n = WaitEventSetWait(set, timeout, events, lengthof(events), PG_WAIT_EXTENSION);
	for (int i = 0; i < n; i++)
		if (events[i].events & WL_LATCH_SET)
			ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * SIGHUP: settings, the session's timeouts, the token cache, and the TLS
 * certificate.  When the daemons were replaced (new certificate), the
 * wait set is made again for their epoll fds.
 */
static void
reload_if_asked(WaitEventSet **set)
{
	if (!ConfigReloadPending)
		return;
	runra_worker_reload_if_needed();
	http_xact_apply_settings();
	http_tokens_reload();
	if (http_server_reload_tls())
	{
		FreeWaitEventSet(*set);
		*set = make_wait_set();
	}
}

/*
 * Under load the loop below never waits, so it never sees the postmaster's
 * death in its WaitEventSet: it must ask before each group.  Without a
 * postmaster nothing more may be acknowledged (a restarted server could
 * not start while we run), so the worker leaves without answering; the
 * clients retry.
 */
static void
stop_if_postmaster_died(void)
{
	if (!PostmasterIsAlive())
	{
		ereport(LOG, (errmsg("runra_obs http worker exiting: the postmaster died")));
		proc_exit(1);
	}
}

/*
 * One turn of the loop: run libmicrohttpd, write what completed, send the
 * answers; while that happened more requests may have completed, and they
 * are the next group.
 */
static void
serve_once(WaitEventSet **set, MemoryContext loop_context)
{
	MemoryContext old;

	wait_for_work(*set, MAX_SLEEP_MS);
	reload_if_asked(set);
	MemoryContextReset(loop_context);
	old = MemoryContextSwitchTo(loop_context);
	http_server_run();
	/* answers go out at once, and what arrived meanwhile is the next group */
	while (http_pending_count() > 0)
	{
		stop_if_postmaster_died();
		http_process_pending();
		http_server_run();
	}
	MemoryContextSwitchTo(old);
}

/*
 * SIGTERM: queued requests get 503 (nothing of theirs was written), their
 * answers get up to a second to leave, then every connection is closed.
 */
static void
shut_down(WaitEventSet *set, MemoryContext loop_context)
{
	TimestampTz until = GetCurrentTimestamp() + SHUTDOWN_FLUSH_MS * 1000;

	runra_worker_set_state("stopping");
	/* the others' shares no longer count this worker */
	http_metrics_set_listening(false);
	MemoryContextSwitchTo(loop_context);
	for (;;)
	{
		MemoryContextReset(loop_context);
		http_process_pending();
		if (http_server_connections() == 0 || GetCurrentTimestamp() >= until)
			break;
		wait_for_work(set, 50);
		http_server_run();
	}
	http_process_pending();
	http_server_stop();
	ereport(LOG, (errmsg("runra_obs http worker stopped")));
}

/* Entry point of each HTTP worker; bgw_main_arg is its index. */
void
runra_http_worker_main(Datum arg)
{
	int			index = DatumGetInt32(arg);
	WaitEventSet *set;
	MemoryContext loop_context;

	runra_worker_setup_signals();
	BackgroundWorkerInitializeConnection(runra_database, NULL, 0);
	runra_worker_attach("http");
	runra_keep_freed_memory(RUNRA_WORKER_BATCH_MEMORY);
	pgstat_report_appname("runra_obs http");
	if (!runra_worker_wait_for_extension())
		proc_exit(1);
	http_xact_apply_settings();
	http_metrics_worker_start(index);
	http_peers_worker_start(index);
	http_tokens_reload();
	http_server_start(index);
	http_metrics_set_listening(true);
	set = make_wait_set();
	loop_context = AllocSetContextCreate(TopMemoryContext, "runra_obs http loop",
										 ALLOCSET_DEFAULT_SIZES);
	runra_worker_set_state("listening");
	while (!runra_got_sigterm)
		serve_once(&set, loop_context);
	shut_down(set, loop_context);
	/* exit code 1: the postmaster restarts us unless it is shutting down */
	proc_exit(1);
}
