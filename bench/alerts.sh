#!/usr/bin/env bash
# bench/alerts.sh — whether the alert worker evaluates its rules on time:
# RULES rules every minute over EVENTS events of a fleet, in one run on a
# private cluster.
#
#   1. EVENTS events (default 10,000,000) of SANDBOXES sandboxes (5000)
#      running at once, every event type, spread over the last DAYS days
#      (7) up to now (bench/alerts.sql's generator, two sessions of
#      INSERT ... SELECT), folded into the rollups, VACUUM ANALYZE; from
#      then on to the end the fleet keeps sending at the rate it was
#      generated (the first second catching up with the time the load took).
#   2. RULES rules (1000) every minute, created with create_alert(), every
#      kind and grouping in turn (bench.variants), no contact points.
#   3. The baseline: SAMPLE rules (5) of each variant evaluated by hand,
#      one transaction each, as the worker calls _alert_evaluate(); ms per
#      evaluation, and from it the share of a minute the rules should take.
#   4. The worker: every rule due at once (SPREAD=1: over the minute) for
#      MINUTES minutes (3); alert_rule_runs sampled every second.  The lag of an
#      evaluation is when it ran (last_eval_at) after the slot it was due
#      (next_eval_at before it ran); evaluations done against due; the
#      share of each minute the worker spent evaluating (last_duration_ms),
#      and its CPU time.
#
#   bench/alerts.sh            EVENTS=1000000 RULES=200 MINUTES=2 bench/alerts.sh
#   (also SANDBOXES=, DAYS=, SAMPLE=, POLL_MS= runra_obs.alert_poll_interval, SPREAD=1)
#   KEEP=1 bench/alerts.sh     the cluster stays up at the end (for EXPLAIN), until killed
#
# Timings are printed, never judged.  The cluster lives under /tmp and is
# removed at the end.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
EVENTS=${EVENTS:-10000000}
RULES=${RULES:-1000}
MINUTES=${MINUTES:-3}
SANDBOXES=${SANDBOXES:-5000}
DAYS=${DAYS:-7}
SAMPLE=${SAMPLE:-5}
POLL_MS=${POLL_MS:-1000}
SPREAD=${SPREAD:-0}
KEEP=${KEEP:-0}
CHUNK=250000

BENCH_PORT=${BENCH_PORT:-$(( 40000 + $$ % 20000 ))}
. "$src/bench/lib.sh"
echo "runra_obs alert evaluation, $(date -u +%FT%TZ)"
bench_machine
bench_cluster_start alerts "work_mem = 64MB" "runra_obs.notify_channel = ''" "runra_obs.forward_enabled = off" \
    "runra_obs.alert_poll_interval = ${POLL_MS}ms" \
    "track_commit_timestamp = on"
bench_as_user "$BENCH_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$BENCH_DIR" -p "$BENCH_PORT" -d bench \
    < "$src/bench/alerts.sql" >/dev/null
q() { bench_psql "$@"; }
secs() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(secs)" 'BEGIN { printf "%.1f", b - a }'; }

# ---- 1. the fleet's events ----
upto=$(q "SELECT now()")
quiet="'$upto'::timestamptz, interval '45 minutes'"
rate=$(awk -v n="$EVENTS" -v d="$DAYS" 'BEGIN { printf "%.2f", n / (d * 86400) }')
t0=$(secs)
lifecycle=$(q "SET synchronous_commit = off" \
              "SELECT bench.fleet_lifecycle('$upto'::timestamptz - interval '$DAYS days', '$upto', $SANDBOXES)")
body=$(( EVENTS - lifecycle ))
if [ "$body" -lt $(( EVENTS / 2 )) ]; then
    echo "$lifecycle lifecycle events of $SANDBOXES sandboxes leave too few of $EVENTS for the rest: ask for fewer SANDBOXES" >&2
    exit 2
