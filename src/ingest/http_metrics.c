/*
 * http_metrics.c — the counters behind GET /metrics (Prometheus text format).
 *
 * The workers share one port, so a scrape lands on any of them: counters
 * live in shared memory and every worker shows the sum.  Updates are atomic
 * adds, safe from libmicrohttpd's callbacks.  Open connections are kept per
 * worker, so a worker that crashed and restarted starts its gauge at zero,
 * with a flag saying whether the worker takes connections now: together
 * they are each worker's fair share of the connections (http_conn.c moves
 * connections off a worker that holds more).  Answers are counted by route
 * and status.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "consume/watermark.h"
#include "ingest/http.h"
#include "worker/worker_metrics.h"

static const unsigned int tracked_status[] = {
	200, 400, 401, 404, 405, 413, 415, 422, 429, 500, 503
};
#define N_STATUS lengthof(tracked_status)

/* the route label of each HttpRoute */
static const char *const route_labels[ROUTE_COUNT] = {
	[ROUTE_NONE] = "none",
	[ROUTE_EVENTS] = "events",
	[ROUTE_AXIOM] = "axiom",
	[ROUTE_OTLP_TRACES] = "otlp_traces",
	[ROUTE_OTLP_LOGS] = "otlp_logs",
	[ROUTE_HEALTH] = "healthz",
	[ROUTE_METRICS] = "metrics",
};

/* upper bounds of the commit latency buckets, in seconds (+Inf is implied) */
static const double commit_buckets[] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};
#define N_BUCKETS lengthof(commit_buckets)

typedef struct HttpMetrics
{
	pg_atomic_uint64 requests[ROUTE_COUNT][N_STATUS + 1];	/* last: any other status */
	pg_atomic_uint64 events_ingested;
	pg_atomic_uint64 events_rejected;
	pg_atomic_uint64 body_bytes;
	pg_atomic_uint64 batched_requests;
	pg_atomic_uint64 commit_le[N_BUCKETS + 1];	/* not cumulative; last: +Inf */
	pg_atomic_uint64 commit_sum_us;
	pg_atomic_uint64 commit_count;
	pg_atomic_uint64 open_connections[MAX_HTTP_WORKERS];
	pg_atomic_uint64 listening[MAX_HTTP_WORKERS];	/* 1 while it takes connections */
	pg_atomic_uint64 connections_moved;
	pg_atomic_uint64 refused[REFUSED_COUNT];
	pg_atomic_uint64 header_timeouts;
	pg_atomic_uint64 worker_starts;
	pg_atomic_uint64 rate_limited[RATE_LIMIT_COUNT];
} HttpMetrics;

static HttpMetrics *metrics = NULL;
static int	my_worker = 0;

static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;

/* Asks for room for the counters (shmem_request_hook). */
static void
metrics_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(sizeof(HttpMetrics)));
}

