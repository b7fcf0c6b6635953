#!/usr/bin/env python3
"""dashboards/generate.py — writes the Grafana dashboards of runra_obs.

The dashboards are data, but seven files of hand-kept JSON drift apart; this
script is their one source.  Edit the SQL here, run `python3
dashboards/generate.py`, commit the JSON it writes.  t/040_dashboards.pl
runs every query of every JSON file against a database with known events.

Conventions every panel follows:
- the datasource is uid "runra_obs" (dashboards/provisioning/datasources);
- long windows read rollups (rollup_5m for time series, rollup_1h and
  rollup_1h_sandbox for tables), filtered with $__timeFilter on the bucket
  column: a panel counts the events of the buckets that start inside the
  time range; tables ranking every sandbox read one row per sandbox from
  runra_obs.sandbox_totals($__timeFrom(), $__timeTo()), which counts the
  same buckets; raw events are read only for one sandbox's audit trail;
- multi-value variables use the custom all value '*', so "All" never
  expands to thousands of quoted names: ('*' IN ($v) OR col IN ($v)).
"""
import json
import os

DS = {"type": "grafana-postgresql-datasource", "uid": "runra_obs"}
HERE = os.path.dirname(os.path.abspath(__file__))


def variable(name, label, query, multi=True, include_all=True):
    v = {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": query, "definition": query,
        "refresh": 2,          # on time range change
        "multi": multi, "includeAll": include_all, "sort": 0,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all else {},
        "options": [],
    }
    if include_all:
        v["allValue"] = "'*'"
    return v


# Sandboxes created or started in the range or the day before it (listing
# every sandbox with any event would read every per-sandbox row).
SANDBOX = variable("sandbox", "Sandbox", """SELECT DISTINCT sandbox_id
FROM runra_obs.rollup_1h_sandbox_live
WHERE event_type IN ('sandbox.created', 'sandbox.started')
  AND bucket >= $__timeFrom()::timestamptz - interval '1 day' AND bucket <= $__timeTo()
ORDER BY 1
LIMIT 1000""")
EVENT_TYPE = variable("event_type", "Event type", """SELECT DISTINCT event_type
FROM runra_obs.rollup_1h_live
WHERE $__timeFilter(bucket)
ORDER BY 1""")
COMMAND = variable("command", "Command", """SELECT DISTINCT label
FROM runra_obs.rollup_1h_live
WHERE $__timeFilter(bucket) AND event_type LIKE 'exec.%' AND label <> ''
ORDER BY 1
LIMIT 500""")
AUDIT_SANDBOX = variable("audit_sandbox", "Audit sandbox", """SELECT DISTINCT sandbox_id
FROM runra_obs.rollup_1h_sandbox_live
WHERE $__timeFilter(bucket) AND event_type = 'tool.invoked'
ORDER BY 1
LIMIT 1000""", multi=True, include_all=False)

PANEL_SIZE = {"timeseries": (12, 8), "table": (12, 8), "stat": (6, 4),
              "barchart": (12, 8), "piechart": (6, 8), "bargauge": (12, 8)}


def panel(kind, title, sql, fmt=None, description="", field_config=None, options=None, size=None):
    p = {
        "type": kind, "title": title, "description": description, "datasource": DS,
        "targets": [{
            "refId": "A", "datasource": DS, "editorMode": "code", "rawQuery": True,
            "format": fmt or ("time_series" if kind == "timeseries" else "table"),
            "rawSql": sql.strip(),
        }],
        "fieldConfig": field_config or {"defaults": {}, "overrides": []},
        "options": options or {},
    }
    if size:
        p["_size"] = size      # (w, h) instead of the type's PANEL_SIZE
    return p


def dashboard(uid, title, description, variables, panels, annotations=(), time_from="now-7d"):
    x = y = row_height = 0
    for i, p in enumerate(panels, start=1):
        w, h = p.pop("_size", PANEL_SIZE[p["type"]])
        if x + w > 24:
            x, y, row_height = 0, y + row_height, 0
        p["id"] = i
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x += w
        row_height = max(row_height, h)
    return {
        "uid": uid, "title": title, "description": description,
        "tags": ["runra_obs"], "timezone": "utc", "schemaVersion": 39, "version": 1,
        "editable": True, "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": list(annotations)},
        "panels": panels,
    }


