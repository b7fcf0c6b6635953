# Every Grafana dashboard on Citus: each panel, variable and annotation
# query of dashboards/*.json, expanded as Grafana expands it
# (t/lib/rollups/GrafanaSql.pm) and run as a role that is only a member of
# runra_obs_reader, returns the same rows on a coordinator with two workers
# (after runra_obs.distribute(shard_count => 4)) as on one server given the
# same fleet: thousands of events of all 25 types from 12 sandboxes over
# three and a half hours before the current hour, sent to the cluster in
# another order (so with other ids), the same refused events, and the same
# alert rules evaluated at the same times.  Compared with every event raw,
# then after fold_rollups() with late events raw above the rollups, then
# with those folded too; each time with every variable on All at a 1-hour
# interval, and on chosen values at 5 minutes.
use strict;
use warnings;
use JSON::PP;
use POSIX ();
use Time::HiRes ();
use PostgreSQL::Test::Utils;
use Test::More;
use CitusCluster;
use RunraNode;
use rollups::GrafanaSql qw(load_dashboards expand grafana_context reader_role reader_queries render);

skip_all_without_citus();

my $src = $ENV{RUNRA_OBS_SRC} // '.';
my @dashboards = load_dashboards("$src/dashboards");
ok(@dashboards >= 7, 'seven dashboards or more');

# Few day partitions (the events are hours old): every distributed query
# reaches each partition's shards, and the answers do not depend on how
# many there are; and a session keeps its connections to the workers
# from one query to the next, as a pooled Grafana connection would.  This
# keeps the file near a minute.
my @days = ("runra_obs.retention = '2d'", "runra_obs.premake = '1d'");
my $cluster = citus_cluster('dash', conf => \@days, coordinator_conf => ['citus.max_cached_conns_per_worker = 8']);
my $coordinator = $cluster->coordinator;
my ($ret, $out, $err) = $cluster->create_runra_obs;
is($ret, 0, 'CREATE EXTENSION runra_obs on the coordinator') or BAIL_OUT($err);
$coordinator->safe_psql('postgres', 'SELECT * FROM runra_obs.distribute(shard_count => 4)');
my $single = runra_node('dash_single', @days);
my %servers = (single => $single, citus => $coordinator);
reader_role($_, 'grafana_reader') for values %servers;    # on Citus, the workers get it too

# ---- the fleet: every event type, from a fixed base 4 hours before now
my $base = $coordinator->safe_psql('postgres',
	q{SELECT extract(epoch FROM date_trunc('hour', now()) - interval '4 hours')::bigint});
my $seed = 20250611;
sub rnd { my ($n) = @_; $seed = ($seed * 1103515245 + 12345) % 2147483648; return int($seed / 65536) % $n; }

