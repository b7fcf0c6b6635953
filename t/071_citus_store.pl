# runra_obs on Citus: a coordinator and two workers (t/lib/CitusCluster.pm).
#
# CREATE EXTENSION on the coordinator reaches the workers, which make no
# partitions of their own and whose runra_obs workers idle.  After
# runra_obs.distribute(), every way in (ingest(), ingest_jsonl(), HTTP,
# NOTIFY, the SDK's INSERT, a plain INSERT) stores its events in the shards:
# counted shard by shard they are all there, and the coordinator's shells
# stay empty.  The API and the views answer exactly what one server given
# the same events answers, folded rollups included; a worker's own id
# sequence refuses to hand out ids.
use strict;
use warnings;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CitusCluster;
use RunraNode;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest qw(post_events create_token);

skip_all_without_citus();

my $http_port = PostgreSQL::Test::Cluster::get_free_port();
my $cluster = citus_cluster('store',
	worker_conf => ["runra_obs.notify_channel = 'runra_events'"],    # would listen, if not a worker
	coordinator_conf => [
		"runra_obs.http_workers = 1",
		"runra_obs.http_port = $http_port",
		"runra_obs.http_listen_addresses = '127.0.0.1'",
		"runra_obs.notify_channel = 'runra_events'",
		"runra_obs.notify_flush_ms = 50",
		"runra_obs.forward_enabled = on",
		"runra_obs.forward_poll_interval = '200ms'",
		"runra_obs.rollup_shard_connections = 2"]);    # each worker's shards folded two at a time
my $coordinator = $cluster->coordinator;
my @workers = $cluster->workers;

my ($ret, $out, $err) = $cluster->create_runra_obs;
is($ret, 0, 'CREATE EXTENSION runra_obs on the coordinator') or BAIL_OUT($err);

# -- the workers: the extension, but no partitions and no work of their own
for my $worker (@workers)
{
	my $name = $worker->name;
	is($worker->safe_psql('postgres', q{
		SELECT extversion || ' ' || runra_obs.citus_node_role() || ' ' || (SELECT count(*) FROM runra_obs.partitions)
		FROM pg_extension WHERE extname = 'runra_obs'}),
		'0.2.0 worker 0', "$name has the extension, knows it is a worker, and made no partitions");
	$worker->poll_query_until('postgres', q{
		SELECT bool_and(state = 'idle (a Citus worker: runra_obs works on the coordinator)') AND count(*) = 2
		FROM runra_obs.worker_status WHERE role IN ('maintenance', 'notify')})
	  or diag($worker->safe_psql('postgres', 'SELECT role, state FROM runra_obs.worker_status'));
	pass("$name: its maintenance and notify workers idle");
}
is($coordinator->safe_psql('postgres', 'SELECT runra_obs.citus_node_role()'), 'coordinator',
	'the coordinator knows what it is');
($ret, $out, $err) = $workers[0]->psql('postgres', 'SELECT * FROM runra_obs.distribute()');
like($err, qr/runs on a Citus coordinator; this node is a Citus worker/, 'distribute() refuses to run on a worker');

is($coordinator->safe_psql('postgres', q{
	SELECT string_agg(object || ': ' || action, E'\n') FROM runra_obs.distribute(shard_count => 4)}),
	"runra_obs.sandbox_events: distributed by sandbox_id\n"
	  . "runra_obs.rollup_1h_sandbox: distributed by sandbox_id, colocated with runra_obs.sandbox_events\n"
	  . "runra_obs.rollup_sandbox: distributed by sandbox_id, colocated with runra_obs.sandbox_events\n"
	  . "runra_obs.rollup_sandbox_agent: distributed by sandbox_id, colocated with runra_obs.sandbox_events\n"
	  . 'runra_obs.sandbox_events_id_seq: closed on the workers: ids come from the coordinator',
	'distribute() distributes the log and the per-sandbox rollups and closes the workers\' sequences');
is($coordinator->safe_psql('postgres', q{
	SELECT string_agg(object, ',') FROM runra_obs.distribute()}), 'runra_obs.sandbox_events_id_seq',
	'called again, it only closes the sequences again (of workers added since, too)');

# -- partitions maintenance makes later are distributed too, and dropping
# one (retention) drops its shards on every node
my $later = $coordinator->safe_psql('postgres', q{
	SELECT runra_obs._create_day_partition(date_trunc('day', now(), 'UTC') + interval '20 days')});