def in_var(var, column):
    return f"('*' IN (${var}) OR {column} IN (${var}))"


def threshold_line(unit, value, **limits):
    """Field config drawing a red line at `value` (thresholds style line)."""
    return {"defaults": {"unit": unit, **limits,
                         "custom": {"thresholdsStyle": {"mode": "line"}},
                         "thresholds": {"mode": "absolute", "steps": [
                             {"color": "green", "value": None},
                             {"color": "red", "value": value}]}},
            "overrides": []}


def top_sandboxes_series(title, event_type, measure, name, field_config):
    """Hourly peaks of `measure` for the 10 sandboxes with the highest peak."""
    return panel("timeseries", title, f"""
WITH top AS (
    SELECT sandbox_id
    FROM runra_obs.rollup_1h_sandbox_live
    WHERE $__timeFilter(bucket) AND event_type = '{event_type}' AND {SB}
    GROUP BY 1
    ORDER BY max({measure}) DESC NULLS LAST, 1
    LIMIT 10
)
SELECT $__timeGroupAlias(bucket, $__interval), sandbox_id AS metric,
       max({measure}) AS "{name}"
FROM runra_obs.rollup_1h_sandbox_live
WHERE $__timeFilter(bucket) AND event_type = '{event_type}' AND sandbox_id IN (SELECT sandbox_id FROM top)
GROUP BY 1, 2
ORDER BY 1, 2""", field_config=field_config)


COST_TYPES = "event_type IN ('cost.runtime', 'cost.storage')"
SB = in_var("sandbox", "sandbox_id")

costs = dashboard("runra-obs-costs", "Runra sandboxes: costs",
                  "What sandboxes cost: runtime against storage, by sandbox, image and agent.",
                  [SANDBOX], [
    panel("stat", "Current period total", f"""
SELECT sum(cost) AS "total cost"
FROM runra_obs.rollup_1h_live
WHERE $__timeFilter(bucket) AND {COST_TYPES}""",
          field_config={"defaults": {"unit": "currencyUSD", "decimals": 4}, "overrides": []}),
    panel("stat", "Selected sandboxes' cost", f"""
SELECT sum(cost) AS "cost"
FROM runra_obs.rollup_1h_sandbox_live
WHERE $__timeFilter(bucket) AND {COST_TYPES} AND {SB}""",
          field_config={"defaults": {"unit": "currencyUSD", "decimals": 4}, "overrides": []}),
    panel("timeseries", "Cost over time: runtime vs storage", f"""
SELECT $__timeGroupAlias(bucket, $__interval),
       coalesce(sum(cost) FILTER (WHERE event_type = 'cost.runtime'), 0) AS runtime,
       coalesce(sum(cost) FILTER (WHERE event_type = 'cost.storage'), 0) AS storage
FROM runra_obs.rollup_5m_live
WHERE $__timeFilter(bucket) AND {COST_TYPES}
GROUP BY 1
ORDER BY 1""",
          field_config={"defaults": {"unit": "currencyUSD", "custom": {"stacking": {"mode": "normal"}}},
                        "overrides": []}),
    panel("table", "Top sandboxes by cost", f"""
SELECT sandbox_id AS sandbox, runtime_cost AS runtime, storage_cost AS storage, cost AS total
FROM runra_obs.sandbox_totals($__timeFrom(), $__timeTo())
WHERE cost_events > 0 AND {SB}
ORDER BY total DESC NULLS LAST, 1
LIMIT 20"""),
    panel("table", "Cost per image", f"""
SELECT coalesce(nullif(image, ''), '(unknown)') AS image,
       count(*) AS sandboxes, sum(cost) AS cost
FROM runra_obs.sandbox_totals($__timeFrom(), $__timeTo())
WHERE cost_events > 0 AND {SB}
GROUP BY 1
ORDER BY cost DESC NULLS LAST, 1""",
          description="Images come from each sandbox's sandbox.created event."),
    panel("table", "Cost per agent", f"""
WITH cost AS (
    SELECT sandbox_id, coalesce(busiest_agent, '(no agent)') AS agent, unattributed_cost AS cost
    FROM runra_obs.sandbox_totals($__timeFrom(), $__timeTo())
    WHERE unattributed_cost_events > 0 AND {SB}
    UNION ALL
    SELECT sandbox_id, agent_id, cost
    FROM runra_obs.rollup_1h_sandbox_live
    WHERE $__timeFilter(bucket) AND {COST_TYPES} AND agent_id <> '' AND {SB}
)
SELECT agent, count(DISTINCT sandbox_id) AS sandboxes, sum(cost) AS cost
FROM cost
GROUP BY 1
ORDER BY cost DESC NULLS LAST, 1""",
          description="A cost event's own agentId, else the agent that invoked most tools in its sandbox in the time range."),
])

