#!/usr/bin/env bash
# bench/rollups.sh — what rollups save the dashboards, measured in one run
# on a private cluster.  (What they cost ingest: nothing on the insert path
# any more; the rollup consumer's fold rate and lag are in bench/ingest.sh.)
#
#   bench/rollups.sh            1M generated events
#   bench/rollups.sh --10m      1M, then a fresh week of 10M, in the same run
#   bench/rollups.sh --events N --keep
#
# Every panel of dashboards/*.json over the last 7 days, on the live
# rollup views and on raw events (bench/lib/panels.pl), at 1M and with
# --10m at 10M events, once the rollup worker has folded them.
# Prints ratios against baselines measured in the same run.  Nothing is
# pass/fail.  The cluster lives under /tmp and is removed at the end.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
events=1000000
big=0
keep=0
while [ $# -gt 0 ]; do
    case $1 in
        --10m) big=1 ;;
        --events) events=$2; shift ;;
        --keep) keep=1 ;;
        *) echo "usage: $0 [--10m] [--events N] [--keep]" >&2; exit 2 ;;
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
q() { "${PSQL[@]}" -d bench -A -t -c "$1"; }
ms_now() { date +%s%3N; }

echo "runra_obs rollups benchmark, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# ------------------------------------------------------------ dashboards
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
    echo "generated events up to $target (INSERT ... SELECT in 250k chunks): $(( (t1 - t0) / 1000 )) s"
    t0=$(ms_now)
    until [ "$(q "SELECT position >= (SELECT last_value FROM runra_obs.sandbox_events_id_seq)
                  FROM runra_obs.consumers WHERE name = 'rollups'")" = t ]; do sleep 0.5; done
    t1=$(ms_now)
    echo "the rollup worker caught up $(( (t1 - t0) / 1000 )) s after the last chunk"
    t0=$(ms_now)
    local compact
    compact=$(q "SELECT runra_obs._maintain_rollups()")
    t1=$(ms_now)
    echo "_maintain_rollups(): $compact in $(( t1 - t0 )) ms"
    q "VACUUM ANALYZE" >/dev/null
    q "SELECT format('raw events: %s rows, %s; rollup_5m %s rows, rollup_1h %s rows, rollup_1h_sandbox %s rows, rollup_sandbox %s rows, %s together',
              (SELECT count(*) FROM runra_obs.sandbox_events),
              pg_size_pretty((SELECT sum(total_bytes) FROM runra_obs.partitions)),
              (SELECT count(*) FROM runra_obs.rollup_5m), (SELECT count(*) FROM runra_obs.rollup_1h),
              (SELECT count(*) FROM runra_obs.rollup_1h_sandbox), (SELECT count(*) FROM runra_obs.rollup_sandbox),
              pg_size_pretty(pg_total_relation_size('runra_obs.rollup_5m') + pg_total_relation_size('runra_obs.rollup_1h')
                             + pg_total_relation_size('runra_obs.rollup_1h_sandbox')
                             + pg_total_relation_size('runra_obs.rollup_sandbox')
                             + pg_total_relation_size('runra_obs.rollup_sandbox_agent')))"
}

measure() {
    local n=$1 label=$2
    q "TRUNCATE runra_obs.sandbox_events, runra_obs.rollup_5m, runra_obs.rollup_1h,
                runra_obs.rollup_1h_sandbox, runra_obs.rollup_sandbox, runra_obs.rollup_sandbox_agent,
                runra_obs.ingest_1m" >/dev/null
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
