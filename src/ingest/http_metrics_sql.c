/*
 * http_metrics_sql.c — the part of GET /metrics that only SQL knows: the
 * whole pipeline, not HTTP alone.
 *
 * Each destination's queue (events behind its cursor), lag, events being
 * redelivered, sent, failed and dead-lettered (runra_obs.forward_status);
 * each worker's start time and event counts, the NOTIFY listener's state
 * and the last maintenance run (runra_obs.worker_status); alerting: rules
 * by health and by state, alerts pending and firing, notifications pending
 * and dead per contact point, and how far the alert worker is behind (its
 * schedule, and the log for match rules); the installed version for
 * runra_obs_build_info.  These are gauges of what the tables hold now;
 * counters that must outlive a worker (maintenance runs, restarts, rule
 * evaluations) are in shared memory (worker/worker_metrics.c).  Read by
 * the main loop after MHD_run,
 * in a transaction of its own (http_xact_run): an error there is logged,
 * and the page still has the shared-memory counters, with
 * runra_obs_metrics_sql_up 0.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"

#include "ingest/http.h"

/* what read_pipeline writes into, and the installed version it found */
static StringInfo sql_out;
static char installed_version[64];

/* The states the NOTIFY listener's worker_status.state can be in. */
static const char *const listener_states[] = {
	"listening", "connecting", "waiting_to_reconnect", "disabled", "not_running", "other"
};

/* Appends s as the content of a Prometheus label value (\, " and newline escaped). */
static void
append_label(StringInfo out, const char *s)
{
	for (; *s; s++)
	{
		if (*s == '\\' || *s == '"')
			appendStringInfoChar(out, '\\');
		if (*s == '\n')
			appendStringInfoString(out, "\\n");
		else
			appendStringInfoChar(out, *s);
	}
}

/* # HELP and # TYPE of one family. */
static void
family(StringInfo out, const char *name, const char *type, const char *help)
{
	appendStringInfo(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Runs a read-only query; its rows stay in SPI_tuptable. */
static void
query(const char *sql)
{
	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("runra_obs http could not read the pipeline for /metrics: %s", sql)));
}

/* Column c (1-based) of row r of the last query, as text; NULL when null. */
static char *
cell(int r, int c)
{
	return SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c);
}

/* the labels of the families below: one column each, from column 1 */
static const char *const by_destination[] = {"destination", NULL};
static const char *const by_worker[] = {"role", "pid", NULL};
static const char *const by_role[] = {"role", NULL};
static const char *const by_health[] = {"health", NULL};
static const char *const by_state[] = {"state", NULL};
static const char *const by_contact_point[] = {"contact_point", NULL};
static const char *const by_contact_point_status[] = {"contact_point", "status", NULL};
static const char *const no_labels[] = {NULL};

/*
 * One family with a sample per row of the last query: labels from the
 * first columns, the value from column col (rows where it is NULL are
 * left out).
 */
static void
per_row(const char *name, const char *type, const char *help, const char *const *labels, int col)
{
	family(sql_out, name, type, help);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		char	   *value = cell((int) r, col);

		if (value == NULL)
			continue;
		appendStringInfoString(sql_out, name);
		for (int l = 0; labels[l] != NULL; l++)
		{
			appendStringInfo(sql_out, "%s%s=\"", l == 0 ? "{" : ",", labels[l]);
			append_label(sql_out, cell((int) r, l + 1));
			appendStringInfoChar(sql_out, '"');
		}
		appendStringInfo(sql_out, "%s %s\n", labels[0] != NULL ? "}" : "", value);
	}
}

/* Each destination's queue, lag and delivery counts. */
static void
read_destinations(void)
{
	query("SELECT destination, enabled::int, behind_events, behind_seconds, redelivering, sent, failed,"
		  " dead_lettered, extract(epoch FROM last_success) FROM runra_obs.forward_status ORDER BY 1");
	per_row("runra_obs_destination_enabled", "gauge", "1 when the destination is enabled.", by_destination, 2);
	per_row("runra_obs_destination_queue_events", "gauge",
			"Event ids between the destination's cursor and the safe watermark: events waiting to be delivered.",
			by_destination, 3);
	per_row("runra_obs_destination_lag_seconds", "gauge",
			"How long the events after the cursor have been safe to read and not delivered.", by_destination, 4);
	per_row("runra_obs_destination_redelivering_events", "gauge",
			"Events waiting in runra_obs.redeliveries (requeued dead letters, handler failures).", by_destination, 5);
	per_row("runra_obs_destination_sent_events_total", "counter", "Events the destination accepted.",
			by_destination, 6);
	per_row("runra_obs_destination_failed_events_total", "counter",
			"Events in delivery attempts that failed (each attempt counts).", by_destination, 7);
	per_row("runra_obs_destination_dead_letters", "gauge", "Events now in runra_obs.dead_letters.",
			by_destination, 8);
	per_row("runra_obs_destination_last_success_timestamp_seconds", "gauge",
			"When the destination last accepted a batch (Unix time).", by_destination, 9);
}

