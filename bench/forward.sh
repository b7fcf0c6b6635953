#!/usr/bin/env bash
# bench/forward.sh — what forwarding costs and how fast it delivers.
#
#   1. Ingest cost of the selection trigger: runra_obs.ingest_jsonl() of
#      N generated events (default 200000) with no destination (no trigger:
#      the baseline), with a do-nothing transition-table trigger (what
#      COPY's row-by-row fallback alone costs), and with 1 and 3 (paused)
#      destinations selecting every event.  Best of ROUNDS (default 2)
#      interleaved rounds; events/s (wall) and the backend's CPU time per
#      1000 events, each with its ratio to the baseline.
#   2. Delivery: D events (default 50000) queued while the destination is
#      paused, then resumed; events/s until the queue is empty, batches of
#      1000, to a local receiver (OTLP/JSON, Axiom gzip) and to a JSONL file.
#
# Runs a private server from tmp_install/ in a scratch copy of the tree (as
# user runra_test when started as root), on a Unix socket only; the
# receiver listens on 127.0.0.1.  Usage: bench/forward.sh   (N=, D=, ROUNDS=)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/scripts/lib.sh"

if [ "$(id -u)" = 0 ]; then
    ensure_packages
    work=$(test_user_copy "$src" bench)
    exec runuser -u runra_test -- env N="${N:-}" D="${D:-}" ROUNDS="${ROUNDS:-}" "$work/bench/forward.sh"
fi

N=${N:-200000}
D=${D:-50000}
ROUNDS=${ROUNDS:-2}
cd "$src"
make -s temp-install >/dev/null
bin=$(dirname "$(find "$src/tmp_install" -name pg_ctl -type f | head -1)")
pgdata=$src/tmp_check/bench
sock=$(mktemp -d)
rm -rf "$pgdata" && mkdir -p "$(dirname "$pgdata")"
"$bin/initdb" -D "$pgdata" -A trust >/dev/null
cat >> "$pgdata/postgresql.conf" <<CONF
shared_preload_libraries = 'runra_obs'
listen_addresses = ''
unix_socket_directories = '$sock'
runra_obs.http_workers = 0
runra_obs.notify_channel = ''
runra_obs.forward_poll_interval = 100ms
CONF
"$bin/pg_ctl" -D "$pgdata" -l "$src/tmp_check/bench.log" -w start >/dev/null
trap '"$bin/pg_ctl" -D "$pgdata" -m fast stop >/dev/null; kill $rx_pid 2>/dev/null || true' EXIT
psql() { "$bin/psql" -h "$sock" -X -q -At -v ON_ERROR_STOP=1 postgres "$@"; }

psql -c 'CREATE EXTENSION runra_obs'
psql <<SQL
CREATE TABLE bench_body AS
SELECT string_agg(format('{"timestamp":"%s","sandboxId":"sb_%s","type":"%s","data":{"command":"npm test","exitCode":%s,"durationMs":%s}}',
                         to_char((now() - (i || ' ms')::interval) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                         i % 100, (ARRAY['exec.completed', 'sandbox.created', 'cost.runtime', 'tool.invoked'])[i % 4 + 1],
                         i % 3, i), E'\n') AS body
FROM generate_series(1, $N) AS i;
CREATE FUNCTION bench_noop() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN RETURN NULL; END \$\$;
SQL

# ---- 1. ingest cost ----
set_destinations() {	# n: that many paused jsonl destinations selecting everything
    psql -c "SELECT runra_obs.remove_destination(name) FROM runra_obs.destinations" >/dev/null
    for i in $(seq 1 "$1"); do
        psql -c "SELECT runra_obs.add_destination('d$i', 'jsonl', '{\"filePath\": \"/dev/null\"}');
                 SELECT runra_obs.pause_destination('d$i')" >/dev/null
    done
}
# Wall seconds and the backend's CPU seconds (user + system, from
# /proc/self/stat: the machine is shared, CPU time is the steadier figure).
ingest_seconds() {
    psql -c "TRUNCATE runra_obs.sandbox_events, runra_obs.outbox; CHECKPOINT" >/dev/null
    psql <<'SQL'
CREATE OR REPLACE FUNCTION pg_temp.cpu_s() RETURNS numeric LANGUAGE sql AS $$
    SELECT (split_part(s, ' ', 14)::numeric + split_part(s, ' ', 15)::numeric) / 100
    FROM pg_read_file('/proc/self/stat') AS s $$;
DO $$
DECLARE t0 timestamptz := clock_timestamp(); c0 numeric := pg_temp.cpu_s(); r record;
BEGIN
    SELECT * INTO r FROM runra_obs.ingest_jsonl((SELECT body FROM bench_body));
    RAISE NOTICE '% %', round(extract(epoch FROM clock_timestamp() - t0), 3), round(pg_temp.cpu_s() - c0, 2);
END $$;
SQL
}
declare -A wall cpu
configs="none noop 1 3"
for round in $(seq 1 "$ROUNDS"); do
    for c in $configs; do
        case $c in
            none) set_destinations 0 ;;
            noop) set_destinations 0
                  psql -c "CREATE TRIGGER bench_noop AFTER INSERT ON runra_obs.sandbox_events
                           REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION bench_noop()" ;;
            *)    set_destinations "$c" ;;
        esac
        read -r w u < <(ingest_seconds 2>&1 | sed -n 's/.*NOTICE: *//p')
        [ "$c" = noop ] && psql -c "DROP TRIGGER bench_noop ON runra_obs.sandbox_events"
        queued=$(psql -c "SELECT count(*) FROM runra_obs.outbox")
        echo "round $round  $c: wall ${w}s, cpu ${u}s  (outbox rows: $queued)"
        if [ -z "${wall[$c]:-}" ] || awk "BEGIN{exit !($w < ${wall[$c]})}"; then wall[$c]=$w; fi
        if [ -z "${cpu[$c]:-}" ] || awk "BEGIN{exit !($u < ${cpu[$c]})}"; then cpu[$c]=$u; fi
    done