fi
chunks=$(( (body + CHUNK - 1) / CHUNK ))
for s in 0 1; do
    { echo "SET synchronous_commit = off;"
      for k in $(seq "$s" 2 $((chunks - 1))); do
          echo "SELECT bench.fleet_events($(( body * (k + 1) / chunks - body * k / chunks )),
                  '$upto'::timestamptz - interval '$DAYS days' * (1 - $k.0 / $chunks),
                  '$upto'::timestamptz - interval '$DAYS days' * (1 - $((k + 1)).0 / $chunks),
                  $SANDBOXES, $k, $quiet);"
      done
    } > "$BENCH_DIR/load.$s.sql"
done
bench_run_sessions load 2 >/dev/null
cat "$BENCH_DIR"/load.*.err >&2
echo "$EVENTS events ($lifecycle of them sandbox lifecycle) of $SANDBOXES sandboxes over $DAYS days stored in $(since "$t0") s (INSERT ... SELECT, 2 sessions)"
t0=$(secs)
q "SELECT runra_obs.fold_rollups()" "SELECT runra_obs._maintain_rollups()" >/dev/null
echo "folded into the rollups and compacted in $(since "$t0") s"
t0=$(secs)
q "VACUUM ANALYZE" >/dev/null
echo "VACUUM ANALYZE in $(since "$t0") s"
# From here to the end the fleet keeps sending at the rate it was generated,
# from where the generated events end (the first second catches up with
# the time the load took), so the windows ending now hold their share.
bench_psql "SET application_name = 'bench_keep_sending'" "SET synchronous_commit = off" \
           "CALL bench.keep_sending($rate, $SANDBOXES, '$upto', $quiet)" \
    >/dev/null 2>"$BENCH_DIR/keep_sending.err" &
sender=$!
t0=$(secs)
until [ "$(q "SELECT max(created_at) > now() - interval '5 s' FROM runra_obs.sandbox_events")" = t ]; do sleep 1; done
q "SELECT runra_obs.fold_rollups()" >/dev/null
echo "the fleet sending $rate events/s from the end of the generated events on, caught up after $(since "$t0") s"
q "SELECT format('in the 5 minutes before now: %s events, %s finished executions, %s sandboxes; running now: %s sandboxes; raw events %s, rollups %s rows',
          (SELECT count(*) FROM runra_obs.sandbox_events WHERE created_at >= now() - interval '5 minutes'),
          (SELECT count(*) FROM runra_obs.sandbox_events WHERE created_at >= now() - interval '5 minutes'
                                                           AND event_type IN ('exec.completed', 'exec.failed', 'exec.timed_out')),
          (SELECT count(DISTINCT sandbox_id) FROM runra_obs.sandbox_events WHERE created_at >= now() - interval '5 minutes'),
          (SELECT count(*) FROM (SELECT DISTINCT ON (sandbox_id) event_type FROM runra_obs.sandbox_events
                                 WHERE event_type LIKE 'sandbox.%' AND created_at >= now() - interval '24 hours'
                                 ORDER BY sandbox_id, created_at DESC) AS l
           WHERE event_type IN ('sandbox.created', 'sandbox.started', 'sandbox.resumed')),
          pg_size_pretty((SELECT sum(total_bytes) FROM runra_obs.partitions)),
          (SELECT count(*) FROM runra_obs.rollup_5m) + (SELECT count(*) FROM runra_obs.rollup_1h)
          + (SELECT count(*) FROM runra_obs.rollup_1h_sandbox))"
echo

# ---- 2. the rules ----
t0=$(secs)
q "CALL bench.create_rules($RULES)"
echo "$RULES rules every minute created in $(since "$t0") s: $(q "SELECT string_agg(format('%s %s', c, variant), ', ' ORDER BY n)
    FROM (SELECT v.n, v.variant, count(*) AS c FROM bench.rules JOIN bench.variants AS v USING (variant) GROUP BY 1, 2) AS x")"
echo

