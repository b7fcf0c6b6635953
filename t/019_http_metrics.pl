# GET /metrics for the whole pipeline (issue 12): per destination its queue,
# lag, sent, failed and dead letters; the NOTIFY listener's state; the last
# maintenance run; each worker's start; runra_obs_build_info — and the real
# page passes promtool.  Scrapes are not ingest requests; an optional
# bearer token (runra_obs.http_metrics_token, superuser-only) guards the
# page; when SQL cannot be read the page still answers with
# runra_obs_metrics_sql_up 0.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use File::Temp qw(tempdir);
use PostgreSQL::Test::Utils;
use Test::More;

my $dir = tempdir(CLEANUP => 1);
my ($node, $port) = start_http_node(name => 'metrics', conf => q{
runra_obs.forward_enabled = on
runra_obs.forward_poll_interval = 50ms
runra_obs.notify_channel = 'runra_events'
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
my $file = "$dir/metrics.txt";
open(my $fh, '>', $file) or die;
print $fh $text;
close($fh);
my $lint = `promtool check metrics < '$file' 2>&1`;
is($? >> 8, 0, 'promtool check metrics passes') or diag($lint);
is($lint, '', 'without a single remark');

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

# scrapes are not ingest requests
http_request($port, 'GET', '/metrics') for 1 .. 3;
$text = http_request($port, 'GET', '/metrics')->{content};
is(sample('runra_obs_http_requests_total{route="events",code="200"}'), 1, 'scrapes do not count as ingest requests');
cmp_ok(sample('runra_obs_http_requests_total{route="metrics",code="200"}'), '>=', 4, 'they have a route of their own');

# SQL cannot be read (a held lock, past http_lock_timeout): still an answer
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE runra_obs.destinations IN ACCESS EXCLUSIVE MODE;');
$page = http_request($port, 'GET', '/metrics');
$locker->query_safe('COMMIT');
$locker->quit;
is($page->{status}, 200, 'while SQL cannot be read, /metrics still answers');
like($page->{content}, qr/^runra_obs_metrics_sql_up 0$/m, 'saying so');
like($page->{content}, qr/^runra_obs_http_open_connections \d+$/m, 'with the shared-memory counters');

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
