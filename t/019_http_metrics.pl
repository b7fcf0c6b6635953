# GET /metrics for the whole pipeline (issue 12): per destination its queue,
# lag, sent, failed and dead letters; the NOTIFY listener's state;
# maintenance runs and failures and the last success; worker starts and
# restarts; alerting (rules by health and state, alerts, notifications per
# contact point, evaluations and their failures, the alert worker's lag);
# runra_obs_build_info — and the real page passes promtool.  Scrapes are
# not ingest requests; an optional bearer token
# (runra_obs.http_metrics_token, superuser-only) guards the page; when SQL
# cannot be read the page still answers with runra_obs_metrics_sql_up 0.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use File::Temp qw(tempdir);
use PostgreSQL::Test::Utils;
use Test::More;
use forward::Receiver;

my $dir = tempdir(CLEANUP => 1);
my ($node, $port) = start_http_node(name => 'metrics', conf => q{
runra_obs.forward_enabled = on
runra_obs.forward_poll_interval = 50ms
runra_obs.notify_channel = 'runra_events'
runra_obs.maintenance_interval = 1s
runra_obs.alert_enabled = on
runra_obs.alert_poll_interval = 100ms
});
my $token = create_token($node, 'metrics');

# one destination that delivers, one that cannot (its directory is missing)
$node->safe_psql('postgres', qq{
	SELECT runra_obs.add_destination('files', 'jsonl', '{"filePath":"$dir/events.jsonl","flushIntervalMs":0}', '{}');
	SELECT runra_obs.add_destination('nowhere "x"', 'jsonl', '{"filePath":"$dir/missing/e.jsonl","flushIntervalMs":0}', '{}');
});
is(post_events($port, $token, event_json([ map { event("sb_m$_") } 1 .. 3 ]))->{status}, 200, 'three events in');
ok($node->poll_query_until('postgres', q{
	SELECT bool_and(CASE destination WHEN 'files' THEN sent = 3 AND behind_events = 0 ELSE failed > 0 END)
	FROM runra_obs.forward_status}), 'one destination delivered them, the other failed');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) FILTER (WHERE role = 'notify' AND state LIKE 'listening%') > 0
	   AND count(*) FILTER (WHERE last_maintenance_at IS NOT NULL) > 0
	FROM runra_obs.worker_status}),
	'the listener listens and maintenance has run');

my $page = http_request($port, 'GET', '/metrics');
is($page->{status}, 200, 'GET /metrics: 200');
my $text = $page->{content};

# promtool reads the real page: format, types, names, HELP
sub promtool_ok
{
	my ($page, $what) = @_;
	my $file = "$dir/metrics.txt";
	open(my $fh, '>', $file) or die;
	print $fh $page;
	close($fh);
	my $lint = `promtool check metrics < '$file' 2>&1`;
	is($? >> 8, 0, "promtool check metrics passes$what") or diag($lint);
	is($lint, '', 'without a single remark');
}
promtool_ok($text, '');

sub sample
{
	my ($series) = @_;
	return $text =~ /^\Q$series\E (\S+)$/m ? $1 : undef;
}
my $version = $node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'runra_obs'");
like($text, qr/^runra_obs_build_info\{version="\Q$version\E",postgresql="15[^"]*",libmicrohttpd="0\.9\.\d+",tls="true"\} 1$/m,
	'runra_obs_build_info with the installed version, PostgreSQL, libmicrohttpd and TLS support');
is(sample('runra_obs_metrics_sql_up'), 1, 'the pipeline was read from SQL');
is(sample('runra_obs_destination_sent_events_total{destination="files"}'), 3, 'sent, per destination');
is(sample('runra_obs_destination_queue_events{destination="files"}'), 0, 'its queue is empty');
is(sample('runra_obs_destination_lag_seconds{destination="files"}'), 0, 'and it has no lag');
ok(defined sample('runra_obs_destination_last_success_timestamp_seconds{destination="files"}'),
	'its last success is shown');
cmp_ok(sample('runra_obs_destination_failed_events_total{destination="nowhere \"x\""}'), '>', 0,
	'failed, for the other (its name escaped as a label value)');