# ---- 3. the baseline: evaluations by hand ----
jit=$(q "SHOW jit")
q "CALL bench.measure_baseline($SAMPLE, round($rate * 60)::bigint, true)" "CALL bench.measure_baseline($SAMPLE, round($rate * 60)::bigint, false)"
echo "baseline: $SAMPLE rules of each variant evaluated by hand, one transaction each (after an uncounted round),"
echo "ms per evaluation with jit = $jit (the server's, as the worker has it), and with jit = off:"
printf '%-24s %6s %9s %9s %9s %12s %8s  %s\n' variant evals median mean max "median, off" "on/off" "series, changed (the last)"
q "SELECT format('%-24s %6s %9s %9s %9s %12s %8s  %s', v.variant, count(*) FILTER (WHERE b.jit = '$jit'::boolean),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY b.ms) FILTER (WHERE b.jit = '$jit'::boolean)::numeric, 2),
              round(avg(b.ms) FILTER (WHERE b.jit = '$jit'::boolean)::numeric, 2),
              round(max(b.ms) FILTER (WHERE b.jit = '$jit'::boolean)::numeric, 2),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY b.ms) FILTER (WHERE NOT b.jit)::numeric, 2),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY b.ms) FILTER (WHERE b.jit = '$jit'::boolean)
                     / nullif(percentile_cont(0.5) WITHIN GROUP (ORDER BY b.ms) FILTER (WHERE NOT b.jit), 0))::numeric, 2),
              (array_agg(b.summary ORDER BY b.rule_id DESC) FILTER (WHERE b.jit = '$jit'::boolean))[1])
   FROM bench.baseline AS b JOIN bench.variants AS v USING (variant)
   WHERE b.round = 1 GROUP BY v.variant, v.n ORDER BY v.n"
# The medians with the server's jit, per variant: what a worker's evaluation should cost.
medians="(SELECT variant, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms
          FROM bench.baseline WHERE round = 1 AND jit = '$jit'::boolean GROUP BY variant)"
predicted=$(q "SELECT round((sum(m.ms) / 60000)::numeric, 3) FROM bench.rules AS r JOIN $medians AS m USING (variant)")
echo "the $RULES rules by these medians (jit = $jit): $(awk -v p="$predicted" 'BEGIN { printf "%.1f", p * 60 }') s of each minute, a busy fraction of $predicted"
echo

# ---- 4. the worker ----
worker_pid=$(q "SELECT pid FROM runra_obs.worker_status WHERE role = 'alerts'")
cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$worker_pid/stat"; }
start=$(q "SELECT date_trunc('second', now()) + interval '5 s'")
slots_end=$(q "SELECT '$start'::timestamptz + interval '$MINUTES minutes'")
q "CALL bench.start_rules('$start', $([ "$SPREAD" = 1 ] && echo true || echo false))"
echo "worker: every rule due from $start $([ "$SPREAD" = 1 ] && echo "spread over the minute" || echo "all at once") for $MINUTES minutes, poll interval $POLL_MS ms"
cpu0=$(cpu_s)
t0=$(secs)
q "CALL bench.sample_runs('$slots_end', '$slots_end'::timestamptz + interval '60 s')"
wall=$(since "$t0")
cpu1=$(cpu_s)

W="FROM bench.evaluations AS e WHERE e.due >= '$start' AND e.due < '$slots_end'"
echo "each minute of the run, by when the evaluations finished (round: from the minute's slot to its last rule done):"
printf '%-8s %8s %10s %10s %12s %10s\n' minute evals "lag p50 s" "lag max s" "busy fraction" "round s"
q "SELECT format('%-8s %8s %10s %10s %12s %10s', m, count(*),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_s)::numeric, 2), round(max(lag_s)::numeric, 2),
              round((sum(ms) / 60000)::numeric, 3),
              (SELECT round(extract(epoch FROM max(e.done_at) - min(e.due))::numeric, 2) $W
                 AND e.due >= '$start'::timestamptz + (m - 1) * interval '1 minute'
                 AND e.due < '$start'::timestamptz + m * interval '1 minute'))
   FROM (SELECT e.*, 1 + floor(extract(epoch FROM e.done_at - '$start') / 60)::int AS m $W) AS x
   GROUP BY m ORDER BY m"
