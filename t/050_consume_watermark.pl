# The event log and its rollup consumer.  The safe watermark never passes
# an event that can still become visible: an open insert through the table,
# a superuser's direct INSERT into a partition, a released savepoint.  The
# rollup consumer counts every committed event exactly once under
# concurrent writers with rollbacks, savepoints, late events and the SDK's
# plain INSERT, and after SIGKILL of its worker mid-fold and of the whole
# server, nothing is counted twice or lost.
use strict;
use warnings;
use RunraNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# restart_after_crash as in production: a killed worker restarts the server
my $node = runra_node('consume', "runra_obs.rollup_enabled = on",
	"runra_obs.rollup_interval = '50ms'", "restart_after_crash = on");

sub sql { return $node->safe_psql('postgres', $_[0]) }
sub position { return sql("SELECT position FROM runra_obs.consumers WHERE name = 'rollups'") }
sub last_id { return sql('SELECT last_value FROM runra_obs.sandbox_events_id_seq') }

# Waits until the rollup consumer has passed every id handed out so far.
sub wait_caught_up
{
	my $last = last_id();
	$node->poll_query_until('postgres',
		"SELECT position >= $last FROM runra_obs.consumers WHERE name = 'rollups'")
	  or die "the rollup consumer did not reach $last";
}

# Lets the worker tick many times (its interval is 50 ms).
sub let_it_tick { sql('SELECT pg_sleep(0.6)') }

sub ingest_sql
{
	my ($sandbox, $n) = @_;
	return "SELECT runra_obs.ingest(jsonb_agg(jsonb_build_object('timestamp', now(),"
	  . " 'sandboxId', '$sandbox', 'type', 'exec.completed', 'data', jsonb_build_object('exitCode', i % 2))))"
	  . " FROM generate_series(1, $n) AS i";
}

sub folded_events
{
	my ($sandbox) = @_;
	return sql("SELECT coalesce(sum(events), 0) FROM runra_obs.rollup_1h_sandbox WHERE sandbox_id = '$sandbox'");
}

# (bucket, keys) rows where a rollup table and the raw events differ in
# events, failures or cost: 0 when every committed event is counted once.
sql(q{
CREATE FUNCTION public.rollup_mismatches(per_sandbox boolean) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format($q$
        WITH raw AS (
            SELECT date_bin(%1$L, created_at, timestamptz '2000-01-01') AS bucket, %2$s AS sandbox_id,
                   event_type, count(*) AS events,
                   count(*) FILTER (WHERE runra_obs.event_failed(event_type, data)) AS failures,
                   sum(runra_obs.event_cost(event_type, data)) AS cost
            FROM runra_obs.sandbox_events GROUP BY 1, 2, 3
        ), rolled AS (
            SELECT bucket, %2$s AS sandbox_id, event_type, sum(events)::bigint, sum(failures)::bigint,
                   sum(cost)
            FROM runra_obs.%3$s GROUP BY 1, 2, 3
        )
        SELECT (SELECT count(*) FROM (TABLE raw EXCEPT ALL TABLE rolled) AS a)
             + (SELECT count(*) FROM (TABLE rolled EXCEPT ALL TABLE raw) AS b)$q$,
        CASE WHEN per_sandbox THEN '1 hour' ELSE '5 minutes' END,
        CASE WHEN per_sandbox THEN 'sandbox_id' ELSE '''''' END,
        CASE WHEN per_sandbox THEN 'rollup_1h_sandbox' ELSE 'rollup_5m' END)
    INTO n;
    RETURN n;
END
$$});

# sandboxes whose totals (rollup_sandbox) differ from the raw events in
# events or cost
sql(q{
CREATE FUNCTION public.totals_mismatches() RETURNS bigint LANGUAGE sql AS $$
    WITH raw AS (
        SELECT sandbox_id, count(*) AS events,
               sum(runra_obs.event_cost(event_type, data))
                   FILTER (WHERE event_type IN ('cost.runtime', 'cost.storage')) AS cost
        FROM runra_obs.sandbox_events GROUP BY 1
    ), kept AS (
        SELECT sandbox_id, events, cost FROM runra_obs.rollup_sandbox
    )
    SELECT (SELECT count(*) FROM (TABLE raw EXCEPT ALL TABLE kept) AS a)
         + (SELECT count(*) FROM (TABLE kept EXCEPT ALL TABLE raw) AS b)
$$});

