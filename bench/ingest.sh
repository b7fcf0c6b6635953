#!/usr/bin/env bash
# bench/ingest.sh — runra_obs.ingest_jsonl() and HTTP POST /v1/events against
# the ceiling, COPY of the same events into the same table (which has no
# trigger at all), in one run.
#
#   bench/ingest.sh [EVENTS] [ROUNDS] [SESSIONS]
#                   defaults: 1000000 events, 3 rounds, 2 sessions
#
# The events are shaped like a fleet (bench/lib/fleet.sh, with
# bench/rollups.sql's generator: every event type, sandboxes of 500 events,
# so 2000 sandboxes per million, over 7 days) and written twice: as the
# seed's JSONL lines and as COPY text of the same rows, both cut into
# 1000-event batches.  Each round empties the table, then SESSIONS sessions
# share the batches, one statement and one transaction per batch, first as
# COPY, then as ingest_jsonl; then the same batches go to POST /v1/events as
# NDJSON, each once, over 4 keep-alive connections (or HTTP_CONNECTIONS) to
# the 2 HTTP workers (bench/http_load.c).  The rollup worker runs all along,
# as in production; it is let catch up before each timed phase, and the
# time it takes to fold each phase is printed.  The best round of each is
# reported, with the ratios to COPY, and the ratios of the median rounds
# (steadier on a noisy machine: one lucky COPY round moves the best-of
# ratios by 0.1).  The server's CPU per event, each way in and its fold
# together, is printed too: unlike a rate, it hardly moves with the
# machine's other load.
set -euo pipefail
events=${1:-1000000}
rounds=${2:-3}
sessions=${3:-2}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib/fleet.sh"
http_port=${BENCH_HTTP_PORT:-18787}
http_connections=${HTTP_CONNECTIONS:-4}
bench_cluster_start ingest "runra_obs.rollup_interval = '1s'" \
    "runra_obs.http_workers = 2" "runra_obs.http_port = $http_port"
bench_machine
bench_fleet_files "$events" "$BENCH_DIR" | sed "s/\$/, $sessions sessions/"
bench_fleet_scripts "$BENCH_DIR" "$sessions"
ls "$BENCH_DIR"/batches/jsonl.* > "$BENCH_DIR/http.list"
cc -O2 -o "$BENCH_DIR/http_load" "$BENCH_SRC/bench/http_load.c" $(pkg-config --cflags --libs libcurl)
token=$(bench_psql "SELECT runra_obs.create_ingest_token('bench')")
batches_n=$(wc -l < "$BENCH_DIR/http.list")

# Waits until the rollup consumer has folded every event; prints the seconds.
catch_up() {
    local start=$(date +%s.%N)
    until [ "$(bench_psql "SELECT position >= (SELECT last_value FROM runra_obs.sandbox_events_id_seq)
                           FROM runra_obs.consumers WHERE name = 'rollups'")" = t ]; do sleep 0.2; done
    echo "$(date +%s.%N) $start" | awk '{printf "%.1f", $1 - $2}'
}


# Sends every batch once over HTTP; prints the wall-clock ms.
run_http() {
    local out
    out=$("$BENCH_DIR/http_load" "http://127.0.0.1:$http_port/v1/events" "$token" "@$BENCH_DIR/http.list" \
          application/x-ndjson "$batches_n" "$http_connections")
    case $out in *failed=0*) ;; *) echo "HTTP requests failed: $out" >&2; exit 1 ;; esac
    echo "$out" | sed 's/.*seconds=\([0-9.]*\).*/\1/' | awk '{printf "%.0f", $1 * 1000}'
}

# CPU the server has used so far, in clock ticks (bench_cpu_ticks): rates on
# a shared 2-core VM move with its neighbours, CPU per event mostly does not.
server_ticks() { bench_cpu_ticks "$BENCH_DATA" 'runra_obs maintenance'; }