is($coordinator->safe_psql('postgres', "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = '$later'::regclass"),
	'4', "a partition made later ($later) is distributed, with 4 shards");
my ($later_name) = $later =~ /\.(\w+)$/;
my $on_workers = qq{SELECT sum(result::int) FROM run_command_on_workers(
	'SELECT count(*) FROM pg_class WHERE relname LIKE ''${later_name}%''')};
cmp_ok($coordinator->safe_psql('postgres', $on_workers), '>', 0, 'its shards are on the workers');
$coordinator->safe_psql('postgres', "DROP TABLE $later");
is($coordinator->safe_psql('postgres', $on_workers), '0', 'dropping it (as retention does) drops them on every node');

# -- maintenance's lock timeout reaches the workers: a session on a worker
# that holds one shard of the log there blocks the ATTACH of a new day
# (which attaches a shard of it to each shard of the log), and maintenance
# skips the day after its timeout instead of waiting without end.  (A lock
# on the log's shell would be taken on the coordinator too: Citus
# propagates LOCK TABLE.)
my $shard = $coordinator->safe_psql('postgres', qq{
	SELECT shard_name('runra_obs.sandbox_events'::regclass, s.shardid)
	FROM pg_dist_shard AS s JOIN pg_dist_placement USING (shardid) JOIN pg_dist_node AS n USING (groupid)
	WHERE s.logicalrelid = 'runra_obs.sandbox_events'::regclass AND n.nodeport = } . $workers[0]->port . ' LIMIT 1');
my $newest = $coordinator->safe_psql('postgres', 'SELECT partition FROM runra_obs.partitions ORDER BY lower DESC LIMIT 1');
$coordinator->safe_psql('postgres', "DROP TABLE $newest");
my $holder = $workers[0]->background_psql('postgres');
$holder->query_safe('SET citus.enable_manual_changes_to_shards = on');
$holder->query_safe('BEGIN');
$holder->query_safe("LOCK TABLE $shard IN ACCESS EXCLUSIVE MODE");
my $started = time;
my $run = $coordinator->safe_psql('postgres', q{
	SELECT action || ': ' || detail FROM runra_obs.run_maintenance(500) WHERE action IN ('created', 'skipped')});
like($run, qr/^skipped: .*lock timeout/, 'maintenance skips the day a worker\'s lock holds back') or diag($run);
cmp_ok(time - $started, '<', 20, 'after its lock timeout, not after the lock');
$holder->query_safe('COMMIT');
$holder->quit;
like($coordinator->safe_psql('postgres', q{
	SELECT string_agg(action, ',') FROM runra_obs.run_maintenance(500) WHERE action IN ('created', 'skipped')}),
	qr/^created$/, 'the next run creates it');

# -- every way in
my $base = $coordinator->safe_psql('postgres',
	q{SELECT extract(epoch FROM date_trunc('hour', now()) - interval '2 hours')::bigint});
# A fleet's mix, 4 hours from $base: costs, execs (some slow, some failing),
# memory samples over 90 %, tools, lifecycle.
sub fleet_events
{
	my ($prefix, $n) = @_;
	my @events;
	for my $i (0 .. $n - 1)
	{
		my $t = $base + ($i * 37) % (4 * 3600);
		my $ts = POSIX::strftime('%Y-%m-%dT%H:%M:%SZ', gmtime $t);
		my $sb = sprintf('%s%03d', $prefix, $i % 40);
		my $kind = $i % 6;
		push @events,
			$kind == 0 ? { timestamp => $ts, sandboxId => $sb, type => 'cost.runtime',
				data => { cost => 0.25 * ($i % 5), durationMs => 1000 } }
		  : $kind == 1 ? { timestamp => $ts, sandboxId => $sb, type => 'exec.completed',
				data => { command => "cmd" . ($i % 4), exitCode => $i % 4 == 1 ? 2 : 0, durationMs => 100 * ($i % 70) } }
		  : $kind == 2 ? { timestamp => $ts, sandboxId => $sb, type => 'resource.memory',
				data => { memoryUsedMb => 400 + $i % 200, memoryLimitMb => 512 } }
		  : $kind == 3 ? { timestamp => $ts, sandboxId => $sb, type => 'tool.invoked',
				data => { toolName => 'grep', agentId => 'agent' . (int($i / 7) % 3) } }
		  : $kind == 4 ? { timestamp => $ts, sandboxId => $sb, type => 'sandbox.created',
				data => { image => 'python:3.12' } }
		  : { timestamp => $ts, sandboxId => $sb, type => 'exec.started', data => { command => "cmd" . ($i % 4) } };
	}
	return @events;
}
sub sql_literal { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }

