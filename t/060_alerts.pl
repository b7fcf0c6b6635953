# The alert worker end to end: a firing rule reaches a real Prometheus
# Alertmanager (Debian's prometheus-alertmanager, started here on a local
# port) with its labels and ends there when it resolves; a webhook that
# answers 503 with Retry-After is retried, a Slack stand-in that answers
# 400 gets a dead letter with its answer kept; a function contact point
# runs as its owner; a rule whose query fails (revoked privileges, a
# timeout) is in the error state while the others go on; the worker comes
# back after it is terminated.  The rule semantics themselves (every kind,
# for, keep_firing_for, no data, late data) are in sql/80_alerts.sql.
use strict;
use warnings;
use File::Temp qw(tempdir);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);
use RunraNode;
use forward::Receiver;
use forward::Util qw(ingest_events event_at);

my $alertmanager = '/usr/bin/prometheus-alertmanager';
plan skip_all => "no $alertmanager (Debian package prometheus-alertmanager)" unless -x $alertmanager;

# ---- a real Alertmanager on a free port ----
my $am_port = PostgreSQL::Test::Cluster::get_free_port();
my $am_dir = tempdir(CLEANUP => 1);
open my $cfg, '>', "$am_dir/am.yml" or die $!;
print $cfg "route:\n  receiver: 'null'\n  group_wait: 0s\nreceivers:\n  - name: 'null'\n";
close $cfg;
my $am_pid = fork() // die "fork: $!";
if ($am_pid == 0)
{
	open STDOUT, '>', "$am_dir/log";
	open STDERR, '>&', \*STDOUT;
	exec $alertmanager, "--config.file=$am_dir/am.yml", "--storage.path=$am_dir/data",
	  "--web.listen-address=127.0.0.1:$am_port", '--cluster.listen-address=';
	die "exec: $!";
}
END { if ($am_pid) { kill 'TERM', $am_pid; waitpid $am_pid, 0; } }

# GET on the Alertmanager (curl: it is in the suite's packages).
sub am_get
{
	my ($path) = @_;
	return scalar `curl -s --max-time 5 http://127.0.0.1:$am_port$path`;
}

