# bench/lib/fleet.sh — the fleet-shaped events the ingest benchmarks send,
# as files, and the psql scripts that send them.  Sourced after bench/lib.sh
# by bench/ingest.sh and bench/citus.sh.
#
#   bench_fleet_files EVENTS DIR [ORDER]
#       Generates EVENTS events in the bench cluster with bench/rollups.sql's
#       bench.generate() (every event type of the spec, sandboxes of 500
#       events, so 2000 sandboxes per million, over the 7 days before now),
#       writes them as the seed's JSONL lines (DIR/events.jsonl) and as COPY
#       text of the same rows (DIR/events.copy), both cut into 1000-event
#       batches (DIR/batches/jsonl.NNNNNN and copy.NNNNNN), empties the
#       table again and prints one line saying what it made.  May be
#       called again (another order, another DIR).
#       ORDER is the order the events arrive in:
#         id     as generated: one sandbox after the other, so a batch holds
#                the events of 2 or 3 sandboxes (bench/ingest.sh's order)
#         fleet  as a fleet sends them: 100 sandboxes live at once, each
#                for about an hour; their events interleaved, each
#                sandbox's in its own order, so a batch holds about 10
#                events of each of 100 sandboxes (and on Citus reaches
#                nearly every shard of the day); the timestamps laid out
#                again in arrival order, evenly over one hour per 100
#                sandboxes (4 hours for 200k events), ending where the
#                generated 7 days end.  Same rows otherwise.  (Spread
#                over the generator's 7 days, 100 live sandboxes would
#                send a handful of events an hour each, which no fleet
#                at a rate worth measuring does.)
#   bench_fleet_scripts DIR SESSIONS [COPY]
#       One script per session: every SESSIONS-th batch of DIR, one
#       statement and one transaction each, as $BENCH_DIR/copy.N.sql
#       ("COPY ... FROM 'file'" read by the server; COPY=\copy: psql's
#       \copy, read and sent by the client) and $BENCH_DIR/jsonl.N.sql
#       (runra_obs.ingest_jsonl(pg_read_file(...)), printing each batch's
#       failed count), for bench_run_sessions.

bench_fleet_files() {
    local events=$1 dir=$2 order=${3:-id} rows
    [ "$(bench_psql "SELECT to_regnamespace('bench') IS NOT NULL")" = t ] ||
        bench_as_user "$BENCH_BIN/psql" -X -q -h "$BENCH_DIR" -p "$BENCH_PORT" -d bench \
            -f "$BENCH_SRC/bench/rollups.sql" >/dev/null
    bench_psql "SELECT bench.generate(1, $events, $events, now())" >/dev/null
    case $order in
        id) rows="SELECT created_at, sandbox_id, event_type, data, trace_id
                  FROM runra_obs.sandbox_events ORDER BY id" ;;
        fleet) rows=$(bench_fleet_interleaved 100) ;;
        *) echo "bench_fleet_files: no order $order (id or fleet)" >&2; return 1 ;;
    esac
    mkdir -p "$dir/batches"
    chown "$BENCH_USER" "$dir" "$dir/batches"
    bench_psql "COPY (SELECT json_build_object('timestamp', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                                               'sandboxId', sandbox_id, 'type', event_type, 'data', data)::text
                      FROM ($rows) AS e) TO '$dir/events.jsonl'" \
               "COPY ($rows) TO '$dir/events.copy'"
    bench_as_user split -l 1000 -d -a 6 "$dir/events.jsonl" "$dir/batches/jsonl."
    bench_as_user split -l 1000 -d -a 6 "$dir/events.copy" "$dir/batches/copy."
    echo "events: $events over $(bench_psql 'SELECT count(DISTINCT sandbox_id) FROM runra_obs.sandbox_events') sandboxes," \
         "$(bench_psql 'SELECT count(DISTINCT event_type) FROM runra_obs.sandbox_events') event types," \
         "$(du -m "$dir/events.jsonl" | cut -f1) MB of JSONL, batches of 1000, in $order order"
    bench_psql "TRUNCATE runra_obs.sandbox_events"
}

# The generated events in fleet order (see above), LIVE sandboxes at once:
# sandbox s (numbered by its first event) is live in window (s - 1) / LIVE;
# a window's events arrive by their position in their sandbox, then by
# sandbox; the r-th event to arrive gets the r-th of n timestamps spread
# evenly over one hour per LIVE full sandboxes' worth of events, ending at
# the last generated one.
bench_fleet_interleaved() {
    cat <<SQL
SELECT t1 - windows * interval '1 hour' * ((n - r)::float8 / n) AS created_at,
       sandbox_id, event_type, data, trace_id
FROM (SELECT e.*, row_number() OVER (ORDER BY (s - 1) / $1, j, s) AS r,
             max(created_at) OVER () AS t1, count(*) OVER () AS n,
             ceil(count(*) OVER () / ($1 * max(j) OVER ())::numeric) AS windows
      FROM (SELECT e.*, row_number() OVER (PARTITION BY sandbox_id ORDER BY id) AS j,
                   dense_rank() OVER (ORDER BY first_id) AS s
            FROM (SELECT *, min(id) OVER (PARTITION BY sandbox_id) AS first_id
                  FROM runra_obs.sandbox_events) AS e) AS e) AS e
ORDER BY r
SQL
}

bench_fleet_scripts() {
    local dir=$1 sessions=$2 copy=${3:-COPY} s
    for s in $(seq 0 $((sessions - 1))); do
        ls "$dir/batches" | grep '^copy\.' | awk -v s="$s" -v n="$sessions" 'NR % n == s' |
            sed "s|^|${copy//\\/\\\\} runra_obs.sandbox_events (created_at, sandbox_id, event_type, data, trace_id) FROM '$dir/batches/|; s|\$|'|" |
            if [ "$copy" = COPY ]; then sed 's/$/;/'; else cat; fi > "$BENCH_DIR/copy.$s.sql"
        ls "$dir/batches" | grep '^jsonl\.' | awk -v s="$s" -v n="$sessions" 'NR % n == s' |
            sed "s|^|SELECT failed FROM runra_obs.ingest_jsonl(pg_read_file('$dir/batches/|; s|\$|'));|" \
            > "$BENCH_DIR/jsonl.$s.sql"
    done
    chmod 644 "$BENCH_DIR"/copy.*.sql "$BENCH_DIR"/jsonl.*.sql
}
