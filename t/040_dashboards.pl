# Every Grafana dashboard in dashboards/: each panel and variable query is
# expanded as Grafana expands it (t/lib/rollups/GrafanaSql.pm), run as a
# login role that is only a member of runra_obs_reader, against known
# events, and checked for the columns its panel type needs and, for the
# known events, the figures it must show; so is every annotation query,
# against known alerts (rules evaluated by hand at chosen times).  A query
# that fails fails here.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use RunraNode;
use Test::More;
use JSON::PP;
use List::Util qw(sum);
use POSIX qw(floor);
use rollups::GrafanaSql qw(load_dashboards expand grafana_context reader_role reader_query render);

my $src = $ENV{RUNRA_OBS_SRC} // '.';
my @dashboards = load_dashboards("$src/dashboards");
ok(@dashboards >= 7, 'seven dashboards or more');

# The rollup worker stays on, as it ran here before: panels read rollups
# below the watermark and raw events above, so their figures must not depend
# on how far it has folded.  Alerts stay off: they are evaluated by hand
# below, at chosen times; no worker races them.
my $node = runra_node('dashboards', 'runra_obs.rollup_enabled = on');

reader_role($node, 'grafana_test');

# ---- known events, one day ago, over three hours ----
my $base = $node->safe_psql('postgres',
	q{SELECT extract(epoch FROM date_trunc('hour', now()) - interval '1 day')::bigint});
my @events;
sub ev
{
	my ($minute, $sandbox, $type, %data) = @_;
	my @t = gmtime($base + 60 * $minute);
	push @events, sprintf('{"timestamp":"%04d-%02d-%02dT%02d:%02d:%02dZ","sandboxId":"%s","type":"%s","data":%s}',
		$t[5] + 1900, $t[4] + 1, @t[3, 2, 1, 0], $sandbox, $type, JSON::PP->new->canonical->encode(\%data));
}
ev(1, 'sb_a', 'sandbox.created', image => 'python:3.12');
ev(2, 'sb_b', 'sandbox.created', image => 'node:20');
ev(3, 'sb_c', 'sandbox.created', image => 'python:3.12');
ev(2, 'sb_a', 'sandbox.started', startupDurationMs => 800);
ev(3, 'sb_b', 'sandbox.started', startupDurationMs => 1200);
ev(4, 'sb_c', 'sandbox.started', startupDurationMs => 3000);
ev(70, 'sb_b', 'sandbox.paused', runtimeDurationMs => 60000);
ev(80, 'sb_b', 'sandbox.resumed', pausedDurationMs => 600000);
ev(150, 'sb_a', 'sandbox.terminated', reason => 'completed', totalRuntimeMs => 9000000);
ev(160, 'sb_b', 'sandbox.terminated', reason => 'timeout', totalRuntimeMs => 9500000);
ev(10 + $_, 'sb_a', 'exec.completed', command => 'npm test', exitCode => ($_ == 9 ? 1 : 0), durationMs => 100 * ($_ + 1)) for 0 .. 9;
ev(70 + $_, 'sb_b', 'exec.completed', command => 'make build', exitCode => ($_ < 2 ? 2 : 0), durationMs => 5000) for 0 .. 4;
ev(130 + $_, 'sb_c', 'exec.completed', command => 'ls', exitCode => 0, durationMs => 5) for 0 .. 4;
ev(90, 'sb_b', 'exec.timed_out', command => 'make build', timeoutMs => 60000, signal => 'SIGKILL');
ev(135, 'sb_c', 'exec.failed', command => 'ls', error => 'oom');
ev(30, 'sb_a', 'cost.runtime', cost => 0.5, durationMs => 1800000, rate => 0.001);
ev(90, 'sb_a', 'cost.runtime', cost => 0.25, durationMs => 900000, rate => 0.001);
ev(90, 'sb_b', 'cost.runtime', cost => 1.0, durationMs => 3600000, rate => 0.001);
ev(140, 'sb_c', 'cost.runtime', cost => 0.125, durationMs => 450000, rate => 0.001);
ev(75, 'sb_b', 'cost.storage', cost => 0.05, durationMs => 600000, rate => 0.0001);
ev(20 + $_, 'sb_a', 'tool.invoked', toolName => 'search', agentId => 'agent_x', toolArgs => { q => "q$_" }) for 0 .. 2;
ev(24, 'sb_a', 'tool.invoked', toolName => 'write', agentId => 'agent_x', toolArgs => { path => '/a' });
ev(100 + $_, 'sb_b', 'tool.invoked', toolName => 'search', agentId => 'agent_y', toolArgs => { q => 'x' }) for 0 .. 1;
ev(102, 'sb_b', 'tool.failed', toolName => 'search', error => 'rate limited');
ev(40, 'sb_a', 'resource.memory', memoryUsedMb => 950, memoryLimitMb => 1000);
ev(45, 'sb_a', 'resource.memory', memoryUsedMb => 500, memoryLimitMb => 1000);
ev(100, 'sb_b', 'resource.memory', memoryUsedMb => 400, memoryLimitMb => 2000);
ev(130, 'sb_c', 'resource.cpu', cpuPercent => 95, cores => 2);
ev(131, 'sb_c', 'resource.cpu', cpuPercent => 50, cores => 2);