my %sent;    # way in => events sent
my @ingest = fleet_events('sql', 300);
is($coordinator->safe_psql('postgres',
		'SELECT ingested FROM runra_obs.ingest(' . sql_literal(encode_json(\@ingest)) . '::jsonb)'),
	'300', 'ingest() stores 300 events');
$sent{ingest} = \@ingest;

my @jsonl = fleet_events('jsonl', 300);
is($coordinator->safe_psql('postgres', 'SELECT ingested FROM runra_obs.ingest_jsonl('
		  . sql_literal(join("\n", map { encode_json($_) } @jsonl)) . ')'),
	'300', 'ingest_jsonl() stores 300 events');
$sent{jsonl} = \@jsonl;

my @http = fleet_events('http', 300);
my $token = create_token($coordinator, 'citus');
$coordinator->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM runra_obs.worker_status WHERE role = 'http' AND state = 'listening'")
  or die 'the HTTP worker did not start';
my $answer = post_events($http_port, $token, encode_json(\@http));
is($answer->{status}, 200, 'POST /v1/events answers 200') or diag($answer->{content});
$sent{http} = \@http;

my @notify = fleet_events('notify', 60);
$coordinator->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM runra_obs.worker_status WHERE role = 'notify' AND state LIKE 'listening%'})
  or die 'the notify worker did not listen';
$coordinator->safe_psql('postgres', join('', map {
	'SELECT pg_notify(\'runra_events\', ' . sql_literal(encode_json($_)) . ');' } @notify));
$sent{notify} = \@notify;

my @sdk = fleet_events('sdk', 60);
$coordinator->safe_psql('postgres', 'INSERT INTO runra_obs_sdk.sandbox_events (created_at, sandbox_id, event_type, data) VALUES '
	  . join(', ', map { sprintf('(%s, %s, %s, %s)', sql_literal($_->{timestamp}), sql_literal($_->{sandboxId}),
				sql_literal($_->{type}), sql_literal(encode_json($_->{data}))) } @sdk));
$sent{sdk} = \@sdk;

my @plain = fleet_events('plain', 60);
$coordinator->safe_psql('postgres', 'INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type, data) VALUES '
	  . join(', ', map { sprintf('(%s, %s, %s, %s)', sql_literal($_->{timestamp}), sql_literal($_->{sandboxId}),
				sql_literal($_->{type}), sql_literal(encode_json($_->{data}))) } @plain));
$sent{plain} = \@plain;

my $total = 0;
$total += @{ $sent{$_} } for keys %sent;
$coordinator->poll_query_until('postgres', "SELECT count(*) = $total FROM runra_obs.sandbox_events")
  or diag('stored: ' . $coordinator->safe_psql('postgres', 'SELECT count(*) FROM runra_obs.sandbox_events'));
foreach my $way (sort keys %sent)
{
	my $prefix = $way eq 'ingest' ? 'sql' : $way;
	is($coordinator->safe_psql('postgres',
			"SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id LIKE '$prefix%'"),
		scalar @{ $sent{$way} }, "$way: every event is found through Citus");
}
# Counted where they are stored: each shard of each day partition, read
# on its worker.
is($coordinator->safe_psql('postgres', q{
	SELECT sum(s.result::bigint)
	FROM runra_obs.partitions AS p,
	     run_command_on_shards(p.partition, 'SELECT count(*) FROM %s') AS s}),
	$total, 'the shards hold every event, once');
is($coordinator->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE pg_relation_size(p.partition) > 0) FROM runra_obs.partitions AS p}),
	'0', 'and the coordinator\'s shell partitions hold none');
is($coordinator->safe_psql('postgres', 'SELECT count(DISTINCT id) = count(*) AND max(id) = count(*) FROM runra_obs.sandbox_events'),
	't', 'ids come from the coordinator\'s one sequence, without gaps or repeats');

($ret, $out, $err) = $workers[0]->psql('postgres', q{
	INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type) VALUES (now(), 'direct', 'exec.started')});
like($err, qr/reached maximum value of sequence "sandbox_events_id_seq"/,
	'an insert sent to a worker gets no id of its own (it would escape the consumers)');