LIFECYCLE = ["sandbox.created", "sandbox.started", "sandbox.paused", "sandbox.resumed", "sandbox.terminated"]


def count_columns(types, source="events"):
    return ",\n       ".join(
        f"coalesce(sum({source}) FILTER (WHERE event_type = '{t}'), 0) AS \"{t.split('.')[1]}\"" for t in types)


health = dashboard("runra-obs-sandbox-health", "Runra sandboxes: health",
                   "Sandboxes coming and going, how fast they start, why they end.",
                   [SANDBOX, EVENT_TYPE], [
    panel("stat", "Sandboxes running now", """
SELECT count(*) AS "running"
FROM (
    SELECT sandbox_id,
           max(bucket) FILTER (WHERE event_type = 'sandbox.started') AS started,
           max(bucket) FILTER (WHERE event_type = 'sandbox.terminated') AS ended
    FROM runra_obs.rollup_1h_sandbox_live
    WHERE bucket >= $__timeFrom() AND event_type IN ('sandbox.started', 'sandbox.terminated')
    GROUP BY 1
) AS s
WHERE started IS NOT NULL AND ended IS NULL""",
          description="Sandboxes started since the start of the time range without a sandbox.terminated event since."),
    panel("stat", "Startup p95", """
SELECT runra_obs.histogram_percentile(runra_obs.histogram_merge(duration_hist), 0.95) AS "startup p95"
FROM runra_obs.rollup_1h_live
WHERE $__timeFilter(bucket) AND event_type = 'sandbox.started'""",
          field_config={"defaults": {"unit": "ms"}, "overrides": []}),
    panel("stat", "Events in range", f"""
SELECT sum(events) AS "events"
FROM runra_obs.rollup_1h_live
WHERE $__timeFilter(bucket) AND {in_var('event_type', 'event_type')}"""),
    panel("stat", "Failures in range", f"""
SELECT sum(failures) AS "failures"
FROM runra_obs.rollup_1h_live
WHERE $__timeFilter(bucket) AND {in_var('event_type', 'event_type')}"""),
    panel("timeseries", "Created, started, terminated", f"""
SELECT $__timeGroupAlias(bucket, $__interval),
       {count_columns(['sandbox.created', 'sandbox.started', 'sandbox.terminated'])}
FROM runra_obs.rollup_5m_live
WHERE $__timeFilter(bucket) AND event_type IN ('sandbox.created', 'sandbox.started', 'sandbox.terminated')
GROUP BY 1
ORDER BY 1"""),
    panel("timeseries", "Paused vs resumed", f"""
SELECT $__timeGroupAlias(bucket, $__interval),
       {count_columns(['sandbox.paused', 'sandbox.resumed'])}
FROM runra_obs.rollup_5m_live
WHERE $__timeFilter(bucket) AND event_type IN ('sandbox.paused', 'sandbox.resumed')
GROUP BY 1
ORDER BY 1"""),
    panel("timeseries", "Startup duration percentiles", """
SELECT $__timeGroupAlias(bucket, $__interval),
       runra_obs.histogram_percentile(runra_obs.histogram_merge(duration_hist), 0.5) AS p50,
       runra_obs.histogram_percentile(runra_obs.histogram_merge(duration_hist), 0.95) AS p95,
       runra_obs.histogram_percentile(runra_obs.histogram_merge(duration_hist), 0.99) AS p99
FROM runra_obs.rollup_5m_live
WHERE $__timeFilter(bucket) AND event_type = 'sandbox.started'
GROUP BY 1
ORDER BY 1""",
          field_config={"defaults": {"unit": "ms"}, "overrides": []}),
    panel("piechart", "Termination reasons", """
SELECT coalesce(nullif(label, ''), '(none)') AS reason, sum(events) AS sandboxes
FROM runra_obs.rollup_1h_live
WHERE $__timeFilter(bucket) AND event_type = 'sandbox.terminated'
GROUP BY 1
ORDER BY 2 DESC, 1""",
          options={"reduceOptions": {"values": True, "calcs": [], "fields": ""}}),
    panel("table", "Latest sandboxes", f"""
WITH latest AS (
    SELECT sandbox_id, bucket AS created_hour
    FROM runra_obs.rollup_1h_sandbox_live
    WHERE $__timeFilter(bucket) AND event_type = 'sandbox.created' AND {SB}
    ORDER BY bucket DESC, sandbox_id
    LIMIT 100
)
SELECT l.sandbox_id AS sandbox, min(l.created_hour) AS created_hour,
       sum(s.events) AS events, sum(s.failures) AS failures, sum(s.cost) AS cost,
       max(s.bucket) AS last_hour
FROM latest AS l
JOIN runra_obs.rollup_1h_sandbox_live AS s ON s.sandbox_id = l.sandbox_id
WHERE $__timeFilter(s.bucket) AND {in_var('event_type', 's.event_type')}
GROUP BY 1
ORDER BY created_hour DESC, 1""",
          description="The 100 sandboxes created last in the time range, with their events in it."),
])