cmp_ok(sample('runra_obs_destination_queue_events{destination="nowhere \"x\""}'), '>', 0,
	'whose queue is not empty');
ok(defined sample('runra_obs_destination_dead_letters{destination="files"}'), 'dead letters per destination');
is(sample('runra_obs_notify_listener_state{state="listening"}'), 1, 'the NOTIFY listener: listening');
is(sample('runra_obs_notify_listener_state{state="waiting_to_reconnect"}'), 0, 'and in no other state');
# (the role that runs maintenance: whichever worker does it)
like($text, qr/^runra_obs_maintenance_last_run_timestamp_seconds\{role="[a-z]+"\} \d+/m, 'the last maintenance run');
like($text, qr/^runra_obs_maintenance_last_run_failed\{role="[a-z]+"\} 0$/m, 'and that it did not fail');
like($text, qr/^runra_obs_worker_start_time_seconds\{role="http",pid="\d+"\} \d+/m, 'each worker\'s start');
like($text, qr/^runra_obs_worker_start_time_seconds\{role="forward",pid="\d+"\} \d+/m, 'the forward worker too');
is(sample('runra_obs_http_worker_starts_total'), 1, 'HTTP worker starts');
is(sample('runra_obs_http_events_ingested_total'), 3, 'the HTTP counters are still there');

# ---- maintenance: runs, failures and the last success, counted in shared memory
cmp_ok(sample('runra_obs_maintenance_runs_total'), '>=', 1, 'maintenance runs are counted');
is(sample('runra_obs_maintenance_failures_total'), 0, 'none failed');
cmp_ok(abs(sample('runra_obs_maintenance_last_success_timestamp_seconds') - time), '<', 60,
	'the last success is a moment ago');
ok(defined sample('runra_obs_maintenance_last_duration_seconds'), 'and how long the last run took');
ok(defined sample('runra_obs_maintenance_partitions_total{action="skipped"}')
	  && defined sample('runra_obs_maintenance_partitions_total{action="created"}'),
	'partitions created, dropped and skipped');
# a partition locked by a session: every run fails on its lock timeout (as
# in t/002), is counted, and the last success stands still
my $oldest = $node->safe_psql('postgres', 'SELECT partition FROM runra_obs.partitions ORDER BY lower LIMIT 1');
my $locker = $node->background_psql('postgres');
$locker->query_safe("BEGIN; LOCK TABLE $oldest IN ACCESS EXCLUSIVE MODE");
ok(wait_metric('runra_obs_maintenance_failures_total', sub { $_[0] >= 2 }), 'failed runs are counted');
my $success = metric_value($port, 'runra_obs_maintenance_last_success_timestamp_seconds');
ok(wait_metric('runra_obs_maintenance_failures_total', sub { $_[0] >= 3 }), 'each of them');
is(metric_value($port, 'runra_obs_maintenance_last_success_timestamp_seconds'), $success,
	'while they fail, the last success stands still');
$locker->query_safe('COMMIT');
$locker->quit;
ok(wait_metric('runra_obs_maintenance_last_success_timestamp_seconds', sub { $_[0] > $success }),
	'and moves again once a run succeeds');

# ---- worker starts and restarts, by role (shared memory: the status slot dies with its worker)
$text = http_request($port, 'GET', '/metrics')->{content};
is(sample('runra_obs_worker_starts_total{role="forward"}'), 1, 'worker starts by role');
is(sample('runra_obs_worker_restarts_total{role="forward"}'), 0, 'no restart yet');
my $forward_pid = $node->safe_psql('postgres', "SELECT pid FROM runra_obs.worker_status WHERE role = 'forward'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($forward_pid)");
ok(wait_metric('runra_obs_worker_restarts_total{role="forward"}', sub { $_[0] == 1 }),
	'a terminated forward worker, started again: one restart');
$text = http_request($port, 'GET', '/metrics')->{content};
is(sample('runra_obs_worker_starts_total{role="forward"}'), 2, 'two starts');
is(sample('runra_obs_worker_restarts_total{role="http"}'), 0, 'the others did not restart');
is(sample('runra_obs_worker_restarts_total{role="maintenance"}'), 0, 'the maintenance worker neither');

