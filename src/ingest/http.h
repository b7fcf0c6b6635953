/*
 * http.h — the HTTP ingest server's parts and what they share.
 *
 * One background worker runs one event loop: libmicrohttpd without threads
 * (http_server.c) collects requests (http_request.c); callbacks only copy
 * bytes and never call into PostgreSQL beyond what cannot throw.  Completed
 * requests are suspended and queued; after MHD_run returns, the worker
 * (http_worker.c) writes every queued body in one transaction
 * (http_dispatch.c, then http_batch.c: the group commit), then answers them
 * (http_response.c) and resumes their connections.  Tokens (http_auth.c), Idempotency-Keys
 * (http_idempotency.c), headers that could be read two ways (http_framing.c),
 * each connection's head deadline and limits (http_conn.c, with the
 * per-address counts in shared memory in http_peers.c),
 * gzip (http_gzip.c), per-token rate limits (http_ratelimit.c), the TLS
 * certificate (http_tls.c) and the Prometheus counters in
 * shared memory (http_metrics.c, with the pipeline's state from SQL in
 * http_metrics_sql.c) are one file each.  Besides our own
 * /v1/events, the Axiom-compatible routes (http_axiom.c) and the OTLP/HTTP
 * receiver (otlp/, see otlp/otlp.h) feed the same group commit.
 */
#ifndef RUNRA_OBS_HTTP_H
#define RUNRA_OBS_HTTP_H

#include <microhttpd.h>

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "storage/lwlock.h"
#include "utils/elog.h"
#include "utils/hsearch.h"

#define HTTP_TOKEN_HASH_LEN 32
#define HTTP_TOKEN_NAME_LEN 129
#define HTTP_IDEMPOTENCY_KEY_MAX 255
/* the most HTTP workers (runra_obs.http_workers' maximum) */
#define MAX_HTTP_WORKERS 32

/* What a request asks for, decided from its method and path. */
typedef enum HttpRoute
{
	ROUTE_NONE,					/* no such path (counted in the metrics as such) */
	ROUTE_EVENTS,				/* POST /v1/events */
	ROUTE_AXIOM,				/* POST /v1/datasets/{ds}/ingest, /v1/ingest/{ds} */
	ROUTE_OTLP_TRACES,			/* POST /v1/traces (OTLP/HTTP) */
	ROUTE_OTLP_LOGS,			/* POST /v1/logs (OTLP/HTTP) */
	ROUTE_HEALTH,				/* GET /healthz */
	ROUTE_METRICS,				/* GET /metrics */
	ROUTE_COUNT
} HttpRoute;

/* Does the route take events in its body (and go to the group commit)? */
#define ROUTE_TAKES_EVENTS(r) ((r) == ROUTE_EVENTS || (r) == ROUTE_AXIOM || ROUTE_IS_OTLP(r))
#define ROUTE_IS_OTLP(r) ((r) == ROUTE_OTLP_TRACES || (r) == ROUTE_OTLP_LOGS)

/* The longest Axiom dataset name (Axiom's own limit). */
#define HTTP_DATASET_NAME_MAX 128

/* Where a request is in its life. */
typedef enum HttpPhase
{
	PHASE_HEADERS,				/* only the headers have been seen */
	PHASE_AUTH_WAIT,			/* suspended until the token cache is reloaded */
	PHASE_BODY,					/* reading the body */
	PHASE_QUEUED,				/* suspended, waiting for the main loop */
	PHASE_ANSWERED				/* the main loop made its response */
} HttpPhase;

/*
 * One request.  Allocated with malloc in libmicrohttpd's callbacks (palloc
 * could throw there), freed when libmicrohttpd says the request is over.
 */
typedef struct HttpRequest
{
	struct MHD_Connection *conn;
	int			daemon_index;
	HttpRoute	route;
	HttpPhase	phase;
	bool		queued;			/* in the pending list */
	bool		ndjson;			/* application/x-ndjson, else application/json */
	bool		protobuf;		/* application/x-protobuf (OTLP), answered in kind */
	bool		gzip;			/* Content-Encoding: gzip */
	bool		too_large;		/* body past runra_obs.http_max_body_size */
	bool		close_after;	/* close the connection after the answer */
	bool		started;		/* the access handler has seen its head */
	const char *raw_uri;		/* the request target as received (in MHD's buffer) */
	size_t		raw_uri_len;	/* its length up to the first NUL */
	bool		raw_uri_control;	/* it holds a control character */
	bool		has_token;
	uint8		token_hash[HTTP_TOKEN_HASH_LEN];
	char		client[HTTP_TOKEN_NAME_LEN];	/* token name, '' when unauthenticated */
	char	   *idempotency_key;	/* NULL when none was sent */
	char	   *body;
	size_t		body_len;
	size_t		body_cap;
	size_t		discarded;		/* body bytes dropped after too_large */
	int			retry_after;	/* seconds, for a 429's Retry-After */
	TimestampTz deadline;		/* the body must have arrived by then */
	/* the answer, made by the main loop */
	unsigned int status;
	struct MHD_Response *response;
} HttpRequest;

