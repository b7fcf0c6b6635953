# bench/lib.sh — shared by the bench/*.sh scripts: a throw-away cluster on the
# private server copy (tmp_install/), run as an unprivileged user.
#
#   bench_cluster_start NAME [extra postgresql.conf lines...]
#   bench_psql SQL...           run SQL in the bench database, unaligned
#   bench_cluster_stop          stops every node started, removes $BENCH_DIR
#
# A benchmark with more than one server (bench/citus.sh) makes its other
# nodes with bench_node_init and bench_node_start, which bench_cluster_stop
# stops too.  BENCH_CITUS_DIR (scripts/citus-build's tree) puts Citus into
# the private install.

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_BIN=
BENCH_DATA=
BENCH_PORT=${BENCH_PORT:-5588}
BENCH_USER=$(id -un)
BENCH_DIR=
BENCH_NODES=()    # data directories of the servers started, to stop

bench_as_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u runra_test -- "$@"; else "$@"; fi
}

# The private server copy (tmp_install/), built once per run of a script.
bench_install() {
    [ -n "$BENCH_BIN" ] && return 0
    . "$BENCH_SRC/scripts/lib.sh"
    ensure_packages
    make -C "$BENCH_SRC" -s temp-install ${BENCH_CITUS_DIR:+CITUS_DIR="$BENCH_CITUS_DIR"} >/dev/null
    BENCH_BIN=$(find "$BENCH_SRC/tmp_install" -path '*/bin/pg_ctl' -printf '%h\n' | head -1)
    if [ "$(id -u)" = 0 ]; then
        ensure_user runra_test
        BENCH_USER=runra_test
    fi
}

# A new server in DATA on PORT (its socket in $BENCH_DIR), not started:
# the bench settings, then the extra postgresql.conf lines given.
bench_node_init() {
    local data=$1 port=$2 line; shift 2
    bench_as_user "$BENCH_BIN/initdb" -D "$data" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    {
        echo "port = $port"
        echo "unix_socket_directories = '$BENCH_DIR'"
        echo "listen_addresses = ''"
        echo "shared_preload_libraries = 'runra_obs'"
        echo "runra_obs.database = 'bench'"
        echo "runra_obs.http_workers = 0"
        echo "shared_buffers = 1GB"
        echo "max_wal_size = 8GB"
        echo "checkpoint_timeout = 30min"
        for line in "$@"; do echo "$line"; done
    } >> "$data/postgresql.conf"
}

# Starts the server in DATA (its log DATA.log) and creates the bench database.
bench_node_start() {
    local data=$1 port
    port=$(sed -n 's/^port = //p' "$data/postgresql.conf" | tail -1)
    bench_as_user "$BENCH_BIN/pg_ctl" -D "$data" -l "$data.log" -w start >/dev/null
    BENCH_NODES+=("$data")
    bench_as_user "$BENCH_BIN/createdb" -h "$BENCH_DIR" -p "$port" bench
}

# $BENCH_DIR: a new directory for the servers' data, sockets and scratch
# files, removed by bench_cluster_stop (at exit at the latest).
bench_dir_make() {
    BENCH_DIR=$(mktemp -d "/tmp/runra_obs-bench-$1.XXXXXX")
    chown "$BENCH_USER" "$BENCH_DIR"
    chmod 755 "$BENCH_DIR"
    trap bench_cluster_stop EXIT
}

bench_cluster_start() {
    local name=$1; shift
    bench_install
    bench_dir_make "$name"
    BENCH_DATA=$BENCH_DIR/data
    bench_node_init "$BENCH_DATA" "$BENCH_PORT" "$@"
    bench_node_start "$BENCH_DATA"
    bench_psql "CREATE EXTENSION runra_obs" >/dev/null
}

bench_psql() {
    local args=()
    local sql
    for sql in "$@"; do args+=(-c "$sql"); done
    bench_as_user "$BENCH_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$BENCH_DIR" -p "$BENCH_PORT" -d bench "${args[@]}"
}

# Milliseconds that one SQL statement took, as psql's \timing reports it.
bench_time_ms() {
    bench_psql '\timing on' "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
}

# Runs the scripts $BENCH_DIR/KIND.0.sql .. KIND.(SESSIONS-1).sql at once,
# one psql session each (stdout to KIND.N.out, stderr to KIND.N.err);
# prints the wall-clock ms until the last one ends.
bench_run_sessions() {
    local kind=$1 sessions=$2 start pids=() s p
    start=$(date +%s%N)
    for s in $(seq 0 $((sessions - 1))); do
        bench_as_user "$BENCH_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$BENCH_DIR" -p "$BENCH_PORT" -d bench \
            -f "$BENCH_DIR/$kind.$s.sql" > "$BENCH_DIR/$kind.$s.out" 2> "$BENCH_DIR/$kind.$s.err" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    echo $(( ($(date +%s%N) - start) / 1000000 ))
}

bench_cluster_stop() {
    local data
    for data in "${BENCH_NODES[@]}"; do
        bench_as_user "$BENCH_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
    done
    BENCH_NODES=()
    [ -n "$BENCH_DIR" ] && rm -rf "$BENCH_DIR"
    BENCH_DATA=
    BENCH_DIR=
}

# CPU time (in clock ticks, getconf CLK_TCK a second) the server in DATA has
# used so far: its postmaster's and every live child's user and system time,
# with the children it has already reaped (cutime, cstime).  The difference
# of two readings taken while no session comes or goes is what that server
# spent in between, on whichever cores.  A second argument leaves out the
# children whose command line matches it (bench/ingest.sh: the maintenance
# worker, whose once-a-minute compaction lands in whichever phase it hits).
bench_cpu_ticks() {
    local pm p skip=${2:-}
    pm=$(head -1 "$1/postmaster.pid")
    { echo "$pm"; ps -o pid= --ppid "$pm"; } | while read -r p; do
        [ -n "$skip" ] && grep -q "$skip" "/proc/$p/cmdline" 2>/dev/null && continue
        cat "/proc/$p/stat" 2>/dev/null || true
    done | sed 's/^.*) //' | awk '{ t += $12 + $13 + $14 + $15 } END { print t + 0 }'
}

# Busy clock ticks of the whole machine so far (every core, every process),
# from /proc/stat: user, nice, system, irq, softirq and steal.
bench_machine_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

bench_machine() {
    echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1); load average $(cut -d' ' -f1-3 /proc/loadavg)"
}
