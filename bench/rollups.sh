#!/usr/bin/env bash
# bench/rollups.sh — what rollups cost at ingest and what they save the
# dashboards, measured in one run on a private cluster.
#
#   bench/rollups.sh            1M generated events
#   bench/rollups.sh --10m      1M, then a fresh week of 10M, in the same run
#   bench/rollups.sh --events N --skip-ingest --ingest-only --keep
#
# 1. Ingest: runra_obs.ingest() (COPY) throughput with pgbench, 2 clients,
#    3 s cells in rotation, median of 3 rounds,
#    batches of 1000 and of 1 event, for each way of keeping rollups:
#    no trigger (baseline), the rollup trigger, a do-nothing transition-
#    table trigger (what forwarding's trigger costs alone), both, and the
#    watermark alternative (an index on ingested_at to find new events,
#    no trigger) with the cost of its fold.
# 2. Dashboards: every panel of dashboards/*.json over the last 7 days, on
#    rollups and on raw events (bench/lib/panels.pl), at 1M and with --10m
#    at 10M events.
# Prints ratios against baselines measured in the same run.  Nothing is
# pass/fail.  The cluster lives under /tmp and is removed at the end.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
events=1000000
big=0
skip_ingest=0
ingest_only=0
keep=0
while [ $# -gt 0 ]; do
    case $1 in
        --10m) big=1 ;;
        --events) events=$2; shift ;;
        --skip-ingest) skip_ingest=1 ;;
        --ingest-only) ingest_only=1 ;;
        --keep) keep=1 ;;
        *) echo "usage: $0 [--10m] [--events N] [--skip-ingest] [--ingest-only] [--keep]" >&2; exit 2 ;;
    esac
    shift
done

