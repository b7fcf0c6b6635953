/*
 * http_request.c — libmicrohttpd's request callbacks: routing, checks that
 * need only the headers, and collecting the body.
 *
 * These functions run inside libmicrohttpd, so they never throw: memory is
 * malloc'd, answers made here are built from fixed text, and the one call
 * that could throw (hashing the bearer token) catches its own errors.  A
 * request that needs the database is suspended and put in the pending list;
 * the worker's main loop does the database work after MHD_run returns and
 * resumes the connection with its answer (see http_batch.c).
 *
 * Checks happen in the order a client can act on: unknown path (404),
 * method (405), token (401, before any of the body is read), media type and
 * encoding (415), declared length (413).  The routes that take events are
 * our own POST /v1/events and Axiom's two ingest paths; each states which
 * media types it reads.
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "guc.h"
#include "ingest/http.h"

static HttpRequest **pending = NULL;
static int	n_pending = 0;
static int	pending_cap = 0;

/* How many requests wait for the main loop. */
int
http_pending_count(void)
{
	return n_pending;
}

/* The i-th waiting request. */
HttpRequest *
http_pending_get(int i)
{
	return pending[i];
}

/* Empties the list; the main loop has answered or re-queued every entry. */
void
http_pending_clear(void)
{
	for (int i = 0; i < n_pending; i++)
		pending[i]->queued = false;
	n_pending = 0;
}

/* Sends a fixed-text error now (only while libmicrohttpd allows a response). */
static enum MHD_Result
refuse(HttpRequest *req, unsigned int status, const char *message)
{
	return http_answer_now(req, status, message, NULL) ? MHD_YES : MHD_NO;
}

/* Suspends the connection and queues the request for the main loop. */
static enum MHD_Result
queue_for_main_loop(HttpRequest *req, HttpPhase phase)
{
	if (n_pending == pending_cap)
	{
		int			cap = Max(64, pending_cap * 2);
		HttpRequest **grown = realloc(pending, sizeof(HttpRequest *) * cap);

		if (grown == NULL)
			return refuse(req, MHD_HTTP_SERVICE_UNAVAILABLE,
						  "The server is out of memory; retry later.");
		pending = grown;
		pending_cap = cap;
	}
	pending[n_pending++] = req;
	req->queued = true;
	req->phase = phase;
	MHD_suspend_connection(req->conn);
	return MHD_YES;
}

/* Drops a request from the pending list (its connection went away). */
static void
unqueue(HttpRequest *req)
{
	for (int i = 0; i < n_pending; i++)
		if (pending[i] == req)
		{
			pending[i] = pending[--n_pending];
			break;
		}
	req->queued = false;
}

/* Case-insensitive: does the header's media type (before any ';') equal type? */
static bool
media_type_is(const char *header, const char *type)
{
	size_t		len = strlen(type);

	while (*header == ' ')
		header++;
	return pg_strncasecmp(header, type, len) == 0 &&
		(header[len] == '\0' || header[len] == ';' || header[len] == ' ');
}

/*
 * The dataset of an Axiom ingest path, /v1/datasets/{ds}/ingest or
 * /v1/ingest/{ds}: its start and length, or false when url is neither.
 */
static bool
axiom_dataset(const char *url, const char **dataset, size_t *len)
{
	static const char legacy[] = "/v1/datasets/";
	static const char edge[] = "/v1/ingest/";
	const char *end;

	if (strncmp(url, legacy, sizeof(legacy) - 1) == 0)
	{
		*dataset = url + sizeof(legacy) - 1;
		end = strchr(*dataset, '/');
		if (end == NULL || strcmp(end, "/ingest") != 0)
			return false;
		*len = end - *dataset;
		return true;
	}
	if (strncmp(url, edge, sizeof(edge) - 1) != 0)
		return false;
	*dataset = url + sizeof(edge) - 1;
	*len = strlen(*dataset);
	return strchr(*dataset, '/') == NULL;
}

/* The route a path names, ROUTE_NONE when none; *dataset_ok for Axiom's. */
static HttpRoute
route_of(const char *url, bool *dataset_ok)
{
	const char *dataset;
	size_t		len;

	*dataset_ok = true;
	if (strcmp(url, "/v1/events") == 0)
		return ROUTE_EVENTS;
	if (strcmp(url, "/healthz") == 0)
		return ROUTE_HEALTH;
	if (strcmp(url, "/metrics") == 0)
		return ROUTE_METRICS;
	if (strcmp(url, "/v1/traces") == 0)
		return ROUTE_OTLP_TRACES;
	if (strcmp(url, "/v1/logs") == 0)
		return ROUTE_OTLP_LOGS;
	if (axiom_dataset(url, &dataset, &len))
	{
		*dataset_ok = http_axiom_dataset_is_valid(dataset, len);
		return ROUTE_AXIOM;
	}
	return ROUTE_NONE;
}

