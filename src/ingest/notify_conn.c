/*
 * notify_conn.c — the listener's libpq connection, as a state machine.
 *
 * A background worker cannot LISTEN itself (PostgreSQL 15 refuses LISTEN
 * in a background process, and Async_Listen in-process turns payloads into
 * log lines), so it connects to its own server with libpq.  Everything here
 * is non-blocking: PQconnectStartParams/PQconnectPoll, PQsendQuery for the
 * LISTEN, PQconsumeInput/PQnotifies for what arrives.  The worker's
 * WaitEventSet waits on PQsocket for the events in nc->wait_events and
 * calls notify_conn_advance when the socket is ready, so SIGTERM is
 * answered at any point, connecting included.
 *
 * When the connection drops, the state goes back to DISCONNECTED with a
 * retry time that backs off (250 ms doubling to 10 s).  An outage is logged
 * once when it starts and once when it ends; the attempts in between only
 * at DEBUG1, and the latest reason is in runra_obs.worker_status.
 *
 * No libpq call here can throw: PostgreSQL errors are raised only after
 * libpq has returned.
 */
#include "postgres.h"

#include "libpq-fe.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "ingest/notify.h"
#include "worker/worker_common.h"

#define RETRY_FIRST_MS 250
#define RETRY_MAX_MS 10000

/* Milliseconds to wait before attempt number failures + 1. */
static int
retry_delay_ms(int failures)
{
	int			delay = RETRY_FIRST_MS;

	for (int i = 1; i < failures && delay < RETRY_MAX_MS; i++)
		delay *= 2;
	return Min(delay, RETRY_MAX_MS);
}

/*
 * Keeps what the server says outside a query (such as "terminating
 * connection due to administrator command" before it hangs up) instead of
 * letting libpq print it to stderr.  Runs inside libpq: copies only.
 */
static void
keep_server_message(void *arg, const PGresult *res)
{
	NotifyConn *nc = arg;
	const char *message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	if (message != NULL)
		strlcpy(nc->server_said, message, sizeof(nc->server_said));
}

/* The first line of libpq's message (the rest is advice for psql users). */
static char *
libpq_error(PGconn *conn)
{
	char	   *message = pstrdup(conn ? PQerrorMessage(conn) : "out of memory");
	int			len = strcspn(message, "\n");

	while (len > 0 && message[len - 1] == ' ')
		len--;
	message[len] = '\0';
	return message;
}

/* Closes the libpq connection, if any, and forgets what it waited for. */
static void
drop_connection(NotifyConn *nc)
{
	if (nc->conn)
		PQfinish(nc->conn);
	nc->conn = NULL;
	nc->state = NOTIFY_DISCONNECTED;
	nc->wait_events = 0;
	nc->give_up_at = 0;
}

/*
 * Closes a failed connection and schedules the next attempt.  The first
 * failure of an outage is logged; later ones only at DEBUG1.
 */
static void
connection_failed(NotifyConn *nc, const char *reason)
{
	char	   *message = nc->server_said[0]
		? psprintf("%s (%s)", nc->server_said, reason)
		: pstrdup(reason);
	TimestampTz now = GetCurrentTimestamp();

	drop_connection(nc);
	nc->failures++;
	nc->retry_at = TimestampTzPlusMilliseconds(now, retry_delay_ms(nc->failures));
	runra_worker_report_error(message);
	if (nc->down_since != 0)
	{
		elog(DEBUG1, "runra_obs notify: attempt %d to reconnect failed: %s",
			 nc->failures, message);
		return;
	}
	nc->down_since = now;
	ereport(LOG,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg(nc->ever_listened
					? "runra_obs notify lost its connection to the server"
					: "runra_obs notify could not connect to the server"),
			 errdetail_internal("%s", message),
			 errhint("It tries again with backoff; notifications sent on channel \"%s\" until it is back are lost.",
					 nc->channel)));
}

/* The LISTEN went through: from now on notifications arrive. */
static void
now_listening(NotifyConn *nc)
{
	TimestampTz now = GetCurrentTimestamp();

	nc->state = NOTIFY_LISTENING;
	nc->wait_events = WL_SOCKET_READABLE;
	if (nc->down_since != 0 && nc->ever_listened)
		ereport(LOG,
				(errmsg("runra_obs notify is listening on channel \"%s\" again after %.1f s and %d failed attempts",
						nc->channel,
						(double) (now - nc->down_since) / USECS_PER_SEC, nc->failures)));
	else
		ereport(LOG,
				(errmsg("runra_obs notify is listening on channel \"%s\"", nc->channel)));
	nc->ever_listened = true;
	nc->failures = 0;
	nc->down_since = 0;
}

/*
 * Starts connecting (non-blocking).  The channel is quoted as an
 * identifier, so it is matched exactly as pg_notify() names it.
 */
