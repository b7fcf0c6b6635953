#!/usr/bin/env bash
# bench/forward.sh — what forwarding costs ingest and how fast it delivers,
# every figure a ratio or a rate measured in this one run.
#
#   1. Delivery: D events (default 200000) stored, then one destination at
#      a time added with startAt before them (it replays them, the same
#      reading path as a destination that fell behind), default settings;
#      events/s from add_destination until its cursor reaches the
#      watermark.  Axiom (gzip) and OTLP/HTTP to a local receiver
#      (t/lib/forward/Receiver.pm, one request at a time), JSONL to a file.
#   2. Ingest cost: runra_obs.ingest_jsonl() of N events (default 200000)
#      with no destination (the baseline), with 3 paused destinations (what
#      an insert pays for destinations existing) and with 3 active ones
#      (Axiom, OTLP, JSONL, all delivering meanwhile, so the forward worker
#      and the receiver compete with ingest for the CPU); best of ROUNDS
#      (default 5) interleaved rounds, each into an empty table; events/s (wall) and the ingesting
#      backend's CPU time per event, each as a ratio to the baseline.
#   3. Lag under steady load: RATE events/s (default 5000) for LAG_SECONDS
#      (default 30, LAG_SECONDS=) in 10 commits a second with the 3 destinations active;
#      forward_status.behind_seconds sampled every 100 ms: p50, p99, max.
#
# Usage: bench/forward.sh   (D=, N=, ROUNDS=, RATE=, LAG_SECONDS=)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

D=${D:-200000}
N=${N:-200000}
ROUNDS=${ROUNDS:-5}
RATE=${RATE:-5000}
SECONDS_LOAD=${LAG_SECONDS:-30}

bench_cluster_start forward "runra_obs.rollup_enabled = off"
q() { bench_psql "$@"; }

# ---- the receiver (niced: it stands for a remote backend, not for us) ----
port_file=$BENCH_DIR/receiver.url
nice -n 19 env PERL5LIB="$(pg_config --pgxs | sed 's|/src/makefiles/pgxs.mk||')/src/test/perl:$BENCH_SRC/t/lib" \
    perl -Mforward::Receiver -e '
        my $rx = forward::Receiver->new(log_bodies => 0);
        open my $f, ">", "$ARGV[0].tmp"; print $f $rx->url; close $f; rename "$ARGV[0].tmp", $ARGV[0];
        $SIG{TERM} = sub { $rx->stop; exit 0 };
        sleep 1 while 1;' "$port_file" &
rx_pid=$!
trap 'kill $rx_pid 2>/dev/null || true; bench_cluster_stop' EXIT
while [ ! -s "$port_file" ]; do sleep 0.1; done
url=$(cat "$port_file")
jsonl=$BENCH_DIR/events.jsonl

config_of() {	# provider [extra json members]
    case $1 in
        axiom) echo "{\"url\": \"$url\", \"dataset\": \"bench\", \"token\": \"t\"${2:-}}" ;;
        otel)  echo "{\"endpoint\": \"$url\"${2:-}}" ;;
        jsonl) echo "{\"filePath\": \"$jsonl\", \"maxFileSizeMb\": 100000${2:-}}" ;;
    esac
}