is($node->safe_psql('postgres', "SELECT ingested || '/' || failed FROM runra_obs.ingest('[" . join(',', @events) . "]')"),
	scalar(@events) . '/0', 'known events stored');
# a late event (old timestamp, new statement) and a refused one
@events = ();
ev(12, 'sb_a', 'exec.completed', command => 'npm test', exitCode => 1, durationMs => 200);
push @events, '{"sandboxId":"sb_bad","type":"exec.completed"}';
is($node->safe_psql('postgres', "SELECT ingested || '/' || failed FROM runra_obs.ingest('[" . join(',', @events) . "]')"),
	'1/1', 'a late event stored, a bad one refused');

# ---- known alerts: rules evaluated by hand on the known events ----
# (times in minutes from base, as the events' are)
my $at = sub { "to_timestamp(" . ($base + 60 * $_[0]) . ")" };
$node->safe_psql('postgres', q{
    SELECT runra_obs.add_contact_point('hook', 'webhook', '{"url": "https://hooks.example.com/alerts"}');
    SELECT runra_obs.add_contact_point('ops-slack', 'slack', '{"url": "https://hooks.slack.com/services/T0/B0/x"}');
    SELECT runra_obs.create_alert('memory high', 'resource', '{"resource": "memory", "abovePercent": 90}',
                                  '{"contactPoints": ["hook"]}');
    SELECT runra_obs.create_alert('sandbox errors', 'error_rate', '{"threshold": 0.1, "window": "10 minutes", "by": "sandbox"}',
                                  '{"for": "2 minutes", "contactPoints": ["ops-slack"]}');
    SELECT runra_obs.create_alert('fleet errors', 'error_rate', '{"threshold": 0.3, "window": "10 minutes"}');
    SELECT runra_obs.create_alert('timeouts', 'exec_timeouts', '{"by": "sandbox"}', '{"for": "1 hour"}');
    CREATE ROLE dashboard_alert_admin IN ROLE runra_obs_admin;
    SET ROLE dashboard_alert_admin;   -- a superuser may not write a query rule's SQL
    SELECT runra_obs.create_alert('broken query', 'query',
                                  '{"sql": "SELECT count(*) AS value FROM runra_obs.sandbox_events"}');
    RESET ROLE;});
# each evaluation a transaction of its own, as the worker runs them
my @evaluations = (
	[ 20, 'sandbox errors' ],    # sb_a 2 of 11 failed: pending (for 2 minutes)
	[ 22, 'sandbox errors' ],    # sb_a 2 of 9: firing
	[ 41, 'memory high' ],       # sb_a at 95 %: firing
	[ 46, 'memory high' ],       # sb_a at 50 %: resolved
	[ 75, 'sandbox errors' ],    # sb_a no executions: resolved; sb_b 2 of 5: pending
	[ 76, 'sandbox errors' ],    # sb_b still pending
	[ 77, 'sandbox errors' ],    # sb_b firing
	[ 77, 'fleet errors' ],      # 2 of 5: firing
	[ 95, 'timeouts' ]);         # sb_b one timeout: pending (for 1 hour)