# ---- alerting: rules by health and state, alerts, notifications per
# contact point, evaluations and failures (shared memory), the worker's lag
my $failing = forward::Receiver->new;
$failing->plan(('500 BODY {"error":"busy"}') x 100);
my $refusing = forward::Receiver->new;
$refusing->plan('400 BODY {"error":"no"}');
$node->safe_psql('postgres', qq{
	SELECT runra_obs.add_contact_point('busy hook', 'webhook', '{"url": "@{[ $failing->url ]}/a"}');
	SELECT runra_obs.add_contact_point('refuser', 'webhook', '{"url": "@{[ $refusing->url ]}/a"}');
	CREATE ROLE alert_author IN ROLE runra_obs_admin;
	CREATE TABLE public.vals (v text);
	GRANT SELECT ON public.vals TO alert_author;
	BEGIN;
	SET LOCAL ROLE alert_author;
	SELECT runra_obs.create_alert('fires', 'query', '{"sql": "SELECT ''x'' AS what, 1 AS value"}',
	    '{"every": "1s", "contactPoints": ["busy hook", "refuser"]}');
	SELECT runra_obs.create_alert('broken', 'query', '{"sql": "SELECT v::int AS value FROM public.vals"}', '{"every": "1s"}');
	SELECT runra_obs.create_alert('quiet', 'query', '{"sql": "SELECT 1 AS value"}', '{"every": "1s"}');
	SELECT runra_obs.pause_alert('quiet');
	COMMIT;
	SELECT runra_obs.create_alert('matcher', 'match', '{"eventTypes": ["tool.failed"]}', '{"every": "1s"}');
	INSERT INTO public.vals VALUES ('not a number');});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) FILTER (WHERE name = 'fires' AND health = 'ok' AND firing = 1)
	     + count(*) FILTER (WHERE name = 'broken' AND health = 'error')
	     + count(*) FILTER (WHERE name = 'matcher' AND health = 'ok') = 3
	FROM runra_obs.alert_rule_status}), 'one rule fires, one fails, one matches nothing, one is paused');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) FILTER (WHERE status = 'dead') = 1 AND count(*) FILTER (WHERE status = 'pending' AND attempts > 0) = 1
	FROM runra_obs.alert_notifications}), 'one notification refused, one being retried');
$text = http_request($port, 'GET', '/metrics')->{content};
promtool_ok($text, ' with alerting, restarts and maintenance failures on the page');
is(join(' ', map { sample(qq{runra_obs_alert_rules_by_health{health="$_"}}) } qw(unknown ok nodata error)),
	'1 2 0 1', 'rules by health: unknown (the paused one), ok, nodata, error');
is(join(' ', map { sample(qq{runra_obs_alert_rules_by_state{state="$_"}}) } qw(inactive pending firing)),
	'3 0 1', 'rules by state: three inactive, one firing');
is(sample('runra_obs_alert_rules_paused'), 1, 'one paused');
is(sample('runra_obs_alert_instances{state="firing"}') . ' ' . sample('runra_obs_alert_instances{state="pending"}'),
	'1 0', 'alerts by state');
is(sample('runra_obs_alert_notifications{contact_point="refuser",status="dead"}'), 1, 'dead notifications per contact point');
is(sample('runra_obs_alert_notifications{contact_point="busy hook",status="pending"}'), 1, 'pending ones');
is(sample('runra_obs_alert_notifications{contact_point="refuser",status="pending"}'), 0, 'zero where there are none');
cmp_ok(sample('runra_obs_alert_notification_oldest_pending_seconds{contact_point="busy hook"}'), '>', 0,
	'how long the oldest pending one has waited');
