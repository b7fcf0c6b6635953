#!/usr/bin/env bash
# bench/ingest.sh — runra_obs.ingest_jsonl() against COPY of the same events
# into the same table, in one run.
#
#   bench/ingest.sh [EVENTS] [ROUNDS]      defaults: 1000000 events, 3 rounds
#
# Events are generated on the fly (a realistic mix of exec, cost, resource,
# tool and lifecycle events over 1000 sandboxes in the last two days) and
# written twice: as the seed's JSONL lines, and as COPY text of the same
# rows.  Each round empties the table, checkpoints, then times COPY and
# ingest_jsonl (each one statement, one transaction).  The best round of
# each is reported, with the ratio ingest/COPY.
set -euo pipefail
events=${1:-1000000}
rounds=${2:-3}
. "$(dirname "$0")/lib.sh"
bench_cluster_start ingest
bench_machine

jsonl=$BENCH_DIR/events.jsonl
copy=$BENCH_DIR/events.copy
bench_psql "
CREATE UNLOGGED TABLE gen AS
SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS ts_text, ts, sandbox_id, type, data,
       CASE WHEN i % 3 = 0 THEN md5(i::text) END AS trace_id
FROM (
  SELECT i, now() - interval '2 days' * (i::float8 / $events) AS ts,
         'sb_' || (i % 1000) AS sandbox_id,
         (ARRAY['exec.completed','exec.started','cost.runtime','resource.memory','tool.invoked','file.created','sandbox.started'])[1 + i % 7] AS type,
         CASE i % 7
           WHEN 0 THEN jsonb_build_object('command', 'npm test --filter ' || (i % 50), 'exitCode', (i % 13 = 0)::int,
                                          'durationMs', (i::bigint * 7919) % 20000, 'stdout', repeat('ok ', 10), 'stderr', '')
           WHEN 1 THEN jsonb_build_object('command', 'npm test --filter ' || (i % 50), 'cwd', '/workspace')
           WHEN 2 THEN jsonb_build_object('durationMs', 60000, 'rate', 0.000012, 'cost', 0.00072)
           WHEN 3 THEN jsonb_build_object('memoryUsedMb', 100 + i % 900, 'memoryLimitMb', 1024)
           WHEN 4 THEN jsonb_build_object('toolName', 'shell', 'toolArgs', jsonb_build_object('cmd', 'ls -la'), 'agentId', 'agent_' || (i % 20))
           WHEN 5 THEN jsonb_build_object('path', '/workspace/src/file' || i || '.ts', 'sizeBytes', i % 65536)
           ELSE jsonb_build_object('startupDurationMs', 800 + i % 400)
         END AS data
  FROM generate_series(1, $events) AS i) AS g"
# JSONL exactly as the seed writes it, and COPY text of the same rows
bench_psql "COPY (SELECT json_build_object('timestamp', ts_text, 'sandboxId', sandbox_id, 'type', type, 'data', data, 'traceId', trace_id)::text FROM gen) TO '$jsonl'"
bench_psql "COPY (SELECT ts, sandbox_id, type, data, trace_id FROM gen) TO '$copy'"
# COPY text escapes backslashes; the JSONL lines have none, so the file is the lines
echo "events: $events ($(du -m "$jsonl" | cut -f1) MB of JSONL)"

best_copy= ; best_ingest=
for r in $(seq "$rounds"); do
    bench_psql "TRUNCATE runra_obs.sandbox_events" "CHECKPOINT"
    c=$(bench_time_ms "COPY runra_obs.sandbox_events (created_at, sandbox_id, event_type, data, trace_id) FROM '$copy'")
    bench_psql "TRUNCATE runra_obs.sandbox_events" "CHECKPOINT"
    g=$(bench_time_ms "SELECT ingested, failed FROM runra_obs.ingest_jsonl(pg_read_file('$jsonl'))")
    n=$(bench_psql "SELECT count(*) FROM runra_obs.sandbox_events")
    [ "$n" = "$events" ] || { echo "ingest_jsonl stored $n of $events events" >&2; exit 1; }
    printf 'round %d: COPY %.0f ms, ingest_jsonl %.0f ms\n' "$r" "$c" "$g"
    best_copy=$(echo "${best_copy:-$c} $c" | awk '{print ($1 < $2) ? $1 : $2}')
    best_ingest=$(echo "${best_ingest:-$g} $g" | awk '{print ($1 < $2) ? $1 : $2}')
done
awk -v n="$events" -v c="$best_copy" -v g="$best_ingest" 'BEGIN {
    printf "COPY:         %9.0f events/s\n", n / (c / 1000);
    printf "ingest_jsonl: %9.0f events/s\n", n / (g / 1000);
    printf "ratio ingest_jsonl / COPY: %.2f\n", c / g }'