my @fleet;
sub ev
{
	my ($t, $sandbox, $type, %data) = @_;
	push @fleet, { timestamp => POSIX::strftime('%Y-%m-%dT%H:%M:%SZ', gmtime $t),
		sandboxId => $sandbox, type => $type, data => \%data };
}
my @commands = ('npm test', 'make build', 'pytest -q', 'ls -la', "grep -r 'TODO' .");
my @tools = ('search', 'write_file', 'read_file', 'browser');
for my $s (0 .. 11)
{
	my $sb = sprintf('sb_%02d', $s);
	my $agent = $s % 6 ? 'agent_' . ($s % 5) : undef;
	my $t = $base + 60 * rnd(150) + $s;
	my $end = $t + 1800 + 60 * rnd(150);
	$end = $base + 12600 if $end > $base + 12600;
	my $born = $t;
	ev($t, $sb, 'sandbox.created', image => ('python:3.12', 'node:20', 'ubuntu:24.04')[ $s % 3 ],
		resources => { cpu => 2, memoryMb => 2048 });
	ev($t + 2, $sb, 'sandbox.started', startupDurationMs => 300 + rnd(4000));
	my ($next_sample, $next_cost) = ($t + 60, $t + 600);
	$t += 5;
	while ($t < $end)
	{
		my $what = rnd(100);
		my %agent = defined $agent ? (agentId => $agent) : ();
		if ($what < 35)
		{
			my $cmd = $commands[ rnd(scalar @commands) ];
			my $ms = 5 + rnd(20000);
			ev($t, $sb, 'exec.started', command => $cmd, cwd => '/work');
			my $fate = rnd(100);
			if ($fate < 4) { ev($t + 60, $sb, 'exec.timed_out', command => $cmd, timeoutMs => 60000, signal => 'SIGKILL'); }
			elsif ($fate < 7) { ev($t + 1, $sb, 'exec.failed', command => $cmd, error => 'container unreachable'); }
			else
			{
				ev($t + int($ms / 1000), $sb, 'exec.completed', command => $cmd, exitCode => ($fate < 20 ? 1 + rnd(2) : 0),
					durationMs => $ms, stdout => 'ok', stderr => '');
			}
		}
		elsif ($what < 60)
		{
			my $tool = $tools[ rnd(scalar @tools) ];
			ev($t, $sb, 'tool.invoked', toolName => $tool, toolArgs => { q => "q$t" }, %agent);
			if (rnd(10) == 0) { ev($t + 1, $sb, 'tool.failed', toolName => $tool, error => 'rate limited', %agent); }
			else { ev($t + 1, $sb, 'tool.completed', toolName => $tool, result => 'done', durationMs => 10 + rnd(3000), %agent); }
		}
		elsif ($what < 75)
		{
			my $type = ('file.created', 'file.modified', 'file.read', 'file.deleted')[ rnd(4) ];
			ev($t, $sb, $type, path => "/work/f" . rnd(20), $type eq 'file.deleted' ? () : (sizeBytes => rnd(100000)));
		}
		elsif ($what < 85)
		{
			ev($t, $sb, 'network.egress', host => ('pypi.org', 'registry.npmjs.org', 'github.com')[ rnd(3) ],
				port => 443, bytesSent => rnd(500000));
		}
		elsif ($what < 89)
		{
			my $port = 3000 + rnd(5);
			ev($t, $sb, 'port.exposed', port => $port, url => "https://$sb-$port.example.com");
			ev($t + 30, $sb, 'port.closed', port => $port);
		}
		elsif ($what < 92)
		{
			my $paused = 60 + rnd(600);
			ev($t, $sb, 'sandbox.paused', runtimeDurationMs => 1000 * ($t - $born));
			ev($t + $paused, $sb, 'sandbox.resumed', pausedDurationMs => 1000 * $paused);
			ev($t + $paused, $sb, 'cost.storage', durationMs => 1000 * $paused, rate => 0.0001, cost => 0.0078125 * (1 + rnd(4)));
			$t += $paused;
		}
		while ($next_sample <= $t)
		{
			ev($next_sample, $sb, 'resource.cpu', cpuPercent => 5 + rnd(96), cores => 2);
			ev($next_sample, $sb, 'resource.memory', memoryUsedMb => 200 + rnd(1848), memoryLimitMb => 2048);
			ev($next_sample, $sb, 'resource.disk', diskUsedMb => 1000 + rnd(9240), diskLimitMb => 10240);
			$next_sample += 300;
		}
		while ($next_cost <= $t)
		{
			ev($next_cost, $sb, 'cost.runtime', durationMs => 600000, rate => 0.001, cost => 0.0625 * (1 + rnd(8)));
			$next_cost += 600;
		}
		# now and then two things at the same second (ties the panels must break without ids)
		$t += rnd(8) == 0 ? 0 : 15 + rnd(90);
	}
	next if $s % 4 == 3;    # still running
	ev($end, $sb, 'sandbox.terminated', reason => ('completed', 'timeout', 'error', 'user')[ rnd(4) ],
		totalRuntimeMs => 1000 * ($end - $born));
	ev($end, $sb, 'cost.total', sandboxCost => 0.5 * (1 + rnd(10)), period => 'lifetime');
}
my %types = map { $_->{type} => 1 } @fleet;
is(scalar(keys %types), 25, 'the fleet has every event type');
cmp_ok(scalar @fleet, ">", 2000, 'thousands of events (' . scalar(@fleet) . ')');