CMD = in_var("command", "label")
EXEC_FAILURE_TYPES = "event_type IN ('exec.completed', 'exec.failed', 'exec.timed_out')"
executions = dashboard("runra-obs-executions", "Runra sandboxes: executions",
                       "Commands run in sandboxes: error rate against its threshold, latency, timeouts.",
                       [COMMAND], [
    panel("timeseries", "Error rate", f"""
SELECT $__timeGroupAlias(bucket, $__interval),
       sum(failures)::float8 / nullif(sum(events), 0) AS "error rate",
       coalesce(current_setting('runra_obs.error_rate_threshold', true)::float8, 0.05) AS "threshold"
FROM (
    SELECT bucket, sum(failures) AS failures, sum(events) AS events
    FROM runra_obs.rollup_5m_live
    WHERE $__timeFilter(bucket) AND event_type = 'exec.completed' AND {CMD}
    GROUP BY bucket
) AS per_bucket
GROUP BY 1
ORDER BY 1""",
          description="Share of exec.completed events with a non-zero exitCode; the threshold is runra_obs.error_rate_threshold (5 % by default).",
          field_config=threshold_line("percentunit", 0.05, min=0)),
    panel("timeseries", "Executions and failures", f"""
SELECT $__timeGroupAlias(bucket, $__interval),
       sum(completed) AS completed, sum(failures) AS failed
FROM (
    SELECT bucket,
           coalesce(sum(events) FILTER (WHERE event_type = 'exec.completed'), 0) AS completed,
           sum(failures) AS failures
    FROM runra_obs.rollup_5m_live
    WHERE $__timeFilter(bucket) AND {EXEC_FAILURE_TYPES} AND {CMD}
    GROUP BY bucket
) AS per_bucket
GROUP BY 1
ORDER BY 1"""),
    panel("table", "Latency by command (p50, p95, p99)", f"""
SELECT label AS command, sum(duration_count) AS runs,
       runra_obs.histogram_percentile(runra_obs.histogram_merge(duration_hist), 0.5) AS p50_ms,
       runra_obs.histogram_percentile(runra_obs.histogram_merge(duration_hist), 0.95) AS p95_ms,
       runra_obs.histogram_percentile(runra_obs.histogram_merge(duration_hist), 0.99) AS p99_ms
FROM runra_obs.rollup_1h_live
WHERE $__timeFilter(bucket) AND event_type = 'exec.completed' AND {CMD}
GROUP BY 1
ORDER BY p95_ms DESC NULLS LAST, 1
LIMIT 50""",
          description="Percentiles from merged log-scale histograms: within 9 % of the exact value."),
    panel("table", "Slowest commands", f"""
SELECT label AS command, max(duration_max) AS max_ms,
       round(sum(duration_sum) / nullif(sum(duration_count), 0), 1) AS avg_ms,
       sum(duration_count) AS runs
FROM runra_obs.rollup_1h_live
WHERE $__timeFilter(bucket) AND event_type = 'exec.completed' AND {CMD}
GROUP BY 1
ORDER BY max_ms DESC NULLS LAST, 1
LIMIT 20"""),
    panel("table", "Top failing commands", f"""
SELECT label AS command, sum(failures) AS failures,
       sum(events) FILTER (WHERE event_type = 'exec.completed') AS completed,
       sum(events) FILTER (WHERE event_type = 'exec.timed_out') AS timeouts,
       sum(events) FILTER (WHERE event_type = 'exec.failed') AS infrastructure_errors
FROM runra_obs.rollup_1h_live
WHERE $__timeFilter(bucket) AND {EXEC_FAILURE_TYPES} AND {CMD}
GROUP BY 1
HAVING sum(failures) > 0
ORDER BY failures DESC, 1
LIMIT 20"""),
    panel("timeseries", "Timeouts", f"""
SELECT $__timeGroupAlias(bucket, $__interval), sum(events) AS timeouts
FROM (
    SELECT bucket, sum(events) AS events
    FROM runra_obs.rollup_5m_live
    WHERE $__timeFilter(bucket) AND event_type = 'exec.timed_out' AND {CMD}
    GROUP BY bucket
) AS per_bucket
GROUP BY 1
ORDER BY 1"""),
    panel("table", "Timeouts by command", f"""
SELECT label AS command, sum(events) AS timeouts, max(duration_max) AS timeout_ms
FROM runra_obs.rollup_1h_live
WHERE $__timeFilter(bucket) AND event_type = 'exec.timed_out' AND {CMD}
GROUP BY 1
ORDER BY timeouts DESC, 1
LIMIT 20"""),
])