# -- the same answers as one server
my $single = runra_node('single');
foreach my $way (sort keys %sent)
{
	$single->safe_psql('postgres',
		'SELECT ingested FROM runra_obs.ingest(' . sql_literal(encode_json($sent{$way})) . '::jsonb)');
}
my $from = "to_timestamp($base) - interval '1 hour'";
my $to = "to_timestamp($base) + interval '5 hours'";
my @questions = (
	"SELECT * FROM runra_obs.cost_per_sandbox($from, $to) ORDER BY sandbox_id",
	"SELECT * FROM runra_obs.cost_over_time($from, $to, interval '1 hour') ORDER BY 1",
	"SELECT * FROM runra_obs.error_rate($from, $to, interval '30 minutes') ORDER BY 1",
	"SELECT * FROM runra_obs.exec_latency($from, $to) ORDER BY 1",
	"SELECT * FROM runra_obs.top_failing_commands($from, $to) ORDER BY 1",
	"SELECT * FROM runra_obs.slow_execs(5000, $from, $to, 1000) ORDER BY 1, 2, 3",
	"SELECT * FROM runra_obs.resource_alerts(90, $from, $to) ORDER BY 1, 2",
	"SELECT * FROM runra_obs.sandbox_summary ORDER BY sandbox_id",
	# (ids differ: the single server got the ways in one after the other)
	"SELECT to_jsonb(a) - 'event_id' FROM runra_obs.agent_activity AS a ORDER BY invoked_at, sandbox_id",
	"SELECT sum(events), sum(failures), sum(cost) FROM runra_obs.rollup_1h_live",
	"SELECT sum(events), sum(failures), sum(cost) FROM runra_obs.rollup_1h_sandbox_live");
sub same_answers
{
	my ($when) = @_;
	foreach my $q (@questions)
	{
		my $want = $single->safe_psql('postgres', $q);
		my ($name) = $q =~ /FROM (runra_obs\.\w+)/;
		isnt($want, "", "$name has rows to compare ($when)");
		is($coordinator->safe_psql('postgres', $q), $want, "$name: the same answer on Citus ($when)");
	}
}
same_answers('raw events');

# Folded in steps of 97 ids, as the worker folds a busy log, so that the
# totals of a sandbox and its busiest agent grow over several folds: on
# Citus the shards group the events, and their rows must be those one
# server's single statement writes.
my $fold_in_steps = q{DO $$ BEGIN
	WHILE runra_obs._consume_rollups(runra_obs.safe_watermark(), 97) < runra_obs.safe_watermark() LOOP
	END LOOP; END $$};
$_->safe_psql('postgres', $fold_in_steps) for ($single, $coordinator);
is($coordinator->safe_psql('postgres', 'SELECT runra_obs.fold_rollups()'), $total,
	'the rollup consumer folds every event on Citus');
is($single->safe_psql('postgres', 'SELECT runra_obs.fold_rollups()'), $total, 'and on one server');
same_answers('folded into rollups');
my $measures = 'sum(events), sum(failures), sum(cost), sum(duration_count), sum(duration_sum), '
  . 'max(duration_max), runra_obs.histogram_merge(duration_hist), sum(value_count), sum(value_sum), '
  . 'max(value_max), max(limit_max), sum(over_90)';
my @rollup_tables = (
	"SELECT bucket, event_type, label, agent_id, $measures FROM runra_obs.rollup_5m GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
	"SELECT bucket, event_type, label, agent_id, $measures FROM runra_obs.rollup_1h GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
	"SELECT bucket, sandbox_id, event_type, label, agent_id, $measures FROM runra_obs.rollup_1h_sandbox "
	  . "GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5",
	'SELECT * FROM runra_obs.rollup_sandbox ORDER BY sandbox_id',
	'SELECT * FROM runra_obs.rollup_sandbox_agent ORDER BY sandbox_id, agent_id');
sub same_rollups
{
	my ($when) = @_;
	foreach my $q (@rollup_tables)
	{
		my ($table) = $q =~ /FROM (runra_obs\.\w+)/;
		my $want = $single->safe_psql('postgres', $q);
		isnt($want, '', "$table has rows to compare ($when)");
		is($coordinator->safe_psql('postgres', $q), $want, "$table: the rows one server has ($when)");
	}
}
same_rollups('folded on the shards');
like($single->safe_psql('postgres', 'SELECT count(DISTINCT busiest_agent) FROM runra_obs.rollup_sandbox'),
	qr/^[2-5]$/, 'the sandboxes have different busiest agents');