sub exact
{
	my ($what) = @_;
	wait_caught_up();
	is(sql('SELECT public.rollup_mismatches(true) + public.rollup_mismatches(false)'), '0',
		"$what: the rollups hold every committed event exactly once");
	is(sql('SELECT public.totals_mismatches()'), '0',
		"$what: so do the per-sandbox totals");
}

# ---- an open insert holds the watermark back, later commits included
my $open = $node->background_psql('postgres');
$open->query_safe('BEGIN; ' . ingest_sql('sb_open', 1));
my $open_id = last_id();
sql(ingest_sql('sb_after', 10));
let_it_tick();
is(position(), $open_id - 1, 'an open insert: the consumer stops just below its id');
is(folded_events('sb_after'), '0', 'and does not fold the events committed after it');
is(sql("SELECT sum(events) FROM runra_obs.rollup_1h_sandbox_live WHERE sandbox_id = 'sb_after'"), '10',
	'while the live view already counts them');
like(sql("SELECT ids_behind || ' ' || (seconds_behind > 0) FROM runra_obs.consumer_status"),
	qr/^0 false$/, 'the consumer is not behind the watermark: the watermark itself waits');
$open->query_safe('COMMIT');
wait_caught_up();
is(folded_events('sb_open') . ' ' . folded_events('sb_after'), '1 10',
	'once it commits, both are folded');

# ---- a superuser's INSERT straight into a partition is waited for too
my $partition = sql('SELECT partition FROM runra_obs.partitions WHERE now() >= lower AND now() < upper');
$open->query_safe("BEGIN; INSERT INTO $partition (created_at, sandbox_id, event_type, data)"
	  . " VALUES (now(), 'sb_direct', 'exec.started', '{}')");
my $direct_id = last_id();
sql(ingest_sql('sb_after_direct', 5));
let_it_tick();
is(position(), $direct_id - 1, 'a direct INSERT into a partition holds the watermark back');
$open->query_safe('COMMIT');
wait_caught_up();
is(folded_events('sb_direct') . ' ' . folded_events('sb_after_direct'), '1 5',
	'and is folded once it commits');

# ---- a released savepoint's insert belongs to the open transaction; its
# rollback leaves nothing
$open->query_safe('BEGIN; SAVEPOINT s; ' . ingest_sql('sb_savepoint', 3) . '; RELEASE SAVEPOINT s');
my $savepoint_id = last_id();
sql(ingest_sql('sb_after_savepoint', 2));
let_it_tick();
is(position(), $savepoint_id - 3, 'a released savepoint holds the watermark back with its transaction');
$open->query_safe('ROLLBACK');
wait_caught_up();
is(folded_events('sb_savepoint') . ' ' . folded_events('sb_after_savepoint'), '0 2',
	'rolled back: counted nowhere, and the later events are folded');
$open->quit;
exact('after held transactions');

