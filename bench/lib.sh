# bench/lib.sh — shared by the bench/*.sh scripts: a throw-away cluster on the
# private server copy (tmp_install/), run as an unprivileged user.
#
#   bench_cluster_start NAME [extra postgresql.conf lines...]
#   bench_psql SQL...           run SQL in the bench database, unaligned
#   bench_cluster_stop

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_BIN=
BENCH_DATA=
BENCH_PORT=${BENCH_PORT:-5588}
BENCH_USER=$(id -un)
BENCH_DIR=

bench_as_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u runra_test -- "$@"; else "$@"; fi
}

bench_cluster_start() {
    local name=$1; shift
    . "$BENCH_SRC/scripts/lib.sh"
    ensure_packages
    make -C "$BENCH_SRC" -s temp-install >/dev/null
    BENCH_BIN=$(find "$BENCH_SRC/tmp_install" -path '*/bin/pg_ctl' -printf '%h\n' | head -1)
    if [ "$(id -u)" = 0 ]; then
        ensure_user runra_test
        BENCH_USER=runra_test
    fi
    BENCH_DIR=$(mktemp -d "/tmp/runra_obs-bench-$name.XXXXXX")
    BENCH_DATA=$BENCH_DIR/data
    chown "$BENCH_USER" "$BENCH_DIR"
    chmod 755 "$BENCH_DIR"
    bench_as_user "$BENCH_BIN/initdb" -D "$BENCH_DATA" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    {
        echo "port = $BENCH_PORT"
        echo "unix_socket_directories = '$BENCH_DIR'"
        echo "listen_addresses = ''"
        echo "shared_preload_libraries = 'runra_obs'"
        echo "runra_obs.database = 'bench'"
        echo "runra_obs.http_workers = 0"
        echo "shared_buffers = 1GB"
        echo "max_wal_size = 8GB"
        echo "checkpoint_timeout = 30min"
        for line in "$@"; do echo "$line"; done
    } >> "$BENCH_DATA/postgresql.conf"
    bench_as_user "$BENCH_BIN/pg_ctl" -D "$BENCH_DATA" -l "$BENCH_DIR/log" -w start >/dev/null
    bench_as_user "$BENCH_BIN/createdb" -h "$BENCH_DIR" -p "$BENCH_PORT" bench
    bench_psql "CREATE EXTENSION runra_obs" >/dev/null
    trap bench_cluster_stop EXIT
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
    [ -n "$BENCH_DATA" ] && bench_as_user "$BENCH_BIN/pg_ctl" -D "$BENCH_DATA" -m fast -w stop >/dev/null 2>&1
    [ -n "$BENCH_DIR" ] && rm -rf "$BENCH_DIR"
    BENCH_DATA=
}

bench_machine() {
    echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1); load average $(cut -d' ' -f1-3 /proc/loadavg)"
}
