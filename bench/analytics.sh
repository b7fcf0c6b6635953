#!/usr/bin/env bash
# bench/analytics.sh — what the analyst's SQL API costs, measured against
# the seed's own hand-written queries on the same data in the same run.
#
# Generates EVENTS events (default 1,000,000) spread over the last DAYS days
# (default 7) in a private cluster, then times each API function over a
# one-hour window and over the last 24 hours, and the seed's two example
# queries (slow executions, cost per sandbox) as the baseline.  Prints
# milliseconds per call and the ratios; no pass/fail.
#
#   bench/analytics.sh                  EVENTS=200000 DAYS=3 bench/analytics.sh
#
# As root it runs PostgreSQL as the user runra_test, on a copy of the tree
# in /tmp, like scripts/test.  The cluster listens on a Unix socket only.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
EVENTS=${EVENTS:-1000000}
DAYS=${DAYS:-7}
REPS=${REPS:-5}
. "$src/scripts/lib.sh"
ensure_packages

if [ "$(id -u)" = 0 ]; then
    work=$(test_user_copy "$src" bench)
    exec runuser -u runra_test -- env EVENTS="$EVENTS" DAYS="$DAYS" REPS="$REPS" "$work/bench/analytics.sh"
fi

cd "$src"
make -s temp-install >/dev/null
bindir=$(pwd)/tmp_install$(pg_config --bindir)
data=$(pwd)/tmp_check/bench-analytics
rm -rf "$data" && mkdir -p "$data"
"$bindir/initdb" -D "$data/db" -E UTF8 --no-locale >/dev/null
cat >> "$data/db/postgresql.conf" <<EOF
shared_preload_libraries = 'runra_obs'
runra_obs.http_workers = 0
runra_obs.notify_channel = ''
runra_obs.forward_enabled = off
runra_obs.database = 'postgres'
listen_addresses = ''
unix_socket_directories = '$data'
EOF
"$bindir/pg_ctl" -D "$data/db" -l "$data/log" -w start >/dev/null
trap '"$bindir/pg_ctl" -D "$data/db" -m fast stop >/dev/null' EXIT
psql() { "$bindir/psql" -X -q -h "$data" -d postgres -v ON_ERROR_STOP=1 "$@"; }

psql -c 'CREATE EXTENSION runra_obs'
echo "generating $EVENTS events over $DAYS days ..."
psql <<EOF
-- 1000 sandboxes, each sending blocks of ten events in order: exec.started,
-- exec.completed (1 in 17 failing), tool.invoked, its tool.completed (1 in 20
-- never answered), cost.runtime, resource.memory, file.read, network.egress,
-- resource.disk, resource.cpu; times rise evenly over the last $DAYS days.
INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type, data)
SELECT now() - interval '$DAYS days' * (1 - i::float8 / ($EVENTS + 1)),
       'sb_' || (i / 10 % 1000),
       CASE WHEN i % 10 = 3 AND i / 10 % 20 = 0 THEN 'file.created'
            ELSE (ARRAY['exec.started', 'exec.completed', 'tool.invoked', 'tool.completed', 'cost.runtime',
                        'resource.memory', 'file.read', 'network.egress', 'resource.disk',
                        'resource.cpu'])[1 + i % 10]
       END,
       jsonb_build_object('command', 'cmd ' || (i / 10 % 50), 'exitCode', (i / 10 % 17 = 0)::int,
                          'durationMs', (random() * 10000)::int, 'cost', round((random() / 100)::numeric, 6),
                          'toolName', 'tool' || (i / 10 % 7), 'memoryUsedMb', (random() * 2048)::int,
                          'memoryLimitMb', 2048, 'diskUsedMb', (random() * 10000)::int, 'diskLimitMb', 10000)
FROM generate_series(1, $EVENTS) AS i;
ANALYZE runra_obs.sandbox_events;
EOF

psql <<EOF
-- Milliseconds per call of a query, averaged over $REPS calls after one warm-up.
CREATE FUNCTION pg_temp.ms(query text) RETURNS numeric LANGUAGE plpgsql AS \$\$
DECLARE
    started timestamptz;
BEGIN
    EXECUTE 'SELECT count(*) FROM (' || query || ') AS q';
    started := clock_timestamp();
    FOR i IN 1..$REPS LOOP
        EXECUTE 'SELECT count(*) FROM (' || query || ') AS q';
    END LOOP;
    RETURN round(extract(epoch FROM clock_timestamp() - started) * 1000 / $REPS, 1);
END
\$\$;