. "$src/scripts/lib.sh"
ensure_packages
make -s -C "$src" temp-install >/dev/null
bindir=$(find "$src/tmp_install" -name pg_ctl -path '*/bin/*' -printf '%h\n' | head -1)
chmod -R a+rX "$src/tmp_install"

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u runra_test -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && ensure_user runra_test
work=$(mktemp -d /tmp/runra_obs-bench.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" = 0 ] && chown runra_test "$work"
port=$(( 40000 + $$ % 20000 ))
cleanup() {
    as_pg "$bindir/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
    [ $keep = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

as_pg "$bindir/initdb" -D "$work/data" -U postgres -E UTF8 --locale=C >/dev/null
cat >> "$work/data/postgresql.conf" <<EOF
shared_preload_libraries = 'runra_obs'
runra_obs.http_workers = 0
runra_obs.notify_channel = ''
runra_obs.forward_enabled = off
runra_obs.database = 'bench'
listen_addresses = ''
unix_socket_directories = '$work'
port = $port
shared_buffers = 1GB
work_mem = 64MB
max_wal_size = 8GB
checkpoint_timeout = 30min
synchronous_commit = off
jit = off
EOF
as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/log" -w start >/dev/null
PSQL=("$bindir/psql" -X -q -h "$work" -p "$port" -U postgres)
"${PSQL[@]}" -d postgres -c 'CREATE DATABASE bench'
"${PSQL[@]}" -d bench -c 'CREATE EXTENSION runra_obs' -f "$src/bench/rollups.sql" >/dev/null
"${PSQL[@]}" -d bench >/dev/null <<'EOF'
DO $$
BEGIN
    -- stand-in for forwarding's status view on branches without it
    IF to_regclass('runra_obs.forward_status') IS NULL THEN
        CREATE VIEW runra_obs.forward_status AS
        SELECT NULL::text AS destination, NULL::text AS provider, NULL::boolean AS enabled,
               NULL::bigint AS queued, NULL::interval AS oldest_queued_age, NULL::bigint AS sent,
               NULL::bigint AS failed, NULL::bigint AS dead_lettered,
               NULL::timestamptz AS last_success, NULL::text AS last_error
        WHERE false;
    END IF;
END
$$;
EOF
q() { "${PSQL[@]}" -d bench -A -t -c "$1"; }
ms_now() { date +%s%3N; }

echo "runra_obs rollups benchmark, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# ---------------------------------------------------------------- ingest
if [ $skip_ingest = 0 ]; then
    q "CREATE TABLE bench.batches AS
       SELECT n, (SELECT jsonb_agg(jsonb_build_object(
                      'timestamp', to_char(now() - (i % 120) * interval '1 second', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                      'sandboxId', 'sb_ingest_' || i % 40, 'type', (ARRAY['exec.completed', 'tool.invoked', 'resource.memory', 'cost.runtime'])[1 + i % 4],
                      'data', jsonb_build_object('command', 'cmd_' || i % 7, 'exitCode', i % 2, 'durationMs', i,
                                                 'toolName', 't', 'agentId', 'a', 'memoryUsedMb', 100, 'memoryLimitMb', 1000,
                                                 'cost', 0.001)))
                   FROM generate_series(1, n) AS i) AS body
       FROM (VALUES (1), (1000)) AS v(n)" >/dev/null
    for n in 1 1000; do
        echo "SELECT ingested FROM runra_obs.ingest((SELECT body FROM bench.batches WHERE n = $n));" > "$work/ingest_$n.sql"
    done
    chmod a+r "$work"/ingest_*.sql
    # Each mode is set from scratch, so modes can be measured in any order.
    mode() {
        q "ALTER TABLE runra_obs.sandbox_events DISABLE TRIGGER sandbox_events_rollup;
           DROP TRIGGER IF EXISTS bench_noop ON runra_obs.sandbox_events;
           DROP INDEX IF EXISTS runra_obs.bench_ingested_at_idx" >/dev/null 2>&1
        case $1 in
            rollup|noop+rollup) q "ALTER TABLE runra_obs.sandbox_events ENABLE TRIGGER sandbox_events_rollup" ;;
        esac >/dev/null
        case $1 in
            noop|noop+rollup) q "CREATE TRIGGER bench_noop AFTER INSERT ON runra_obs.sandbox_events
                                 REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION bench.noop()" ;;
            watermark) q "CREATE INDEX bench_ingested_at_idx ON runra_obs.sandbox_events (ingested_at)" ;;
        esac >/dev/null
    }
    modes=(baseline rollup noop noop+rollup watermark)
    declare -A runs
    rounds=3
    echo "Ingest: runra_obs.ingest() with pgbench, 2 clients, empty table, 3 s per cell, median of $rounds rounds taken in rotation"
    for round in $(seq $rounds); do
        for m in "${modes[@]}"; do
            mode "$m"
            for n in 1000 1; do
                q "TRUNCATE runra_obs.sandbox_events, runra_obs.rollup_5m, runra_obs.rollup_1h,
                            runra_obs.rollup_1h_sandbox, runra_obs.ingest_1m" >/dev/null
                tps=$(as_pg "$bindir/pgbench" -n -c 2 -j 2 -T 3 -h "$work" -p "$port" -U postgres -f "$work/ingest_$n.sql" bench 2>/dev/null \
                      | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
                runs[$m,$n]+="$(awk -v t="$tps" -v n=$n 'BEGIN { printf "%.0f", t * n }') "
            done
        done
    done
    median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
    printf '%-14s %22s %22s   %s\n' "mode" "batch of 1000 (ev/s)" "batch of 1 (ev/s)" "(ratio to baseline)"
    for m in "${modes[@]}"; do
        line=$(printf '%-14s' "$m")
        for n in 1000 1; do
            med=$(echo "${runs[$m,$n]}" | median)
            basemed=$(echo "${runs[baseline,$n]}" | median)
            line+=$(printf ' %13s (%4.0f%%)' "$med" "$(awk -v a="$med" -v b="$basemed" 'BEGIN { print 100 * a / b }')")
        done
        echo "$line   runs: ${runs[$m,1000]}/ ${runs[$m,1]}"
    done
    # the watermark's other half: folding what came in since the last fold,
    # with the same fold statement the trigger runs, over 50 batches of 1000
    mode watermark
    q "TRUNCATE runra_obs.sandbox_events" >/dev/null
    for i in $(seq 50); do echo "SELECT ingested FROM runra_obs.ingest((SELECT body FROM bench.batches WHERE n = 1000));"; done \
        | "${PSQL[@]}" -d bench -A -t >/dev/null
    fold_ms=$( { echo '\timing on'; echo "DO \$\$ BEGIN EXECUTE runra_obs._rollup_fold_sql(
            '(SELECT * FROM runra_obs.sandbox_events
              WHERE ingested_at >= now() - interval ''1 hour''
                AND pg_visible_in_snapshot((((pg_current_xact_id()::text::bigint >> 32) << 32)
                                            + xmin::text::bigint)::text::xid8, pg_current_snapshot())) AS e',
            false); END \$\$;"; } | "${PSQL[@]}" -d bench -A -t | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
    echo "watermark fold (events found by ingested_at, visibility by xid, then the same fold statement): 50000 events in ${fold_ms} ms"
    mode rollup
    q "TRUNCATE runra_obs.sandbox_events, runra_obs.rollup_5m, runra_obs.rollup_1h, runra_obs.rollup_1h_sandbox, runra_obs.ingest_1m" >/dev/null
    "${PSQL[@]}" -d bench -A -t -c "SELECT ingested FROM runra_obs.ingest((SELECT body FROM bench.batches WHERE n = 1000))" >/dev/null
    echo "rollup trigger freshness: a committed batch of 1000 is in the rollups when ingest() returns: rollup_5m counts $(q 'SELECT sum(events) FROM runra_obs.rollup_5m'), rollup_1h_sandbox $(q 'SELECT sum(events) FROM runra_obs.rollup_1h_sandbox')"
    # compaction in steady state: the deltas of 3 s of ingest by 2 clients
    as_pg "$bindir/pgbench" -n -c 2 -j 2 -T 3 -h "$work" -p "$port" -U postgres -f "$work/ingest_1000.sql" bench >/dev/null 2>&1
    deltas=$(q "SELECT (SELECT count(*) FROM runra_obs.rollup_5m) + (SELECT count(*) FROM runra_obs.rollup_1h)
                     + (SELECT count(*) FROM runra_obs.rollup_1h_sandbox)")
    t0=$(ms_now)
    compact=$(q "SELECT runra_obs._maintain_rollups()")
    echo "compaction after 3 s of ingest ($(q 'SELECT count(*) FROM runra_obs.sandbox_events') events, $deltas delta rows): $compact in $(( $(ms_now) - t0 )) ms"
    q "TRUNCATE runra_obs.sandbox_events, runra_obs.rollup_5m, runra_obs.rollup_1h, runra_obs.rollup_1h_sandbox, runra_obs.ingest_1m" >/dev/null
    echo
fi

# ------------------------------------------------------------ dashboards
if [ $ingest_only = 1 ]; then exit 0; fi
upto=$(q "SELECT now()")
generated=0
grow() {
    local target=$1 chunk=250000 t0 t1
    t0=$(ms_now)
    while [ $generated -lt $target ]; do
        local hi=$(( generated + chunk - 1 ))
        [ $hi -ge $target ] && hi=$(( target - 1 ))
        q "SELECT bench.generate($generated, $hi, $events_total, '$upto')" >/dev/null
        generated=$(( hi + 1 ))
    done
    t1=$(ms_now)
    echo "generated events up to $target (INSERT ... SELECT in 250k chunks, rollup trigger on): $(( (t1 - t0) / 1000 )) s"
    t0=$(ms_now)
    local compact
    compact=$(q "SELECT runra_obs._maintain_rollups()")
    t1=$(ms_now)
    echo "_maintain_rollups(): $compact in $(( t1 - t0 )) ms"
    q "VACUUM ANALYZE" >/dev/null
    q "SELECT format('raw events: %s rows, %s; rollup_5m %s rows, rollup_1h %s rows, rollup_1h_sandbox %s rows, %s together',
              (SELECT count(*) FROM runra_obs.sandbox_events),
              pg_size_pretty((SELECT sum(total_bytes) FROM runra_obs.partitions)),
              (SELECT count(*) FROM runra_obs.rollup_5m), (SELECT count(*) FROM runra_obs.rollup_1h),
              (SELECT count(*) FROM runra_obs.rollup_1h_sandbox),
              pg_size_pretty(pg_total_relation_size('runra_obs.rollup_5m') + pg_total_relation_size('runra_obs.rollup_1h')
                             + pg_total_relation_size('runra_obs.rollup_1h_sandbox')))"
}

measure() {
    local n=$1 label=$2
    q "TRUNCATE runra_obs.sandbox_events, runra_obs.rollup_5m, runra_obs.rollup_1h,
                runra_obs.rollup_1h_sandbox, runra_obs.ingest_1m" >/dev/null
    generated=0
    events_total=$n
    echo "Dashboards at $label events over 7 days"
    grow "$n"
    perl "$src/bench/lib/panels.pl" "$src" "$label" -h "$work" -p "$port" -U postgres -d bench
    echo
}
measure "$events" "$(awk -v n="$events" 'BEGIN { if (n % 1000000 == 0) print n / 1000000 "M"; else print n }')"
if [ $big = 1 ]; then
    measure 10000000 10M
fi