sub wait_for
{
	my ($what, $check, $timeout) = @_;
	my $deadline = time + ($timeout // 60);
	while (time < $deadline)
	{
		return 1 if $check->();
		sleep 0.2;
	}
	return 0;
}
ok(wait_for('alertmanager ready', sub { am_get('/-/ready') =~ /OK/ }), 'Alertmanager is up');

# The active alerts Alertmanager holds for alertname $name.
sub am_alerts
{
	my ($name) = @_;
	my $json = am_get('/api/v2/alerts?active=true&silenced=false&inhibited=false');
	my $alerts = eval { decode_json($json) } // [];
	return grep { $_->{labels}{alertname} eq $name } @$alerts;
}

# ---- the node and its contact points ----
my $node = runra_node('alerts', 'runra_obs.alert_enabled = on', 'runra_obs.alert_poll_interval = 100ms',
	'runra_obs.alert_evaluation_timeout = 500ms', 'log_min_messages = info');
my $hook = forward::Receiver->new;
my $slack = forward::Receiver->new;
$hook->plan('503 Retry-After: 1');
$slack->plan('400 BODY {"error":"invalid_payload","channel":"#nope"}');

$node->safe_psql('postgres', qq{
    SELECT runra_obs.add_contact_point('am', 'alertmanager',
        '{"url": "http://127.0.0.1:$am_port", "resendInterval": "1s", "resolvedResendFor": "3s"}');
    SELECT runra_obs.add_contact_point('hook', 'webhook', '{"url": "@{[ $hook->url ]}/alerts", "authorization": "Bearer hook-secret"}');
    SELECT runra_obs.add_contact_point('slack', 'slack', '{"url": "@{[ $slack->url ]}/services/T/B/x"}');
    SELECT runra_obs.create_alert('memory', 'resource', '{"resource": "memory", "abovePercent": 90, "window": "10 minutes"}',
        '{"every": "1s", "labels": {"severity": "page"}, "contactPoints": ["am", "hook", "slack"],
          "annotations": {"summary": "{{ labels.sandbox_id }} uses {{ value }} % of its memory"}}');});

# ---- firing: Alertmanager shows it with the right labels ----
ingest_events($node, event_at(-5000, 'sb_mem', 'resource.memory', { memoryUsedMb => 1945.6, memoryLimitMb => 2048 }));
ok(wait_for('firing in Alertmanager', sub { am_alerts('memory') == 1 }), 'the firing alert reached Alertmanager');
my ($am_alert) = am_alerts('memory');
is_deeply($am_alert->{labels}, { alertname => 'memory', sandbox_id => 'sb_mem', resource => 'memory', severity => 'page' },
	'with the rule\'s and the series\' labels');
is($am_alert->{annotations}{summary}, 'sb_mem uses 95 % of its memory', 'and the rendered summary');

# the webhook answered 503 with Retry-After: 1, then took the retry
ok($node->poll_query_until('postgres', q{
    SELECT status = 'sent' AND attempts = 2 FROM runra_obs.alert_notifications AS n
    JOIN runra_obs.contact_points AS c ON c.id = n.contact_point_id
    WHERE c.name = 'hook' ORDER BY n.id LIMIT 1}), 'a 503 with Retry-After is retried, and the retry is sent');
my @hook_requests = $hook->requests;
ok(@hook_requests >= 2 && $hook_requests[1]{t} - $hook_requests[0]{t} >= 0.9,
	'no sooner than Retry-After asked');
is($hook_requests[0]{headers}{authorization}, 'Bearer hook-secret', 'with the Authorization of the contact point');
my $payload = decode_json($hook_requests[-1]{body});
is_deeply([ $payload->{version}, $payload->{status}, $payload->{receiver}, scalar @{ $payload->{alerts} } ],
	[ '1', 'firing', 'hook', 1 ], 'Grafana\'s webhook payload');

# Slack answered 400: a dead letter, its answer kept, tried once
ok($node->poll_query_until('postgres', q{
    SELECT status = 'dead' FROM runra_obs.alert_notifications AS n
    JOIN runra_obs.contact_points AS c ON c.id = n.contact_point_id
    WHERE c.name = 'slack' ORDER BY n.id LIMIT 1}), 'a 400 from Slack is a dead letter');
is($node->safe_psql('postgres', q{
    SELECT attempts || ' ' || last_error || ' ' || answer FROM runra_obs.alert_notifications AS n
    JOIN runra_obs.contact_points AS c ON c.id = n.contact_point_id
    WHERE c.name = 'slack' ORDER BY n.id LIMIT 1}),
	'1 HTTP 400 from slack {"error":"invalid_payload","channel":"#nope"}', 'tried once, with the answer kept');
my $slack_body = decode_json(($slack->requests)[0]{body});
ok(defined $slack_body->{text} && ref $slack_body->{blocks} eq 'ARRAY', 'Slack got text and blocks');

# Alertmanager is told again (resendInterval 1s): its endsAt moves ahead
my $ends = $am_alert->{endsAt};
ok(wait_for('endsAt moved', sub { my ($a) = am_alerts('memory'); $a && $a->{endsAt} gt $ends }),
	'firing alerts are re-sent to Alertmanager with endsAt ahead');
is($node->safe_psql('postgres', "SELECT count(*) FROM runra_obs.alert_notifications WHERE rule_name = 'memory' AND contact_point_id = (SELECT id FROM runra_obs.contact_points WHERE name = 'hook')"),
	'1', 'while the webhook is told once');

# ---- resolved: it ends in Alertmanager, the webhook hears it ----
ingest_events($node, event_at(0, 'sb_mem', 'resource.memory', { memoryUsedMb => 100, memoryLimitMb => 2048 }));
ok(wait_for('resolved in Alertmanager', sub { am_alerts('memory') == 0 }), 'the resolved alert ends in Alertmanager');
ok(wait_for('resolved webhook', sub {
	my @r = $hook->requests;
	@r && decode_json($r[-1]{body})->{status} eq 'resolved' }), 'the webhook is told it resolved');
is($node->safe_psql('postgres', q{
    SELECT string_agg(from_state || '>' || to_state, ' ' ORDER BY id) FROM runra_obs.alert_history WHERE rule_name = 'memory'}),
	'inactive>firing firing>inactive', 'history has both transitions');
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM runra_obs.alert_instances"),
	'the resolved alert is forgotten once resolvedResendFor is over');

# ---- a slow contact point delays no evaluation ----
$hook->plan('200 DELAY=10');
$node->safe_psql('postgres', q{
    SELECT runra_obs.create_alert('tool failures', 'match', '{"eventTypes": ["tool.failed"]}',
        '{"every": "1s", "contactPoints": ["hook"]}');});
my $before = $node->safe_psql('postgres', "SELECT evaluations FROM runra_obs.alert_rule_runs JOIN runra_obs.alert_rules ON id = rule_id WHERE name = 'memory'");
ingest_events($node, event_at(0, 'sb_tool', 'tool.failed', { toolName => 'browser' }));
ok($node->poll_query_until('postgres', qq{
    SELECT (SELECT evaluations >= $before + 3 FROM runra_obs.alert_rule_runs JOIN runra_obs.alert_rules ON id = rule_id WHERE name = 'memory')
       AND (SELECT attempts = 0 AND status = 'pending' FROM runra_obs.alert_notifications WHERE rule_name = 'tool failures')}),
	'rules are evaluated on time while a contact point takes its time to answer');
ok($node->poll_query_until('postgres', "SELECT status = 'sent' FROM runra_obs.alert_notifications WHERE rule_name = 'tool failures'"),
	'and its answer is recorded when it comes');

# ---- a function contact point runs as its owner ----
$node->safe_psql('postgres', q{
    CREATE ROLE alert_fn_owner;
    CREATE TABLE public.heard (body jsonb, by_role text);
    GRANT INSERT ON public.heard TO alert_fn_owner;
    CREATE FUNCTION public.remember(n jsonb) RETURNS void LANGUAGE sql
        AS $$ INSERT INTO public.heard VALUES (n, current_user) $$;
    ALTER FUNCTION public.remember(jsonb) OWNER TO alert_fn_owner;
    SELECT runra_obs.add_contact_point('fn', 'function', '{"handler": "public.remember(jsonb)"}');
    SELECT runra_obs.create_alert('timeouts', 'exec_timeouts', '{"above": 0}', '{"every": "1s", "contactPoints": ["fn"]}');});
ingest_events($node, event_at(-1000, 'sb_t', 'exec.timed_out', { command => 'pytest', timeoutMs => 60000 }));
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM public.heard"), 'the function contact point was called');
is($node->safe_psql('postgres', "SELECT by_role || ' ' || (body ->> 'title') FROM public.heard"),
	'alert_fn_owner [FIRING:1] timeouts', 'as its owner, with the payload');

# a handler slower than the contact point's timeoutMs fails alone, and is retried
$node->safe_psql('postgres', q{
    CREATE FUNCTION public.nap(n jsonb) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(30) $$;
    ALTER FUNCTION public.nap(jsonb) OWNER TO alert_fn_owner;
    SELECT runra_obs.add_contact_point('napper', 'function', '{"handler": "public.nap(jsonb)", "timeoutMs": 500}');
    SELECT runra_obs.create_alert('file errors', 'match', '{"eventTypes": ["file.deleted"]}', '{"every": "1s", "contactPoints": ["napper"]}');});
ingest_events($node, event_at(0, 'sb_f', 'file.deleted', { path => '/tmp/x' }));
ok($node->poll_query_until('postgres', q{
    SELECT attempts >= 1 AND status = 'pending' AND last_error ~ 'statement timeout'
    FROM runra_obs.alert_notifications WHERE rule_name = 'file errors'}),
	'a handler slower than timeoutMs is cut off and tried again later');

# ---- failing rules: an error state each, the others go on ----
$node->safe_psql('postgres', q{
    CREATE ROLE alert_author IN ROLE runra_obs_admin;
    CREATE TABLE public.budgets (team text, spent numeric);
    INSERT INTO public.budgets VALUES ('infra', 120);
    GRANT SELECT ON public.budgets TO alert_author;
    SET ROLE alert_author;
    SELECT runra_obs.create_alert('over budget', 'query',
        '{"sql": "SELECT team, spent AS value FROM public.budgets", "above": 100}', '{"every": "1s"}');
    SELECT runra_obs.create_alert('slow query', 'query',
        '{"sql": "SELECT ''x'' AS what, 1 AS value FROM pg_sleep(5)"}', '{"every": "1s"}');
    RESET ROLE;});
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM runra_obs.alert_states WHERE rule = 'over budget' AND state = 'firing'"),
	'a query rule fires with its owner\'s privileges');
$node->safe_psql('postgres', 'REVOKE SELECT ON public.budgets FROM alert_author');
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM runra_obs.alert_states WHERE rule = 'over budget' AND state = 'error' AND error ~ 'permission denied for table budgets'"),
	'revoked: the worker runs it as its owner, not as a superuser, and the rule is in error');
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM runra_obs.alert_states WHERE rule = 'slow query' AND state = 'error' AND error ~ 'statement timeout'"),
	'an evaluation slower than runra_obs.alert_evaluation_timeout is cut off');
my $evaluations = $node->safe_psql('postgres', "SELECT evaluations FROM runra_obs.alert_rule_runs JOIN runra_obs.alert_rules ON id = rule_id WHERE name = 'memory'");
ok($node->poll_query_until('postgres', "SELECT evaluations > $evaluations + 2 FROM runra_obs.alert_rule_runs JOIN runra_obs.alert_rules ON id = rule_id WHERE name = 'memory'"),
	'the other rules go on being evaluated');

# ---- the worker comes back after it is terminated ----
my $pid = $node->safe_psql('postgres', "SELECT pid FROM runra_obs.worker_status WHERE role = 'alerts'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM runra_obs.worker_status WHERE role = 'alerts' AND pid <> $pid"),
	'a terminated alert worker is started again');
$evaluations = $node->safe_psql('postgres', "SELECT evaluations FROM runra_obs.alert_rule_runs JOIN runra_obs.alert_rules ON id = rule_id WHERE name = 'memory'");
ok($node->poll_query_until('postgres', "SELECT evaluations > $evaluations FROM runra_obs.alert_rule_runs JOIN runra_obs.alert_rules ON id = rule_id WHERE name = 'memory'"),
	'and evaluates again');

$hook->stop;
$slack->stop;
$node->stop;
done_testing();