agents = dashboard("runra-obs-agents", "Runra sandboxes: agents",
                   "What agents do in sandboxes: tool calls, tool failures, and the audit trail of one sandbox.",
                   [AUDIT_SANDBOX], [
    panel("table", "Tool calls by agent and tool", """
SELECT coalesce(nullif(agent_id, ''), '(no agent)') AS agent, label AS tool, sum(events) AS calls
FROM runra_obs.rollup_1h_live
WHERE $__timeFilter(bucket) AND event_type = 'tool.invoked'
GROUP BY 1, 2
ORDER BY calls DESC, 1, 2
LIMIT 100"""),
    panel("timeseries", "Tool calls and failures over time", """
SELECT $__timeGroupAlias(bucket, $__interval),
       sum(invoked) AS invoked, sum(completed) AS completed, sum(failed) AS failed
FROM (
    SELECT bucket,
           coalesce(sum(events) FILTER (WHERE event_type = 'tool.invoked'), 0) AS invoked,
           coalesce(sum(events) FILTER (WHERE event_type = 'tool.completed'), 0) AS completed,
           coalesce(sum(events) FILTER (WHERE event_type = 'tool.failed'), 0) AS failed
    FROM runra_obs.rollup_5m_live
    WHERE $__timeFilter(bucket) AND event_type IN ('tool.invoked', 'tool.completed', 'tool.failed')
    GROUP BY bucket
) AS per_bucket
GROUP BY 1
ORDER BY 1"""),
    panel("table", "Tool failures", """
SELECT label AS tool,
       sum(events) FILTER (WHERE event_type = 'tool.failed') AS failures,
       sum(events) FILTER (WHERE event_type = 'tool.invoked') AS calls,
       round(coalesce(sum(events) FILTER (WHERE event_type = 'tool.failed'), 0)::numeric
             / nullif(sum(events) FILTER (WHERE event_type = 'tool.invoked'), 0), 4) AS failure_rate
FROM runra_obs.rollup_1h_live
WHERE $__timeFilter(bucket) AND event_type IN ('tool.invoked', 'tool.failed')
GROUP BY 1
HAVING sum(events) FILTER (WHERE event_type = 'tool.failed') > 0
ORDER BY failures DESC, 1"""),
    panel("table", "Audit trail", """
SELECT created_at AS "time", sandbox_id AS sandbox, event_type,
       data ->> 'agentId' AS agent,
       coalesce(data ->> 'toolName', data ->> 'command', data ->> 'path') AS action,
       coalesce(data -> 'toolArgs', data -> 'error') AS detail
FROM runra_obs.sandbox_events
WHERE $__timeFilter(created_at) AND sandbox_id IN ($audit_sandbox)
  AND (event_type LIKE 'tool.%' OR event_type LIKE 'exec.%' OR event_type LIKE 'file.%')
ORDER BY created_at DESC, id DESC
LIMIT 500""",
          description="Every tool, exec and file event of the chosen sandboxes, newest first (raw events)."),
])

