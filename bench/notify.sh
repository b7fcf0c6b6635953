#!/usr/bin/env bash
# bench/notify.sh — events/s through NOTIFY against direct runra_obs.ingest()
# of the same events, in one run, on a private cluster.
#
#   bench/notify.sh                      short run (20000 events per case)
#   EVENTS=100000 CLIENTS=4 bench/notify.sh
#
# Four cases, each sending EVENTS events with pgbench from CLIENTS sessions:
#   direct_1    SELECT runra_obs.ingest(<1 event>)            per transaction
#   notify_1    SELECT pg_notify('runra_events', <1 event>)    per transaction
#   direct_100  SELECT runra_obs.ingest(<array of 100 events>)
#   notify_100  SELECT pg_notify('runra_events', <array of 100 events>)
# The same bench_events() builds the JSON text in every case.  A direct
# case is done when pgbench is (each call commits); a NOTIFY case is done
# when the notify worker has stored every event (worker_status counter),
# so the figure is end-to-end ingest, not just sending.  Ratios are against
# the direct case with the same events per call.
#
# Needs what scripts/test needs; as root it runs as runra_test on a copy of
# the tree, like scripts/test.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/scripts/lib.sh"
ensure_packages

if [ "$(id -u)" = 0 ]; then
    work=$(test_user_copy "$src" bench)
    exec runuser -u runra_test -- env EVENTS="${EVENTS:-}" CLIENTS="${CLIENTS:-}" "$work/bench/notify.sh"
fi

EVENTS=${EVENTS:-20000}
CLIENTS=${CLIENTS:-2}
make -C "$src" -s temp-install >/dev/null
bindir=$(make -C "$src" -s --no-print-directory -f - print-bindir <<'MK'
include Makefile
print-bindir: ; @echo $(TMP_BINDIR)
MK
)
export PATH="$bindir:$PATH"

dir=$(mktemp -d /tmp/runra_obs_notify_bench.XXXXXX)
export PGHOST=$dir PGPORT=5432 PGDATABASE=postgres
cleanup() { pg_ctl -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT

initdb -D "$dir/data" -A trust -N >/dev/null
cat >> "$dir/data/postgresql.conf" <<CONF
shared_preload_libraries = 'runra_obs'
listen_addresses = ''
unix_socket_directories = '$dir'
runra_obs.http_workers = 0
runra_obs.forward_enabled = off
CONF
pg_ctl -D "$dir/data" -l "$dir/log" -w start >/dev/null
psql -XAtq <<'SQL'
CREATE EXTENSION runra_obs;
-- n compact events (an array when n > 1); short enough that 100 fit in
-- NOTIFY's 8000-byte payload limit
CREATE FUNCTION bench_events(n int, client int) RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN n = 1 THEN min(e) ELSE '[' || string_agg(e, ',') || ']' END
    FROM (SELECT '{"timestamp":"' || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                 || '","sandboxId":"sb' || client || '","type":"file.read"}' AS e
          FROM generate_series(1, n)) AS events
$$;
SQL
until [ "$(psql -XAtq -c "SELECT count(*) FROM runra_obs.worker_status WHERE state LIKE 'listening%'")" = 1 ]; do
    sleep 0.2
done

now() { date +%s.%N; }
ingested() { psql -XAtq -c "SELECT events_ingested FROM runra_obs.worker_status WHERE role = 'notify'"; }

# run_case name events_per_call sql: prints events/s
run_case() {
    local name=$1 per_call=$2 sql=$3
    local calls=$(( EVENTS / per_call / CLIENTS ))
    local total=$(( calls * CLIENTS * per_call ))
    local before start end
    printf '%s\n' "$sql" > "$dir/$name.sql"
    before=$(ingested)
    start=$(now)
    pgbench -n -c "$CLIENTS" -t "$calls" -f "$dir/$name.sql" >"$dir/$name.out" 2>&1 ||
        { cat "$dir/$name.out" >&2; return 1; }
    if [[ $name == notify_* ]]; then
        local deadline=$(( SECONDS + 300 ))
        until [ "$(ingested)" -ge $(( before + total )) ]; do
            [ $SECONDS -lt $deadline ] || { echo "$name: events still missing after 300 s" >&2; return 1; }
            sleep 0.02
        done
    fi
    end=$(now)
    echo "$total $start $end" | awk '{ printf "%.0f\n", $1 / ($3 - $2) }'
}

payload_bytes=$(psql -XAtq -c "SELECT octet_length(bench_events(100, 1))")
d1=$(run_case direct_1 1 "SELECT runra_obs.ingest(bench_events(1, :client_id)::jsonb);") || exit 1
n1=$(run_case notify_1 1 "SELECT pg_notify('runra_events', bench_events(1, :client_id));") || exit 1
d100=$(run_case direct_100 100 "SELECT runra_obs.ingest(bench_events(100, :client_id)::jsonb);") || exit 1
n100=$(run_case notify_100 100 "SELECT pg_notify('runra_events', bench_events(100, :client_id));") || exit 1

stored=$(psql -XAtq -c "SELECT count(*) FROM runra_obs.sandbox_events")
rejected=$(psql -XAtq -c "SELECT count(*) FROM runra_obs.rejected_events")
echo "runra_obs NOTIFY bench: $EVENTS events per case, $CLIENTS pgbench clients, $(nproc) cores"
echo "(100-event payload: $payload_bytes bytes; notify_batch_size and notify_flush_ms at their defaults)"
printf '%-12s %12s %10s\n' case events/s ratio
printf '%-12s %12s %10s\n' direct_1 "$d1" 1.00
printf '%-12s %12s %10s\n' notify_1 "$n1" "$(awk -v a="$n1" -v b="$d1" 'BEGIN { printf "%.2f", a / b }')"
printf '%-12s %12s %10s\n' direct_100 "$d100" 1.00
printf '%-12s %12s %10s\n' notify_100 "$n100" "$(awk -v a="$n100" -v b="$d100" 'BEGIN { printf "%.2f", a / b }')"
echo "stored $stored events, rejected $rejected"
