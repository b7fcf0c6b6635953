/*
 * notify_worker.c — the "runra_obs notify" background worker.
 *
 * One per cluster, connected to runra_obs.database.  It listens for
 * notifications on runra_obs.notify_channel through a libpq connection to
 * its own server (notify_conn.c), queues their payloads and writes them as
 * event batches (notify_queue.c); nothing else (the maintenance worker
 * keeps the partitions).  With an empty channel it idles.
 *
 * One WaitEventSet holds the latch (SIGTERM, SIGHUP), postmaster death and,
 * when there is a connection, its socket; the timeout is the nearest of the
 * batch's flush time, the next reconnect attempt and the connect timeout.
 * On SIGTERM it writes what it has queued, closes its connection and exits
 * with code 1, so the postmaster starts it again after 5 seconds (a
 * listener must not stay away because someone ran pg_terminate_backend);
 * at server shutdown it simply ends.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "ingest/notify.h"
#include "worker/worker_common.h"
#include "worker/worker_xact.h"

static NotifyConn conn;
static NotifyQueue queue;
static char *superuser_name;	/* the default role of the connection */
static char *conninfo_in_use;	/* runra_obs.notify_conninfo when connecting */
static char shown_state[64];	/* what worker_status shows, to skip repeats */

/* The WaitEventSet and what it was built for. */
static WaitEventSet *wait_set;
static uint64 wait_set_generation;
static pgsocket wait_set_socket = PGINVALID_SOCKET;
static uint32 wait_set_events;

/* The work of a transaction that looks up the bootstrap superuser's name. */
static void
look_up_superuser(void *arg)
{
	superuser_name = MemoryContextStrdup(TopMemoryContext,
										 GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false));
}

/* Shows the worker's state in worker_status when it changed. */
static void
show_state(void)
{
	const char *state;

	if (runra_notify_channel[0] == '\0')
		state = "idle (runra_obs.notify_channel is empty)";
	else if (conn.state == NOTIFY_LISTENING)
		state = psprintf("listening on \"%s\"", conn.channel);
	else if (conn.state == NOTIFY_DISCONNECTED)
		state = "waiting to reconnect";
	else
		state = "connecting";
	if (queue.events > 0)
		state = psprintf("%s, %lld events queued", state, (long long) queue.events);
	if (strncmp(state, shown_state, sizeof(shown_state) - 1) == 0)
		return;
	strlcpy(shown_state, state, sizeof(shown_state));
	runra_worker_set_state(state);
}

/* Called for each notification: queue it, write the batch once full. */
static void
queue_payload(void *arg, const char *payload, int sender_pid)
{
	/* at once: a sender that ends soon after is found among ended sessions */
	notify_queue_add(&queue, payload, notify_sender_role(sender_pid));
	if (notify_queue_due(&queue, GetCurrentTimestamp()))
	{
		notify_queue_flush(&queue);
		shown_state[0] = '\0';
	}
}

/*
 * Re-reads the configuration after SIGHUP; a new channel or conninfo means
 * a new connection.
 */
static void
apply_settings(void)
{
	if (!ConfigReloadPending)
		return;
	runra_worker_reload_if_needed();
	if (conn.state == NOTIFY_DISCONNECTED && conn.retry_at == 0)
		return;					/* nothing open, nothing scheduled */
	if (strcmp(conn.channel, runra_notify_channel) == 0 &&
		strcmp(conninfo_in_use, runra_notify_conninfo) == 0)
		return;
	ereport(LOG,
			(errmsg("runra_obs notify stops listening on channel \"%s\": its settings changed",
					conn.channel)));
	notify_conn_close(&conn);
}

/* Starts a connection when there is a channel and no connection is due later. */
static void
connect_if_due(TimestampTz now)
{
	if (runra_notify_channel[0] == '\0' || conn.state != NOTIFY_DISCONNECTED ||
		conn.retry_at > now)
		return;
	if (conninfo_in_use)
		pfree(conninfo_in_use);
	conninfo_in_use = MemoryContextStrdup(TopMemoryContext, runra_notify_conninfo);
	notify_conn_start(&conn, runra_notify_channel, superuser_name);
}

/*
 * Makes the WaitEventSet match the connection: latch and postmaster death
 * always, the socket for the events the connection waits for.  While
 * connecting, libpq may switch sockets (and a new one may get the old
 * number), so the set is rebuilt then; once connected it is reused.
 */
