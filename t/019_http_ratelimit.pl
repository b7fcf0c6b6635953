# Per-token rate limits (issue 12): runra_obs.http_token_events_per_second
# and _bytes_per_second are token buckets per bearer token, over all
# workers; a token past one is answered 429 with Retry-After before its
# body is read, other tokens are not held up, and the refusals are counted
# in /metrics.  The rates are set so low (1 event or 1 kB a second) that a
# request taking the bucket far into debt is still refused however slow
# the machine is.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node, $port) = start_http_node(name => 'ratelimit', workers => 2, conf => q{
runra_obs.http_token_events_per_second = 1
runra_obs.http_token_rate_burst = 1s
});
my $busy = create_token($node, 'busy');
my $calm = create_token($node, 'calm');

sub send_events
{
	my ($token, $n, $sandbox) = @_;
	return post_events($port, $token, event_json([ map { event($sandbox) } 1 .. $n ]));
}

is(send_events($busy, 100, 'sb_busy')->{status}, 200, 'a first batch of 100 events is taken (the bucket goes into debt)');
my $r = send_events($busy, 1, 'sb_busy_more');
is($r->{status}, 429, 'the next request of that token: 429');
like($r->{headers}{'retry-after'} // '', qr/^\d+$/, 'with Retry-After');
cmp_ok($r->{headers}{'retry-after'} // 0, '>=', 2, 'saying how long the debt takes to pay (about 100 s)');
cmp_ok($r->{headers}{'retry-after'} // 999, '<=', 101, 'no longer');
like($r->{content}, qr/http_token_events_per_second/, 'the answer names the limit');
is($node->safe_psql('postgres', "SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_busy_more'"),
	'0', 'nothing of it is stored');
# the two workers share the bucket: more tries land on both
is(scalar(grep { send_events($busy, 1, 'sb_busy_more')->{status} == 429 } 1 .. 6), 6,
	'so are more, whichever worker gets them');
is(send_events($calm, 1, 'sb_calm')->{status}, 200, 'another token is not held up');

# OTLP answers in its own shape
$r = http_request($port, 'POST', '/v1/logs', headers => { Authorization => "Bearer $busy",
	'Content-Type' => 'application/json' }, body => '{"resourceLogs":[]}');
is($r->{status}, 429, 'the OTLP routes are limited too');
like($r->{content}, qr/^\{"code":\d+,"message":"This token is over/, 'with a google.rpc.Status body');

# bytes per second
$node->append_conf('postgresql.conf', qq{
runra_obs.http_token_events_per_second = 0
runra_obs.http_token_bytes_per_second = 1kB
});
$node->reload;
ok(poll_status($busy, 200), 'after a reload the event rate is off: the busy token is served');
my $token3 = create_token($node, 'bytes');
my $big = event_json([ map { event('sb_bytes', data => { pad => '"' . ('x' x 1000) . '"' }) } 1 .. 50 ]);
is(post_events($port, $token3, $big)->{status}, 200, 'a 50 kB body is taken');
$r = send_events($token3, 1, 'sb_bytes_more');
is($r->{status}, 429, 'the next request: 429');
like($r->{content}, qr/http_token_bytes_per_second/, 'naming the byte limit');

my $page = http_request($port, 'GET', '/metrics')->{content};
like($page, qr/^runra_obs_http_rate_limited_total\{limit="events"\} (\d+)$/m, 'counted in /metrics');
my ($events) = $page =~ /^runra_obs_http_rate_limited_total\{limit="events"\} (\d+)$/m;
my ($bytes) = $page =~ /^runra_obs_http_rate_limited_total\{limit="bytes"\} (\d+)$/m;
cmp_ok($events, '>=', 8, 'by events');
cmp_ok($bytes, '>=', 1, 'and by bytes');
like($page, qr/^runra_obs_http_requests_total\{route="events",code="429"\} [1-9]/m, 'and as 429 answers');

# no limits: everyone goes again
$node->append_conf('postgresql.conf', "runra_obs.http_token_bytes_per_second = 0\n");
$node->reload;
ok(poll_status($busy, 200), 'with no limit set the busy token is served again');

# Sends one event with $token until the answer is $status (a reload applied).
sub poll_status
{
	my ($token, $status) = @_;
	for (1 .. 300)
	{
		return 1 if send_events($token, 1, 'sb_poll')->{status} == $status;
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

$node->stop;
done_testing();