/*
 * The category of a NOTIFY worker's state text (see notify_worker.c: with
 * no channel it says "idle (...)", or "housekeeping only (...)" where it
 * also runs maintenance; "other" while it does that).
 */
static const char *
listener_state(const char *state)
{
	if (state == NULL)
		return "not_running";
	if (strncmp(state, "listening", 9) == 0 || strncmp(state, "writing", 7) == 0)
		return "listening";
	if (strncmp(state, "waiting to reconnect", 20) == 0)
		return "waiting_to_reconnect";
	if (strncmp(state, "connecting", 10) == 0)
		return "connecting";
	if (strncmp(state, "idle", 4) == 0 || strncmp(state, "housekeeping only", 17) == 0)
		return "disabled";
	return "other";
}

/* runra_obs_notify_listener_state: one sample per state, 1 for the current one. */
static void
read_listener(void)
{
	const char *now;

	query("SELECT state FROM runra_obs.worker_status WHERE role = 'notify' LIMIT 1");
	now = listener_state(SPI_processed > 0 ? cell(0, 1) : NULL);
	family(sql_out, "runra_obs_notify_listener_state", "gauge",
		   "The NOTIFY listener's state: 1 for the state it is in.");
	for (int i = 0; i < (int) lengthof(listener_states); i++)
		appendStringInfo(sql_out, "runra_obs_notify_listener_state{state=\"%s\"} %d\n",
						 listener_states[i], strcmp(now, listener_states[i]) == 0);
}

/* The last maintenance run: when, and whether it failed or skipped a partition. */
static void
read_maintenance(void)
{
	query("SELECT role, extract(epoch FROM last_maintenance_at),"
		  " (last_maintenance LIKE 'failed:%' OR last_maintenance LIKE '%first skipped%')::int"
		  " FROM runra_obs.worker_status WHERE last_maintenance_at IS NOT NULL"
		  " ORDER BY last_maintenance_at DESC LIMIT 1");
	per_row("runra_obs_maintenance_last_run_timestamp_seconds", "gauge",
			"When runra_obs.run_maintenance() last ran, by the worker role that ran it (Unix time).", by_role, 2);
	per_row("runra_obs_maintenance_last_run_failed", "gauge",
			"1 when the last run_maintenance() failed or skipped a partition (see worker_status.last_maintenance).",
			by_role, 3);
}

/* Each worker: its start time (a restart is a new time) and event counts. */
static void
read_workers(void)
{
	query("SELECT role, pid, extract(epoch FROM started_at), events_ingested, events_rejected"
		  " FROM runra_obs.worker_status ORDER BY role, pid");
	per_row("runra_obs_worker_start_time_seconds", "gauge",
			"When each runra_obs worker started (Unix time); a restart shows as a new pid and a later time.", by_worker, 3);
	per_row("runra_obs_worker_events_ingested_total", "counter",
			"Events each worker committed since it started.", by_worker, 4);
	per_row("runra_obs_worker_events_rejected_total", "counter",
			"Events each worker refused by validation since it started.", by_worker, 5);
}

/*
 * Alert rules by the health of their last evaluation, and by their state
 * (the most severe of their alerts'); paused rules; alerts by state.
 * Every state has a sample, 0 included, so a series never disappears.
 */
static void
read_alert_rules(void)
{
	query("SELECT h, count(u.rule_id) FROM unnest('{unknown,ok,nodata,error}'::text[]) WITH ORDINALITY AS s (h, o)"
		  " LEFT JOIN runra_obs.alert_rules AS r ON true"
		  " LEFT JOIN runra_obs.alert_rule_runs AS u ON u.rule_id = r.id AND u.health = s.h"
		  " GROUP BY h, o ORDER BY o");
	per_row("runra_obs_alert_rules_by_health", "gauge",
			"Alert rules by the health of their last evaluation (unknown: not evaluated yet).", by_health, 2);
	query("SELECT s, count(x.id) FROM unnest('{inactive,pending,firing}'::text[]) WITH ORDINALITY AS t (s, o)"
		  " LEFT JOIN (SELECT r.id, CASE WHEN bool_or(i.state = 'firing') THEN 'firing'"
		  "                              WHEN bool_or(i.state = 'pending') THEN 'pending' ELSE 'inactive' END AS state"
		  "            FROM runra_obs.alert_rules AS r"
		  "            LEFT JOIN runra_obs.alert_instances AS i ON i.rule_id = r.id GROUP BY r.id) AS x"
		  " ON x.state = t.s GROUP BY s, o ORDER BY o");
	per_row("runra_obs_alert_rules_by_state", "gauge",
			"Alert rules by their most severe alert: firing, pending, or inactive (none of either).", by_state, 2);
	query("SELECT count(*) FILTER (WHERE paused) FROM runra_obs.alert_rules");
	per_row("runra_obs_alert_rules_paused", "gauge", "Alert rules paused (not evaluated).", no_labels, 1);
	query("SELECT s, count(i.rule_id) FROM unnest('{pending,firing}'::text[]) WITH ORDINALITY AS t (s, o)"
		  " LEFT JOIN runra_obs.alert_instances AS i ON i.state = t.s GROUP BY s, o ORDER BY o");
	per_row("runra_obs_alert_instances", "gauge", "Alert instances (rule and labels) pending or firing now.",
			by_state, 2);
}