static void
prepare_wait_set(void)
{
	pgsocket	sock = conn.conn ? PQsocket(conn.conn) : PGINVALID_SOCKET;
	uint32		events = sock != PGINVALID_SOCKET ? conn.wait_events : 0;

	if (events == 0)
		sock = PGINVALID_SOCKET;
	if (wait_set != NULL && conn.state != NOTIFY_CONNECTING &&
		wait_set_generation == conn.generation &&
		wait_set_socket == sock && wait_set_events == events)
		return;
	if (wait_set != NULL)
		FreeWaitEventSet(wait_set);
	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	if (sock != PGINVALID_SOCKET)
		AddWaitEventToSet(wait_set, events, sock, NULL, NULL);
	wait_set_generation = conn.generation;
	wait_set_socket = sock;
	wait_set_events = events;
}

/* Milliseconds from now until t (0 if past), for the nearest deadline. */
static long
ms_until(TimestampTz now, TimestampTz t, long current)
{
	long		ms;

	if (t == 0)
		return current;
	ms = t <= now ? 0 : (long) ((t - now + 999) / 1000);
	return current < 0 ? ms : Min(current, ms);
}

/*
 * Waits for the latch, the socket or the nearest deadline.  Returns true
 * when the connection's socket is ready.
 */
static bool
wait_for_work(TimestampTz now)
{
	long		timeout = ms_until(now, notify_queue_deadline(&queue), -1);
	WaitEvent	events[3];
	int			n;
	bool		socket_ready = false;

	if (runra_notify_channel[0] != '\0' && conn.state == NOTIFY_DISCONNECTED)
		timeout = ms_until(now, conn.retry_at, timeout);
	if (conn.state == NOTIFY_CONNECTING || conn.state == NOTIFY_LISTEN_SENT)
		timeout = ms_until(now, conn.give_up_at, timeout);
	prepare_wait_set();
	n = WaitEventSetWait(wait_set, timeout, events, lengthof(events), PG_WAIT_EXTENSION);
	if (n == 1 && (events[0].events & WL_LATCH_SET) && wait_set_socket != PGINVALID_SOCKET)
	{
		/*
		 * A set latch is reported alone, sockets unchecked.  It is set often
		 * (SIGHUP, and the lock and statement timeouts' SIGALRM),
		 * so look at the socket once more without waiting, or a busy latch
		 * could starve the connection.
		 */
		ResetLatch(MyLatch);
		n = WaitEventSetWait(wait_set, 0, events, lengthof(events), PG_WAIT_EXTENSION);
	}
	runra_worker_absorb_barriers();
	for (int i = 0; i < n; i++)
	{
		if (events[i].events & WL_LATCH_SET)
			ResetLatch(MyLatch);
		if (events[i].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
			socket_ready = true;
	}
	return socket_ready;
}

/* Writes what is queued and closes the connection, for a clean exit. */
static void
shut_down(void)
{
	int			lost;

	ereport(LOG, (errmsg("runra_obs notify stopping")));
	if (conn.state == NOTIFY_LISTENING)
		notify_conn_advance(&conn, queue_payload, NULL);	/* what already arrived */
	notify_conn_close(&conn);
	queue.write_failures = 0;	/* one last try, whatever the backoff says */
	notify_queue_flush(&queue);
	lost = list_length(queue.payloads);
	if (lost > 0)
		ereport(WARNING,
				(errcode(queue.last_sqlerrcode),
				 errmsg("runra_obs notify exits with %d notifications it could not write", lost),
				 errdetail("Their payloads are lost; the log above says why they could not be written.")));
}

/* Entry point of the worker (registered in workers.c). */
void
runra_notify_worker_main(Datum arg)
{
	MemoryContext loop_cxt;
	char	   *error;

	runra_worker_setup_signals();
	BackgroundWorkerInitializeConnection(runra_database, NULL, 0);
	runra_worker_attach("notify");
	if (!runra_worker_wait_for_extension())
		proc_exit(1);
	if (!runra_worker_run_transaction("looking up the superuser", look_up_superuser,
									  NULL, &error, NULL))
		proc_exit(1);			/* the error is logged; restarted in 5 s */
	notify_queue_init(&queue);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "runra_obs notify loop",
									 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(loop_cxt);
	while (!runra_got_sigterm)
	{
		TimestampTz now;
		bool		socket_ready;

		MemoryContextReset(loop_cxt);
		apply_settings();
		connect_if_due(GetCurrentTimestamp());
		show_state();
		socket_ready = wait_for_work(GetCurrentTimestamp());
		if (runra_got_sigterm)
			break;
		if (socket_ready)
			notify_conn_advance(&conn, queue_payload, NULL);
		now = GetCurrentTimestamp();
		notify_conn_check_timeout(&conn, now);
		if (notify_queue_due(&queue, now))
		{
			notify_queue_flush(&queue);
			shown_state[0] = '\0';
		}
	}
	shut_down();
	proc_exit(1);
}