$node->safe_psql('postgres', join("\n", map {
	"SELECT runra_obs._alert_evaluate((SELECT id FROM runra_obs.alert_rules WHERE name = '$_->[1]'), "
	  . $at->($_->[0]) . ", runra_obs._alert_log_head());" } @evaluations));
# the query rule fails at 100, as the worker records a failed evaluation
$node->safe_psql('postgres', "SELECT runra_obs._alert_failed((SELECT id FROM runra_obs.alert_rules WHERE name = 'broken query'), "
	  . $at->(100) . ", 'canceling statement due to statement timeout')");
# the five notifications queued, then attempts as the worker records them:
# two sent, one refused (dead), one failing (retried in 30 s), one untried
is($node->safe_psql('postgres', q{SELECT string_agg(rule_name, ',' ORDER BY id) FROM runra_obs.alert_notifications}),
	'sandbox errors,memory high,memory high,sandbox errors,sandbox errors', 'five notifications queued');
$node->safe_psql('postgres', qq{
    SELECT runra_obs._alert_attempted(n.id, n.created_at + interval '1 second', a.outcome, a.error, a.answer, a.retry_ms)
    FROM runra_obs.alert_notifications AS n
    JOIN (VALUES (22, 'sent', NULL, 'ok', NULL::bigint),
                 (41, 'sent', NULL, 'ok', NULL),
                 (46, 'refused', 'HTTP 404', 'no such hook', NULL),
                 (75, 'failed', 'HTTP 503', NULL, 30000)) AS a (minute, outcome, error, answer, retry_ms)
      ON n.created_at = to_timestamp($base + 60 * a.minute)});

# ---- running dashboard SQL as the Grafana role ----
# Runs SQL as grafana_test; returns (columns, rows) or dies with the error.
sub run_query { return reader_query($node, 'grafana_test', @_); }

