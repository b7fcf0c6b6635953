#!/usr/bin/env bash
# bench/citus.sh — runra_obs on one node and on a 3-node Citus cluster on
# this machine, the same events sent the same way to both, in one run; and
# from those figures a capacity estimate on paper (docs/citus.md, Capacity).
#
#   bench/citus.sh [EVENTS] [ROUNDS] [SESSIONS]
#                  defaults: 200000 events, 2 rounds, 2 sessions
#   CITUS_SHARDS=32         shards per day partition (distribute(shard_count))
#   CITUS_FOLD_CONNECTIONS=1  runra_obs.rollup_shard_connections: connections
#                           to each worker the timed fold uses
#   CAPACITY_NODE_CORES=16  cores of one node of the fleet's cluster, and
#   CAPACITY_BUSY=0.7       how busy its cores may be, for the estimate
#
# The events are bench/lib/fleet.sh's (bench/rollups.sql's generator: every
# event type, sandboxes of 500 events) in fleet order: 100 sandboxes live at
# once, each for about an hour (4 hours of events for 200k), so a
# 1000-event batch holds events of 100 sandboxes and, on Citus, reaches
# nearly every shard of the day's partition, as a fleet's batches do.
#
# First one node (PostgreSQL 15 with runra_obs), then a Citus cluster of a
# coordinator and two workers (scripts/citus-build's cached build in the
# private install; runra_obs.distribute(shard_count => CITUS_SHARDS)), each
# started from scratch, one after the other.  Both keep 9 days
# (runra_obs.retention), so both have the same 13 day partitions, and run
# without autovacuum (ANALYZE before the API question instead), so that no
# phase pays for a vacuum another phase caused.  On each,
# per round: SESSIONS psql sessions share the batches, one statement and one
# transaction per batch, first as psql's \copy (COPY into the table, which
# has no trigger: the ceiling; on Citus, COPY through Citus), then as
# runra_obs.ingest_jsonl(pg_read_file(...)), on the coordinator.  The best
# round of each is reported.
#
# On Citus the ingest sessions SET citus.max_adaptive_executor_pool_size = 1
# (one connection per worker per session).  At Citus's defaults a batch that
# reaches many shards opens up to 16 connections per worker and closes all
# but one at commit, so every batch forks and tears down backends on the
# workers; a short phase at the defaults (the first 10 batches, no SET)
# shows what that costs.
#
# The rollup worker is off, so ingest is measured alone.  After the rounds
# the events are sent once more as ingest_jsonl, then one API question,
# cost_per_sandbox over all the events' hours, is timed before the fold (every
# event read raw through the live views: on Citus a distributed query) and
# after it (rollups), and its rows are compared between the two servers;
# the fold itself, runra_obs.fold_rollups() as the rollup worker calls it,
# is timed as a phase of its own.
#
# Every phase also reads, for each server, the CPU time its processes used
# (bench_cpu_ticks), its WAL (pg_stat_wal), and what its busy client
# backends were doing (pg_stat_activity 20 times a second: how many, on
# average, were on CPU or waiting, on what), next to how busy the whole
# machine was.  The capacity estimate divides by the CPU the servers used,
# not by the machine's cores: on one 2-core machine the three Citus nodes
# share the same two cores, so the cluster's figures measure what
# coordination costs per event, not scale-out.
#
# Timings are for reading, never for pass/fail.
set -euo pipefail
events=${1:-200000}
rounds=${2:-2}
sessions=${3:-2}
shards=${CITUS_SHARDS:-32}
fold_connections=${CITUS_FOLD_CONNECTIONS:-1}
node_cores=${CAPACITY_NODE_CORES:-16}
busy=${CAPACITY_BUSY:-0.7}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib/fleet.sh"
BENCH_CITUS_DIR=$("$BENCH_SRC/scripts/citus-build") || {
    echo "no Citus build: scripts/citus-build says why above" >&2
    exit 1
}
tick=$(getconf CLK_TCK)
started=$SECONDS
default_batches=10

# Settings of every server, one node and Citus nodes alike.
common_conf=("runra_obs.rollup_enabled = off" "runra_obs.retention = '9d'" "jit = off" "autovacuum = off"
             "runra_obs.rollup_shard_connections = $fold_connections")
# What the ingest sessions on Citus say first.
citus_ingest_set="SET citus.max_adaptive_executor_pool_size = 1;"