# The best (smallest) and the median of a list of round times.
best_of() { tr ' ' '\n' <<<"$1" | grep . | sort -g | head -1; }
median_of() {
    tr ' ' '\n' <<<"$1" | grep . | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

copy_ms= ; ingest_ms= ; http_ms=    # every round's times
copy_cpu= ; ingest_cpu= ; http_cpu=   # and server ticks, ingest plus its fold
for r in $(seq "$rounds"); do
    bench_psql "TRUNCATE runra_obs.sandbox_events" "CHECKPOINT"
    catch_up >/dev/null
    t0=$(server_ticks)
    c=$(bench_run_sessions copy "$sessions")
    fold_c=$(catch_up)
    copy_cpu+=" $(( $(server_ticks) - t0 ))"
    bench_psql "TRUNCATE runra_obs.sandbox_events" "CHECKPOINT"
    t0=$(server_ticks)
    g=$(bench_run_sessions jsonl "$sessions")
    lag=$(bench_psql "SELECT ids_behind FROM runra_obs.consumer_status WHERE name = 'rollups'")
    fold_g=$(catch_up)
    ingest_cpu+=" $(( $(server_ticks) - t0 ))"
    n=$(bench_psql "SELECT count(*) FROM runra_obs.sandbox_events")
    [ "$n" = "$events" ] || { echo "ingest_jsonl stored $n of $events events" >&2; exit 1; }
    ! grep -qv '^0$' "$BENCH_DIR"/jsonl.*.out || { echo "ingest_jsonl rejected events" >&2; exit 1; }
    bench_psql "TRUNCATE runra_obs.sandbox_events" "CHECKPOINT"
    t0=$(server_ticks)
    h=$(run_http)
    fold_h=$(catch_up)
    http_cpu+=" $(( $(server_ticks) - t0 ))"
    n=$(bench_psql "SELECT count(*) FROM runra_obs.sandbox_events")
    [ "$n" = "$events" ] || { echo "HTTP stored $n of $events events" >&2; exit 1; }
    printf 'round %d: COPY %.0f ms (rollups caught up %ss later), ingest_jsonl %.0f ms (%s ids behind at the end, caught up %ss later), HTTP %.0f ms (caught up %ss later)\n' \
        "$r" "$c" "$fold_c" "$g" "$lag" "$fold_g" "$h" "$fold_h"
    copy_ms+=" $c"; ingest_ms+=" $g"; http_ms+=" $h"
done
best_copy=$(best_of "$copy_ms"); best_ingest=$(best_of "$ingest_ms"); best_http=$(best_of "$http_ms")
awk -v n="$events" -v c="$best_copy" -v g="$best_ingest" -v h="$best_http" 'BEGIN {
    printf "COPY (ceiling): %9.0f events/s\n", n / (c / 1000);
    printf "ingest_jsonl:   %9.0f events/s\n", n / (g / 1000);
    printf "HTTP:           %9.0f events/s\n", n / (h / 1000);
    printf "ratio ingest_jsonl / COPY: %.2f\n", c / g;
    printf "ratio HTTP / COPY: %.2f\n", c / h }'
awk -v c="$(median_of "$copy_ms")" -v g="$(median_of "$ingest_ms")" -v h="$(median_of "$http_ms")" 'BEGIN {
    printf "median rounds: ratio ingest_jsonl / COPY: %.2f, HTTP / COPY: %.2f\n", c / g, c / h }'
awk -v n="$events" -v hz="$(getconf CLK_TCK)" -v c="$(median_of "$copy_cpu")" -v g="$(median_of "$ingest_cpu")" \
    -v h="$(median_of "$http_cpu")" 'BEGIN { u = 1e6 / hz / n;
    printf "server CPU per event, ingest and its fold (median rounds): COPY %.1f us, ingest_jsonl %.1f us, HTTP %.1f us; ratio COPY / ingest_jsonl %.2f, COPY / HTTP %.2f\n",
           c * u, g * u, h * u, c / g, c / h }'

# Steady load at half the ceiling for STEADY_SECONDS: pgbench sends the
# batches at a fixed rate while the rollup consumer's lag is sampled twice a
# second (seconds_behind: how long events after its position have been safe
# to read and not folded).
steady=${STEADY_SECONDS:-20}
rate=$(awk -v n="$events" -v c="$best_copy" 'BEGIN { printf "%d", n / (c / 1000) / 2 / 1000 }')
batches=$(ls "$BENCH_DIR/batches" | grep -c '^jsonl\.')
cat > "$BENCH_DIR/steady.sql" <<SQL
\\set k random(0, $((batches - 1)))
SELECT failed FROM runra_obs.ingest_jsonl(pg_read_file('$BENCH_DIR/batches/jsonl.' || lpad(:k::text, 6, '0')));
SQL
chmod 644 "$BENCH_DIR/steady.sql"
bench_psql "TRUNCATE runra_obs.sandbox_events"
catch_up >/dev/null
bench_as_user "$BENCH_BIN/pgbench" -n -c "$sessions" -j "$sessions" -R "$rate" -T "$steady" -f "$BENCH_DIR/steady.sql" \
    -h "$BENCH_DIR" -p "$BENCH_PORT" bench > "$BENCH_DIR/steady.out" 2>&1 &
load=$!
: > "$BENCH_DIR/lag"
while kill -0 "$load" 2>/dev/null; do
    bench_psql "SELECT seconds_behind FROM runra_obs.consumer_status WHERE name = 'rollups'" >> "$BENCH_DIR/lag"
    sleep 0.5
done
wait "$load"
sort -g "$BENCH_DIR/lag" | awk -v r="$rate" '{ v[NR] = $1 } END {
    p99 = int(NR * 0.99) + 1; if (p99 > NR) p99 = NR;
    printf "steady load, %d batches/s (%d events/s, half the ceiling): rollup lag p50 %.1f s, p99 %.1f s, max %.1f s (%d samples)\n",
           r, r * 1000, v[int(NR * 0.5) + 1], v[p99], v[NR], NR }'
grep -E '^(tps|latency average)' "$BENCH_DIR/steady.out" | sed 's/^/pgbench: /'