void
notify_conn_start(NotifyConn *nc, const char *channel, const char *superuser)
{
	NotifyConnParams params;
	char	   *error;

	strlcpy(nc->channel, channel, sizeof(nc->channel));
	nc->server_said[0] = '\0';
	nc->generation++;
	if (!notify_conn_params(&params, superuser, &error))
	{
		connection_failed(nc, error);
		return;
	}
	nc->conn = PQconnectStartParams(params.keywords, params.values, 0);
	if (nc->conn == NULL || PQstatus(nc->conn) == CONNECTION_BAD)
	{
		connection_failed(nc, libpq_error(nc->conn));
		return;
	}
	PQsetNoticeReceiver(nc->conn, keep_server_message, nc);
	nc->state = NOTIFY_CONNECTING;
	nc->wait_events = WL_SOCKET_WRITEABLE;	/* as PQconnectPoll's docs say */
	nc->give_up_at = notify_conn_timeout_s(&params) > 0
		? TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
									  (int64) notify_conn_timeout_s(&params) * 1000)
		: 0;
}

/*
 * Gives up on a connection attempt (or a LISTEN) that took longer than
 * connect_timeout: a server that accepts and never answers would otherwise
 * keep the listener "connecting" forever.
 */
void
notify_conn_check_timeout(NotifyConn *nc, TimestampTz now)
{
	if ((nc->state != NOTIFY_CONNECTING && nc->state != NOTIFY_LISTEN_SENT) ||
		nc->give_up_at == 0 || now < nc->give_up_at)
		return;
	connection_failed(nc, "no answer from the server within connect_timeout");
}

/* Sends LISTEN "channel" once the connection is up. */
static void
send_listen(NotifyConn *nc)
{
	char	   *quoted = PQescapeIdentifier(nc->conn, nc->channel, strlen(nc->channel));
	char	   *sql;

	if (quoted == NULL)
	{
		connection_failed(nc, libpq_error(nc->conn));
		return;
	}
	sql = psprintf("LISTEN %s", quoted);
	PQfreemem(quoted);
	if (!PQsendQuery(nc->conn, sql))
	{
		connection_failed(nc, libpq_error(nc->conn));
		return;
	}
	nc->state = NOTIFY_LISTEN_SENT;
	nc->wait_events = WL_SOCKET_READABLE;
}

/* One PQconnectPoll step. */
static void
advance_connect(NotifyConn *nc)
{
	switch (PQconnectPoll(nc->conn))
	{
		case PGRES_POLLING_READING:
			nc->wait_events = WL_SOCKET_READABLE;
			break;
		case PGRES_POLLING_WRITING:
			nc->wait_events = WL_SOCKET_WRITEABLE;
			break;
		case PGRES_POLLING_OK:
			send_listen(nc);
			break;
		default:
			connection_failed(nc, libpq_error(nc->conn));
			break;
	}
}

/* Reads the LISTEN's result, when it is complete. */
static void
advance_listen(NotifyConn *nc)
{
	PGresult   *res;

	while (!PQisBusy(nc->conn))
	{
		res = PQgetResult(nc->conn);
		if (res == NULL)
		{
			now_listening(nc);
			return;
		}
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			char	   *message = psprintf("LISTEN failed: %s",
										   PQresultErrorMessage(res));

			PQclear(res);
			connection_failed(nc, message);
			return;
		}
		PQclear(res);
	}
}

/* Hands every complete notification read so far to fn. */
static void
drain_notifications(NotifyConn *nc, NotifyPayloadFn fn, void *arg)
{
	PGnotify   *notify;

	while (nc->conn != NULL && (notify = PQnotifies(nc->conn)) != NULL)
	{
		char	   *payload = pstrdup(notify->extra);
		int			sender_pid = notify->be_pid;

		PQfreemem(notify);
		fn(arg, payload, sender_pid);
		pfree(payload);
	}
}

/*
 * Moves the connection on after its socket became ready: a connect step,
 * the LISTEN's result, or notifications (given to fn one by one).
 */
void
notify_conn_advance(NotifyConn *nc, NotifyPayloadFn fn, void *arg)
{
	if (nc->state == NOTIFY_CONNECTING)
	{
		advance_connect(nc);
		return;
	}
	if (nc->state == NOTIFY_DISCONNECTED)
		return;
	if (!PQconsumeInput(nc->conn) || PQstatus(nc->conn) == CONNECTION_BAD)
	{
		/* data that arrived before the hang-up still counts */
		drain_notifications(nc, fn, arg);
		connection_failed(nc, libpq_error(nc->conn));
		return;
	}
	if (nc->state == NOTIFY_LISTEN_SENT)
		advance_listen(nc);
	drain_notifications(nc, fn, arg);
}

/* Closes the connection on purpose (shutdown, settings changed). */
void
notify_conn_close(NotifyConn *nc)
{
	drop_connection(nc);
	nc->retry_at = 0;
	nc->failures = 0;
	nc->down_since = 0;
}
