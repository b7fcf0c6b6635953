# A bounded fuzz run of the HTTP request path: mutated and random bodies,
# odd headers, broken HTTP on raw sockets, interleaved with valid requests.
# It ends with the same workers alive (no crash), every valid event stored,
# and no answer outside the statuses the API promises.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seed = $ENV{RUNRA_FUZZ_SEED} // 20261126;
my $rounds = $ENV{RUNRA_FUZZ_ROUNDS} // 400;
srand($seed);
note("fuzz seed $seed, $rounds rounds (RUNRA_FUZZ_SEED / RUNRA_FUZZ_ROUNDS to change)");

my ($node, $port) = start_http_node(name => 'http_fuzz', workers => 2,
	conf => "runra_obs.http_max_body_size = 262144\n");
my $token = create_token($node, 'fuzz');
my @pids = worker_pids($node);

my @types = ('application/json', 'application/x-ndjson', 'text/plain', '', 'application/json; charset=latin1',
	"application/json;;;=\"\"", 'APPLICATION/JSON', 'multipart/form-data; boundary=x');
my @encodings = (undef, undef, 'gzip', 'deflate', 'x-gzip', "gzip, gzip");

sub random_bytes
{
	my ($n) = @_;
	return join('', map { chr(int(rand(256))) } 1 .. $n);
}

# A valid body of 1-5 events; returns the body and its sandbox ids.
sub valid_body
{
	my ($tag) = @_;
	my @ids = map { "$tag-$_" } 1 .. 1 + int(rand(5));
	return (event_json([ map { event($_) } @ids ]), @ids);
}

# A valid body, damaged: bytes flipped, cut, repeated or replaced.
sub mutate
{
	my ($body) = @_;
	my $kind = int(rand(8));
	my $at = int(rand(length($body)));
	return substr($body, 0, $at) if $kind == 0;
	substr($body, $at, 1) = chr(int(rand(256))) if $kind == 1;
	substr($body, $at, 0) = random_bytes(1 + int(rand(8))) if $kind == 2;
	$body = $body x (2 + int(rand(3))) if $kind == 3;
	$body = ('[' x (1000 + int(rand(100_000)))) if $kind == 4;
	$body = "\xef\xbb\xbf" . $body if $kind == 5;
	$body =~ s/"sandbox\.created"/"\\ud800"/ if $kind == 6;
	$body = '[' . join(',', ($body) x 3000) . ']' if $kind == 7;	# past the size limit
	return $body;
}

# Broken HTTP on a raw socket: garbage, half requests, lies about length.
sub raw_garbage
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 2) or return;
	my $kind = int(rand(4));
	if ($kind == 0) { print $s random_bytes(1 + int(rand(2000))); }
	elsif ($kind == 1) { print $s "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"a\":"; }
	elsif ($kind == 2) { print $s "POST /v1/events HTTP/1.1\r\nContent-Type: application/json\x01\r\n" . ("X-" . random_bytes(20) . ": y\r\n") x 50 . "\r\n"; }
	else { print $s "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" . random_bytes(30); }
	close $s;
}

my %allowed = map { $_ => 1 } (200, 400, 401, 404, 405, 413, 415, 422, 431, 503, 599);
my (@valid_ids, %seen_status);
my $bad_status = 0;
for my $round (1 .. $rounds)
{
	my ($body, @ids) = valid_body("fz$round");
	my $choice = rand();
	my $r;
	if ($choice < 0.25)
	{
		$r = post_events($port, $token, $body);
		if ($r->{status} == 200) { push @valid_ids, @ids; }
		else { diag("valid request $round got $r->{status}: $r->{content}"); $bad_status++; }
	}
	elsif ($choice < 0.65)
	{
		my %h;
		my $enc = $encodings[ int(rand(@encodings)) ];
		my $b = mutate($body);
		$h{'Content-Encoding'} = $enc if defined $enc;
		$b = rand() < 0.5 ? gzip_text($b) : mutate(gzip_text($b)) if defined $enc && $enc eq 'gzip';
		$h{'Idempotency-Key'} = random_bytes(1 + int(rand(40))) =~ s/[\x00-\x1f\x7f-\xff]//gr if rand() < 0.2;
		delete $h{'Idempotency-Key'} if defined $h{'Idempotency-Key'} && $h{'Idempotency-Key'} eq '';
		$r = post_events($port, rand() < 0.9 ? $token : random_bytes(10) =~ s/[^\x21-\x7e]//gr, $b,
			type => $types[ int(rand(@types)) ], headers => \%h);
	}
	elsif ($choice < 0.85)
	{
		my @methods = qw(GET PUT PATCH OPTIONS POST HEAD);
		my @paths = ('/', '/v1/events/', '/v1/event', '/healthz?x=1', '/metrics', '/v1/events?y', '/' . ('a' x 3000));
		$r = http_request($port, $methods[ int(rand(@methods)) ], $paths[ int(rand(@paths)) ],
			headers => { 'Content-Type' => 'application/json', Authorization => "Bearer $token" },
			body => random_bytes(int(rand(300))));
	}
	else
	{
		raw_garbage();
		next;
	}
	$seen_status{ $r->{status} }++;
	if (!$allowed{ $r->{status} })
	{
		$bad_status++;
		diag("round $round: unexpected status $r->{status}: $r->{content}");
	}
}
note('statuses seen: ' . join(', ', map { "$_ x$seen_status{$_}" } sort keys %seen_status));
is($bad_status, 0, 'no answer outside the promised statuses; every valid request got 200');

is(http_request($port, 'GET', '/healthz')->{status}, 200, 'the server is alive');
is(join(',', worker_pids($node)), join(',', @pids), 'the same workers run: none crashed');
ok(!$node->log_contains('terminated by signal'), 'no process died by a signal');

my $ids = join(',', map { "'$_'" } @valid_ids);
is($node->safe_psql('postgres', "SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id IN ($ids)"),
	scalar(@valid_ids), 'every valid event is stored (' . scalar(@valid_ids) . ')');

$node->stop;
done_testing();