resources = dashboard("runra-obs-resources", "Runra sandboxes: resources",
                      "Memory and CPU of sandboxes against their limits, and samples above 90 %.",
                      [SANDBOX], [
    top_sandboxes_series("Memory against limit (top 10 sandboxes)", "resource.memory",
                         "value_max / nullif(limit_max, 0)", "peak share of limit",
                         threshold_line("percentunit", 0.9, max=1)),
    top_sandboxes_series("CPU (top 10 sandboxes)", "resource.cpu", "value_max", "peak cpu %",
                         threshold_line("percent", 90)),
    panel("timeseries", "Samples above 90 %", """
SELECT $__timeGroupAlias(bucket, $__interval),
       coalesce(sum(over_90) FILTER (WHERE event_type = 'resource.memory'), 0) AS memory,
       coalesce(sum(over_90) FILTER (WHERE event_type = 'resource.cpu'), 0) AS cpu,
       coalesce(sum(over_90) FILTER (WHERE event_type = 'resource.disk'), 0) AS disk
FROM runra_obs.rollup_5m_live
WHERE $__timeFilter(bucket) AND event_type IN ('resource.memory', 'resource.cpu', 'resource.disk')
GROUP BY 1
ORDER BY 1"""),
    panel("table", "Sandboxes above 90 %", f"""
SELECT sandbox_id AS sandbox, over_90 AS samples_above_90, memory_peak AS peak_memory_mb,
       memory_limit AS memory_limit_mb, cpu_peak AS peak_cpu_percent
FROM runra_obs.sandbox_totals($__timeFrom(), $__timeTo())
WHERE over_90 > 0 AND {SB}
ORDER BY samples_above_90 DESC, 1
LIMIT 50"""),
])

pipeline = dashboard("runra-obs-pipeline", "runra_obs: pipeline",
                     "Events coming in, events refused, events going out to forwarding destinations.",
                     [], [
    panel("timeseries", "Ingest rate", """
SELECT $__timeGroupAlias(bucket, $__interval),
       sum(events) * 1000.0 / greatest($__interval_ms, 60000) AS "events/s"
FROM runra_obs.ingest_1m_live
WHERE $__timeFilter(bucket)
GROUP BY 1
ORDER BY 1""",
          field_config={"defaults": {"unit": "reqps"}, "overrides": []}),
    panel("timeseries", "Ingest delay (created_at to stored)", """
SELECT $__timeGroupAlias(bucket, $__interval),
       sum(delay_sum_s) / nullif(sum(events), 0) AS "average",
       max(delay_max_s) AS "max"
FROM runra_obs.ingest_1m_live
WHERE $__timeFilter(bucket)
GROUP BY 1
ORDER BY 1""",
          field_config={"defaults": {"unit": "s"}, "overrides": []}),
    panel("timeseries", "Rejected events", """
SELECT $__timeGroupAlias(received_at, $__interval), source AS metric, count(*) AS rejected
FROM runra_obs.rejected_events
WHERE $__timeFilter(received_at)
GROUP BY 1, 2
ORDER BY 1, 2"""),
    panel("table", "Rejection reasons", """
SELECT source, left(reason, 120) AS reason, count(*) AS events, max(received_at) AS last_seen
FROM runra_obs.rejected_events
WHERE $__timeFilter(received_at)
GROUP BY 1, 2
ORDER BY events DESC, 1, 2
LIMIT 50"""),
    panel("bargauge", "Forward lag (events behind)", """
SELECT destination, behind_events + redelivering AS behind
FROM runra_obs.forward_status
ORDER BY destination""",
          options={"reduceOptions": {"values": True, "calcs": [], "fields": ""}, "orientation": "horizontal"}),
    panel("table", "Forwarding per destination", """
SELECT destination, provider, enabled, position, behind_events,
       behind_seconds AS lag_s, redelivering,
       sent, failed, dead_lettered, last_success, last_error
FROM runra_obs.forward_status
ORDER BY destination""",
          description="lag_s: how long the events after the destination's cursor have been safe to read and not delivered."),
    panel("table", "Workers", """
SELECT pid, role, state, started_at, events_ingested, events_rejected,
       last_error, last_maintenance_at
FROM runra_obs.worker_status
ORDER BY role, pid"""),
])