echo "per variant under the worker against the baseline:"
printf '%-24s %6s %10s %12s %7s %10s %8s\n' variant evals "worker ms" "baseline ms" ratio "lag p99 s" firing
q "SELECT format('%-24s %6s %10s %12s %7s %10s %8s', v.variant, count(e.rule_id), round(avg(e.ms)::numeric, 2), round(b.ms::numeric, 2),
              round((avg(e.ms) / nullif(b.ms, 0))::numeric, 2),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY e.lag_s)::numeric, 2),
              (SELECT count(*) FROM runra_obs.alert_states AS s WHERE s.rule LIKE v.variant || ' #%' AND s.state = 'firing'))
   FROM bench.variants AS v
   JOIN bench.rules AS r USING (variant)
   LEFT JOIN (SELECT e.* $W) AS e USING (rule_id)
   JOIN $medians AS b USING (variant)
   GROUP BY v.n, v.variant, b.ms ORDER BY v.n"
failed=$(q "SELECT count(*) FROM runra_obs.alert_rule_runs WHERE failures > 0")
[ "$failed" = 0 ] || q "SELECT format('%s rules failed: %s', count(*), min(last_error)) FROM runra_obs.alert_rule_runs WHERE failures > 0"

echo
echo "summary"
q "SELECT format('rules            %s every minute, %s (SPREAD=%s)', $RULES, CASE WHEN $SPREAD = 1 THEN 'due spread over the minute' ELSE 'all due at once' END, $SPREAD)"
echo "events           $EVENTS of $SANDBOXES sandboxes over $DAYS days, $rate/s arriving from then on"
q "SELECT format('evaluations      %s done of %s due in %s minutes (%s slots skipped or not reached)',
              count(*), $RULES * $MINUTES, $MINUTES, $RULES * $MINUTES - count(*)) $W"
q "SELECT format('lag              p50 %s s, p99 %s s, max %s s (poll interval %s ms)',
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_s)::numeric, 2),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_s)::numeric, 2),
              round(max(lag_s)::numeric, 2), $POLL_MS) $W"
q "SELECT format('busy fraction    %s (evaluation ms over the %s s from the first slot to the last evaluation done)',
              round((sum(ms) / 1000 / extract(epoch FROM max(done_at) - '$start'))::numeric, 3),
              round(extract(epoch FROM max(done_at) - '$start')::numeric)) $W"
q "SELECT format('one round        %s s for the %s rules of the first slot, %s s predicted by the baseline: ratio %s',
              round(extract(epoch FROM max(done_at) - min(due))::numeric, 1), count(*),
              round($predicted * 60, 1), round((extract(epoch FROM max(done_at) - min(due)) / nullif($predicted * 60, 0))::numeric, 2))
   $W AND e.due < '$start'::timestamptz + interval '1 minute'"
awk -v c="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" -v w="$wall" \
    'BEGIN { printf "worker cpu       %.1f s in %.0f s sampled: %.3f of a core\n", c, w, c / w }'
q "SELECT format('slowest variant  %s, %s ms per evaluation (baseline median, jit = $jit)', variant, round(ms::numeric, 2))
   FROM $medians AS m ORDER BY ms DESC LIMIT 1"
bench_machine
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'bench_keep_sending'" >/dev/null
wait "$sender" 2>/dev/null || true
if [ "$KEEP" = 1 ]; then
    echo "KEEP=1: the cluster stays up until this script is killed:"
    echo "  $BENCH_BIN/psql -h $BENCH_DIR -p $BENCH_PORT -d bench"
    while :; do sleep 3600 & wait $!; done
fi
