/*
 * http_response.c — every answer the HTTP server gives.
 *
 * Bodies are JSON.  Errors look like {"error":"Unauthorized","message":"..."}
 * where the message says what to do about it; on the Axiom routes they have
 * Axiom's shape, {"message":"..."}, which its clients show, and on OTLP's
 * a google.rpc.Status, {"code":c,"message":"..."}.  Two ways to answer: right
 * away from inside libmicrohttpd's callback (fixed text, no palloc, so
 * nothing can throw), or from the main loop for a suspended request, which
 * makes the response and resumes the connection; the access handler then
 * queues it (http_request.c).
 */
#include "postgres.h"

#include "utils/json.h"

#include "ingest/http.h"
#include "ingest/otlp/otlp.h"

#define RETRY_AFTER_SECONDS "2"

/* Headers that belong to a status: how to authenticate, retry, or what is allowed. */
static void
add_status_headers(struct MHD_Response *resp, unsigned int status, const char *allow)
{
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
								"Bearer realm=\"runra_obs\"");
	else if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, RETRY_AFTER_SECONDS);
	else if (status == MHD_HTTP_METHOD_NOT_ALLOWED && allow != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
}

/* Copies s into out as JSON string content; drops what is not printable ASCII. */
static void
copy_json_safe(char *out, size_t size, const char *s)
{
	size_t		n = 0;

	for (; *s && n + 3 < size; s++)
	{
		if (*s == '"' || *s == '\\')
			out[n++] = '\\';
		if ((unsigned char) *s >= 0x20 && (unsigned char) *s < 0x7f)
			out[n++] = *s;
	}
	out[n] = '\0';
}

/* The media type of every answer to this request. */
static const char *
answer_type(const HttpRequest *req)
{
	return req->protobuf ? "application/x-protobuf" : "application/json";
}

/* A fixed-text error body in the request's protocol's shape; its length. */
static size_t
fixed_error_body(const HttpRequest *req, unsigned int status, const char *message,
				 char *body, size_t size)
{
	char		text[1024];
	const char *reason = MHD_get_reason_phrase_for(status);

	if (req->protobuf)
		return otlp_status_pack(status, message, (uint8 *) body, size);
	copy_json_safe(text, sizeof(text), message);
	if (req->route == ROUTE_AXIOM)
		snprintf(body, size, "{\"message\":\"%s\"}\n", text);
	else if (ROUTE_IS_OTLP(req->route))
		snprintf(body, size, "{\"code\":%d,\"message\":\"%s\"}", otlp_grpc_code(status), text);
	else
		snprintf(body, size, "{\"error\":\"%s\",\"message\":\"%s\"}\n",
				 reason ? reason : "Error", text);
	return strlen(body);
}

/*
 * Answers from inside the access handler with a fixed message.  Only
 * malloc-based libmicrohttpd calls: safe where an ERROR must not happen.
 */
bool
http_answer_now(HttpRequest *req, unsigned int status, const char *message,
				const char *allow)
{
	char		body[1200];
	size_t		len = fixed_error_body(req, status, message, body, sizeof(body));
	struct MHD_Response *resp;
	enum MHD_Result ok;

	resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return false;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, answer_type(req));
	add_status_headers(resp, status, allow);
	if (status == MHD_HTTP_TOO_MANY_REQUESTS)
	{
		char		seconds[16];

		snprintf(seconds, sizeof(seconds), "%d", Max(req->retry_after, 1));
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
	}
	if (req->close_after)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	ok = MHD_queue_response(req->conn, status, resp);
	MHD_destroy_response(resp);
	if (ok == MHD_YES)
		http_metrics_count_status(req->route, status);
	return ok == MHD_YES;
}

/* The JSON error body, for answers made in the main loop. */
void
http_error_json(StringInfo out, unsigned int status, const char *message)
{
	const char *reason = MHD_get_reason_phrase_for(status);

	appendStringInfoString(out, "{\"error\":");
	escape_json(out, reason ? reason : "Error");
	appendStringInfoString(out, ",\"message\":");
	escape_json(out, message);
	appendStringInfoString(out, "}\n");
}

/* An error body for answers made in the main loop, in the route's shape. */
void
http_error_body(const HttpRequest *req, StringInfo out, unsigned int status,
				const char *message)
{
	if (req->route == ROUTE_AXIOM)
		http_axiom_error(out, message);
	else if (ROUTE_IS_OTLP(req->route))
		otlp_status_body(out, req->protobuf, status, message);
	else
		http_error_json(out, status, message);
}

/* Makes the response of a suspended request; http_answer_resume sends it. */
static void
set_answer(HttpRequest *req, unsigned int status, const char *text, size_t len,
		   const char *type, bool replayed)
{
	struct MHD_Response *resp;

	if (req->response != NULL)
		MHD_destroy_response(req->response);
	resp = MHD_create_response_from_buffer(len, (void *) text, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory making an HTTP response")));
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	add_status_headers(resp, status, NULL);
	if (replayed)
		MHD_add_response_header(resp, "Idempotent-Replayed", "true");
	/* after this answer, the client reconnects: it lands on a freer worker */
	if (http_conn_should_move(req->conn))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	req->status = status;
	req->response = resp;
}

/* Answers a suspended request with a JSON body (not sent until resumed). */
void
http_answer(HttpRequest *req, unsigned int status, const char *json)
{
	set_answer(req, status, json, strlen(json), "application/json", false);
}

/* Answers with a body in the request's own media type (JSON, or OTLP's protobuf). */
void
http_answer_bytes(HttpRequest *req, unsigned int status, const char *data, size_t len)
{
	set_answer(req, status, data, len, answer_type(req), false);
}

/* Answers a suspended request with the answer remembered for its Idempotency-Key. */
void
http_answer_replay(HttpRequest *req, unsigned int status, const char *json)
{
	set_answer(req, status, json, strlen(json), "application/json", true);
}

/* Answers GET /metrics with the Prometheus text format. */
void
http_answer_metrics(HttpRequest *req, const char *text)
{
	const char *type = "text/plain; version=0.0.4; charset=utf-8";

	set_answer(req, MHD_HTTP_OK, text, strlen(text), type, false);
}

/* Answers a suspended request with an error. */
void
http_answer_error(HttpRequest *req, unsigned int status, const char *message)
{
	StringInfoData body;

	initStringInfo(&body);
	http_error_body(req, &body, status, message);
	http_answer_bytes(req, status, body.data, body.len);
	pfree(body.data);
}

/* 503 with Retry-After: the database cannot take writes just now. */
void
http_answer_retry_later(HttpRequest *req, const char *message)
{
	http_answer_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, message);
}

/*
 * Lets libmicrohttpd go on with a suspended request; the access handler
 * sends the answer made above, or (auth wait) checks the token again.
 */
void
http_answer_resume(HttpRequest *req)
{
	if (req->phase != PHASE_AUTH_WAIT)
		req->phase = PHASE_ANSWERED;
	MHD_resume_connection(req->conn);
}