def annotation(name, color, sql, description=""):
    """A dashboard annotation query against the datasource: columns time,
    timeend (optional: a region), text and tags (comma-separated)."""
    return {
        "name": name, "description": description, "datasource": DS,
        "enable": True, "hide": False, "iconColor": color,
        "target": {"refId": "Anno", "datasource": DS, "editorMode": "code", "rawQuery": True,
                   "format": "table", "rawSql": sql.strip()},
    }


def count_stat(title, source, where, color="red", description=""):
    """The number of rows of runra_obs.`source` where `where`; `color` from 1 up."""
    return panel("stat", title, f"""
SELECT count(*) AS "{title.lower()}"
FROM runra_obs.{source}
WHERE {where}""", description=description, size=(4, 4), field_config={
        "defaults": {"color": {"mode": "thresholds"},
                     "thresholds": {"mode": "absolute", "steps": [
                         {"color": "green", "value": None}, {"color": color, "value": 1}]}},
        "overrides": []})


def labels_text(column):
    """An alert's labels as Prometheus writes them, alertname left out (NULL: none)."""
    return (f"(SELECT string_agg(format('%s=\"%s\"', key, value), ', ' ORDER BY key) "
            f"FROM jsonb_each_text({column} - 'alertname'))")


# Rules now, and those of the history in the range (removed rules keep theirs).
RULE = variable("rule", "Rule", """SELECT name FROM runra_obs.alert_rules
UNION
SELECT rule_name FROM runra_obs.alert_history WHERE $__timeFilter(at)
ORDER BY 1""")
STATE_RULE = in_var("rule", "rule")
HISTORY_RULE = in_var("rule", "rule_name")