/* Which route a method and path name; or an error sent right away. */
static bool
route(HttpRequest *req, const char *url, const char *method, enum MHD_Result *ret)
{
	bool		get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	bool		dataset_ok;
	bool		post_route;

	req->route = route_of(url, &dataset_ok);
	if (req->route == ROUTE_NONE)
	{
		*ret = refuse(req, MHD_HTTP_NOT_FOUND,
					  "No such path. Events are sent with POST /v1/events (or OTLP's POST /v1/traces and /v1/logs, or Axiom's POST /v1/datasets/{dataset}/ingest); GET /healthz and GET /metrics tell how the server is.");
		return false;
	}
	post_route = ROUTE_TAKES_EVENTS(req->route);
	if (!(post_route ? strcmp(method, "POST") == 0 : get))
	{
		*ret = http_answer_now(req, MHD_HTTP_METHOD_NOT_ALLOWED,
							   post_route ? "Method not allowed: send events with POST."
							   : "Method not allowed: use GET.",
							   post_route ? "POST" : "GET, HEAD") ? MHD_YES : MHD_NO;
		return false;
	}
	if (dataset_ok)
		return true;
	*ret = refuse(req, MHD_HTTP_BAD_REQUEST,
				  "Invalid dataset name: 1 to 128 letters, digits, '-', '_' or '.' (the dataset is not used: every event goes to runra_obs.sandbox_events).");
	return false;
}

/*
 * Checks the bearer token against the cached hashes.  Unknown tokens wait
 * for one reload of the cache (a token made a moment ago is not in it yet);
 * *ret is set when the request must not go on now.
 */
static bool
authenticate(HttpRequest *req, enum MHD_Result *ret)
{
	const char *auth;
	const char *name;

	if (runra_http_allow_unauthenticated)
		return true;
	if (!req->has_token)
	{
		auth = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization");
		if (auth == NULL || pg_strncasecmp(auth, "Bearer ", 7) != 0 || auth[7] == '\0')
		{
			*ret = refuse(req, MHD_HTTP_UNAUTHORIZED,
						  "Missing bearer token: send the header \"Authorization: Bearer <token>\" with a token from runra_obs.create_ingest_token().");
			return false;
		}
		if (!http_token_hash(auth + 7, strlen(auth + 7), req->token_hash))
		{
			*ret = refuse(req, MHD_HTTP_SERVICE_UNAVAILABLE, "The token could not be checked; retry later.");
			return false;
		}
		req->has_token = true;
	}
	name = http_token_lookup(req->token_hash);
	if (name != NULL)
	{
		strlcpy(req->client, name, sizeof(req->client));
		return true;
	}
	if (req->phase != PHASE_AUTH_WAIT)
	{
		*ret = queue_for_main_loop(req, PHASE_AUTH_WAIT);
		return false;
	}
	*ret = refuse(req, MHD_HTTP_UNAUTHORIZED,
				  "Invalid bearer token: it is unknown or was revoked. Create one with runra_obs.create_ingest_token().");
	return false;
}

/* OTLP/HTTP's two encodings: JSON, or protobuf (answered in kind). */
static bool
accept_otlp_type(HttpRequest *req, const char *type, const char **refusal)
{
	if (type != NULL && media_type_is(type, "application/json"))
		return true;
	if (type != NULL && media_type_is(type, "application/x-protobuf"))
	{
		req->protobuf = true;
		return true;
	}
	*refusal = "Unsupported Content-Type: OTLP/HTTP requests are application/x-protobuf or application/json.";
	return false;
}

/*
 * The media types a route reads: JSON or NDJSON events (OTLP's own).  Sets
 * the request's flags; false with the 415 message when the type is not one
 * of them.
 */
static bool
accept_media_type(HttpRequest *req, const char *type, const char **refusal)
{
	if (ROUTE_IS_OTLP(req->route))
		return accept_otlp_type(req, type, refusal);
	if (type != NULL && media_type_is(type, "application/x-ndjson"))
		req->ndjson = true;
	else if (type != NULL && media_type_is(type, "application/json"))
		req->ndjson = false;
	else if (req->route == ROUTE_AXIOM && type != NULL && media_type_is(type, "text/csv"))
		*refusal = "CSV is not supported here: send the events as application/json (an array of objects) or application/x-ndjson (one object per line).";
	else
		*refusal = "Unsupported Content-Type: send application/json (one event or an array of events) or application/x-ndjson (one event per line).";
	return *refusal == NULL;
}

