#!/usr/bin/env bash
# bench/http.sh — how fast events get in over HTTP, against the baselines,
# all measured in one run on a private server:
#
#   1. the same N events into runra_obs.sandbox_events three ways:
#        COPY (psql \copy, one session)            the baseline
#        batched INSERTs of 100 rows (what the SDK's Postgres exporter does)
#        HTTP POST /v1/events, 1000-event JSON batches, 8 connections
#   2. group commit: 1 event per request, 64 concurrent connections,
#      synchronous_commit = on, against one transaction per request
#      (runra_obs.http_max_batch_requests = 1), same server, same load;
#      with the HTTP workers' RSS before and after.
#
#   bench/http.sh                    200k events, 10 s per group-commit run
#   bench/http.sh --events 1000000   1M events (the README's figures)
#   bench/http.sh --rounds 3         each of the three 3 times, interleaved; best of each
#   bench/http.sh --soak 600         also a 10-minute load, RSS before/after
#
# Data is generated on the fly; nothing is installed system-wide (the
# server is the private copy in tmp_install/, as for the tests).  As root it
# re-runs itself as the unprivileged user runra_test on a copy of the tree.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/scripts/lib.sh"

events=200000
gc_seconds=10
soak=0
rounds=1
while [ $# -gt 0 ]; do
    case $1 in
        --events) events=$2; shift 2 ;;
        --full) events=1000000; shift ;;
        --group-seconds) gc_seconds=$2; shift 2 ;;
        --soak) soak=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        *) echo "usage: $0 [--events N | --full] [--rounds R] [--group-seconds S] [--soak S]" >&2; exit 2 ;;
    esac
done
[ $((events % 1000)) -eq 0 ] || { echo "--events must be a multiple of 1000" >&2; exit 2; }

if [ "$(id -u)" = 0 ]; then
    ensure_packages
    work=$(test_user_copy "$src" bench)
    exec runuser -u runra_test -- "$work/bench/http.sh" --events "$events" --rounds "$rounds" \
        --group-seconds "$gc_seconds" --soak "$soak"
fi