# Most events first; after the first fold, the late ones (every seventh,
# with their old timestamps), so that panels read rollups and raw events
# together.  The single server gets them in order, the cluster shuffled
# (a fixed shuffle) and in other batches, through ingest() and
# ingest_jsonl().
my @late = @fleet[ grep { $_ % 7 == 3 } 0 .. $#fleet ];
my @early = @fleet[ grep { $_ % 7 != 3 } 0 .. $#fleet ];
sub shuffled
{
	my @a = @_;
	for (my $i = $#a; $i > 0; $i--) { my $j = rnd($i + 1); @a[ $i, $j ] = @a[ $j, $i ]; }
	return @a;
}
sub sql_literal { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }
sub ingest_sql { return 'SELECT ingested FROM runra_obs.ingest(' . sql_literal(encode_json([@_])) . '::jsonb);'; }
sub ingest_jsonl_sql { return 'SELECT ingested FROM runra_obs.ingest_jsonl(' . sql_literal(join("\n", map { encode_json($_) } @_)) . ');'; }
sub send_events
{
	my ($events, $n) = @_;
	my @mixed = shuffled(@$events);
	my @sql;
	while (my @batch = splice(@mixed, 0, 700))
	{
		push @sql, @sql % 2 ? ingest_jsonl_sql(@batch) : ingest_sql(@batch);
	}
	on_both(sub {
		my ($node) = @_;
		$node->safe_psql('postgres', $node == $single ? ingest_sql(@$events) : join("\n", @sql));
		return [];
	});
	for my $name (sort keys %servers)
	{
		is($servers{$name}->safe_psql('postgres', 'SELECT count(*) FROM runra_obs.sandbox_events'), $n,
			"$name: $n events stored in all");
	}
}
# the same refused events on both (the pipeline dashboard shows them)
my $refused = ingest_sql({ sandboxId => 'sb_bad', type => 'exec.completed' },
	{ timestamp => 'yesterday', sandboxId => 'sb_bad', type => 'exec.completed' },
	{ timestamp => $fleet[0]{timestamp}, type => 'exec.started' });
$_->safe_psql('postgres', $refused) for values %servers;

# Runs $code->($node) for both servers at once (the single server's in a
# child, its answer passed back as JSON); returns {single, citus}.
sub on_both
{
	my ($code) = @_;
	my $file = $single->basedir . '/answer.json';
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		my $answer = eval { $code->($single) } // { error => $@ };
		open my $fh, '>', $file or POSIX::_exit(1);
		print $fh encode_json($answer);
		close $fh;
		POSIX::_exit(0);
	}
	my %answers = (citus => $code->($coordinator));
	waitpid($pid, 0);
	$answers{single} = decode_json(slurp_file($file));
	die "on the single server: $answers{single}{error}" if ref $answers{single} eq 'HASH' && $answers{single}{error};
	return \%answers;
}

# ---- alerts: the same rules evaluated at the same times on both (the
# evaluations read the events: on Citus, distributed queries)
my @rules = (
	q{'sandbox errors', 'error_rate', '{"threshold": 0.25, "window": "10 minutes", "by": "sandbox"}', '{"for": "5 minutes", "contactPoints": ["hook"]}'},
	q{'fleet errors', 'error_rate', '{"threshold": 0.1, "window": "30 minutes"}', '{}'},
	q{'memory high', 'resource', '{"resource": "memory", "abovePercent": 95, "window": "10 minutes"}', '{"contactPoints": ["hook"]}'},
	q{'timeouts', 'exec_timeouts', '{"by": "command", "window": "30 minutes"}', '{}'},
	q{'quiet', 'absence', '{"scope": "sandbox", "duration": "20 minutes", "lookback": "4 hours"}', '{}'});
sub evaluate_alerts
{
	my ($from_minute, $to_minute) = @_;
	my @sql;
	for (my $m = $from_minute; $m <= $to_minute; $m += 15)
	{
		push @sql, map { my ($name) = /^'([^']+)'/;
			"SELECT runra_obs._alert_evaluate((SELECT id FROM runra_obs.alert_rules WHERE name = '$name'), "
			  . "to_timestamp($base + 60 * $m), runra_obs._alert_log_head());" } @rules;
	}
	on_both(sub { $_[0]->safe_psql('postgres', join("\n", @sql)); return [] });
}
for my $node (values %servers)
{
	$node->safe_psql('postgres', q{SELECT runra_obs.add_contact_point('hook', 'webhook', '{"url": "https://hooks.example.com/alerts"}');}
		  . join('', map { "SELECT runra_obs.create_alert($_);" } @rules) . q{
		CREATE ROLE dashboard_alert_admin IN ROLE runra_obs_admin;
		SET ROLE dashboard_alert_admin;   -- a superuser may not write a query rule's SQL
		SELECT runra_obs.create_alert('broken query', 'query', '{"sql": "SELECT count(*) AS value FROM runra_obs.sandbox_events"}');
		RESET ROLE;});
	# it fails once, as the worker records a failed evaluation
	$node->safe_psql('postgres', "SELECT runra_obs._alert_failed((SELECT id FROM runra_obs.alert_rules WHERE name = 'broken query'), "
		  . "to_timestamp($base + 6000), 'canceling statement due to statement timeout')");
}