# One JSONL body of n events spread over the last hour, four event types.
make_body() {	# table n
    q "CREATE TABLE $1 AS
       SELECT string_agg(format('{\"timestamp\":\"%s\",\"sandboxId\":\"sb_%s\",\"type\":\"%s\",\"data\":{\"command\":\"npm test\",\"exitCode\":%s,\"durationMs\":%s}}',
                                to_char((now() - (i % 3600000 || ' ms')::interval) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                                i % 100, (ARRAY['exec.completed', 'sandbox.created', 'cost.runtime', 'tool.invoked'])[i % 4 + 1],
                                i % 3, i), E'\n') AS body
       FROM generate_series(1, $2) AS i"
}

wait_caught_up() {	# destination: until its cursor is at the watermark
    until [ "$(q "SELECT behind_events = 0 AND position > 0 FROM runra_obs.forward_status WHERE destination = '$1'")" = t ]; do
        sleep 0.05
    done
}

# ---- 1. delivery ----
make_body bench_d "$D"
q "SELECT ingested FROM runra_obs.ingest_jsonl((SELECT body FROM bench_d))" >/dev/null
q "SELECT runra_obs.safe_watermark()" >/dev/null
echo "delivery of $D stored events, one destination at a time, default settings (batchSize 1000, flushIntervalMs 1000, runra_obs.forward_requests 10):"
printf '%-40s %12s %10s\n' destination events/s elapsed
declare -A rate
for p in axiom otel jsonl; do
    rm -f "$jsonl"
    t0=$(date +%s.%N)
    q "SELECT runra_obs.add_destination('bench_$p', '$p', '$(config_of $p ', "startAt": "-infinity"')')" >/dev/null
    wait_caught_up "bench_$p"
    t1=$(date +%s.%N)
    sent=$(q "SELECT sent FROM runra_obs.forward_status WHERE destination = 'bench_$p'")
    rate[$p]=$(awk -v n="$sent" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    awk -v n="$sent" -v a="$t0" -v b="$t1" -v l="$p" 'BEGIN { printf "%-40s %12.0f %9.2fs\n", l, n / (b - a), b - a }'
    [ "$sent" = "$D" ] || echo "  (sent $sent, expected $D)"
    q "SELECT runra_obs.remove_destination('bench_$p')" >/dev/null
done
q "TRUNCATE runra_obs.sandbox_events" >/dev/null

# ---- 2. ingest cost ----
make_body bench_n "$N"
# Wall seconds and the backend's CPU seconds (user + system, from
# /proc/self/stat: the machine is shared, CPU time is the steadier figure).
ingest_seconds() {
    bench_psql "TRUNCATE runra_obs.sandbox_events" "CHECKPOINT" >/dev/null
    bench_as_user "$BENCH_BIN/psql" -X -q -At -h "$BENCH_DIR" -p "$BENCH_PORT" -d bench 2>&1 <<'SQL' | sed -n 's/.*NOTICE: *//p'
CREATE OR REPLACE FUNCTION pg_temp.cpu_s() RETURNS numeric LANGUAGE sql AS $$
    SELECT (split_part(s, ' ', 14)::numeric + split_part(s, ' ', 15)::numeric) / 100
    FROM pg_read_file('/proc/self/stat') AS s $$;
DO $$
DECLARE t0 timestamptz := clock_timestamp(); c0 numeric := pg_temp.cpu_s(); r record;
BEGIN
    SELECT * INTO r FROM runra_obs.ingest_jsonl((SELECT body FROM bench_n));
    RAISE NOTICE '% %', round(extract(epoch FROM clock_timestamp() - t0), 3), round(pg_temp.cpu_s() - c0, 2);
END $$;
SQL
}
set_destinations() {	# none, paused or active: 3 destinations selecting every event
    q "SELECT runra_obs.remove_destination(name) FROM runra_obs.destinations" >/dev/null
    [ "$1" = none ] && return
    for p in axiom otel jsonl; do
        q "SELECT runra_obs.add_destination('$p', '$p', '$(config_of $p)')" >/dev/null
        if [ "$1" = paused ]; then q "SELECT runra_obs.pause_destination('$p')" >/dev/null; fi
    done
}
declare -A wall cpu
for round in $(seq 1 "$ROUNDS"); do
    for c in none paused active; do
        set_destinations "$c"
        read -r w u < <(ingest_seconds)
        if [ "$c" = active ]; then for p in axiom otel jsonl; do wait_caught_up "$p"; done; fi
        echo "round $round, destinations $c: wall ${w}s, cpu ${u}s"
        if [ -z "${wall[$c]:-}" ] || awk "BEGIN{exit !($w < ${wall[$c]})}"; then wall[$c]=$w; fi
        if [ -z "${cpu[$c]:-}" ] || awk "BEGIN{exit !($u < ${cpu[$c]})}"; then cpu[$c]=$u; fi
    done
done
echo
echo "ingest_jsonl of $N events, best of $ROUNDS rounds (ratio: baseline time / this time):"
printf '%-44s %10s %7s %14s %7s\n' configuration events/s ratio "cpu us/event" ratio
for c in none paused active; do
    case $c in
        none)   label="no destination (baseline)" ;;
        paused) label="3 paused destinations" ;;
        active) label="3 active destinations (axiom, otel, jsonl)" ;;
    esac
    awk -v n="$N" -v w="${wall[$c]}" -v bw="${wall[none]}" -v u="${cpu[$c]}" -v bu="${cpu[none]}" -v l="$label" \
        'BEGIN { printf "%-44s %10.0f %7.2f %14.2f %7.2f\n", l, n / w, bw / w, u * 1e6 / n, (u > 0 ? bu / u : 1) }'
done

# ---- 3. lag under steady load ----
set_destinations active
per_commit=$((RATE / 10))
make_body bench_tick "$per_commit"
q "CREATE TABLE bench_lag (at timestamptz, destination text, behind_seconds float8)"
bench_psql "DO \$\$ BEGIN
    FOR i IN 1 .. $((SECONDS_LOAD * 10)) LOOP
        INSERT INTO bench_lag SELECT clock_timestamp(), destination, behind_seconds FROM runra_obs.forward_status;
        COMMIT;
        PERFORM pg_sleep(0.1);
    END LOOP; END \$\$" &
sampler=$!
t0=$(date +%s.%N)
bench_psql "DO \$\$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN
    FOR i IN 1 .. $((SECONDS_LOAD * 10)) LOOP
        PERFORM runra_obs.ingest_jsonl((SELECT body FROM bench_tick));
        COMMIT;
        PERFORM pg_sleep(greatest(0, 0.1 * i - extract(epoch FROM clock_timestamp() - t0)));
    END LOOP; END \$\$"
t1=$(date +%s.%N)
wait $sampler
echo
awk -v n=$((per_commit * SECONDS_LOAD * 10)) -v a="$t0" -v b="$t1" \
    'BEGIN { printf "lag under steady load: %.0f events/s offered for %.0f s, 3 destinations; behind_seconds sampled every 100 ms\n", n / (b - a), b - a }'
printf '%-12s %8s %8s %8s %8s\n' destination samples p50 p99 max
q "SELECT format('%-12s %8s %8s %8s %8s', destination, count(*),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY behind_seconds)::numeric, 2),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY behind_seconds)::numeric, 2),
              round(max(behind_seconds)::numeric, 2))
   FROM bench_lag GROUP BY destination ORDER BY destination"
echo
echo "targets: delivery >= 50000/s (axiom: ${rate[axiom]}, otel: ${rate[otel]}), >= 100000/s (jsonl: ${rate[jsonl]}); ingest ratio >= 0.95; lag p99 < 2 s"
bench_machine