/* Each contact point's queue: notifications pending and dead, and the oldest pending one's age. */
static void
read_alert_notifications(void)
{
	query("SELECT c.name, s.status, count(n.id)"
		  " FROM runra_obs.contact_points AS c CROSS JOIN unnest('{pending,dead}'::text[]) AS s (status)"
		  " LEFT JOIN runra_obs.alert_notifications AS n ON n.contact_point_id = c.id AND n.status = s.status"
		  " GROUP BY c.name, s.status ORDER BY 1, 2 DESC");
	per_row("runra_obs_alert_notifications", "gauge",
			"Notifications per contact point: pending (queued or being retried) and dead (see requeue_alert_notifications()).",
			by_contact_point_status, 3);
	query("SELECT c.name,"
		  "       coalesce(extract(epoch FROM now() - min(n.created_at)), 0)"
		  " FROM runra_obs.contact_points AS c"
		  " LEFT JOIN runra_obs.alert_notifications AS n ON n.contact_point_id = c.id AND n.status = 'pending'"
		  " GROUP BY c.name ORDER BY 1");
	per_row("runra_obs_alert_notification_oldest_pending_seconds", "gauge",
			"How long the contact point's oldest pending notification has waited (0: none pending).",
			by_contact_point, 2);
}

/*
 * How far the alert worker is behind: the most overdue rule (its schedule),
 * and the match rule furthest behind the safe watermark (the log).
 */
static void
read_alert_lag(void)
{
	query("SELECT coalesce(greatest(extract(epoch FROM now() - min(u.next_eval_at)), 0), 0)"
		  " FROM runra_obs.alert_rule_runs AS u JOIN runra_obs.alert_rules AS r ON r.id = u.rule_id"
		  " WHERE NOT r.paused");
	per_row("runra_obs_alert_evaluation_lag_seconds", "gauge",
			"How long the most overdue alert rule has been due and not evaluated (0: none is).", no_labels, 1);
	query("SELECT coalesce(max(l.seconds_behind), 0), coalesce(max(l.ids_behind), 0)"
		  " FROM runra_obs.alert_rules AS r JOIN runra_obs.consumers AS c ON c.name = 'alert:' || r.id"
		  " CROSS JOIN LATERAL runra_obs._watermark_lag(c.position) AS l"
		  " WHERE r.kind = 'match' AND NOT r.paused");
	per_row("runra_obs_alert_match_lag_seconds", "gauge",
			"How long the events after the match rule furthest behind have been safe to read (0: caught up or none).",
			no_labels, 1);
	per_row("runra_obs_alert_match_lag_ids", "gauge",
			"Event ids between that match rule's position and the safe watermark.", no_labels, 2);
}

/* Everything above, in one transaction (run by http_xact_run). */
static void
read_pipeline(void)
{
	SPI_connect();
	query("SELECT extversion FROM pg_extension WHERE extname = 'runra_obs'");
	if (SPI_processed > 0)
		strlcpy(installed_version, cell(0, 1), sizeof(installed_version));
	read_destinations();
	read_listener();
	read_maintenance();
	read_workers();
	read_alert_rules();
	read_alert_notifications();
	read_alert_lag();
	SPI_finish();
}

/* runra_obs_build_info: versions of what this server runs. */
static void
render_build_info(StringInfo out)
{
	family(out, "runra_obs_build_info", "gauge",
		   "Always 1; the labels say which runra_obs (installed version), PostgreSQL and libmicrohttpd run.");
	appendStringInfoString(out, "runra_obs_build_info{version=\"");
	append_label(out, installed_version);
	appendStringInfo(out, "\",postgresql=\"%s\",libmicrohttpd=\"", PG_VERSION);
	append_label(out, MHD_get_version());
	appendStringInfo(out, "\",tls=\"%s\"} 1\n",
					 MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES ? "true" : "false");
}

/* Appends the pipeline's metrics to out; reads SQL, so only from the main loop. */
void
http_metrics_render_sql(StringInfo out)
{
	StringInfoData part;
	bool		ok;

	initStringInfo(&part);
	sql_out = &part;
	installed_version[0] = '\0';
	ok = http_xact_run(read_pipeline, "read the pipeline for /metrics");
	render_build_info(out);
	family(out, "runra_obs_metrics_sql_up", "gauge",
		   "1 when this scrape could read the pipeline's state from SQL (else see the server log).");
	appendStringInfo(out, "runra_obs_metrics_sql_up %d\n", ok ? 1 : 0);
	if (ok)
		appendBinaryStringInfo(out, part.data, part.len);
	pfree(part.data);
}