done
echo
echo "ingest_jsonl of $N events, best of $ROUNDS rounds (ratio: baseline time / this time):"
printf '%-44s %10s %7s %14s %7s\n' configuration events/s ratio "cpu ms/1k ev" ratio
for c in $configs; do
    case $c in
        none) label="no destination (no trigger; baseline)" ;;
        noop) label="do-nothing transition trigger (COPY 1-by-1)" ;;
        1)    label="1 destination" ;;
        3)    label="3 destinations" ;;
    esac
    awk -v n="$N" -v w="${wall[$c]}" -v bw="${wall[none]}" -v u="${cpu[$c]}" -v bu="${cpu[none]}" -v l="$label" \
        'BEGIN { printf "%-44s %10.0f %7.2f %14.1f %7.2f\n", l, n / w, bw / w, u * 1e6 / n, bu / u }'
done

# ---- 2. delivery ----
set_destinations 0
psql -c "TRUNCATE runra_obs.sandbox_events, runra_obs.outbox"
psql -c "SELECT runra_obs.ingest_jsonl(string_agg(line, E'\n')) FROM (
             SELECT line FROM regexp_split_to_table((SELECT body FROM bench_body), E'\n') AS line
             LIMIT $D) AS l" >/dev/null
port_file=$(mktemp)
PERL5LIB="$(pg_config --pgxs | sed 's|/src/makefiles/pgxs.mk||')/src/test/perl:$src/t/lib" \
perl -Mforward::Receiver -e '
    my $rx = forward::Receiver->new(log_bodies => 0);
    open my $f, ">", $ARGV[0]; print $f $rx->url; close $f;
    $SIG{TERM} = sub { $rx->stop; exit 0 };
    sleep 1 while 1;' "$port_file" &
rx_pid=$!
while [ ! -s "$port_file" ]; do sleep 0.1; done
url=$(cat "$port_file")

deliver() {	# name provider config
    psql -c "SELECT runra_obs.add_destination('$1', '$2', '$3');
             SELECT runra_obs.pause_destination('$1')" >/dev/null
    psql -c "INSERT INTO runra_obs.outbox (destination_id, event_id, created_at, sandbox_id)
             SELECT d.id, e.id, e.created_at, e.sandbox_id
             FROM runra_obs.sandbox_events e, runra_obs.destinations d WHERE d.name = '$1'
             ON CONFLICT DO NOTHING" >/dev/null
    local t0 t1
    t0=$(date +%s.%N)
    psql -c "SELECT runra_obs.resume_destination('$1')" >/dev/null
    while [ "$(psql -c "SELECT queued FROM runra_obs.forward_status WHERE destination = '$1'")" != 0 ]; do
        sleep 0.05
    done
    t1=$(date +%s.%N)
    local sent
    sent=$(psql -c "SELECT sent FROM runra_obs.forward_status WHERE destination = '$1'")
    awk -v n="$sent" -v a="$t0" -v b="$t1" -v l="$1" 'BEGIN { printf "%-44s %12.0f %10.2fs\n", l, n / (b - a), b - a }'
    psql -c "SELECT runra_obs.remove_destination('$1')" >/dev/null
}
echo
echo "delivery of $D queued events, batches of 1000:"
printf '%-44s %12s %11s\n' destination events/s elapsed
deliver "otel (OTLP/HTTP JSON) to a local receiver" otel "{\"endpoint\": \"$url\", \"batchSize\": 1000, \"flushIntervalMs\": 0}"
deliver "axiom (gzip) to a local receiver" axiom "{\"url\": \"$url\", \"dataset\": \"b\", \"token\": \"t\", \"batchSize\": 1000, \"flushIntervalMs\": 0}"
deliver "jsonl (fsync per batch)" jsonl "{\"filePath\": \"$src/tmp_check/bench.jsonl\", \"maxFileSizeMb\": 1000, \"batchSize\": 1000, \"flushIntervalMs\": 0}"
echo
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
