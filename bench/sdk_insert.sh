#!/usr/bin/env bash
# bench/sdk_insert.sh — the SDK's Postgres exporter's INSERTs, row by row
# validated through runra_obs_sdk.sandbox_events, against a plain INSERT of
# the same rows into runra_obs.sandbox_events (all or nothing, CHECK
# constraints only) and against the ceiling, COPY of the same rows into the
# same table, in one run.
#
#   bench/sdk_insert.sh [EVENTS] [ROUNDS] [BATCH]
#                       defaults: 200000 events, 3 rounds, 100 rows a statement
#
# The events are shaped like a fleet (bench/rollups.sql's generator: every
# event type, sandboxes of 500 events, over 7 days).  Each round empties the
# table and writes every event once per path, one statement and one
# transaction per batch of BATCH rows, from 2 sessions.  The best round of
# each is reported, with the ratios to COPY.
set -euo pipefail
events=${1:-200000}
rounds=${2:-3}
batch=${3:-100}
sessions=2
. "$(dirname "$0")/lib.sh"
bench_cluster_start sdk_insert "runra_obs.rollup_enabled = off"
bench_machine
bench_as_user "$BENCH_BIN/psql" -X -q -h "$BENCH_DIR" -p "$BENCH_PORT" -d bench \
    -f "$BENCH_SRC/bench/rollups.sql" >/dev/null

bench_psql "SELECT bench.generate(1, $events, $events, now())" >/dev/null
bench_psql "CREATE TABLE bench.staged AS
            SELECT row_number() OVER (ORDER BY id) AS n, created_at, sandbox_id, event_type, data, trace_id
            FROM runra_obs.sandbox_events" \
           "CREATE INDEX ON bench.staged (n)" "ANALYZE bench.staged"
echo "events: $events over $(bench_psql 'SELECT count(DISTINCT sandbox_id) FROM bench.staged') sandboxes," \
     "$(bench_psql 'SELECT count(DISTINCT event_type) FROM bench.staged') event types, $batch rows a statement, $sessions sessions"

# One script per path and session: every SESSIONS-th batch, one statement each.
write_scripts() {
    local kind=$1 s first
    for s in $(seq 0 $((sessions - 1))); do
        : > "$BENCH_DIR/$kind.$s.sql"
        for first in $(seq $((1 + s * batch)) $((sessions * batch)) "$events"); do
            local rows="SELECT created_at, sandbox_id, event_type, data, trace_id FROM bench.staged
                        WHERE n BETWEEN $first AND $((first + batch - 1))"
            case $kind in
                copy) echo "COPY runra_obs.sandbox_events (created_at, sandbox_id, event_type, data, trace_id) FROM '$BENCH_DIR/rows/$first';" ;;
                table) echo "INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type, data, trace_id) $rows;" ;;
                sdk) echo "INSERT INTO runra_obs_sdk.sandbox_events (created_at, sandbox_id, event_type, data, trace_id) $rows;" ;;
            esac
        done >> "$BENCH_DIR/$kind.$s.sql"
    done
    chmod 644 "$BENCH_DIR"/$kind.*.sql
}
# COPY reads the same batches from files, as a client would send them
mkdir -p "$BENCH_DIR/rows" && chown "$BENCH_USER" "$BENCH_DIR/rows"
bench_psql "COPY (SELECT n, created_at, sandbox_id, event_type, data, trace_id FROM bench.staged ORDER BY n)
            TO '$BENCH_DIR/rows.all'"
bench_as_user awk -F'\t' -v b="$batch" -v dir="$BENCH_DIR/rows" '{
    f = dir "/" (int(($1 - 1) / b) * b + 1); if (f != last) { if (last) close(last); last = f }
    sub(/^[0-9]+\t/, ""); print > f }' "$BENCH_DIR/rows.all"
for kind in copy table sdk; do write_scripts $kind; done


declare -A best
for r in $(seq "$rounds"); do
    line="round $r:"
    for kind in copy table sdk; do
        bench_psql "TRUNCATE runra_obs.sandbox_events" "CHECKPOINT"
        ms=$(bench_run_sessions $kind "$sessions")
        n=$(bench_psql "SELECT count(*) FROM runra_obs.sandbox_events")
        [ "$n" = "$events" ] || { echo "$kind stored $n of $events events" >&2; exit 1; }
        line="$line $kind ${ms} ms"
        best[$kind]=$(echo "${best[$kind]:-$ms} $ms" | awk '{print ($1 < $2) ? $1 : $2}')
    done
    echo "$line"
done
awk -v n="$events" -v c="${best[copy]}" -v t="${best[table]}" -v s="${best[sdk]}" 'BEGIN {
    printf "COPY (ceiling):                  %9.0f events/s\n", n / (c / 1000);
    printf "INSERT into the table:           %9.0f events/s\n", n / (t / 1000);
    printf "INSERT through runra_obs_sdk:    %9.0f events/s\n", n / (s / 1000);
    printf "ratio INSERT / COPY: %.2f\n", c / t;
    printf "ratio SDK INSERT / COPY: %.2f\n", c / s;
    printf "ratio SDK INSERT / INSERT: %.2f\n", t / s }'
bench_cluster_stop
