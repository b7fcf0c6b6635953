# No request can be read two ways (RFC 9112): ambiguous framing and
# malformed header lines get 400 and the connection is closed, so nothing
# after them on it is served; an unknown transfer coding gets 501.  Each
# case once stored an event from bytes a proxy would have taken for a body
# (issue 12).  Raw sockets: an HTTP client library will not send these.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use IO::Socket::INET;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node, $port) = start_http_node(name => 'framing');
my $token = create_token($node, 'framing');

# Sends raw bytes on one connection and reads until the server closes it
# (or 5 s pass); returns everything it answered.
sub raw
{
	my ($bytes) = @_;
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
	  or die "connect: $!";
	print $sock $bytes;
	my $answer = '';
	eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		alarm 5;
		while (sysread($sock, my $buf, 65536)) { $answer .= $buf; }
		alarm 0;
	};
	return $answer;
}

sub stored
{
	my ($sandbox) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id = '$sandbox'");
}

# A smuggled second request: an authenticated POST of one event of $sandbox.
sub smuggled
{
	my ($sandbox) = @_;
	my $body = event_json([ event($sandbox) ]);
	return "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $token\r\n"
	  . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
}

my $small = '[]';
my %cases = (
	'two Content-Length headers' =>
	  [ "Content-Length: 2\r\nContent-Length: " . (2 + length(smuggled('sb_cl_cl'))) . "\r\n", 'sb_cl_cl', 400 ],
	'Content-Length and Transfer-Encoding' =>
	  [ "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", 'sb_cl_te', 400 ],
	'a space before the colon' =>
	  [ "Content-Length : 2\r\nContent-Length: 2\r\n", 'sb_space', 400 ],
	'an unknown transfer coding' =>
	  [ "Transfer-Encoding: gzip, chunked\r\n", 'sb_te', 501 ],
);
for my $name (sort keys %cases)
{
	my ($headers, $sandbox, $status) = @{ $cases{$name} };
	my $answer = raw("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $token\r\n"
		  . "Content-Type: application/json\r\n$headers\r\n$small" . smuggled($sandbox));
	like($answer, qr{^HTTP/1\.1 $status }, "$name: $status");
	unlike($answer, qr{HTTP/1\.1 200}, "$name: nothing on the connection is served");
	is(stored($sandbox), '0', "$name: the smuggled event is not stored");
}

# the ordinary request still works
my $answer = raw(smuggled('sb_plain') =~ s/\r\n\r\n/\r\nConnection: close\r\n\r\n/r);
like($answer, qr{^HTTP/1\.1 200 }, 'a well-formed request: 200');
is(stored('sb_plain'), '1', 'and stored');

$node->stop;
done_testing();