/* The Idempotency-Key of POST /v1/events, copied; false when refused. */
static bool
read_idempotency_key(HttpRequest *req, enum MHD_Result *ret)
{
	const char *key = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Idempotency-Key");
	size_t		len;

	if (key == NULL || req->route != ROUTE_EVENTS)
		return true;
	len = strlen(key);
	if (len == 0 || len > HTTP_IDEMPOTENCY_KEY_MAX)
	{
		*ret = refuse(req, MHD_HTTP_BAD_REQUEST,
					  "The Idempotency-Key header must be 1 to 255 characters long.");
		return false;
	}
	/* stored as text: bytes that are not printable ASCII could not be */
	for (size_t i = 0; i < len; i++)
		if (key[i] < 0x20 || key[i] > 0x7e)
		{
			*ret = refuse(req, MHD_HTTP_BAD_REQUEST,
						  "The Idempotency-Key header must be printable ASCII (a UUID, say).");
			return false;
		}
	req->idempotency_key = strdup(key);
	if (req->idempotency_key != NULL)
		return true;
	*ret = MHD_NO;
	return false;
}

/* Media type, encoding, length and Idempotency-Key of a request with events. */
static bool
check_event_headers(HttpRequest *req, enum MHD_Result *ret)
{
	const char *type = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Type");
	const char *encoding = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Encoding");
	const char *length = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Length");
	const char *refusal = NULL;

	if (!accept_media_type(req, type, &refusal))
	{
		*ret = refuse(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, refusal);
		return false;
	}
	if (encoding != NULL && (pg_strcasecmp(encoding, "gzip") == 0 || pg_strcasecmp(encoding, "x-gzip") == 0))
		req->gzip = true;
	else if (encoding != NULL && pg_strcasecmp(encoding, "identity") != 0)
	{
		*ret = refuse(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
					  "Unsupported Content-Encoding: send the body as it is, or gzip it with \"Content-Encoding: gzip\".");
		return false;
	}
	if (length != NULL && strtoull(length, NULL, 10) > (unsigned long long) runra_http_max_body_size)
	{
		*ret = refuse(req, MHD_HTTP_CONTENT_TOO_LARGE,
					  "The body is larger than runra_obs.http_max_body_size: split the events over several requests.");
		return false;
	}
	return read_idempotency_key(req, ret);
}

/* Is the request's token within its rate limits?  Else 429, before any body is read. */
static bool
within_rate(HttpRequest *req, enum MHD_Result *ret)
{
	HttpRateLimit over = RATE_EVENTS;
	int			wait = http_rate_check(req, &over);

	if (wait == 0)
		return true;
	http_metrics_count_rate_limited(over);
	req->retry_after = wait;
	req->close_after = true;	/* its body is not read: the connection cannot go on */
	*ret = refuse(req, MHD_HTTP_TOO_MANY_REQUESTS, over == RATE_EVENTS
				  ? "This token is over runra_obs.http_token_events_per_second: retry after the seconds Retry-After says."
				  : "This token is over runra_obs.http_token_bytes_per_second: retry after the seconds Retry-After says.");
	return false;
}

/* First call, headers only: decide whether the body is wanted at all. */
static enum MHD_Result
on_headers(HttpRequest *req, const char *url, const char *method, const char *version)
{
	enum MHD_Result ret = MHD_YES;
	const char *why;
	unsigned int refusal = http_framing_refusal(req, method, version, &why);

	if (refusal != 0)
	{
		req->close_after = true;
		return refuse(req, refusal, why);
	}
	if (!route(req, url, method, &ret))
		return ret;
	if (req->route == ROUTE_METRICS && !http_metrics_authorized(req->conn))
		return refuse(req, MHD_HTTP_UNAUTHORIZED,
					  "GET /metrics needs \"Authorization: Bearer <token>\" with the token set in runra_obs.http_metrics_token.");
	if (!ROUTE_TAKES_EVENTS(req->route))
		return queue_for_main_loop(req, PHASE_QUEUED);
	if (!authenticate(req, &ret) || !check_event_headers(req, &ret) || !within_rate(req, &ret))
		return ret;
	req->phase = PHASE_BODY;
	req->deadline = GetCurrentTimestamp() +
		(TimestampTz) runra_http_connection_timeout_s * USECS_PER_SEC;
	return MHD_YES;
}

/* Copies a piece of the body; past the size limit, counts and drops it. */
static enum MHD_Result
collect_body(HttpRequest *req, const char *data, size_t size)
{
	http_metrics_count_bytes(size);
	if (GetCurrentTimestamp() > req->deadline)
		return MHD_NO;			/* slow client: close the connection */
	if (req->too_large || req->body_len + size > (size_t) runra_http_max_body_size)
	{
		req->too_large = true;
		req->discarded += size;
		/* reading on would serve nobody: close the connection */
		return req->discarded > (size_t) runra_http_max_body_size ? MHD_NO : MHD_YES;
	}
	if (req->body_len + size + 1 > req->body_cap)
	{
		size_t		cap = Max(req->body_cap * 2, req->body_len + size + 1);
		char	   *grown;

		cap = Max(cap, 4096);
		grown = realloc(req->body, cap);
		if (grown == NULL)
			return MHD_NO;
		req->body = grown;
		req->body_cap = cap;
	}
	memcpy(req->body + req->body_len, data, size);
	req->body_len += size;
	req->body[req->body_len] = '\0';
	return MHD_YES;
}