alerts = dashboard("runra-obs-alerts", "runra_obs: alerts",
                   "What the alert rules say: alerts firing and pending now, rules in error, "
                   "transitions over time, and the notifications sent to contact points.",
                   [RULE], [
    count_stat("Firing now", "alert_states", f"state = 'firing' AND {STATE_RULE}"),
    count_stat("Pending now", "alert_states", f"state = 'pending' AND {STATE_RULE}", color="orange",
               description="Active alerts waiting out their rule's `for` before they fire."),
    count_stat("Rules in error", "alert_states", f"state = 'error' AND {STATE_RULE}",
               description="Rules whose last evaluation failed; their alerts keep the state they had."),
    count_stat("Notifications pending", "alert_notifications", f"status = 'pending' AND {HISTORY_RULE}",
               color="orange", description="Queued or being retried."),
    count_stat("Dead notifications", "alert_notifications", f"status = 'dead' AND {HISTORY_RULE}",
               description="Refused, or failing past maxRetryMs; runra_obs.requeue_alert_notifications() sends them again."),
    count_stat("Fired in range", "alert_history", f"$__timeFilter(at) AND to_state = 'firing' AND {HISTORY_RULE}",
               color="yellow"),
    panel("table", "Alerting now", f"""
SELECT rule, state, {labels_text('labels')} AS labels, value,
       annotations ->> 'summary' AS summary,
       CASE WHEN state = 'firing' THEN fired_at ELSE active_since END AS since
FROM runra_obs.alert_states
WHERE state IN ('firing', 'pending') AND {STATE_RULE}
ORDER BY state = 'firing' DESC, since, rule, labels""", size=(16, 8),
          description="Firing alerts first; since: when it fired, or (pending) since when its series is active."),
    panel("table", "Failing rules", f"""
SELECT rule, kind, active_since AS since, error
FROM runra_obs.alert_states
WHERE state = 'error' AND {STATE_RULE}
ORDER BY since, rule""", size=(8, 8)),
    panel("timeseries", "Transitions", f"""
SELECT $__timeGroupAlias(at, $__interval),
       count(*) FILTER (WHERE to_state = 'firing') AS firing,
       count(*) FILTER (WHERE from_state = 'firing' AND to_state = 'inactive') AS resolved,
       count(*) FILTER (WHERE to_state = 'pending') AS pending,
       count(*) FILTER (WHERE to_state = 'error') AS "rule errors"
FROM runra_obs.alert_history
WHERE $__timeFilter(at) AND {HISTORY_RULE}
GROUP BY 1
ORDER BY 1""", size=(24, 8),
          field_config={"defaults": {"custom": {"drawStyle": "bars", "stacking": {"mode": "normal"}}},
                        "overrides": []}),
    panel("table", "Recent transitions", f"""
SELECT at AS "time", rule_name AS rule, {labels_text('labels')} AS labels,
       from_state, to_state, value, message
FROM runra_obs.alert_history
WHERE $__timeFilter(at) AND {HISTORY_RULE}
ORDER BY at DESC, id DESC
LIMIT 200""", description="The newest 200 transitions of alerts (inactive, pending, firing) and of rules' health (ok, error)."),
    panel("table", "Notifications", f"""
SELECT n.created_at AS queued, n.rule_name AS rule, c.name AS contact_point,
       n.status, n.attempts,
       CASE WHEN n.status = 'pending' THEN n.next_attempt_at END AS next_attempt,
       n.done_at AS done, n.last_error, left(n.answer, 200) AS answer
FROM runra_obs.alert_notifications AS n
JOIN runra_obs.contact_point_list AS c ON c.id = n.contact_point_id
WHERE ($__timeFilter(n.created_at) OR n.status <> 'sent') AND {HISTORY_RULE}
ORDER BY CASE n.status WHEN 'dead' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, n.created_at DESC, n.id DESC
LIMIT 200""", description="Dead letters first, then pending ones (whenever queued), then those sent in the range."),
], annotations=[
    annotation("Alerts firing", "red", f"""
WITH t AS (
    SELECT at, id, rule_name, labels, to_state,
           lead(at) OVER (PARTITION BY rule_id, fingerprint ORDER BY at, id) AS resolved_at
    FROM runra_obs.alert_history
    WHERE fingerprint <> '' AND (to_state = 'firing' OR from_state = 'firing')
      AND at <= $__timeTo() AND {HISTORY_RULE}
)
SELECT at AS "time", coalesce(resolved_at, least(now(), $__timeTo())) AS timeend,
       rule_name || coalesce(' {{' || {labels_text('labels')} || '}}', '') AS text,
       CASE WHEN resolved_at IS NULL THEN 'firing' ELSE 'resolved' END
           || ',' || translate(rule_name, ',', ' ') AS tags
FROM t
WHERE to_state = 'firing' AND coalesce(resolved_at, 'infinity') >= $__timeFrom()
ORDER BY at, id""", "Each time an alert fired, as a region up to its resolution (or now, while it fires)."),
    annotation("Rule errors", "orange", f"""
SELECT at AS "time", rule_name || ': ' || coalesce(message, '') AS text,
       'error,' || translate(rule_name, ',', ' ') AS tags
FROM runra_obs.alert_history
WHERE $__timeFilter(at) AND fingerprint = '' AND to_state = 'error' AND {HISTORY_RULE}
ORDER BY at, id""", "When a rule's evaluation started failing, with the error."),
], time_from="now-24h")

for name, d in [("costs", costs), ("sandbox-health", health), ("executions", executions),
                ("agents", agents), ("resources", resources), ("pipeline", pipeline),
                ("alerts", alerts)]:
    with open(os.path.join(HERE, f"{name}.json"), "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")