# ---- concurrent writers: commits, rollbacks, rolled-back savepoints, late
# events, and the SDK's plain INSERT, while the consumer folds every 50 ms
my $dir = PostgreSQL::Test::Utils::tempdir();
PostgreSQL::Test::Utils::append_to_file("$dir/commit.sql", q{
\set s random(1, 50)
\set age random(0, 200000)
BEGIN;
SELECT runra_obs.ingest(jsonb_build_array(
    jsonb_build_object('timestamp', now() - make_interval(secs => :age), 'sandboxId', 'sb_' || :s,
                       'type', 'exec.completed', 'data', jsonb_build_object('exitCode', :s % 3)),
    jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_' || :s, 'type', 'cost.runtime',
                       'data', jsonb_build_object('cost', :s / 100.0))));
SAVEPOINT sp;
SELECT runra_obs.ingest(jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_ghost', 'type', 'exec.failed'));
ROLLBACK TO SAVEPOINT sp;
INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type, data)
VALUES (now() - make_interval(secs => :age), 'sb_sdk_' || :s, 'exec.completed', '{"exitCode": 1}');
COMMIT;
});
PostgreSQL::Test::Utils::append_to_file("$dir/rollback.sql", q{
BEGIN;
SELECT runra_obs.ingest(jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_ghost', 'type', 'exec.failed'));
SELECT pg_sleep(0.005);
ROLLBACK;
});
my $before = sql('SELECT count(*) FROM runra_obs.sandbox_events');
PostgreSQL::Test::Utils::system_or_bail('pgbench', '-n', '-c', '4', '-j', '2', '-t', '150',
	'-f', "$dir/commit.sql\@3", '-f', "$dir/rollback.sql\@1",
	'-h', $node->host, '-p', $node->port, 'postgres');
cmp_ok(sql('SELECT count(*) FROM runra_obs.sandbox_events') - $before, '>', 600,
	'the writers stored their events');
is(sql("SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_ghost'"), '0',
	'and none of the rolled-back ones');
exact('after concurrent writers');

# ---- SIGKILL of the worker in the middle of a fold: the server restarts,
# the fold is rolled back and done again
sql(q{ALTER SYSTEM SET runra_obs.rollup_batch_size = 10000000});
sql('SELECT pg_reload_conf()');
sub bulk_insert
{
	my ($tag, $n) = @_;
	sql("INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type, data)"
		  . " SELECT now() - (i % 2000) * interval '1 minute', '${tag}_' || (i % 300), 'exec.completed',"
		  . " jsonb_build_object('exitCode', i % 2, 'durationMs', i) FROM generate_series(1, $n) AS i");
}
bulk_insert('sb_bulk', 200000);
my $folding_pid;
$node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'runra_obs rollups' AND query = 'runra_obs rollup fold' AND state = 'active'}, 't')
  or die 'never saw the worker folding';
$folding_pid = sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'runra_obs rollups'});
my $position_at_kill = position();
my $last_at_kill = last_id();
kill 'KILL', $folding_pid;
cmp_ok($position_at_kill, '<', $last_at_kill, 'the worker was killed before its fold committed');
$node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'runra_obs rollups'}) or die 'the worker did not come back';
exact('after SIGKILL of the worker mid-fold');

# ---- the whole server killed while the worker folds
bulk_insert('sb_crash', 200000);
$node->stop('immediate');
$node->start;
exact('after an immediate stop of the server');

# ---- a transaction that wrote: its own uncommitted ids are below the
# watermark it computes for itself, but it never publishes that value
my $writer = $node->background_psql('postgres');
$writer->query_safe('BEGIN; ' . ingest_sql('sb_own', 1));
my $own_id = $writer->query_safe('SELECT max(id) FROM runra_obs.sandbox_events');
cmp_ok($writer->query_safe('SELECT runra_obs.safe_watermark()'), '>=', $own_id,
	'a writing transaction sees its own ids below its watermark');
cmp_ok(sql("SELECT watermark FROM runra_obs.consumer_status WHERE name = 'rollups'"), '<', $own_id,
	'and does not publish it');
$writer->query_safe('COMMIT');
$writer->quit;
$node->poll_query_until('postgres',
	"SELECT watermark >= $own_id FROM runra_obs.consumer_status WHERE name = 'rollups'")
  or die 'the watermark did not pass the committed id';

# ---- another database: its ids are its own sequence's, not the workers'
# database's (a watermark shared across databases moved this cursor past
# ids not yet handed out here, and those events were never folded)
$node->safe_psql('postgres', 'CREATE DATABASE second');
$node->safe_psql('second', 'CREATE EXTENSION runra_obs');
my $second = sub { $node->safe_psql('second', $_[0]) };
my $one_event = q{SELECT ingested FROM runra_obs.ingest(jsonb_build_object('timestamp',
	to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'sandboxId', 'sb_second',
	'type', 'exec.completed'))};
$second->($one_event);
cmp_ok($second->('SELECT runra_obs.safe_watermark()'), '<=',
	$second->('SELECT last_value FROM runra_obs.sandbox_events_id_seq'),
	'the watermark in another database is of its own sequence');
$second->('SELECT runra_obs.fold_rollups()');
$second->($one_event) for 1 .. 3;
$second->('SELECT runra_obs.fold_rollups()');
is($second->(q{SELECT sum(events) FROM runra_obs.rollup_1h_sandbox WHERE sandbox_id = 'sb_second'}),
	'4', 'every event of the other database is folded');