/* http_tls.c: the certificate and key, as the settings name them now */
typedef struct HttpTls
{
	char	   *cert_file;
	char	   *key_file;
	char	   *cert;			/* PEM */
	char	   *key;			/* PEM */
} HttpTls;

extern HttpTls *http_tls_read(void);
extern bool http_tls_same(const HttpTls *a, const HttpTls *b);
extern void http_tls_free(HttpTls *tls);

/* http_server.c: the libmicrohttpd daemons of this worker */
extern void http_server_start(int worker_index);
extern bool http_server_reload_tls(void);
extern void http_server_stop(void);
extern int	http_server_count(void);
extern int	http_server_epoll_fd(int i);
extern int	http_server_connections(void);
extern long http_server_timeout_ms(void);
extern void http_server_run(void);
extern void http_server_report_log(void);

/* http_conn.c: each connection's head deadline and limits */
extern unsigned int http_conn_hard_limit(void);
extern void http_conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
							 enum MHD_ConnectionNotificationCode toe);
extern const char *http_conn_head_arrived(struct MHD_Connection *conn);
extern void http_conn_request_done(struct MHD_Connection *conn);
extern void http_conn_enforce_deadlines(void);
extern bool http_conn_should_move(struct MHD_Connection *conn);

/* http_shmem.c: the shared hash tables below, each under a lock of its own */
typedef struct HttpSharedHash
{
	const char *name;
	long		(*size) (void); /* entries, known once the settings are loaded */
	Size		keysize;
	Size		entrysize;
	HTAB	   *table;			/* set at shmem startup */
	LWLock	   *lock;
} HttpSharedHash;

extern HttpSharedHash http_peers_hash;
extern HttpSharedHash http_rate_hash;
extern void http_shmem_install(void);

/* http_peers.c: connections per client address, over all workers */
typedef struct HttpPeerKey
{
	uint8		addr[16];		/* IPv6, or IPv4-mapped IPv6 */
} HttpPeerKey;

extern void http_peers_worker_start(int worker_index);
extern int	http_peer_enter(const struct sockaddr *addr, HttpPeerKey *key);
extern void http_peer_leave(const HttpPeerKey *key);

/* http_request.c: libmicrohttpd's callbacks and the queue they fill */
extern void *http_uri_logger(void *cls, const char *uri, struct MHD_Connection *conn);
extern enum MHD_Result http_access_handler(void *cls, struct MHD_Connection *conn,
										   const char *url, const char *method,
										   const char *version, const char *upload_data,
										   size_t *upload_data_size, void **req_cls);
extern void http_request_completed(void *cls, struct MHD_Connection *conn,
								   void **req_cls, enum MHD_RequestTerminationCode toe);
extern int	http_pending_count(void);
extern HttpRequest *http_pending_get(int i);
extern void http_pending_clear(void);

/*
 * What a route's body handler made of one request in a group commit
 * (http_batch.c): the status and body of its answer, and its counts.
 */
typedef struct HttpBodyAnswer
{
	unsigned int status;
	StringInfoData body;		/* may be binary (protobuf): use body.len */
	int64		ingested;
	int64		rejected;
} HttpBodyAnswer;

/* http_framing.c: headers that could be read two ways */
extern bool http_framing_has_control(const char *s, size_t len);
extern unsigned int http_framing_refusal(const HttpRequest *req, const char *method,
										 const char *version, const char **message);

/* http_response.c: answers */
extern void http_answer(HttpRequest *req, unsigned int status, const char *json);
extern void http_answer_bytes(HttpRequest *req, unsigned int status, const char *data,
							  size_t len);
extern void http_answer_error(HttpRequest *req, unsigned int status, const char *message);
extern void http_answer_retry_later(HttpRequest *req, const char *message);
extern void http_answer_replay(HttpRequest *req, unsigned int status, const char *json);
extern void http_answer_metrics(HttpRequest *req, const char *text);
extern void http_answer_resume(HttpRequest *req);
extern bool http_answer_now(HttpRequest *req, unsigned int status,
							const char *message, const char *allow);
extern void http_error_json(StringInfo out, unsigned int status, const char *message);
extern void http_error_body(const HttpRequest *req, StringInfo out, unsigned int status,
							const char *message);