# ---- every query of every dashboard, as Grafana sends it
my %choice = (
	sandbox => { values => [ 'sb_01', 'sb_02', 'sb_07' ] },
	command => { values => [ 'npm test', "grep -r 'TODO' ." ] },
	event_type => { values => [ 'exec.completed', 'tool.failed', 'resource.memory' ] },
	audit_sandbox => { values => ['sb_05'] },
	rule => { values => [ 'sandbox errors', 'timeouts' ] });
my @passes = (
	[ '1h, All', from => $base, to => $base + 4 * 3600, interval => 3600, select => { audit_sandbox => { values => [ 'sb_01', 'sb_04' ] } } ],
	[ '5m, chosen values', from => $base + 1800, to => $base + 3 * 3600, interval => 300, select => \%choice ]);

# [key, SQL] for every query of every dashboard in every pass.  The
# pipeline dashboard shows the server itself (ingest time, workers): its
# range is the last hour up to now, as a user would look at it.
sub dashboard_queries
{
	my @queries;
	for my $pass (@passes)
	{
		my ($label, %range) = @$pass;
		for my $dash (@dashboards)
		{
			my %r = $dash->{uid} eq 'runra-obs-pipeline'
			  ? (%range, from => time() - 3600, to => time() + 60) : %range;
			my $ctx = grafana_context($dash, %r);
			push @queries, [ "$dash->{uid} \$$_->{name} ($label)", expand($_->{query}, $ctx) ]
			  for @{ $dash->{templating}{list} };
			push @queries, [ "$dash->{uid} annotation $_->{name} ($label)", expand($_->{target}{rawSql}, $ctx) ]
			  for @{ $dash->{annotations}{list} };
			for my $panel (@{ $dash->{panels} })
			{
				push @queries, [ "$dash->{uid}/$panel->{title} ($label)", expand($_->{rawSql}, $ctx) ]
				  for @{ $panel->{targets} };
			}
		}
	}
	return @queries;
}

