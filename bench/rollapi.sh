#!/usr/bin/env bash
# bench/rollapi.sh — the SQL API functions that read rollups for whole hours
# (cost_per_sandbox, cost_over_time, error_rate; extension/parts/
# 70_api_rollups.sql) against their raw-only versions (test/
# api_raw_reference.sql), over a 7-day window, in one run on a private
# cluster.
#
#   bench/rollapi.sh              1M generated events (bench/rollups.sql's generator)
#   bench/rollapi.sh --events N
#
# Each call is timed 5 times in one session, the median reported; the
# window is the last 7 days from an unaligned instant, so both ragged edges
# are read raw.  Also checks that both give the same rows.  Prints ratios,
# nothing is pass/fail.  The cluster lives under /tmp and is removed at the end.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
events=1000000
while [ $# -gt 0 ]; do
    case $1 in
        --events) events=$2; shift ;;
        *) echo "usage: $0 [--events N]" >&2; exit 2 ;;
    esac
    shift
done

BENCH_PORT=${BENCH_PORT:-$(( 40000 + $$ % 20000 ))}
. "$src/bench/lib.sh"
bench_cluster_start rollapi "work_mem = 64MB" "synchronous_commit = off" "jit = off" \
    "runra_obs.notify_channel = ''" "runra_obs.forward_enabled = off"
bench_as_user "$BENCH_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$BENCH_DIR" -p "$BENCH_PORT" -d bench \
    < "$src/bench/rollups.sql" >/dev/null

echo "runra_obs SQL API over rollups, $(date -u +%FT%TZ)"
bench_machine
t0=$(date +%s)
bench_psql "SELECT bench.generate(lo, least(lo + 249999, $events - 1), $events, now())
            FROM generate_series(0, $events - 1, 250000) AS lo" \
           "SELECT runra_obs._maintain_rollups()" "VACUUM ANALYZE" >/dev/null
echo "$events events over the last 7 days generated (rollup trigger on) and compacted in $(( $(date +%s) - t0 )) s"
echo

cat "$src/test/api_raw_reference.sql" - <<'EOF' \
    | bench_as_user "$BENCH_BIN/psql" -X -q -v ON_ERROR_STOP=1 -A -F ' ' -h "$BENCH_DIR" -p "$BENCH_PORT" -d bench
-- Median of 5 timed runs of a query, in ms.
CREATE FUNCTION pg_temp.ms(query text) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    runs numeric[] := '{}';
    t0 timestamptz;
BEGIN
    FOR i IN 1 .. 5 LOOP
        t0 := clock_timestamp();
        EXECUTE 'SELECT count(*) FROM (' || query || ') AS q';
        runs := runs || (extract(epoch FROM clock_timestamp() - t0) * 1000)::numeric;
    END LOOP;
    RETURN (SELECT round(percentile_disc(0.5) WITHIN GROUP (ORDER BY r), 2) FROM unnest(runs) AS r);
END
$$;
-- Whether two queries return the same rows, as text and in order.
CREATE FUNCTION pg_temp.same(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    x text[];
    y text[];
BEGIN
    EXECUTE 'SELECT array_agg(q::text) FROM (' || a || ') AS q' INTO x;
    EXECUTE 'SELECT array_agg(q::text) FROM (' || b || ') AS q' INTO y;
    RETURN x IS NOT DISTINCT FROM y;
END
$$;
\pset footer off
WITH w AS (
    SELECT format('%L::timestamptz', now() - interval '7 days' + interval '17 min 3 s') AS f,
           format('%L::timestamptz', now()) AS t
), calls(fn, args) AS (
    VALUES ('cost_per_sandbox', '%s, %s'),
           ('cost_over_time', '%s, %s, ''1 hour'''),
           ('cost_over_time', '%s, %s, ''1 day'''),
           ('error_rate', '%s, %s, ''5 minutes'''),
           ('error_rate', '%s, %s, ''1 hour''')
), q AS (
    SELECT c.fn || '(' || format(c.args, '7 days ago', 'now') || ')' AS call,
           format('SELECT * FROM runra_obs.%s(%s)', c.fn, format(c.args, w.f, w.t)) AS api,
           format('SELECT * FROM pg_temp.ref_%s(%s)', c.fn, format(c.args, w.f, w.t)) AS raw
    FROM calls AS c, w
)
SELECT rpad(call, 44) AS call, lpad(raw_ms::text, 9) AS raw_ms, lpad(rollup_ms::text, 9) AS rollup_ms,
       lpad(round(raw_ms / nullif(rollup_ms, 0), 1)::text, 7) AS speedup, same_rows
FROM (
    SELECT call, pg_temp.ms(raw) AS raw_ms, pg_temp.ms(api) AS rollup_ms, pg_temp.same(api, raw) AS same_rows
    FROM q
    OFFSET 0
) AS m;
EOF