/* http_auth.c: bearer tokens */
extern bool http_token_hash(const char *token, size_t len, uint8 *hash);
extern const char *http_token_lookup(const uint8 *hash);
extern void http_tokens_reload(void);
extern void http_tokens_verify(HttpRequest **reqs, int n, bool *valid);
extern bool http_metrics_authorized(struct MHD_Connection *conn);

/* http_idempotency.c */
typedef enum IdempotencyOutcome
{
	IDEMPOTENCY_NEW,			/* first time: process it, then remember */
	IDEMPOTENCY_REPLAY,			/* seen with the same body: answer as before */
	IDEMPOTENCY_MISMATCH		/* seen with another body: refuse */
} IdempotencyOutcome;

extern void http_request_hash(HttpRequest *req, const char *body, size_t len,
							  uint8 *hash);
extern IdempotencyOutcome http_idempotency_claim(HttpRequest *req, const uint8 *hash,
												 int *status, char **response);
extern void http_idempotency_remember(HttpRequest *req, int status, const char *response);

/* http_gzip.c */
typedef enum GunzipResult
{
	GUNZIP_OK,
	GUNZIP_CORRUPT,
	GUNZIP_TOO_LARGE
} GunzipResult;

extern GunzipResult http_gunzip(const char *in, size_t in_len, size_t limit,
								char **out, size_t *out_len, const char **error);

/* http_ratelimit.c: per-token token buckets of the ingest routes */
typedef enum HttpRateLimit
{
	RATE_EVENTS,				/* runra_obs.http_token_events_per_second */
	RATE_BYTES,					/* runra_obs.http_token_bytes_per_second */
	RATE_LIMIT_COUNT
} HttpRateLimit;

extern int	http_rate_check(const HttpRequest *req, HttpRateLimit *which);
extern void http_rate_charge(const HttpRequest *req, HttpRateLimit limit, double amount);

/* Why a connection was answered 503 before its request was looked at. */
typedef enum HttpRefusal
{
	REFUSED_WORKER_FULL,		/* past runra_obs.http_max_connections */
	REFUSED_PER_ADDRESS,		/* past runra_obs.http_max_connections_per_address */
	REFUSED_COUNT
} HttpRefusal;

/* http_metrics.c: counters in shared memory, shown by GET /metrics */
extern void http_metrics_install_shmem(void);
extern void http_metrics_worker_start(int worker_index);
extern void http_metrics_set_listening(bool listening);
extern void http_metrics_connection_spread(uint64 *open, int *workers);
extern void http_metrics_count_moved(void);
extern void http_metrics_count_status(HttpRoute route, unsigned int status);
extern void http_metrics_count_bytes(size_t bytes);
extern void http_metrics_count_connection(int delta);
extern void http_metrics_count_refused(HttpRefusal why);
extern void http_metrics_count_header_timeout(void);
extern void http_metrics_count_rate_limited(HttpRateLimit limit);
extern void http_metrics_count_batch(int requests, int64 ingested, int64 rejected,
									 TimestampTz started);
extern void http_metrics_render(StringInfo out);

/* http_metrics_sql.c: the pipeline's state, read in a transaction of its own */
extern void http_metrics_render_sql(StringInfo out);

/* http_batch.c: the group commit */
extern void http_write_events(HttpRequest **reqs, int n);

/* http_axiom.c: the Axiom-compatible ingest routes */
struct EventBatch;
extern bool http_axiom_dataset_is_valid(const char *name, size_t len);
extern void http_axiom_add(struct EventBatch *batch, HttpRequest *req, char *body, int len,
						   MemoryContext answer_context, HttpBodyAnswer *answer);
extern void http_axiom_error(StringInfo out, const char *message);

/* otlp/otlp_ingest.c: POST /v1/traces and /v1/logs */
extern void http_otlp_add(struct EventBatch *batch, HttpRequest *req, char *body, int len,
						  MemoryContext answer_context, HttpBodyAnswer *answer);

/* http_dispatch.c: the suspended requests, after MHD_run */
extern void http_process_pending(void);

/* http_xact.c: transactions of the worker */
extern void http_xact_begin(void);
extern void http_xact_commit(void);
extern ErrorData *http_xact_abort(void);
extern bool http_xact_run(void (*work) (void), const char *what);
extern void http_xact_apply_settings(void);
extern struct _SPI_plan *http_kept_plan(struct _SPI_plan **plan, const char *sql,
									   int nargs, Oid *argtypes);
extern Datum http_hash_datum(const uint8 *hash);

/* http_worker.c */
extern void http_register_workers(void);

#endif