# What may differ between two servers given the same events, and so is
# left out of the comparison (keyed by panel, the pass left off):
#  - event ids: the audit trail breaks ties between events of the same
#    second by id, and ids follow arrival order, so rows of the same second
#    are compared as a set; a destination's position is an event id;
#  - the server itself: ingest time (the pipeline's rate is compared as
#    the events it adds up to, its delays only for having rows), when
#    rejected events arrived, how long a destination has waited, and of
#    the workers all but their roles (a pid, a start time, a state that
#    reads "running" while maintenance happens to run).
my %normalise = (
	'runra-obs-agents/Audit trail' => \&ties_as_sets,
	'runra-obs-pipeline/Ingest rate' => sub {    # events/s per bucket: their total, as events
		my ($cols, $rows, $q) = @_;
		my ($ms) = $q =~ /greatest\((\d+), 60000\)/;
		my $sum = 0;
		$sum += $_->[1] for @$rows;
		return [ sprintf('%.0f events', $sum * ($ms > 60000 ? $ms : 60000) / 1000) ];
	},
	'runra-obs-pipeline/Ingest delay (created_at to stored)' => sub { return [ @{ $_[1] } ? 'rows' : 'none' ] },
	'runra-obs-pipeline/Rejected events' => sub {    # per source, whenever they came
		my %n;
		$n{ $_->[1] } += $_->[2] for @{ $_[1] };
		return [ map { "$_|$n{$_}" } sort keys %n ];
	},
	'runra-obs-pipeline/Rejection reasons' => sub { return [ map { join('|', @$_[ 0 .. 2 ]) } @{ $_[1] } ] },
	'runra-obs-pipeline/Forward lag (events behind)' => sub { return render($_[1]) },
	'runra-obs-pipeline/Forwarding per destination' => sub {
		my ($cols, $rows) = @_;
		my %skip = map { $_ => 1 } qw(position lag_s last_success);
		my @keep = grep { !$skip{ $cols->[$_] } } 0 .. $#$cols;
		return [ map { join('|', @{$_}[@keep]) } @$rows ];
	},
	'runra-obs-pipeline/Workers' => sub { return [ sort map { $_->[1] } @{ $_[1] } ] },    # the roles
);
sub ties_as_sets
{
	my ($cols, $rows) = @_;
	my (@out, @same);
	for my $row (@$rows, undef)
	{
		if (@same && (!defined $row || $row->[0] ne $same[0][0]))
		{
			push @out, sort map { join('|', @$_) } @same;
			@same = ();
		}
		push @same, $row if defined $row;
	}
	return \@out;
}

# Runs every query on both servers and compares what each returns.
sub same_panels
{
	my ($when) = @_;
	my @queries = dashboard_queries();
	my $t0 = Time::HiRes::time();
	my $answers = on_both(sub { [ reader_queries($_[0], 'grafana_reader', map { $_->[1] } @queries) ] });
	note(sprintf('%s: %d queries on each server in %.1f s', $when, scalar @queries, Time::HiRes::time() - $t0));
	my ($with_rows, @empty) = (0);
	for my $i (0 .. $#queries)
	{
		my ($key, $sql) = @{ $queries[$i] };
		my ($panel) = $key =~ /^(.*) \([^)]*\)$/;
		my %got;
		for my $name (sort keys %servers)
		{
			my $a = $answers->{$name}[$i];
			if (defined $a->{error}) { $got{$name} = "ERROR: $a->{error}"; next; }
			my $rows = $normalise{$panel} ? $normalise{$panel}->($a->{columns}, $a->{rows}, $sql) : render($a->{rows});
			$got{$name} = [ join('|', @{ $a->{columns} }), @$rows ];
		}
		ok(ref $got{single}, "$key: runs on one server ($when)") or diag("$got{single}\n$sql");
		if (ref $got{single} && @{ $got{single} } > 1) { $with_rows++; } else { push @empty, $key; }
		my $n = ref $got{single} ? @{ $got{single} } - 1 : 0;
		is_deeply($got{citus}, $got{single}, "$key: the same $n rows on Citus ($when)")
		  or diag("$sql\n" . explain({ citus => $got{citus}, single => $got{single} }));
	}
	cmp_ok($with_rows, '>=', 0.9 * @queries, "most queries have rows to compare ($when): $with_rows of " . scalar @queries)
	  or diag(explain(\@empty));
	note("no rows ($when): " . join(', ', @empty));
}

send_events(\@early, scalar @early);
evaluate_alerts(15, 150);
same_panels('every event raw');

for my $name (sort keys %servers)
{
	$servers{$name}->safe_psql('postgres', 'SELECT runra_obs.fold_rollups()');
	# a destination that has read nothing: the pipeline shows it behind
	$servers{$name}->safe_psql('postgres', q{SELECT runra_obs.add_destination('archive', 'jsonl',
		'{"filePath": "/dev/null", "startAt": "2000-01-01T00:00:00Z"}')});
}
send_events(\@late, scalar @fleet);
evaluate_alerts(165, 240);
same_panels('folded, late events raw');

is($coordinator->safe_psql('postgres', 'SELECT runra_obs.fold_rollups() > 0'), 't', 'Citus folds the late events');
$single->safe_psql('postgres', 'SELECT runra_obs.fold_rollups()');
same_panels('every event folded');

$single->stop;
$cluster->stop;
done_testing();
