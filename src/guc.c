/*
 * guc.c — defines every runra_obs.* setting.
 *
 * All settings live here so that their names, defaults and contexts can be
 * read in one screen and kept in step with the README's settings table.
 * Durations are integers with units, so "30d", "5min" and "250ms" work in
 * postgresql.conf and SET alike.
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"

#include "guc.h"

/* the store */
int			runra_retention_s = 30 * 86400;
int			runra_premake_s = 3 * 86400;
double		runra_error_rate_threshold = 0.05;
int			runra_max_json_depth = 64;

/* workers */
char	   *runra_database = NULL;

/* HTTP ingest */
int			runra_http_workers = 2;
char	   *runra_http_listen_addresses = NULL;
int			runra_http_port = 8787;
int			runra_http_max_body_size = 16 * 1024 * 1024;
int			runra_http_max_connections = 256;
int			runra_http_connection_timeout_s = 30;
int			runra_http_lock_timeout_ms = 2000;
int			runra_http_statement_timeout_ms = 30000;
int			runra_idempotency_window_s = 86400;
bool		runra_http_allow_unauthenticated = false;
int			runra_http_max_batch_requests = 1000;
int			runra_http_header_timeout_s = 10;
int			runra_http_max_connections_per_address = 64;
char	   *runra_http_tls_cert_file = NULL;
char	   *runra_http_tls_key_file = NULL;
char	   *runra_http_metrics_token = NULL;
int			runra_http_token_events_per_second = 0;
int			runra_http_token_bytes_per_second = 0;
int			runra_http_token_rate_burst_s = 10;

/* NOTIFY ingest and maintenance */
char	   *runra_notify_conninfo = NULL;
char	   *runra_notify_channel = NULL;
int			runra_notify_batch_size = 100;
int			runra_notify_flush_ms = 200;
int			runra_maintenance_interval_s = 60;
int			runra_rejected_retention_s = 7 * 86400;

/* forwarding */
bool		runra_forward_enabled = true;
int			runra_forward_poll_interval_ms = 100;
int			runra_forward_requests = 10;
int			runra_forward_max_request_size = 16 * 1024 * 1024;

/* rollups */
int			runra_rollup_retention_s = 400 * 86400;
bool		runra_rollup_enabled = true;
int			runra_rollup_interval_ms = 1000;
int			runra_rollup_batch_size = 100000;
int			runra_rollup_nice = 10;
int			runra_rollup_shard_connections = 1;

/* alerting */
bool		runra_alert_enabled = true;
int			runra_alert_poll_interval_ms = 1000;
int			runra_alert_evaluation_timeout_ms = 10000;
int			runra_alert_retention_s = 30 * 86400;

#define DAY_S (86400)
#define YEARS_S(n) ((n) * 366 * DAY_S)