cd "$src"
make -s temp-install >/dev/null
bindir=$src/tmp_install$(pg_config --bindir)
export PATH=$bindir:$PATH
run=$(mktemp -d /tmp/runra_bench.XXXXXX)
free_port() { perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:0")->sockport'; }
pgport=$(free_port)
httpport=$(free_port)
cc -O2 -o "$run/http_load" bench/http_load.c $(pkg-config --cflags --libs libcurl)

cleanup() { pg_ctl -D "$run/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$run"; }
trap cleanup EXIT

initdb -D "$run/data" -A trust -E UTF8 >/dev/null
cat >> "$run/data/postgresql.conf" <<EOF
port = $pgport
listen_addresses = ''
unix_socket_directories = '$run'
shared_preload_libraries = 'runra_obs'
runra_obs.http_workers = 2
runra_obs.http_port = $httpport
runra_obs.notify_channel = ''
runra_obs.forward_enabled = off
synchronous_commit = on
shared_buffers = 256MB
max_wal_size = 4GB
EOF
pg_ctl -D "$run/data" -l "$run/server.log" -w start >/dev/null
export PGHOST=$run PGPORT=$pgport PGDATABASE=postgres
psql -qAt -c 'CREATE EXTENSION runra_obs' >/dev/null
token=$(psql -qAt -c "SELECT runra_obs.create_ingest_token('bench')")
for _ in $(seq 100); do
    [ "$(psql -qAt -c "SELECT count(*) FROM runra_obs.worker_status WHERE role = 'http' AND state = 'listening'")" = 2 ] && break
    sleep 0.1
done

# ---- the events: 1000 distinct ones, repeated; the same for every method
perl - "$run" "$events" <<'PERL'
use strict; use warnings; use POSIX qw(strftime);
my ($dir, $n) = @ARGV;
my $ts = strftime('%Y-%m-%dT%H:%M:%SZ', gmtime);
my @types = qw(sandbox.created exec.completed file.written sandbox.terminated);
my @ev = map { [ $ts, "sb_bench_" . ($_ % 50), $types[$_ % 4],
    qq({"command":"python main.py --step $_","exitCode":0,"durationMs":$_,"stdoutBytes":1024}) ] } 0 .. 999;
open(my $json, '>', "$dir/batch.json") or die;
print $json '[' . join(',', map { qq({"timestamp":"$_->[0]","sandboxId":"$_->[1]","type":"$_->[2]","data":$_->[3]}) } @ev) . ']';
open(my $one, '>', "$dir/one.json") or die;
print $one qq({"timestamp":"$ev[0][0]","sandboxId":"$ev[0][1]","type":"$ev[0][2]","data":$ev[0][3]});
my $copy_rows = join('', map { join("\t", @$_) . "\n" } @ev);
my @values = map { "('$_->[0]','$_->[1]','$_->[2]','$_->[3]')" } @ev;
open(my $copy, '>', "$dir/copy.txt") or die;
open(my $sql, '>', "$dir/insert.sql") or die;
for (1 .. $n / 1000) {
    print $copy $copy_rows;
    for (my $i = 0; $i < 1000; $i += 100) {
        print $sql "INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type, data) VALUES ",
            join(',', @values[$i .. $i + 99]), ";\n";
    }
}
PERL

now() { date +%s.%N; }
fresh_table() { psql -qAt -c 'TRUNCATE runra_obs.sandbox_events' -c 'CHECKPOINT' >/dev/null; }
stored() { psql -qAt -c 'SELECT count(*) FROM runra_obs.sandbox_events'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
check() { [ "$(stored)" = "$1" ] || { echo "expected $1 events stored, found $(stored)" >&2; exit 1; }; }
rss() { for p in $(psql -qAt -c "SELECT pid FROM runra_obs.worker_status WHERE role = 'http' ORDER BY pid"); do
          printf 'pid %s %s; ' "$p" "$(awk '/^VmRSS/ { r = $2 } /^RssAnon/ { a = $2 } END { printf "RSS %d kB (private %d kB)", r, a }' /proc/$p/status)"; done; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "events: $events (1000 distinct, $(wc -c < "$run/batch.json") bytes per 1000 as JSON)"

elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { print b - a }'; }
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }
t_copy=; t_insert=; t_http=
for round in $(seq "$rounds"); do
    fresh_table; t0=$(now)
    psql -qAt -c "\\copy runra_obs.sandbox_events (created_at, sandbox_id, event_type, data) FROM '$run/copy.txt'" >/dev/null
    t_copy=$(best "$t_copy" "$(elapsed "$t0")"); check "$events"

    fresh_table
    out=$("$run/http_load" "http://127.0.0.1:$httpport/v1/events" "$token" "$run/batch.json" application/json $((events / 1000)) 8)
    t_http=$(best "$t_http" "$(sed 's/.*seconds=\([0-9.]*\).*/\1/' <<<"$out")"); check "$events"

    fresh_table; t0=$(now)
    psql -qAt -f "$run/insert.sql" >/dev/null
    t_insert=$(best "$t_insert" "$(elapsed "$t0")"); check "$events"
done
split=$(psql -qAt -c "SELECT string_agg(events_ingested::text, ' ' ORDER BY pid) FROM runra_obs.worker_status WHERE role = 'http'")

r_copy=$(rate "$events" "$t_copy"); r_insert=$(rate "$events" "$t_insert"); r_http=$(rate "$events" "$t_http")
printf '%-34s %10s events/s  %6.2f s\n' "COPY (psql \\copy)" "$r_copy" "$t_copy" \
    "INSERT, 100 rows per statement" "$r_insert" "$t_insert" \
    "HTTP, 1000 per request, 8 conns" "$r_http" "$t_http"
echo "HTTP events per worker: $split (the kernel spreads connections over the workers by hash)"
[ "$rounds" -gt 1 ] && echo "(best of $rounds interleaved rounds each)"
echo "HTTP / COPY   = $(ratio "$r_http" "$r_copy")"
echo "HTTP / INSERT = $(ratio "$r_http" "$r_insert")"

# ---- group commit
fresh_table
echo "worker RSS before the group-commit runs: $(rss)"
metric() { curl -s "http://127.0.0.1:$httpport/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
# runs the 1-event load; prints its result line, then requests per commit and mean commit time
group_run() {
    local c0 b0 s0 out c b s
    c0=$(metric runra_obs_http_batch_commit_seconds_count); b0=$(metric runra_obs_http_batched_requests_total)
    s0=$(metric runra_obs_http_batch_commit_seconds_sum)
    out=$("$run/http_load" "http://127.0.0.1:$httpport/v1/events" "$token" "$run/one.json" application/json 0 64 "$gc_seconds" || true)
    c=$(( $(metric runra_obs_http_batch_commit_seconds_count) - c0 ))
    b=$(( $(metric runra_obs_http_batched_requests_total) - b0 ))
    s=$(awk -v a="$s0" -v b="$(metric runra_obs_http_batch_commit_seconds_sum)" -v c="$c" 'BEGIN { printf "%.2f", (b - a) * 1000 / c }')
    echo "$out; $(ratio "$b" "$c") requests per commit, $s ms per write+commit"
}
group=$(group_run)
psql -qAt -c 'ALTER SYSTEM SET runra_obs.http_max_batch_requests = 1' -c 'SELECT pg_reload_conf()' >/dev/null
sleep 1.5
single=$(group_run)
psql -qAt -c 'ALTER SYSTEM RESET runra_obs.http_max_batch_requests' -c 'SELECT pg_reload_conf()' >/dev/null
g_rate=$(sed 's/.*per_second=\([0-9.]*\).*/\1/' <<<"$group"); s_rate=$(sed 's/.*per_second=\([0-9.]*\).*/\1/' <<<"$single")
echo "group commit (64 conns, 1 event/request, synchronous_commit on):"
echo "  $group"
echo "one transaction per request (same load, http_max_batch_requests = 1):"
echo "  $single"
echo "group / one per request = $(ratio "$g_rate" "$s_rate")"
echo "worker RSS after: $(rss)"
acked=$(( $(sed 's/.*ok=\([0-9]*\).*/\1/' <<<"$group") + $(sed 's/.*ok=\([0-9]*\).*/\1/' <<<"$single") ))
echo "stored events: $(stored), acknowledged: $acked"

if [ "$soak" -gt 0 ]; then
    echo "soak: ${soak}s of 64 connections, 1 event per request; RSS before: $(rss)"
    "$run/http_load" "http://127.0.0.1:$httpport/v1/events" "$token" "$run/one.json" application/json 0 64 "$soak" || true
    echo "soak: RSS after: $(rss)"
fi