bench_install
work=$(mktemp -d /tmp/runra_obs-bench-citus-work.XXXXXX)
chown "$BENCH_USER" "$work"
chmod 755 "$work"
cleanup() { bench_cluster_stop; rm -rf "$work"; }

# The servers of the setup being measured: names, data directories, ports.
node_names=() node_data=() node_ports=()

node_psql() {
    local port=$1; shift
    local args=() sql
    for sql in "$@"; do args+=(-c "$sql"); done
    bench_as_user "$BENCH_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$BENCH_DIR" -p "$port" -d bench "${args[@]}"
}

# every node: SQL
each_node() {
    local i
    for i in "${!node_names[@]}"; do node_psql "${node_ports[$i]}" "$@" >/dev/null; done
}

# -- what a phase used ------------------------------------------------------

# The figures, by "setup.kind.what" (setup: single or citus), the best
# round's; written out for the report at the end.
declare -A fig

# "cpu_ticks wal_bytes wal_syncs" of node $1 (an index) so far.
node_reading() {
    echo "$(bench_cpu_ticks "${node_data[$1]}")" \
         "$(node_psql "${node_ports[$1]}" "SELECT wal_bytes, wal_sync FROM pg_stat_wal" | tr '|' ' ')"
}

# Samples on every node, until $BENCH_DIR/stop exists, what the client
# backends other than the sampler are doing; at the end each sampler says
# (on stderr, $BENCH_DIR/busy.N) how many were busy on average, by what.
start_samplers() {
    local i
    rm -f "$BENCH_DIR/stop"
    sampler_pids=()
    for i in "${!node_names[@]}"; do
        node_psql "${node_ports[$i]}" "DO \$\$
DECLARE
    counts jsonb := '{}';
    k text;
    n integer := 0;
BEGIN
    WHILE pg_stat_file('$BENCH_DIR/stop', true) IS NULL LOOP
        FOR k IN SELECT CASE WHEN state = 'active' THEN coalesce(wait_event_type || ':' || wait_event, 'CPU')
                             ELSE state || coalesce(' ' || wait_event_type || ':' || wait_event, '') END
                 FROM pg_stat_activity
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND state <> 'idle' LOOP
            counts := jsonb_set(counts, ARRAY[k], to_jsonb(coalesce((counts->>k)::integer, 0) + 1));
        END LOOP;
        n := n + 1;
        COMMIT;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RAISE NOTICE 'busy: %', coalesce((SELECT string_agg(format('%s %s', key, round(value::numeric / n, 2)), ', '
                                                        ORDER BY value::numeric DESC)
                                      FROM jsonb_each_text(counts) WHERE value::numeric / n >= 0.01), 'none');
END \$\$" 2> "$BENCH_DIR/busy.$i" &
        sampler_pids+=($!)
    done
}

stop_samplers() {
    local p
    touch "$BENCH_DIR/stop"
    for p in "${sampler_pids[@]}"; do wait "$p"; done
}

# Runs KIND's sessions (bench_run_sessions: $BENCH_DIR/KIND.N.sql, N below
# SESSIONS) and, when faster than the best so far, records under
# "$setup.$KIND" its ms, EVENTS, and per node the CPU, WAL and busy line;
# the ms in $phase_ms.
run_phase() {
    local kind=$1 n=$2 sessions=${3:-$sessions} i ms before=() after=() m0 m1 best
    for i in "${!node_names[@]}"; do before[$i]=$(node_reading "$i"); done
    m0=$(bench_machine_ticks)
    start_samplers
    ms=$(bench_run_sessions "$kind" "$sessions")
    stop_samplers
    sleep 0.5   # the sessions' backends, and theirs on the workers, exit
    m1=$(bench_machine_ticks)
    for i in "${!node_names[@]}"; do after[$i]=$(node_reading "$i"); done
    phase_ms=$ms
    best=${fig[$setup.$kind.ms]:-}
    if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then
        fig[$setup.$kind.ms]=$ms
        fig[$setup.$kind.events]=$n
        fig[$setup.$kind.machine]=$(( m1 - m0 ))
        for i in "${!node_names[@]}"; do
            fig[$setup.$kind.node$i]=$(echo "${before[$i]} ${after[$i]}" | awk '{ print $4 - $1, $5 - $2, $6 - $3 }')
            fig[$setup.$kind.busy$i]=$(sed -n 's/^NOTICE:  busy: //p' "$BENCH_DIR/busy.$i")
        done
    fi
}