/* Creates or attaches to the counters (shmem_startup_hook). */
static void
metrics_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	metrics = ShmemInitStruct("runra_obs http metrics", sizeof(HttpMetrics), &found);
	if (!found)
	{
		pg_atomic_uint64 *all = (pg_atomic_uint64 *) metrics;

		for (size_t i = 0; i < sizeof(HttpMetrics) / sizeof(pg_atomic_uint64); i++)
			pg_atomic_init_u64(&all[i], 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Reserves the counters; called from _PG_init (through workers.c). */
void
http_metrics_install_shmem(void)
{
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = metrics_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = metrics_shmem_startup;
}

/*
 * This worker's gauge starts at zero (a crashed predecessor left its
 * count), and its start is counted (restarts = starts - workers).
 */
void
http_metrics_worker_start(int worker_index)
{
	my_worker = worker_index % MAX_HTTP_WORKERS;
	pg_atomic_write_u64(&metrics->open_connections[my_worker], 0);
	pg_atomic_fetch_add_u64(&metrics->worker_starts, 1);
}

/* on_shmem_exit: however the worker leaves, it no longer takes connections. */
static void
stop_listening(int code, Datum arg)
{
	http_metrics_set_listening(false);
}

/*
 * This worker takes new connections now (true), or no longer (false, from
 * its shutdown, and in any case when it exits).
 */
void
http_metrics_set_listening(bool listening)
{
	static bool registered = false;

	if (listening && !registered)
	{
		on_shmem_exit(stop_listening, (Datum) 0);
		registered = true;
	}
	pg_atomic_write_u64(&metrics->listening[my_worker], listening ? 1 : 0);
}

/*
 * What a worker's fair share is made of: the connections open on the
 * workers that take connections now, and how many workers those are.
 */
void
http_metrics_connection_spread(uint64 *open, int *workers)
{
	*open = 0;
	*workers = 0;
	for (int i = 0; i < MAX_HTTP_WORKERS; i++)
		if (pg_atomic_read_u64(&metrics->listening[i]) != 0)
		{
			*open += pg_atomic_read_u64(&metrics->open_connections[i]);
			(*workers)++;
		}
}

/* A connection was asked to reconnect, so that it lands on another worker. */
void
http_metrics_count_moved(void)
{
	pg_atomic_fetch_add_u64(&metrics->connections_moved, 1);
}

/* One answer sent, by route and status. */
void
http_metrics_count_status(HttpRoute route, unsigned int status)
{
	int			i = 0;

	while (i < (int) N_STATUS && tracked_status[i] != status)
		i++;
	pg_atomic_fetch_add_u64(&metrics->requests[route][i], 1);
}

/* Body bytes received, as sent. */
void
http_metrics_count_bytes(size_t bytes)
{
	pg_atomic_fetch_add_u64(&metrics->body_bytes, bytes);
}

/* A connection opened (+1) or closed (-1) in this worker. */
void
http_metrics_count_connection(int delta)
{
	if (delta > 0)
		pg_atomic_fetch_add_u64(&metrics->open_connections[my_worker], 1);
	else
		pg_atomic_fetch_sub_u64(&metrics->open_connections[my_worker], 1);
}

/* A connection answered 503 because it was over a limit. */
void
http_metrics_count_refused(HttpRefusal why)
{
	pg_atomic_fetch_add_u64(&metrics->refused[why], 1);
}

/* A connection closed because its request head was late. */
void
http_metrics_count_header_timeout(void)
{
	pg_atomic_fetch_add_u64(&metrics->header_timeouts, 1);
}

/* A request refused with 429 for its token's rate. */
void
http_metrics_count_rate_limited(HttpRateLimit limit)
{
	pg_atomic_fetch_add_u64(&metrics->rate_limited[limit], 1);
}

/* One committed batch: how many requests and events, and how long it took. */
void
http_metrics_count_batch(int requests, int64 ingested, int64 rejected, TimestampTz started)
{
	int64		us = GetCurrentTimestamp() - started;
	int			b = 0;

	while (b < (int) N_BUCKETS && (double) us / 1e6 > commit_buckets[b])
		b++;
	pg_atomic_fetch_add_u64(&metrics->commit_le[b], 1);
	pg_atomic_fetch_add_u64(&metrics->commit_sum_us, Max(us, 0));
	pg_atomic_fetch_add_u64(&metrics->commit_count, 1);
	pg_atomic_fetch_add_u64(&metrics->batched_requests, requests);
	pg_atomic_fetch_add_u64(&metrics->events_ingested, ingested);
	pg_atomic_fetch_add_u64(&metrics->events_rejected, rejected);
}

/* Writes one metric with its HELP and TYPE lines. */
static void
render_counter(StringInfo out, const char *name, const char *type, const char *help, uint64 value)
{
	appendStringInfo(out, "# HELP %s %s\n# TYPE %s %s\n%s " UINT64_FORMAT "\n",
					 name, help, name, type, name, value);
}

/* runra_obs_http_requests_total, one line per route and status. */
static void
render_requests(StringInfo out)
{
	appendStringInfoString(out,
						   "# HELP runra_obs_http_requests_total HTTP requests answered, by route and status code.\n"
						   "# TYPE runra_obs_http_requests_total counter\n");
	for (int r = 0; r < ROUTE_COUNT; r++)
		for (int i = 0; i <= (int) N_STATUS; i++)
		{
			appendStringInfo(out, "runra_obs_http_requests_total{route=\"%s\",code=\"", route_labels[r]);
			if (i < (int) N_STATUS)
				appendStringInfo(out, "%u\"} ", tracked_status[i]);
			else
				appendStringInfoString(out, "other\"} ");
			appendStringInfo(out, UINT64_FORMAT "\n", pg_atomic_read_u64(&metrics->requests[r][i]));
		}
}

/* runra_obs_http_worker_connections: how the connections spread, by worker. */
static void
render_worker_connections(StringInfo out)
{
	appendStringInfoString(out,
						   "# HELP runra_obs_http_worker_connections HTTP connections open now on each worker that takes connections.\n"
						   "# TYPE runra_obs_http_worker_connections gauge\n");
	for (int i = 0; i < MAX_HTTP_WORKERS; i++)
		if (pg_atomic_read_u64(&metrics->listening[i]) != 0)
			appendStringInfo(out, "runra_obs_http_worker_connections{worker=\"%d\"} " UINT64_FORMAT "\n",
							 i, pg_atomic_read_u64(&metrics->open_connections[i]));
}

/* runra_obs_http_connections_refused_total, by limit. */
static void
render_refused(StringInfo out)
{
	static const char *const reasons[REFUSED_COUNT] = {
		[REFUSED_WORKER_FULL] = "worker_full",
		[REFUSED_PER_ADDRESS] = "per_address",
	};

	appendStringInfoString(out,
						   "# HELP runra_obs_http_connections_refused_total Connections answered 503 because they were over a connection limit.\n"
						   "# TYPE runra_obs_http_connections_refused_total counter\n");
	for (int i = 0; i < REFUSED_COUNT; i++)
		appendStringInfo(out, "runra_obs_http_connections_refused_total{limit=\"%s\"} " UINT64_FORMAT "\n",
						 reasons[i], pg_atomic_read_u64(&metrics->refused[i]));
}

/* runra_obs_http_rate_limited_total, by limit. */
static void
render_rate_limited(StringInfo out)
{
	appendStringInfoString(out,
						   "# HELP runra_obs_http_rate_limited_total Requests answered 429 because their token was over a rate limit.\n"
						   "# TYPE runra_obs_http_rate_limited_total counter\n");
	appendStringInfo(out, "runra_obs_http_rate_limited_total{limit=\"events\"} " UINT64_FORMAT "\n",
					 pg_atomic_read_u64(&metrics->rate_limited[RATE_EVENTS]));
	appendStringInfo(out, "runra_obs_http_rate_limited_total{limit=\"bytes\"} " UINT64_FORMAT "\n",
					 pg_atomic_read_u64(&metrics->rate_limited[RATE_BYTES]));
}

/* runra_obs_http_batch_commit_seconds: cumulative buckets, sum and count. */
static void
render_commit_histogram(StringInfo out)
{
	uint64		cumulative = 0;

	appendStringInfoString(out,
						   "# HELP runra_obs_http_batch_commit_seconds Time to write and commit one group of requests.\n"
						   "# TYPE runra_obs_http_batch_commit_seconds histogram\n");
	for (int b = 0; b <= (int) N_BUCKETS; b++)
	{
		cumulative += pg_atomic_read_u64(&metrics->commit_le[b]);
		if (b < (int) N_BUCKETS)
			appendStringInfo(out, "runra_obs_http_batch_commit_seconds_bucket{le=\"%g\"} " UINT64_FORMAT "\n",
							 commit_buckets[b], cumulative);
		else
			appendStringInfo(out, "runra_obs_http_batch_commit_seconds_bucket{le=\"+Inf\"} " UINT64_FORMAT "\n",
							 cumulative);
	}
	appendStringInfo(out, "runra_obs_http_batch_commit_seconds_sum %.6f\n",
					 (double) pg_atomic_read_u64(&metrics->commit_sum_us) / 1e6);
	appendStringInfo(out, "runra_obs_http_batch_commit_seconds_count " UINT64_FORMAT "\n",
					 pg_atomic_read_u64(&metrics->commit_count));
}

/* The counters that are one number each: name, help, where in HttpMetrics. */
static const struct
{
	const char *name;
	const char *help;
	size_t		offset;
}			counters[] = {
	{"runra_obs_http_events_ingested_total", "Events stored through HTTP (committed).",
	offsetof(HttpMetrics, events_ingested)},
	{"runra_obs_http_events_rejected_total", "Events refused by validation and kept in runra_obs.rejected_events.",
	offsetof(HttpMetrics, events_rejected)},
	{"runra_obs_http_request_body_bytes_total", "Request body bytes received (as sent, before gzip decoding).",
	offsetof(HttpMetrics, body_bytes)},
	{"runra_obs_http_batched_requests_total",
		"Requests written by group commits (divide by the commit count for the group size).",
	offsetof(HttpMetrics, batched_requests)},
	{"runra_obs_http_header_timeouts_total",
		"Connections closed because a request head did not arrive within runra_obs.http_header_timeout.",
	offsetof(HttpMetrics, header_timeouts)},
	{"runra_obs_http_connections_moved_total",
		"Answers that asked the client to reconnect (Connection: close) because their worker held more than its share of the connections.",
	offsetof(HttpMetrics, connections_moved)},
	{"runra_obs_http_worker_starts_total",
		"HTTP workers started since the server started (more than runra_obs.http_workers means restarts).",
	offsetof(HttpMetrics, worker_starts)},
};

/* The whole /metrics page. */
void
http_metrics_render(StringInfo out)
{
	uint64		open = 0;

	for (int i = 0; i < MAX_HTTP_WORKERS; i++)
		open += pg_atomic_read_u64(&metrics->open_connections[i]);
	render_requests(out);
	for (int i = 0; i < (int) lengthof(counters); i++)
		render_counter(out, counters[i].name, "counter", counters[i].help,
					   pg_atomic_read_u64((pg_atomic_uint64 *) ((char *) metrics + counters[i].offset)));
	render_commit_histogram(out);
	render_counter(out, "runra_obs_http_open_connections", "gauge",
				   "HTTP connections open now, over all workers.", open);
	render_worker_connections(out);
	render_refused(out);
	render_rate_limited(out);
	/* how far each consumer of the event log is behind */
	watermark_append_metrics(out);
	/* the other workers: starts, maintenance, alert evaluations */
	worker_metrics_append(out);
}