is(sample('runra_obs_alert_notification_oldest_pending_seconds{contact_point="refuser"}'), 0, '0 with none pending');
cmp_ok(sample('runra_obs_alert_evaluations_total'), '>=', 3, 'evaluations are counted');
cmp_ok(sample('runra_obs_alert_evaluation_failures_total'), '>=', 1, 'and the failed ones');
is(sample('runra_obs_alert_notification_attempts_total{outcome="refused"}'), 1, 'attempts refused');
cmp_ok(sample('runra_obs_alert_notification_attempts_total{outcome="failed"}'), '>=', 1, 'attempts failed');
is(sample('runra_obs_alert_notification_attempts_total{outcome="sent"}'), 0, 'none sent');
cmp_ok(sample('runra_obs_alert_evaluation_lag_seconds'), '<', 30, 'the alert worker keeps to its schedule');
ok(defined sample('runra_obs_alert_match_lag_seconds') && defined sample('runra_obs_alert_match_lag_ids'),
	'and how far the match rules are behind the log');
# the worker stopped: its schedule lag grows
$node->safe_psql('postgres', "ALTER SYSTEM SET runra_obs.alert_poll_interval = '60s'");
$node->reload;
ok(wait_metric('runra_obs_alert_evaluation_lag_seconds', sub { $_[0] >= 2 }),
	'an alert worker that falls behind shows it as lag');
$node->safe_psql('postgres', "ALTER SYSTEM RESET runra_obs.alert_poll_interval");
$node->reload;
$failing->stop;
$refusing->stop;

# scrapes are not ingest requests
http_request($port, 'GET', '/metrics') for 1 .. 3;
$text = http_request($port, 'GET', '/metrics')->{content};
is(sample('runra_obs_http_requests_total{route="events",code="200"}'), 1, 'scrapes do not count as ingest requests');
cmp_ok(sample('runra_obs_http_requests_total{route="metrics",code="200"}'), '>=', 4, 'they have a route of their own');

# SQL cannot be read (a held lock, past http_lock_timeout): still an answer
$locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE runra_obs.destinations IN ACCESS EXCLUSIVE MODE;');
$page = http_request($port, 'GET', '/metrics');
$locker->query_safe('COMMIT');
$locker->quit;
is($page->{status}, 200, 'while SQL cannot be read, /metrics still answers');
like($page->{content}, qr/^runra_obs_metrics_sql_up 0$/m, 'saying so');
like($page->{content}, qr/^runra_obs_http_open_connections \d+$/m, 'with the shared-memory counters');
like($page->{content}, qr/^runra_obs_maintenance_runs_total \d+$/m, 'the workers\' too');

# a bearer token for /metrics
$node->append_conf('postgresql.conf', "runra_obs.http_metrics_token = 'scrape-s3cret'\n");
$node->reload;
ok(wait_status(401), 'with a metrics token set, no token: 401');
my $r = http_request($port, 'GET', '/metrics');
like($r->{headers}{'www-authenticate'} // '', qr/^Bearer/, 'with WWW-Authenticate');
is(http_request($port, 'GET', '/metrics', headers => { Authorization => 'Bearer scrape-wrong' })->{status},
	401, 'a wrong token: 401');
is(http_request($port, 'GET', '/metrics', headers => { Authorization => "Bearer $token" })->{status},
	401, 'an ingest token does not open /metrics');
is(http_request($port, 'GET', '/metrics', headers => { Authorization => 'Bearer scrape-s3cret' })->{status},
	200, 'the metrics token: 200');
is(http_request($port, 'GET', '/healthz')->{status}, 200, '/healthz needs no token');
$node->safe_psql('postgres', 'CREATE ROLE scraper LOGIN');
my ($rc, $out, $err) = $node->psql('postgres', 'SHOW runra_obs.http_metrics_token', extra_params => [ '-U', 'scraper' ]);
like($err, qr/must be superuser/, 'the token is a secret: other roles cannot read it');

# Waits until the sample $series on GET /metrics passes $check.
sub wait_metric
{
	my ($series, $check) = @_;
	for (1 .. 600)
	{
		my $v = metric_value($port, $series);
		return 1 if defined $v && $check->($v);
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

# Waits until GET /metrics without a token gets $status (the reload applied).
sub wait_status
{
	my ($status) = @_;
	for (1 .. 300)
	{
		return 1 if http_request($port, 'GET', '/metrics')->{status} == $status;
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

$node->stop;
done_testing();