# Empties the log; moves the (idle) rollup consumer past the ids it has
# seen, so that the fold timed at the end folds one phase's events; a
# checkpoint on every node, so that no phase pays for the one before.
reset_store() {
    bench_psql "TRUNCATE runra_obs.sandbox_events" "SELECT runra_obs.fold_rollups()" >/dev/null
    each_node "CHECKPOINT"
}

check_stored() {
    local what=$1 want=$2 n
    n=$(bench_psql "SELECT count(*) FROM runra_obs.sandbox_events")
    [ "$n" = "$want" ] || { echo "$setup: $what stored $n of $want events" >&2; exit 1; }
    [ "${what#jsonl}" = "$what" ] || ! grep -qv '^0$' "$BENCH_DIR/$what".*.out ||
        { echo "$setup: ingest_jsonl rejected events" >&2; exit 1; }
}

# The ingest scripts of this setup; on Citus they SET the pool size first,
# and jsonl_default.N.sql sends the first batches without it.
write_scripts() {
    local s f
    bench_fleet_scripts "$work" "$sessions" '\copy'
    [ "$setup" = citus ] || return 0
    for s in $(seq 0 $((sessions - 1))); do
        head -$((default_batches / sessions)) "$BENCH_DIR/jsonl.$s.sql" > "$BENCH_DIR/jsonl_default.$s.sql"
        for f in copy jsonl; do
            { echo "$citus_ingest_set"; cat "$BENCH_DIR/$f.$s.sql"; } > "$BENCH_DIR/$f.$s.tmp"
            mv "$BENCH_DIR/$f.$s.tmp" "$BENCH_DIR/$f.$s.sql"
        done
    done
    chmod 644 "$BENCH_DIR"/*.sql
}

# The API question, over the whole generated span, on both servers alike.
api_sql() { echo "SELECT * FROM runra_obs.cost_per_sandbox('$window_from', '$window_to')"; }
api_md5() {
    bench_psql "SELECT md5(string_agg(c::text, E'\n' ORDER BY c.sandbox_id)) FROM ($(api_sql)) AS c"
}
api_best_ms() {   # best of 3
    local r t best=
    for r in 1 2 3; do
        t=$(bench_time_ms "$(api_sql)")
        best=$(echo "${best:-$t} $t" | awk '{ print ($1 < $2) ? $1 : $2 }')
    done
    echo "$best"
}

# Everything measured on the setup now running.
measure() {
    local r kind line
    write_scripts
    if [ "$setup" = citus ]; then
        reset_store
        run_phase jsonl_default "$(( default_batches / sessions * sessions * 1000 ))"
        check_stored jsonl_default "$(( default_batches / sessions * sessions * 1000 ))"
        echo "citus at Citus's default executor settings, first $default_batches batches as ingest_jsonl: $phase_ms ms"
    fi
    for r in $(seq "$rounds"); do
        line="$setup round $r:"
        for kind in copy jsonl; do
            reset_store
            run_phase "$kind" "$events"
            check_stored "$kind" "$events"
            line="$line $kind $phase_ms ms"
        done
        echo "$line"
    done
    # once more, for the API question and the fold
    reset_store
    run_phase jsonl "$events"
    check_stored jsonl "$events"
    bench_psql "ANALYZE runra_obs.sandbox_events"
    fig[$setup.api_raw]=$(api_best_ms)
    fig[$setup.md5_raw]=$(api_md5)
    echo "SELECT runra_obs.fold_rollups();" > "$BENCH_DIR/fold.0.sql"
    chmod 644 "$BENCH_DIR/fold.0.sql"
    fig[$setup.fold.ms]=
    run_phase fold "$events" 1
    [ "$(bench_psql "SELECT position >= (SELECT max(id) FROM runra_obs.sandbox_events)
                     FROM runra_obs.consumers WHERE name = 'rollups'")" = t ] ||
        { echo "$setup: fold_rollups() did not fold every event" >&2; exit 1; }
    fig[$setup.api_rollups]=$(api_best_ms)
    fig[$setup.md5_rollups]=$(api_md5)
    echo "$setup: API raw ${fig[$setup.api_raw]} ms, fold $phase_ms ms, API on rollups ${fig[$setup.api_rollups]} ms"
}

# -- one node ---------------------------------------------------------------

setup=single
bench_cluster_start citus-single "${common_conf[@]}"
trap cleanup EXIT
node_names=(node) node_data=("$BENCH_DATA") node_ports=("$BENCH_PORT")
bench_machine
m0=$(bench_machine_ticks); sleep 2; m1=$(bench_machine_ticks)
echo "before the run the machine was $(awk -v t="$(( m1 - m0 ))" -v k="$tick" 'BEGIN { printf "%.1f", t / k / 2 }') of $(nproc) cores busy"
bench_fleet_files "$events" "$work" fleet
# the window: the generated span in whole hours, a little more on both sides
IFS='|' read -r window_from window_to <<<"$(bench_psql "
    SELECT date_trunc('hour', '$(head -1 "$work/events.copy" | cut -f1)'::timestamptz - interval '1 hour'),
           date_trunc('hour', '$(tail -1 "$work/events.copy" | cut -f1)'::timestamptz + interval '2 hours')")"
echo "API question: cost_per_sandbox('$window_from', '$window_to'), best of 3"
measure

# The id sequence alone: SESSIONS sessions taking 1M ids each.
for s in $(seq 0 $((sessions - 1))); do
    echo "SELECT count(nextval('runra_obs.sandbox_events_id_seq')) FROM generate_series(1, 1000000);" > "$BENCH_DIR/seq.$s.sql"
done
chmod 644 "$BENCH_DIR"/seq.*.sql
fig[seq.ms]=$(bench_run_sessions seq "$sessions")
fig[seq.ids]=$(( sessions * 1000000 ))
bench_cluster_stop
echo "one node done after $(( SECONDS - started )) s"

# -- Citus: a coordinator and two workers -----------------------------------

setup=citus
bench_dir_make citus-cluster
trap cleanup EXIT
node_names=(coordinator worker1 worker2)
node_data=("$BENCH_DIR/coordinator" "$BENCH_DIR/worker1" "$BENCH_DIR/worker2")
node_ports=("$BENCH_PORT" $((BENCH_PORT + 1)) $((BENCH_PORT + 2)))
for i in 0 1 2; do
    bench_node_init "${node_data[$i]}" "${node_ports[$i]}" "${common_conf[@]}" \
        "shared_preload_libraries = 'citus,runra_obs'" "listen_addresses = '127.0.0.1'" \
        "citus.node_conninfo = 'sslmode=disable'" "max_worker_processes = 16"
    bench_node_start "${node_data[$i]}"
    node_psql "${node_ports[$i]}" "SET client_min_messages = warning" "CREATE EXTENSION citus"
done
BENCH_DATA=${node_data[0]}
bench_psql "SELECT citus_set_coordinator_host('127.0.0.1', ${node_ports[0]})" \
           "SELECT citus_add_node('127.0.0.1', ${node_ports[1]})" \
           "SELECT citus_add_node('127.0.0.1', ${node_ports[2]})" >/dev/null
bench_psql "SET client_min_messages = warning" "CREATE EXTENSION runra_obs"
bench_psql "SELECT * FROM runra_obs.distribute(shard_count => $shards)" >/dev/null
echo "Citus $(bench_psql "SELECT extversion FROM pg_extension WHERE extname = 'citus'"):" \
     "a coordinator and 2 workers on this machine; $(bench_psql "SELECT count(*) FROM runra_obs.partitions") day partitions" \
     "of $shards shards each, $(bench_psql "SELECT count(*) FROM pg_dist_shard") shards in all; set up after $(( SECONDS - started )) s"
measure
bench_cluster_stop

# -- the report -------------------------------------------------------------

for k in "${!fig[@]}"; do printf '%s %s\n' "$k" "${fig[$k]}"; done | sort > "$work/figures"
same=no
[ "${fig[single.md5_raw]}" = "${fig[citus.md5_raw]}" ] && [ "${fig[single.md5_raw]}" = "${fig[citus.md5_rollups]}" ] &&
    [ "${fig[single.md5_raw]}" = "${fig[single.md5_rollups]}" ] && same=yes
awk -v k="$tick" -v cores="$(nproc)" -v node_cores="$node_cores" -v busy="$busy" -v same="$same" \
    -v fold_connections="$fold_connections" \
    -v sessions="$sessions" -v rounds="$rounds" -v shards="$shards" -f - "$work/figures" <<'AWK'
{ v = $0; sub(/^[^ ]* /, "", v); f[$1] = v }
function ms(p)        { return f[p ".ms"] }
function n(p)         { return f[p ".events"] }
function rate(p)      { return n(p) / (ms(p) / 1000) }
function part(p, i, j, a) { split(f[p ".node" i], a, " "); return a[j] }
function cpu(p, i)    { return part(p, i, 1) / k }              # seconds of CPU of node i
function cpus(p, lo, hi,   i, t) { for (i = lo; i <= hi; i++) t += cpu(p, i); return t }
function us(p, i)     { return cpu(p, i) / n(p) * 1e6 }          # CPU microseconds per event
function ceil(x)      { return (x == int(x)) ? x : int(x) + 1 }
# whether W workers' fold backends, c on each, keep up with `work` cores of folding
function fold_keeps_up(work, c, w,   need) {
    need = ceil(work / (c * busy))
    return (need <= w) ? sprintf("keeps up on %d worker%s", w, (w == 1) ? "" : "s") : sprintf("needs %d workers", need)
}
function used(p, hi)  { return cpus(p, 0, hi) / (ms(p) / 1000) }
function machine(p)   { return f[p ".machine"] / k / (ms(p) / 1000) }
function line(label, p, hi,   i) {
    printf "  %-34s %9.0f events/s  servers used %.2f cores, %5.1f us CPU/event (machine: %.1f of %d cores busy)\n",
        label, rate(p), used(p, hi), cpus(p, 0, hi) / n(p) * 1e6, machine(p), cores
}
function node(label, p, i) {
    printf "      %-11s %5.1f us CPU/event, %4.0f B WAL/event, %4.1f WAL fsyncs/batch; busy backends: %s\n",
        label, us(p, i), part(p, i, 2) / n(p), part(p, i, 3) / (n(p) / 1000), f[p ".busy" i]
}
END {
    printf "\n== figures (best of %d rounds; %d sessions, 1000-event batches, fleet order) ==\n", rounds, sessions
    print "one node:"
    line("\\copy (the ceiling)", "single.copy", 0)
    line("ingest_jsonl", "single.jsonl", 0)
    line("rollup fold (fold_rollups)", "single.fold", 0)
    printf "Citus, coordinator + 2 workers on the same %d cores, %d shards a day, the fold over %d connection%s a worker:\n",
        cores, shards, fold_connections, (fold_connections == 1) ? "" : "s"
    line("\\copy through Citus (its ceiling)", "citus.copy", 2)
    line("ingest_jsonl", "citus.jsonl", 2)
    line("ingest_jsonl, Citus defaults", "citus.jsonl_default", 2)
    line("rollup fold (fold_rollups)", "citus.fold", 2)
    printf "ratios:\n"
    printf "  ingest_jsonl / \\copy:  one node %.2f, Citus %.2f\n", ms("single.copy") / ms("single.jsonl"), ms("citus.copy") / ms("citus.jsonl")
    printf "  Citus / one node:      \\copy %.2f, ingest_jsonl %.2f, fold %.2f (events/s)\n",
        ms("single.copy") / ms("citus.copy"), ms("single.jsonl") / ms("citus.jsonl"), ms("single.fold") / ms("citus.fold")
    c1 = cpus("single.jsonl", 0, 0) / n("single.jsonl"); cc = cpus("citus.jsonl", 0, 2) / n("citus.jsonl")
    printf "  CPU per event, Citus / one node: ingest_jsonl %.2f, \\copy %.2f\n", cc / c1,
        (cpus("citus.copy", 0, 2) / n("citus.copy")) / (cpus("single.copy", 0, 0) / n("single.copy"))
    printf "  Citus defaults / SET citus.max_adaptive_executor_pool_size = 1 (ingest_jsonl): %.3f\n",
        rate("citus.jsonl_default") / rate("citus.jsonl")
    printf "  cost_per_sandbox, all hours:  raw %.0f ms one node, %.0f ms Citus (%.1fx);  rollups %.0f ms, %.0f ms (%.1fx);  same rows everywhere: %s\n",
        f["single.api_raw"], f["citus.api_raw"], f["citus.api_raw"] / f["single.api_raw"],
        f["single.api_rollups"], f["citus.api_rollups"], f["citus.api_rollups"] / f["single.api_rollups"], same
    print "\n== where ingest_jsonl's time went =="
    print "  one node:"; node("node", "single.jsonl", 0)
    print "  Citus:"; node("coordinator", "citus.jsonl", 0); node("worker1", "citus.jsonl", 1); node("worker2", "citus.jsonl", 2)
    print "  Citus at its default executor settings:"
    node("coordinator", "citus.jsonl_default", 0); node("worker1", "citus.jsonl_default", 1); node("worker2", "citus.jsonl_default", 2)
    print "  the fold on Citus:"
    node("coordinator", "citus.fold", 0); node("worker1", "citus.fold", 1); node("worker2", "citus.fold", 2)

    # the capacity estimate: CPU seconds per event, ingest (ingest_jsonl)
    # and the fold together, by role
    s1 = (cpus("single.jsonl", 0, 0) + cpus("single.fold", 0, 0)) / n("single.jsonl")
    co = (cpu("citus.jsonl", 0) + cpu("citus.fold", 0)) / n("citus.jsonl")
    wk = (cpus("citus.jsonl", 1, 2) + cpus("citus.fold", 1, 2)) / n("citus.jsonl")
    fold_co = cpu("citus.fold", 0) / n("citus.fold")
    fold_wk = cpus("citus.fold", 1, 2) / n("citus.fold")   # both workers' CPU per event folded
    fold_1 = cpu("single.fold", 0) / n("single.fold")
    wal_w = (part("citus.jsonl", 1, 2) + part("citus.jsonl", 2, 2)) / n("citus.jsonl")
    seq = f["seq.ids"] / (f["seq.ms"] / 1000)
    print "\n== capacity on paper =="
    printf "per core the servers used (their CPU time; this machine has %d cores and the 3 Citus nodes shared them):\n", cores
    printf "  one node:  %6.0f events/s per core ingesting (ingest_jsonl), %6.0f with the fold; wall clock: %.0f events/s on %d cores\n",
        1 / c1, 1 / s1, rate("single.jsonl"), cores
    printf "  Citus:     %6.0f events/s per core ingesting, %6.0f with the fold, over all 3 nodes (%.2f of one node's)\n",
        1 / cc, 1 / (co + wk), s1 / (co + wk)
    printf "             coordinator %.1f us and workers %.1f us CPU per event (ingest and fold)\n", co * 1e6, wk * 1e6
    printf "             one coordinator core routes %.0f events/s\n", 1 / co
    # the fold on Citus: one process on the coordinator, and on each worker
    # a backend per connection folding that worker's shards
    printf "  the fold: on one node one process, at most %.0f events/s; on Citus the coordinator's one process at most %.0f events/s, and each connection to a worker at most %.0f events/s of that worker's shards\n",
        1 / fold_1, 1 / fold_co, 1 / fold_wk
    printf "  the id sequence: %.1f M nextval/s in %d sessions on one node\n", seq / 1e6, sessions
    wal_1 = part("single.jsonl", 0, 2) / n("single.jsonl")
    printf "a fleet of R events/s, nodes of %d cores at most %.0f%% busy (CPU only; the figures above scaled linearly):\n",
        node_cores, busy * 100
    split("100000 1000000", fleet, " ")
    for (x = 1; x <= 2; x++) {
        R = fleet[x]
        cc_cores = R * co / busy; w_cores = R * wk / busy; workers = ceil(w_cores / node_cores)
        printf "  %7d events/s:\n", R
        printf "    one node alone: %.0f cores, %.0f MB/s of WAL\n", R * s1 / busy, R * wal_1 / 1e6
        printf "    Citus: a coordinator of %.0f cores (%s), %d worker%s (%.0f cores), %.0f MB/s of WAL a worker\n",
            cc_cores, (cc_cores <= node_cores) ? "fits one node" : sprintf("%.1f nodes' worth: runra_obs takes ingest on one coordinator only", cc_cores / node_cores),
            workers, (workers == 1) ? "" : "s", w_cores, R * wal_w / workers / 1e6
        # a worker folds its shards over runra_obs.rollup_shard_connections
        # backends: with c of them, W workers keep up once R * fold_wk / W <= c * busy
        printf "    the fold: on one node %.1f cores' work for one process (%s); on Citus %.1f on the coordinator's one process (%s) and %.1f on the workers: %s with 1 connection a worker (runra_obs.rollup_shard_connections), %s with 4\n",
            R * fold_1, (R * fold_1 <= busy) ? "keeps up" : "falls behind",
            R * fold_co, (R * fold_co <= busy) ? "keeps up" : "falls behind", R * fold_wk,
            fold_keeps_up(R * fold_wk, 1, workers), fold_keeps_up(R * fold_wk, 4, workers)
        printf "    ids: %.0f%% of the rate the one sequence gave %d sessions here\n", R / seq * 100, sessions
    }
}
AWK
echo
echo "run took $(( SECONDS - started )) s"