CREATE TEMP TABLE queries (name text, query text);
INSERT INTO queries VALUES
    ('seed: slow executions',
     'SELECT sandbox_id, data->>''command'', data->>''durationMs'' FROM runra_obs.sandbox_events
      WHERE event_type = ''exec.completed'' AND (data->>''durationMs'')::int > 5000
        AND created_at >= %s AND created_at < %s ORDER BY created_at DESC LIMIT 20'),
    ('slow_execs', 'SELECT * FROM runra_obs.slow_execs(5000, %s, %s, 20)'),
    ('seed: cost per sandbox',
     'SELECT sandbox_id, SUM((data->>''cost'')::numeric) AS total_cost FROM runra_obs.sandbox_events
      WHERE event_type = ''cost.runtime'' AND created_at >= %s AND created_at < %s
      GROUP BY sandbox_id ORDER BY total_cost DESC'),
    ('cost_per_sandbox', 'SELECT * FROM runra_obs.cost_per_sandbox(%s, %s)'),
    ('cost_over_time', 'SELECT * FROM runra_obs.cost_over_time(%s, %s, ''5 minutes'')'),
    ('exec_latency', 'SELECT * FROM runra_obs.exec_latency(%s, %s)'),
    ('error_rate', 'SELECT * FROM runra_obs.error_rate(%s, %s)'),
    ('top_failing_commands', 'SELECT * FROM runra_obs.top_failing_commands(%s, %s)'),
    ('hand-written resource alert',
     'SELECT created_at, sandbox_id FROM runra_obs.sandbox_events
      WHERE event_type IN (''resource.memory'', ''resource.disk'') AND created_at >= %s AND created_at < %s
        AND CASE event_type
                WHEN ''resource.memory'' THEN (data->>''memoryUsedMb'')::numeric * 100 > 90 * (data->>''memoryLimitMb'')::numeric
                ELSE (data->>''diskUsedMb'')::numeric * 100 > 90 * (data->>''diskLimitMb'')::numeric
            END
      ORDER BY created_at DESC'),
    ('resource_alerts', 'SELECT * FROM runra_obs.resource_alerts(90, %s, %s)'),
    ('agent_activity', 'SELECT * FROM runra_obs.agent_activity WHERE invoked_at >= %s AND invoked_at < %s');

-- Each query over the hour before the last, and over the last 24 hours,
-- with JIT as the server has it (PostgreSQL's default: on) and without.
CREATE TEMP TABLE runs (name text, hour_ms numeric, day_ms numeric, hour_nojit_ms numeric, day_nojit_ms numeric);
INSERT INTO runs (name, hour_ms, day_ms)
SELECT name,
       pg_temp.ms(format(query, 'now() - interval ''2 hours''', 'now() - interval ''1 hour''')),
       pg_temp.ms(format(query, 'now() - interval ''24 hours''', 'now()'))
FROM queries;
SET jit = off;
UPDATE runs SET hour_nojit_ms = pg_temp.ms(format(q.query, 'now() - interval ''2 hours''', 'now() - interval ''1 hour''')),
                day_nojit_ms = pg_temp.ms(format(q.query, 'now() - interval ''24 hours''', 'now()'))
FROM queries AS q WHERE q.name = runs.name;

\echo
\echo 'milliseconds per call ($EVENTS events over $DAYS days, $REPS calls each; jit: server default, then off)'
SELECT name, hour_ms AS "1 h", day_ms AS "24 h",
       hour_nojit_ms AS "1 h, no jit", day_nojit_ms AS "24 h, no jit",
       round(day_nojit_ms / nullif(hour_nojit_ms, 0), 1) AS "24 h / 1 h, no jit"
FROM runs;
\echo 'the API against hand-written queries over the same 24 hours (jit off):'
SELECT round((SELECT day_nojit_ms FROM runs WHERE name = 'slow_execs')
             / (SELECT day_nojit_ms FROM runs WHERE name = 'seed: slow executions'), 2) AS "slow_execs / seed",
       round((SELECT day_nojit_ms FROM runs WHERE name = 'cost_per_sandbox')
             / (SELECT day_nojit_ms FROM runs WHERE name = 'seed: cost per sandbox'), 2) AS "cost_per_sandbox / seed",
       round((SELECT day_nojit_ms FROM runs WHERE name = 'resource_alerts')
             / (SELECT day_nojit_ms FROM runs WHERE name = 'hand-written resource alert'), 2) AS "resource_alerts / hand-written";
\echo 'sandbox_summary for one sandbox, and for all 1000 (jit off):'
SELECT pg_temp.ms('SELECT * FROM runra_obs.sandbox_summary WHERE sandbox_id = ''sb_7''') AS one_ms,
       pg_temp.ms('SELECT * FROM runra_obs.sandbox_summary') AS all_ms;
EOF
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