# the histogram aggregates merge partial histograms: the fleet's p95 over
# the per-sandbox rollups is aggregated on each shard, then combined
my $p95 = q{SELECT event_type, runra_obs.histogram_percentile(runra_obs.histogram_merge(duration_hist), 0.95)
	FROM runra_obs.rollup_1h_sandbox WHERE duration_hist IS NOT NULL GROUP BY event_type ORDER BY 1};
like($coordinator->safe_psql('postgres', "EXPLAIN (COSTS OFF) $p95"),
	qr/->  Task\n.*\n\s+->  (Hash|Group)?Aggregate/, 'histogram_merge is aggregated on the shards');
is($coordinator->safe_psql('postgres', $p95), $single->safe_psql('postgres', $p95),
	'and gives the p95 one server gives');

# rebuilding a window and compacting the deltas (maintenance) work on the
# distributed per-sandbox rollups too
my $rebuild = "SELECT runra_obs.rebuild_rollups($from, $to)";
is($coordinator->safe_psql('postgres', $rebuild), $single->safe_psql('postgres', $rebuild),
	'rebuild_rollups() recounts as many events on Citus');
like($coordinator->safe_psql('postgres', 'SELECT runra_obs._maintain_rollups()'),
	qr/^rollups: \d+ delta rows compacted away/, 'and compacting the rollups works there');
$single->safe_psql('postgres', 'SELECT runra_obs._maintain_rollups()');
same_answers('rebuilt and compacted');
same_rollups('rebuilt and compacted');
# a fold leaves the settings of its caller's transaction as they were
is($coordinator->safe_psql('postgres', q{
	BEGIN;
	SELECT runra_obs.rebuild_rollups(now() - interval '1 hour', now());
	SELECT current_setting('enable_seqscan') || ' ' || current_setting('citus.max_adaptive_executor_pool_size')
	       || ' ' || current_setting('citus.propagate_set_commands');
	COMMIT;}) =~ s/^\d+\n//r, 'on 16 none', 'and a rebuild leaves its caller\'s settings as they were');

# -- alert rules of every kind that reads events find the same series
my @rules = (
	q{'errors', 'error_rate', '{"by": "sandbox", "window": "4 hours", "threshold": 0.2}'},
	q{'timeouts', 'exec_timeouts', '{"by": "command", "window": "4 hours"}'},
	q{'memory', 'resource', '{"resource": "memory", "abovePercent": 90, "window": "5 hours"}'},
	q{'spend', 'cost_anomaly', '{"by": "sandbox", "window": "1 hour", "days": 1}'},
	q{'silent', 'absence', '{"scope": "sandbox", "duration": "30 minutes", "lookback": "5 hours"}'},
	q{'failures', 'match', '{"eventTypes": ["exec.*"], "failed": true, "by": ["command"]}'});
foreach my $node ($single, $coordinator)
{
	$node->safe_psql('postgres', join('', map { "SELECT runra_obs.create_alert($_);" } @rules));
	# a match rule reads the log from where it was created: from the start, here
	$node->safe_psql('postgres', q{UPDATE runra_obs.consumers SET position = 0 WHERE name LIKE 'alert:%'});
}
foreach my $rule (@rules)
{
	my ($name) = $rule =~ /^'([^']+)'/;
	# (a match's lastEvent carries the event's id, which differs)
	my $q = qq{SELECT labels, value, "values" - 'lastEvent', active
	           FROM runra_obs.preview_alert('$name', to_timestamp($base) + interval '4 hours')};
	my $want = $single->safe_psql('postgres', $q);
	isnt($want, '', "alert $name finds series to compare");
	is($coordinator->safe_psql('postgres', $q), $want, "alert $name: the same series on Citus");
}

# -- forwarding reads the distributed log: a destination replaying from
# the start gets every event
my $file = $coordinator->basedir . '/forwarded.jsonl';
$coordinator->safe_psql('postgres', qq{
	SELECT runra_obs.add_destination('archive', 'jsonl',
		'{"filePath": "$file", "flushIntervalMs": 0, "startAt": "2000-01-01T00:00:00Z"}')});
$coordinator->poll_query_until('postgres', qq{
	SELECT behind_events = 0 AND sent >= $total FROM runra_obs.forward_status WHERE destination = 'archive'})
  or diag($coordinator->safe_psql('postgres', 'SELECT * FROM runra_obs.forward_status'));
my @lines = split /\n/, slurp_file($file);
my %distinct = map { $_ => 1 } @lines;
is(scalar(keys %distinct), $total, "the destination got all $total events")
  or diag(scalar(@lines) . ' lines');

$single->stop;
$cluster->stop;
done_testing();
