/*
 * http_dispatch.c — what the main loop does with the requests libmicrohttpd
 * suspended: reload the token cache for those waiting on it, answer
 * GET /healthz and GET /metrics, and hand POST /v1/events requests to the
 * group commit (http_batch.c) — or answer them 503 when the server is
 * stopping or the database is in recovery.  Every request leaves here with
 * an answer (or a second look at its token) and its connection resumed.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/extension.h"

#include "ingest/http.h"
#include "worker/worker_common.h"

/* what check_health found */
static bool health_writable;
static const char *health_problem;

/* Is the database writable?  Run in a transaction of its own. */
static void
check_health(void)
{
	health_writable = false;
	if (!OidIsValid(get_extension_oid("runra_obs", true)))
		health_problem = "The runra_obs extension is not installed in runra_obs.database.";
	else if (XactReadOnly)
		health_problem = "The database is read-only (default_transaction_read_only is on).";
	else
		health_writable = true;
}

/* GET /healthz: 200 when events can be written now, else 503. */
static void
health_answer(HttpRequest *req)
{
	health_problem = "The database did not answer; see the server log.";
	health_writable = false;
	if (runra_got_sigterm)
		health_problem = "The server is shutting down.";
	else if (RecoveryInProgress())
		health_problem = "The database is in recovery and cannot take writes.";
	else
		(void) http_xact_run(check_health, "check health");
	if (health_writable)
		http_answer(req, 200, "{\"status\":\"ok\"}\n");
	else
		http_answer_retry_later(req, health_problem);
}

/* Answers requests that cannot be written now (shutdown, recovery). */
static void
refuse_events(HttpRequest **reqs, int n, const char *message)
{
	for (int i = 0; i < n; i++)
	{
		http_answer_retry_later(reqs[i], message);
		http_answer_resume(reqs[i]);
	}
}

/*
 * Handles every suspended request: reloads tokens for those waiting on
 * them, answers health and metrics, and writes the events requests.
 */
void
http_process_pending(void)
{
	int			n = http_pending_count();
	HttpRequest **events = palloc(sizeof(HttpRequest *) * Max(n, 1));
	int			n_events = 0;
	bool		reloaded = false;

	for (int i = 0; i < n; i++)
	{
		HttpRequest *req = http_pending_get(i);

		if (req->phase == PHASE_AUTH_WAIT)
		{
			/* one reload serves every request waiting on an unknown token */
			if (!reloaded)
				http_tokens_reload();
			reloaded = true;
			http_answer_resume(req);
		}
		else if (req->route == ROUTE_HEALTH)
		{
			health_answer(req);
			http_answer_resume(req);
		}
		else if (req->route == ROUTE_METRICS)
		{
			StringInfoData text;

			initStringInfo(&text);
			http_metrics_render(&text);
			http_metrics_render_sql(&text);
			http_answer_metrics(req, text.data);
			http_answer_resume(req);
		}
		else
			events[n_events++] = req;
	}
	http_pending_clear();
	if (n_events == 0)
		return;
	if (runra_got_sigterm)
		refuse_events(events, n_events, "The server is shutting down; nothing was stored, retry shortly.");
	else if (RecoveryInProgress())
		refuse_events(events, n_events, "The database is in recovery and cannot take writes; nothing was stored.");
	else
		http_write_events(events, n_events);
}
