# Keep-alive connections spread evenly over the HTTP workers.  The kernel
# gives each new connection to a worker at random and keep-alive clients
# stay put, so a few busy clients can all sit on one worker; a worker
# holding more than its share asks clients to reconnect (Connection: close
# after a full answer) until the shares are even, and then nothing moves.
# A worker that is not listening does not count, and with a single worker
# listening no connection is ever asked to leave.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my ($node, $port) = start_http_node(name => 'balance', workers => 2);
my $token = create_token($node, 'balance');
my $posted = 0;

# One event over a kept connection: its status and whether it said close.
sub post_one
{
	my ($sock) = @_;
	my $body = event_json([ event('sb_bal' . $posted++) ]);
	print $sock "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer $token\r\n"
	  . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
	my ($status, $headers) = read_response($sock);
	return ($status, lc($headers->{connection} // '') eq 'close' ? 1 : 0);
}

# GET /metrics on a connection of its own (libmicrohttpd closes a
# connection after a GET), which counts in the spread while it is open.
sub metrics_page
{
	return http_request($port, 'GET', '/metrics')->{content};
}

# the spread of the connections, as /metrics shows it: "worker=count ..."
sub spread
{
	my ($page) = @_;
	my %open = $page =~ /^runra_obs_http_worker_connections\{worker="(\d+)"\} (\d+)$/mg;
	return join ' ', map { "$_=$open{$_}" } sort keys %open;
}

# One worker stops; until it is back (5 s later), every connection lands
# on the other.
my ($kept_pid, $stopped_pid) = worker_pids($node);
kill 'TERM', $stopped_pid;
usleep(50_000) while kill 0, $stopped_pid;
my @socks = map { raw_connect($port) } 1 .. 4;
my $alone_closes = 0;
for my $sock (@socks)
{
	my ($status, $close) = post_one($sock);
	is($status, 200, 'one worker listening: the event is taken');
	$alone_closes += $close;
}
is($alone_closes, 0, 'with one worker listening, no connection is asked to leave');
like(spread(metrics_page()), qr/^\d+=5$/, 'all four connections (and the scrape\'s) on the one listening worker');

wait_for_workers($node, 2);

# The first answer moves a connection: the worker holds 4 and its share is
# 2.  The next answers come within the 200 ms a worker waits after a move
# (until the moved client is back in the counts).
my @moved;
for my $sock (@socks)
{
	my ($status, $close) = post_one($sock);
	is($status, 200, 'two workers: the event is taken');
	push @moved, $close;
}
is(join(',', map { $_ ? 1 : 0 } @moved), '1,0,0,0', 'one connection over the share was asked to reconnect, after its answer');

# Reconnect like a keep-alive client until a round, each after the 200 ms,
# moves nothing (each new connection lands at random, so this takes a few
# rounds).
my $rounds = 0;
my $closes = 1;
while ($closes > 0 && $rounds++ < 40)
{
	$closes = 0;
	usleep(300_000);
	for my $i (0 .. $#socks)
	{
		if ($moved[$i])
		{
			read_until_closed($socks[$i], 5);
			$socks[$i] = raw_connect($port);
		}
		my ($status, $close) = post_one($socks[$i]);
		die "an event was refused: $status" unless $status == 200;
		$moved[$i] = $close;
		$closes += $close;
	}
}
is($closes, 0, "the shares evened out (in $rounds rounds)");
my $page = metrics_page();
like(spread($page), qr/^(0=2 1=3|0=3 1=2)$/, 'two connections on each worker, besides the scrape\'s own');
my ($moves) = $page =~ /^runra_obs_http_connections_moved_total (\d+)$/m;
cmp_ok($moves // 0, '>=', 2, 'the moves are counted');

# Even shares stay put.
my $later = 0;
for (1 .. 5)
{
	usleep(300_000);
	for my $sock (@socks)
	{
		my ($status, $close) = post_one($sock);
		$later += $close;
	}
}
is($later, 0, 'once even, no connection is asked to leave');
is($node->safe_psql('postgres', q{SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id LIKE 'sb_bal%'}),
	$posted, 'every event answered 200 is stored, those answered with Connection: close too');

done_testing();