# ---- rollup retention never waits for the consumer's row: a fold holds it
# while it reads sandbox_events, which run_maintenance may hold (a dropped
# partition); waiting would deadlock.  Hours past rollup_retention stay
# until a run finds the row free, then go with their totals recounted.
sql(q{INSERT INTO runra_obs.rollup_1h_sandbox (bucket, sandbox_id, event_type, label, agent_id, events,
                                              failures, cost, duration_count, value_count, over_90, compacted)
      VALUES (now() - interval '401 days', 'sb_expiring', 'cost.runtime', '', '', 2, 0, 5, 0, 0, 0, true),
             (now() - interval '399 days', 'sb_expiring', 'cost.runtime', '', '', 1, 0, 3, 0, 0, 0, true);
      SELECT runra_obs._recount_sandboxes(ARRAY['sb_expiring'])});
my $fold = $node->background_psql('postgres');
$fold->query_safe(q{BEGIN; SELECT FROM runra_obs.consumers WHERE name = 'rollups' FOR UPDATE});
like(sql(q{SET statement_timeout = '5s'; SELECT runra_obs._maintain_rollups()}), qr/, 0 expired rows dropped$/,
	'maintenance does not wait for the consumer row a fold holds');
is(sql(q{SELECT events FROM runra_obs.rollup_sandbox WHERE sandbox_id = 'sb_expiring'}), '3',
	'and leaves the hours past retention, and their totals, for later');
$fold->query_safe('ROLLBACK');
$fold->quit;
like(sql(q{SELECT runra_obs._maintain_rollups()}), qr/, 1 expired rows dropped$/,
	'the next run drops them');
is(sql(q{SELECT events || ' ' || cost FROM runra_obs.rollup_sandbox WHERE sandbox_id = 'sb_expiring'}), '1 3',
	'and recounts the sandbox from the hours it keeps');

# ---- the worker runs at runra_obs.rollup_nice; a process cannot lower
# its own niceness, so lowering the setting gets a new worker
sub rollup_worker
{
	my $pid;
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'runra_obs rollups'})
	  or die 'no rollup worker';
	$pid = sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'runra_obs rollups'});
	open(my $stat, '<', "/proc/$pid/stat") or die "no /proc/$pid/stat: $!";
	my @fields = split / /, (<$stat> =~ s/^.*\) //r);
	close $stat;
	return ($pid, $fields[16]);    # nice is field 19; fields[0] is field 3
}
my ($nice_pid, $nice) = rollup_worker();
is($nice, '10', 'the rollup worker runs at the default niceness, 10');
sql(q{ALTER SYSTEM SET runra_obs.rollup_nice = 15; SELECT pg_reload_conf()});
let_it_tick();
is((rollup_worker())[1], '15', 'a higher niceness applies at the next tick');
sql(q{ALTER SYSTEM SET runra_obs.rollup_nice = 0; SELECT pg_reload_conf()});
my $restarted = 0;
for (1 .. 200)
{
	my ($pid, $now) = rollup_worker();
	if ($pid != $nice_pid && $now eq '0') { $restarted = 1; last }
	select(undef, undef, undef, 0.1);
}
ok($restarted, 'a lower one restarts the worker, which then runs at it');
sql(ingest_sql('sb_after_nice', 5));
wait_caught_up();
is(folded_events('sb_after_nice'), '5', 'and the new worker folds');
sql(q{ALTER SYSTEM RESET runra_obs.rollup_nice; SELECT pg_reload_conf()});

# ---- the extension dropped and created again while the worker's probe
# waits for a writer: the value it read is of the old sequence, and ids
# start again at 1 (published, it let the new consumer skip those ids)
sql(ingest_sql('sb_before_drop', 50));
wait_caught_up();
my $dropper = $node->background_psql('postgres');
$dropper->query_safe(q{BEGIN});
$dropper->query_safe(ingest_sql('sb_dropped', 5));
let_it_tick();    # the worker's probe now waits for this transaction
$dropper->query_safe(q{DROP EXTENSION runra_obs CASCADE});
$dropper->query_safe(q{CREATE EXTENSION runra_obs});
$dropper->query_safe(q{COMMIT});
$dropper->quit;
let_it_tick();
sql(ingest_sql('sb_recreated', 7));
wait_caught_up();
is(folded_events('sb_recreated'), '7', 'a re-created extension folds its first events');

$node->stop;
done_testing();