my $T = sub { $base + 3600 * $_[0] };    # epoch of hour n of the known events
my $H = sub { POSIX::strftime('%Y-%m-%d %H:%M:%S+00', gmtime($T->($_[0]))) };    # as timestamptz text
my $M = sub { POSIX::strftime('%Y-%m-%d %H:%M:%S+00', gmtime($base + 60 * $_[0] + ($_[1] // 0))) };

# Expected rows with the placeholders replaced: T<n> (first column) the
# epoch of hour n, E<m> the epoch of minute m; H<n> hour n and M<m>[s<s>]
# minute m (and second s) as timestamptz text.
sub figures
{
	return [ map { s/^T(\d+)/$T->($1)/er =~ s/^E(\d+)/$base + 60 * $1/er
		  =~ s/\bH(\d+)\b/$H->($1)/ger =~ s/\bM(\d+)(?:s(\d+))?\b/$M->($1, $2)/ger } @_ ];
}

# Expected figures for the known events, range [base, base + 3h], 1h
# interval, every variable on All (audit_sandbox: sb_b).  Rows as
# '|'-joined text; T<n> stands for the epoch of hour n, H<n> for its
# timestamptz text.
my %expected = (
	'runra-obs-costs/Current period total' => ['1.925'],
	"runra-obs-costs/Selected sandboxes' cost" => ['1.925'],
	'runra-obs-costs/Cost over time: runtime vs storage' => [ 'T0|0.5|0', 'T1|1.25|0.05', 'T2|0.125|0' ],
	'runra-obs-costs/Top sandboxes by cost' => [ 'sb_b|1|0.05|1.05', 'sb_a|0.75||0.75', 'sb_c|0.125||0.125' ],
	'runra-obs-costs/Cost per image' => [ 'node:20|1|1.05', 'python:3.12|2|0.875' ],
	'runra-obs-costs/Cost per agent' => [ 'agent_y|1|1.05', 'agent_x|1|0.75', '(no agent)|1|0.125' ],
	'runra-obs-sandbox-health/Sandboxes running now' => ['1'],
	'runra-obs-sandbox-health/Events in range' => ['50'],
	'runra-obs-sandbox-health/Failures in range' => ['7'],
	'runra-obs-sandbox-health/Created, started, terminated' => [ 'T0|3|3|0', 'T2|0|0|2' ],
	'runra-obs-sandbox-health/Paused vs resumed' => ['T1|1|1'],
	'runra-obs-sandbox-health/Termination reasons' => [ 'completed|1', 'timeout|1' ],
	'runra-obs-executions/Error rate' => [ 'T0|0.18181818181818182|0.05', 'T1|0.4|0.05', 'T2|0|0.05' ],
	'runra-obs-executions/Executions and failures' => [ 'T0|11|2', 'T1|5|3', 'T2|5|1' ],
	'runra-obs-executions/Slowest commands' =>
	  [ 'make build|5000|5000.0|5', 'npm test|1000|518.2|11', 'ls|5|5.0|5' ],
	'runra-obs-executions/Top failing commands' => [ 'make build|3|5|1|', 'npm test|2|11||', 'ls|1|5||1' ],
	'runra-obs-executions/Timeouts' => ['T1|1'],
	'runra-obs-executions/Timeouts by command' => ['make build|1|60000'],
	'runra-obs-agents/Tool calls by agent and tool' => [ 'agent_x|search|3', 'agent_y|search|2', 'agent_x|write|1' ],
	'runra-obs-agents/Tool calls and failures over time' => [ 'T0|4|0|0', 'T1|2|0|1' ],
	'runra-obs-sandbox-health/Latest sandboxes' => [ 'sb_a|H0|22|2|0.75|H2', 'sb_b|H0|17|4|1.05|H2', 'sb_c|H0|11|1|0.125|H2' ],
	'runra-obs-agents/Tool failures' => ['search|1|5|0.2000'],
	'runra-obs-resources/Memory against limit (top 10 sandboxes)' =>
	  [ 'T0|sb_a|0.95000000000000000000', 'T1|sb_b|0.20000000000000000000' ],
	'runra-obs-resources/CPU (top 10 sandboxes)' => ['T2|sb_c|95'],
	'runra-obs-resources/Samples above 90 %' => [ 'T0|1|0|0', 'T1|0|0|0', 'T2|0|1|0' ],
	'runra-obs-resources/Sandboxes above 90 %' => [ 'sb_a|1|950|1000|', 'sb_c|1|||95' ],
	# the known alerts
	'runra-obs-alerts/Firing now' => ['2'],
	'runra-obs-alerts/Pending now' => ['1'],
	'runra-obs-alerts/Rules in error' => ['1'],
	'runra-obs-alerts/Notifications pending' => ['2'],
	'runra-obs-alerts/Dead notifications' => ['1'],
	'runra-obs-alerts/Fired in range' => ['4'],
	'runra-obs-alerts/Alerting now' => [
		'fleet errors|firing||0.4|error rate 0.4 above 0.3 (2 of 5 executions failed)|M77',
		'sandbox errors|firing|sandbox_id="sb_b"|0.4|error rate 0.4 above 0.1 (2 of 5 executions failed)|M77',
		'timeouts|pending|sandbox_id="sb_b"|1|1 executions timed out|M95' ],
	'runra-obs-alerts/Failing rules' => ['broken query|query|M100|canceling statement due to statement timeout'],
	'runra-obs-alerts/Transitions' => [ 'T0|2|1|1|0', 'T1|2|1|2|1' ],
	'runra-obs-alerts/Recent transitions' => [
		'M100|broken query||ok|error||canceling statement due to statement timeout',
		'M95|timeouts|sandbox_id="sb_b"|inactive|pending|1|',
		'M77|fleet errors||inactive|firing|0.4|',
		'M77|sandbox errors|sandbox_id="sb_b"|pending|firing|0.4|',
		'M75|sandbox errors|sandbox_id="sb_a"|firing|inactive|0.2222222222222222|',
		'M75|sandbox errors|sandbox_id="sb_b"|inactive|pending|0.4|',
		'M46|memory high|resource="memory", sandbox_id="sb_a"|firing|inactive|95|',
		'M41|memory high|resource="memory", sandbox_id="sb_a"|inactive|firing|95|',
		'M22|sandbox errors|sandbox_id="sb_a"|pending|firing|0.2222222222222222|',
		'M20|sandbox errors|sandbox_id="sb_a"|inactive|pending|0.18181818181818182|' ],
	'runra-obs-alerts/Notifications' => [
		'M46|memory high|hook|dead|1||M46s1|HTTP 404|no such hook',
		'M77|sandbox errors|ops-slack|pending|0|M77|||',
		'M75|sandbox errors|ops-slack|pending|1|M75s31||HTTP 503|',
		'M41|memory high|hook|sent|1||M41s1||ok',
		'M22|sandbox errors|ops-slack|sent|1||M22s1||ok' ],
	'runra-obs-alerts/annotation Alerts firing' => [
		'M22|M75|sandbox errors {sandbox_id="sb_a"}|resolved,sandbox errors',
		'M41|M46|memory high {resource="memory", sandbox_id="sb_a"}|resolved,memory high',
		'M77|H3|sandbox errors {sandbox_id="sb_b"}|firing,sandbox errors',
		'M77|H3|fleet errors|firing,fleet errors' ],
	'runra-obs-alerts/annotation Rule errors' => ['M100|broken query: canceling statement due to statement timeout|error,broken query'],
	'runra-obs-alerts/$rule' => [ 'broken query', 'fleet errors', 'memory high', 'sandbox errors', 'timeouts' ],
);
# percentiles: the histogram bucket each must fall into (value of the
# exact percentile), checked by bucket since histograms are within 9 %
my %percentiles = (
	'runra-obs-sandbox-health/Startup p95' => [ [3000] ],
	'runra-obs-sandbox-health/Startup duration percentiles' => [ [ 'T0', 1200, 3000, 3000 ] ],
	'runra-obs-executions/Latency by command (p50, p95, p99)' => [
		[ 'make build', 5, 5000, 5000, 5000 ],
		[ 'npm test', 11, 500, 1000, 1000 ],
		[ 'ls', 5, 5, 5, 5 ] ],
);

sub bucket { my ($ms) = @_; return $ms < 1 ? 0 : 1 + floor(4 * log($ms) / log(2) + 1e-9); }

# Structural checks every panel must pass; returns the rows.
sub check_panel
{
	my ($dash, $panel, $target, $ctx, $label) = @_;
	my $sql = expand($target->{rawSql}, $ctx);
	my ($columns, $rows) = eval { run_query($sql) };
	if (!ok(defined $columns, "$label: runs")) { diag($@); return; }
	if ($target->{format} eq 'time_series')
	{
		is($columns->[0], 'time', "$label: time column first");
		my @times = map { $_->[0] } @$rows;
		is_deeply(\@times, [ sort { $a <=> $b } @times ], "$label: sorted by time");
		ok(@$columns >= 2, "$label: has a value column");
	}
	else
	{
		ok(@$columns >= 1, "$label: returns columns");
	}
	return ($columns, $rows);
}

# Checks an annotation query as Grafana reads its result (time, timeend
# for a region, text, tags split on commas); returns the rows.
sub check_annotation
{
	my ($anno, $ctx, $label) = @_;
	is($anno->{datasource}{type}, 'grafana-postgresql-datasource', "$label: PostgreSQL datasource");
	is($anno->{target}{format}, 'table', "$label: a table query");
	my ($columns, $rows) = eval { run_query(expand($anno->{target}{rawSql}, $ctx)) };
	if (!ok(defined $columns, "$label: runs")) { diag($@); return; }
	my %at = map { $columns->[$_] => $_ } 0 .. $#$columns;
	ok(defined $at{time} && defined $at{text}, "$label: time and text columns");
	is_deeply([ grep { !/^(time|timeend|text|tags)$/ } @$columns ], [], "$label: no other columns");
	ok(!(grep { $_->[ $at{time} ] eq '' || $_->[ $at{text} ] eq '' } @$rows), "$label: every row has a time and a text");
	if (defined $at{timeend})
	{
		ok(!(grep { $_->[ $at{timeend} ] lt $_->[ $at{time} ] } @$rows), "$label: regions end after they start");
	}
	return $rows;
}

my (%uids, %checked);
my $known = { from => $T->(0), to => $T->(3), interval => 3600 };
for my $dash (@dashboards)
{
	my $uid = $dash->{uid} // '';
	ok($uid =~ /^runra-obs-[a-z-]+$/ && !$uids{$uid}++, "$dash->{_file}: fixed unique uid $uid");
	# figures are found by title
	my %titles;
	is_deeply([ grep { $titles{$_}++ } map { $_->{title} } @{ $dash->{panels} } ], [], "$uid: panel titles unique");
	for my $var (@{ $dash->{templating}{list} })
	{
		is($var->{refresh}, 2, "$uid \$$var->{name}: refreshes on time range change");
		is($var->{datasource}{type}, 'grafana-postgresql-datasource', "$uid \$$var->{name}: PostgreSQL datasource");
		my ($cols, $rows) = eval { run_query(expand($var->{query}, grafana_context($dash, %$known))) };
		ok(defined $cols, "$uid \$$var->{name}: variable query runs") or diag($@);
		ok(@{ $rows // [] } > 0, "$uid \$$var->{name}: offers values");
		if ($rows && (my $want = $expected{"$uid/\$$var->{name}"}))
		{
			$checked{"$uid/\$$var->{name}"}++;
			is_deeply(render($rows), $want, "$uid \$$var->{name}: values") or diag(explain(render($rows)));
		}
	}
	for my $anno (@{ $dash->{annotations}{list} })
	{
		my $key = "$uid/annotation $anno->{name}";
		my $rows = check_annotation($anno, grafana_context($dash, %$known), $key) or next;
		$checked{$key}++;
		if (my $want = $expected{$key})
		{
			is_deeply(render($rows), figures(@$want), "$key: figures") or diag(explain(render($rows)));
		}
	}
	for my $panel (@{ $dash->{panels} })
	{
		my $key = "$uid/$panel->{title}";
		is($panel->{datasource}{type}, 'grafana-postgresql-datasource', "$key: PostgreSQL datasource");
		for my $target (@{ $panel->{targets} })
		{
			ok(defined $target->{rawSql} && $target->{rawSql} =~ /\S/, "$key: has SQL");
			my $range = $uid eq 'runra-obs-pipeline'
			  ? { from => time() - 3600, to => time() + 60, interval => 3600 } : $known;
			my ($columns, $rows) = check_panel($dash, $panel, $target,
				grafana_context($dash, %$range, select => { audit_sandbox => { values => ['sb_b'] } }), $key);
			next unless $rows;
			# long windows read rollups, not raw events (the audit trail is per sandbox)
			ok($target->{rawSql} !~ /sandbox_events/ || $target->{rawSql} =~ /sandbox_id IN \(\$audit_sandbox\)/,
				"$key: reads rollups, or raw events of chosen sandboxes only");
			$checked{$key}++;
			if (my $want = $expected{$key})
			{
				is_deeply(render($rows), figures(@$want), "$key: figures") or diag(explain(render($rows)));
			}
			if (my $want = $percentiles{$key})
			{
				is(scalar @$rows, scalar @$want, "$key: rows");
				for my $i (0 .. $#$want)
				{
					my @w = @{ $want->[$i] };
					my @g = @{ $rows->[$i] // [] };
					# percentile columns are compared by histogram bucket
					my $exp = join('|', map { my $v = $w[$_]; my $g = $g[$_] // '';
						($g =~ /^[\d.]+$/ && $g != int($g)) ? bucket($v) : ($v =~ /^T(\d+)$/ ? $T->($1) : $v) } 0 .. $#w);
					my $got = join('|', map { my $g = $g[$_] // ''; ($g =~ /^[\d.]+$/ && $g != int($g)) ? bucket($g) : $g } 0 .. $#g);
					is($got, $exp, "$key: row $i in the right histogram buckets");
				}
			}
			if ($key eq 'runra-obs-agents/Audit trail')
			{
				is(scalar @$rows, 9, "$key: sb_b's nine tool and exec events");
				ok(!(grep { $_->[1] ne 'sb_b' } @$rows), "$key: only sb_b");
			}
			if ($key eq 'runra-obs-pipeline/Ingest rate')
			{
				is(sprintf('%.0f', sum(map { $_->[1] } @$rows) * 3600), '50', "$key: 50 events stored in the last hour");
			}
			if ($key eq 'runra-obs-pipeline/Rejected events')
			{
				is(sum(map { $_->[2] } @$rows), 1, "$key: the refused event");
			}
		}
	}
}

# every expected figure belongs to a panel that exists (a renamed panel
# must not silently lose its checks)
ok($checked{$_}, "$_: panel exists and was checked") for sort(keys %expected, keys %percentiles);

# A second pass: 5-minute interval, the variables on chosen values.
my %choice = (
	sandbox => { values => [ 'sb_a', 'sb_b' ] },
	command => { values => ['npm test'] },
	event_type => { values => [ 'exec.completed', "it's" ] },
	audit_sandbox => { values => ['sb_a'] },
	rule => { values => ['sandbox errors'] });
# the figures of the known alerts with only 'sandbox errors' chosen
my %chosen = (
	'runra-obs-alerts/Firing now' => ['1'],
	'runra-obs-alerts/Pending now' => ['0'],
	'runra-obs-alerts/Rules in error' => ['0'],
	'runra-obs-alerts/Notifications pending' => ['2'],
	'runra-obs-alerts/Dead notifications' => ['0'],
	'runra-obs-alerts/Fired in range' => ['2'],
	'runra-obs-alerts/Transitions' => [ 'E20|1|0|1|0', 'E75|1|1|1|0' ],
	'runra-obs-alerts/annotation Alerts firing' => [
		'M22|M75|sandbox errors {sandbox_id="sb_a"}|resolved,sandbox errors',
		'M77|H3|sandbox errors {sandbox_id="sb_b"}|firing,sandbox errors' ],
	'runra-obs-alerts/annotation Rule errors' => []);
my %checked_chosen;
for my $dash (@dashboards)
{
	for my $anno (@{ $dash->{annotations}{list} })
	{
		my $key = "$dash->{uid}/annotation $anno->{name}";
		my $rows = check_annotation($anno,
			grafana_context($dash, from => $T->(0), to => $T->(3), interval => 300, select => \%choice), "$key (chosen values)");
		if ($rows && (my $want = $chosen{$key}))
		{
			$checked_chosen{$key}++;
			is_deeply(render($rows), figures(@$want), "$key (chosen values): figures") or diag(explain(render($rows)));
		}
	}
	for my $panel (@{ $dash->{panels} })
	{
		for my $target (@{ $panel->{targets} })
		{
			my ($columns, $rows) = check_panel($dash, $panel, $target,
				grafana_context($dash, from => $T->(0), to => $T->(3), interval => 300, select => \%choice),
				"$dash->{uid}/$panel->{title} (5m, chosen values)");
			my $key = "$dash->{uid}/$panel->{title}";
			if ($rows && (my $want = $chosen{$key}))
			{
				$checked_chosen{$key}++;
				is_deeply(render($rows), figures(@$want), "$key (chosen values): figures") or diag(explain(render($rows)));
			}
			if ($rows && $key eq 'runra-obs-costs/Top sandboxes by cost')
			{
				is_deeply(render($rows), [ 'sb_b|1|0.05|1.05', 'sb_a|0.75||0.75' ], "$key: only the chosen sandboxes");
			}
			if ($rows && $key eq 'runra-obs-executions/Error rate')
			{
				is(sum(map { $_->[1] > 0 ? 1 : 0 } @$rows), 2, "$key: npm test failed in two 5-minute buckets");
			}
		}
	}
}

ok($checked_chosen{$_}, "$_ (chosen values): panel exists and was checked") for sort keys %chosen;

# An alert that fired before the range and resolved inside it is a region
# from its start; one still firing ends at the range's end.
{
	my ($dash) = grep { $_->{uid} eq 'runra-obs-alerts' } @dashboards;
	my ($anno) = grep { $_->{name} eq 'Alerts firing' } @{ $dash->{annotations}{list} };
	my $rows = check_annotation($anno,
		grafana_context($dash, from => $base + 60 * 50, to => $base + 60 * 80, interval => 60), 'alerts firing in [50, 80]');
	is_deeply(render($rows // []), figures(
		'M22|M75|sandbox errors {sandbox_id="sb_a"}|resolved,sandbox errors',
		'M77|M80|sandbox errors {sandbox_id="sb_b"}|firing,sandbox errors',
		'M77|M80|fleet errors|firing,fleet errors'), 'alerts firing in [50, 80]: regions cut to the range');
}

# A query that fails is a failure: the checker itself must notice.
ok(!defined eval { run_query('SELECT * FROM runra_obs.no_such_table') }, 'a failing query is reported');
ok(!defined eval { run_query('SELECT runra_obs.rebuild_rollups(now(), now())') }, 'the Grafana role cannot rebuild');

$node->stop;
done_testing();
