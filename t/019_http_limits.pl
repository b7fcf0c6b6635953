# Connection limits and the request-head deadline (issue 12): a client
# that trickles its head is cut off at runra_obs.http_header_timeout however
# often it sends; one address cannot hold more than
# runra_obs.http_max_connections_per_address connections, a worker no more
# than runra_obs.http_max_connections, and past either the client is told
# 503 with Retry-After; others are served all along.  Clients on
# 127.0.0.x play different addresses.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use IO::Select;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

$SIG{PIPE} = 'IGNORE';

# an idle timeout long enough never to be what closes a connection here
my ($node, $port) = start_http_node(name => 'limits', conf => q{
runra_obs.http_connection_timeout = 300
runra_obs.http_header_timeout = 300
runra_obs.http_max_connections = 6
runra_obs.http_max_connections_per_address = 3
});
my $token = create_token($node, 'limits');

sub post_ok
{
	my ($sandbox) = @_;
	return post_events($port, $token, event_json([ event($sandbox) ]))->{status};
}

# Waits until the worker holds n connections besides the scrape asking.
sub wait_open
{
	my ($n) = @_;
	for (1 .. 300)
	{
		my $open = metric_value($port, 'runra_obs_http_open_connections') // -1;
		return 1 if $open == $n + 1;
		usleep(100_000);
	}
	return 0;
}

# A request that is answered as soon as its head is read.
my $healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

# --- per address: the fourth connection from 127.0.0.3 is told 503
my @held = map { raw_connect($port, '127.0.0.3') } 1 .. 3;
ok(wait_open(3), 'three idle connections from 127.0.0.3 are open');
my $answer = raw_request($port, $healthz, from => '127.0.0.3');
like($answer, qr{^HTTP/1\.1 503 }, 'a fourth from the same address: 503');
like($answer, qr{^Retry-After: \d+\r$}mi, 'with Retry-After');
like($answer, qr{^Connection: close\r$}mi, 'and the connection is closed');
like($answer, qr{http_max_connections_per_address}, 'the answer names the limit');
is(post_ok('sb_other_address'), 200, 'meanwhile another address is served');

# --- per worker: with 127.0.0.3's three, three more fill the worker (the
# scrape that waits for the first two is the sixth; the worker accepts in
# order, so the last one is in before the seventh)
push @held, map { raw_connect($port, "127.0.0.$_") } 4 .. 5;
ok(wait_open(5), 'five connections open');
push @held, raw_connect($port, '127.0.0.6');
$answer = raw_request($port, $healthz, from => '127.0.0.7');
like($answer, qr{^HTTP/1\.1 503 .*http_max_connections\b}s, 'a seventh: 503 naming the worker limit');
close($_) for @held;
ok(wait_open(0), 'the held connections are gone');
is(post_ok('sb_after_full'), 200, 'once they are closed, requests are served again');

# --- the head deadline: trickling clients are cut off
$node->append_conf('postgresql.conf', 'runra_obs.http_header_timeout = 2');
$node->reload;
# the reload is seen at the worker's next loop turn: wait for it to apply
# (a connection with no head at all is closed by the new deadline)
my $probe = raw_connect($port, '127.0.0.8');
my ($said, $closed) = read_until_closed($probe, 60);
ok($closed && $said eq '', 'a connection that sends nothing is closed, without an answer');

# three slowloris clients send a header line every 0.2 s, for up to 60 s
my @slow = map { raw_connect($port, "127.0.0.$_") } 10 .. 12;
syswrite($_, "POST /v1/events HTTP/1.1\r\nHost: x\r\n") for @slow;
my %open = map { ($_ => $_) } @slow;
my $served_meanwhile;
for my $turn (1 .. 300)
{
	for my $s (values %open)
	{
		my $closed = !defined syswrite($s, "X-Slow-$turn: y\r\n");
		if (!$closed && IO::Select->new($s)->can_read(0))
		{
			$closed = !sysread($s, my $buf, 4096);
		}
		delete $open{$s} if $closed;
	}
	$served_meanwhile //= post_ok('sb_meanwhile') if $turn == 2;
	last if !%open;
	usleep(200_000);
}
is(scalar(keys %open), 0, 'every trickling client was cut off although it kept sending');
is($served_meanwhile, 200, 'a normal request was served while they trickled');
cmp_ok(metric_value($port, 'runra_obs_http_header_timeouts_total'), '>=', 4,
	'the cut-offs are counted');
# (a scrape may itself have been refused while the held ones were closing)
cmp_ok(metric_value($port, 'runra_obs_http_connections_refused_total{limit="per_address"}'), '>=', 1,
	'the per-address refusal is counted');
cmp_ok(metric_value($port, 'runra_obs_http_connections_refused_total{limit="worker_full"}'), '>=', 1,
	'the worker-full refusal is counted');

# a kept-alive connection has a new deadline for its next head
my $keep = raw_connect($port, '127.0.0.13');
my $body = event_json([ event('sb_keep') ]);
print $keep "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $token\r\n"
  . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
($answer, $closed) = read_until_closed($keep, 60);
like($answer, qr{^HTTP/1\.1 200 }, 'a kept-alive connection is answered');
unlike($answer, qr{^Connection: close}mi, 'and kept alive');
ok($closed, 'then closed when idle past the deadline');

is(post_ok('sb_end'), 200, 'the server still serves');
$node->stop;
done_testing();