/* Sends the answer the main loop made for a resumed request. */
static enum MHD_Result
send_answer(HttpRequest *req)
{
	enum MHD_Result ret = MHD_queue_response(req->conn, req->status, req->response);

	http_metrics_count_status(req->route, req->status);
	MHD_destroy_response(req->response);
	req->response = NULL;
	return ret;
}

/* A new request of conn, on daemon number cls. */
static HttpRequest *
new_request(void *cls, struct MHD_Connection *conn)
{
	HttpRequest *req = calloc(1, sizeof(HttpRequest));

	if (req == NULL)
		return NULL;
	req->conn = conn;
	req->daemon_index = (int) (intptr_t) cls;
	return req;
}

/*
 * libmicrohttpd's MHD_OPTION_URI_LOG_CALLBACK: called once the request
 * line has arrived, with the target as received (before it is cut at '?'
 * and unescaped in place).  Makes the request, so that the framing check
 * can later tell whether the target held a NUL (http_framing.c).
 */
void *
http_uri_logger(void *cls, const char *uri, struct MHD_Connection *conn)
{
	HttpRequest *req = new_request(cls, conn);

	if (req != NULL && uri != NULL)
	{
		req->raw_uri = uri;
		req->raw_uri_len = strlen(uri);
		/* libmicrohttpd cuts and unescapes it in place after this call */
		req->raw_uri_control = http_framing_has_control(uri, req->raw_uri_len);
	}
	return req;
}

/*
 * The first call of a request: its head has arrived.  A connection over a
 * limit is answered 503 and closed before anything else is looked at.
 */
static enum MHD_Result
on_first_call(HttpRequest *req, const char *url, const char *method, const char *version)
{
	const char *over_limit = http_conn_head_arrived(req->conn);
	bool		dataset_ok;

	req->started = true;
	if (over_limit == NULL)
		return on_headers(req, url, method, version);
	req->route = route_of(url, &dataset_ok);
	req->close_after = true;
	return refuse(req, MHD_HTTP_SERVICE_UNAVAILABLE, over_limit);
}

/*
 * libmicrohttpd's access handler: called once with the headers, once per
 * piece of body, once when the body is complete, and once more after each
 * resume.
 */
enum MHD_Result
http_access_handler(void *cls, struct MHD_Connection *conn, const char *url,
					const char *method, const char *version, const char *upload_data,
					size_t *upload_data_size, void **req_cls)
{
	HttpRequest *req = *req_cls;

	if (req == NULL)
	{
		/* the URI logger could not allocate it */
		req = new_request(cls, conn);
		if (req == NULL)
			return MHD_NO;
		*req_cls = req;
	}
	if (!req->started)
		return on_first_call(req, url, method, version);
	switch (req->phase)
	{
		case PHASE_HEADERS:
			return MHD_YES;		/* not expected: a first call always moves on */
		case PHASE_AUTH_WAIT:
			/* resumed after the token cache was reloaded: check again */
			return on_headers(req, url, method, version);
		case PHASE_BODY:
			if (*upload_data_size > 0)
			{
				enum MHD_Result ret = collect_body(req, upload_data, *upload_data_size);

				*upload_data_size = 0;
				return ret;
			}
			if (req->too_large)
				return refuse(req, MHD_HTTP_CONTENT_TOO_LARGE,
							  "The body is larger than runra_obs.http_max_body_size: split the events over several requests.");
			http_rate_charge(req, RATE_BYTES, (double) req->body_len);
			return queue_for_main_loop(req, PHASE_QUEUED);
		case PHASE_QUEUED:
			*upload_data_size = 0;	/* not expected: nothing is read while queued */
			return MHD_YES;
		case PHASE_ANSWERED:
			return send_answer(req);
	}
	return MHD_NO;
}

/* libmicrohttpd is done with a request: free everything it owned. */
void
http_request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
					   enum MHD_RequestTerminationCode toe)
{
	HttpRequest *req = *req_cls;

	http_conn_request_done(conn);
	if (req == NULL)
		return;
	if (req->queued)
		unqueue(req);
	if (req->response != NULL)
		MHD_destroy_response(req->response);
	free(req->idempotency_key);
	free(req->body);
	free(req);
	*req_cls = NULL;
}