/* Settings of the event store and the analyst's API. */
static void
define_store_gucs(void)
{
	DefineCustomIntVariable("runra_obs.retention",
							"How long raw events are kept; whole day partitions older than this are dropped.",
							"Events with a timestamp older than now() minus this are rejected.",
							&runra_retention_s, 30 * DAY_S, DAY_S, YEARS_S(50),
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.premake",
							"How far ahead of now day partitions are created.",
							"Events with a timestamp later than the last partition are rejected.",
							&runra_premake_s, 3 * DAY_S, DAY_S, 366 * DAY_S,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomRealVariable("runra_obs.error_rate_threshold",
							 "Failure rate above which runra_obs.error_rate() flags a bucket.",
							 NULL,
							 &runra_error_rate_threshold, 0.05, 0.0, 1.0,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.max_json_depth",
							"Deepest nesting of arrays and objects accepted in an event.",
							"Deeper events are rejected with a reason.",
							&runra_max_json_depth, 64, 2, 1000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.rollup_retention",
							"How long rollups are kept.",
							NULL,
							&runra_rollup_retention_s, 400 * DAY_S, DAY_S, YEARS_S(50),
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
}

/* Settings shared by every background worker. */
static void
define_worker_gucs(void)
{
	DefineCustomStringVariable("runra_obs.database",
							   "Database the runra_obs background workers serve.",
							   "The extension must be created in this database.",
							   &runra_database, "postgres",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.maintenance_interval",
							"How often the maintenance worker runs runra_obs.run_maintenance().",
							NULL,
							&runra_maintenance_interval_s, 60, 1, DAY_S,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.rejected_retention",
							"How long rejected events are kept.",
							NULL,
							&runra_rejected_retention_s, 7 * DAY_S, 3600, YEARS_S(50),
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
}

/* Settings of the HTTP ingest server. */
static void
define_http_gucs(void)
{
	DefineCustomIntVariable("runra_obs.http_workers",
							"Number of HTTP ingest workers (0 disables the HTTP server).",
							"They share one port with SO_REUSEPORT.",
							&runra_http_workers, 2, 0, 32,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("runra_obs.http_listen_addresses",
							   "Comma-separated addresses the HTTP server listens on.",
							   NULL,
							   &runra_http_listen_addresses, "127.0.0.1",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.http_port",
							"TCP port of the HTTP ingest server.",
							NULL,
							&runra_http_port, 8787, 1, 65535,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.http_max_body_size",
							"Largest request body accepted (after gzip decoding); larger ones get 413.",
							NULL,
							&runra_http_max_body_size, 16 * 1024 * 1024, 1024, 1024 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.http_max_connections",
							"Most concurrent HTTP connections per worker.",
							NULL,
							&runra_http_max_connections, 256, 1, 65536,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.http_connection_timeout",
							"Idle or slow HTTP clients are disconnected after this long.",
							NULL,
							&runra_http_connection_timeout_s, 30, 1, 3600,
							PGC_POSTMASTER, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.http_lock_timeout",
							"lock_timeout of the HTTP workers' write transactions.",
							NULL,
							&runra_http_lock_timeout_ms, 2000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.http_statement_timeout",
							"statement_timeout of the HTTP workers' write transactions.",
							NULL,
							&runra_http_statement_timeout_ms, 30000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.idempotency_window",
							"How long an Idempotency-Key is remembered.",
							NULL,
							&runra_idempotency_window_s, 86400, 60, YEARS_S(1),
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomBoolVariable("runra_obs.http_allow_unauthenticated",
							 "Accept HTTP requests without a bearer token (local development only).",
							 NULL,
							 &runra_http_allow_unauthenticated, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.http_max_batch_requests",
							"Most requests one group commit writes in one transaction.",
							"1 gives every request a transaction of its own (no group commit).",
							&runra_http_max_batch_requests, 1000, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.http_header_timeout",
							"A request's head must have arrived within this long, or the connection is closed.",
							"Counted from accept, or from the end of the previous answer on a kept-alive connection, however slowly the head trickles in.",
							&runra_http_header_timeout_s, 10, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.http_max_connections_per_address",
							"Most concurrent HTTP connections from one client address, over all workers (0: no limit).",
							"Connections past it are answered 503 with Retry-After.",
							&runra_http_max_connections_per_address, 64, 0, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("runra_obs.http_tls_cert_file",
							   "PEM certificate (chain) of the HTTP server; empty: plain HTTP.",
							   "Relative paths are read from the data directory. Reloaded on SIGHUP.",
							   &runra_http_tls_cert_file, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("runra_obs.http_tls_key_file",
							   "PEM private key of the HTTP server's certificate; empty: plain HTTP.",
							   "Must not be readable by group or others. Reloaded on SIGHUP.",
							   &runra_http_tls_key_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("runra_obs.http_metrics_token",
							   "Bearer token GET /metrics requires; empty: /metrics needs no token.",
							   "A secret: only superusers can read it.",
							   &runra_http_metrics_token, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.http_token_events_per_second",
							"Events per second one bearer token may send over all HTTP workers (0: no limit).",
							"Past it requests get 429 with Retry-After; all unauthenticated clients count as one token.",
							&runra_http_token_events_per_second, 0, 0, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.http_token_bytes_per_second",
							"Request body bytes per second one bearer token may send over all HTTP workers (0: no limit).",
							"Counted as sent (before gzip decoding). Past it requests get 429 with Retry-After.",
							&runra_http_token_bytes_per_second, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.http_token_rate_burst",
							"How many seconds' worth of the per-token rates a token may send at once.",
							NULL,
							&runra_http_token_rate_burst_s, 10, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
}

/*
 * A channel is an identifier: longer ones could never be notified
 * (pg_notify refuses them), so say so when the setting is made.
 */
static bool
check_notify_channel(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && strlen(*newval) >= NAMEDATALEN)
	{
		GUC_check_errdetail("A channel name is at most %d bytes long.", NAMEDATALEN - 1);
		return false;
	}
	return true;
}

/* Settings of the NOTIFY listener. */
static void
define_notify_gucs(void)
{
	DefineCustomStringVariable("runra_obs.notify_conninfo",
							   "libpq connection string the NOTIFY listener uses to reach its own server (empty: the local Unix socket).",
							   NULL,
							   &runra_notify_conninfo, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("runra_obs.notify_channel",
							   "Channel the NOTIFY listener listens on (empty disables it).",
							   NULL,
							   &runra_notify_channel, "runra_events",
							   PGC_SIGHUP, 0, check_notify_channel, NULL, NULL);
	DefineCustomIntVariable("runra_obs.notify_batch_size",
							"A batch of notified events is written when it reaches this many events.",
							NULL,
							&runra_notify_batch_size, 100, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.notify_flush_ms",
							"A batch of notified events is written at the latest this long after its first event.",
							NULL,
							&runra_notify_flush_ms, 200, 1, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
}

/* Settings of the forward worker. */
static void
define_forward_gucs(void)
{
	DefineCustomBoolVariable("runra_obs.forward_enabled",
							 "Start the forward worker that delivers events to destinations.",
							 NULL,
							 &runra_forward_enabled, true,
							 PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.forward_poll_interval",
							"How often the forward worker advances the safe watermark and looks for new events.",
							NULL,
							&runra_forward_poll_interval_ms, 100, 10, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.forward_requests",
							"Batches each destination may have read and not yet acknowledged (HTTP requests in flight at once).",
							NULL,
							&runra_forward_requests, 10, 1, 100,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.forward_max_request_size",
							"Largest request body a destination is sent; an event that alone encodes to more is dead-lettered.",
							NULL,
							&runra_forward_max_request_size, 16 * 1024 * 1024, 64 * 1024, 512 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
}

/* Settings of the rollup consumer. */
static void
define_rollup_gucs(void)
{
	DefineCustomBoolVariable("runra_obs.rollup_enabled",
							 "Start the rollup worker that folds new events into the rollups.",
							 "Without it the *_live views and the API stay exact, reading the unfolded events raw.",
							 &runra_rollup_enabled, true,
							 PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.rollup_interval",
							"How often the rollup worker folds the events committed since its last fold.",
							NULL,
							&runra_rollup_interval_ms, 1000, 10, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.rollup_batch_size",
							"Most event ids the rollup worker folds in one transaction.",
							NULL,
							&runra_rollup_batch_size, 100000, 100, 10000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.rollup_nice",
							"CPU niceness of the rollup worker (0 to 19, as nice(1) counts).",
							"When the CPUs are saturated, sessions that ingest go first and the rollups "
							"fold later, in bigger and cheaper batches; answers stay exact, since "
							"queries add the events not folded yet.",
							&runra_rollup_nice, 10, 0, 19,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.rollup_shard_connections",
							"Connections to each Citus worker that a rollup fold uses.",
							"On Citus the shards fold their own events; a worker's shards are folded "
							"over this many connections at once (each a backend there), kept open "
							"between the rollup worker's folds.",
							&runra_rollup_shard_connections, 1, 1, 64,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/* Defines every setting and reserves the prefix so typos are reported. */
/* Settings of the alert worker. */
static void
define_alert_gucs(void)
{
	DefineCustomBoolVariable("runra_obs.alert_enabled",
							 "Start the alert worker that evaluates alert rules and sends their notifications.",
							 NULL,
							 &runra_alert_enabled, true,
							 PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.alert_poll_interval",
							"How often the alert worker looks for rules that are due and notifications to send.",
							"A change of a rule or contact point wakes it at once.",
							&runra_alert_poll_interval_ms, 1000, 10, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.alert_evaluation_timeout",
							"Longest one alert rule's evaluation may take (a query rule's SQL included) before it fails.",
							"0 turns the limit off.",
							&runra_alert_evaluation_timeout_ms, 10000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("runra_obs.alert_retention",
							"How long alert history and sent or dead notifications are kept.",
							NULL,
							&runra_alert_retention_s, 30 * DAY_S, 3600, YEARS_S(50),
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
}

void
runra_define_gucs(void)
{
	define_store_gucs();
	define_worker_gucs();
	define_http_gucs();
	define_notify_gucs();
	define_forward_gucs();
	define_rollup_gucs();
	define_alert_gucs();
	MarkGUCPrefixReserved("runra_obs");
}
