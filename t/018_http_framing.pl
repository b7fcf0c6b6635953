# No request can be read two ways (RFC 9112): ambiguous framing and
# malformed header lines get 400 and the connection is closed, so nothing
# after them on it is served; an unknown transfer coding gets 501.  Each
# case once stored an event from bytes a proxy would have taken for a body
# (issue 12).  A head with a NUL or another control character in it gets
# 400 as well.
# Raw sockets: an HTTP client library will not send these.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node, $port) = start_http_node(name => 'framing');
my $token = create_token($node, 'framing');

sub raw
{
	my ($bytes) = @_;
	return raw_request($port, $bytes);
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

# A NUL or another control character anywhere in the head: 400 and closed
# (libmicrohttpd 0.9.75 cut values at a NUL, so "Bearer <token>\0junk" was
# accepted as the token).  Each request carries one event of its own.
sub event_request
{
	my ($sandbox, %opt) = @_;
	my $body = event_json([ event($sandbox) ]);
	my $eol = $opt{eol} // "\r\n";
	my $target = $opt{target} // '/v1/events';
	my $auth = $opt{auth} // "Bearer $token";
	my @lines = ("POST $target HTTP/1.1", 'Host: x', "Authorization: $auth",
		'Content-Type: application/json', @{ $opt{extra} // [] },
		'Content-Length: ' . length($body), 'Connection: close');
	return join($eol, @lines) . $eol . ($opt{head_end} // $eol) . $body;
}

my %controls = (
	'a NUL after the token' => [ 'sb_nul_auth', auth => "Bearer $token\0junk" ],
	'a NUL in a header value' => [ 'sb_nul_value', extra => ["X-Note: a\0b"] ],
	'a NUL at the end of a value' => [ 'sb_nul_end', extra => ["X-Note: a\0"] ],
	'a NUL in the target' => [ 'sb_nul_target', target => "/v1/events\0junk" ],
	'a NUL line ending the head' => [ 'sb_nul_line', head_end => "\0\r\n" ],
	'a control character in a value' => [ 'sb_ctl_value', extra => ["X-Note: a\x01b"] ],
	'a bare CR in a value' => [ 'sb_cr_value', extra => ["X-Note: a\rb"] ],
	'DEL in a value' => [ 'sb_del_value', extra => ["X-Note: a\x7fb"] ],
	'a control character in the target' => [ 'sb_ctl_target', target => "/v1/events\x01" ],
);
for my $name (sort keys %controls)
{
	my ($sandbox, %opt) = @{ $controls{$name} };
	my $answer = raw(event_request($sandbox, %opt));
	like($answer, qr{^HTTP/1\.1 400 .*(NUL byte|control character)}s, "$name: 400 saying why");
	is(stored($sandbox), '0', "$name: the event is not stored");
}

# what the check must still let through
my %fine = (
	'bare LF line ends' => [ 'sb_lf', eol => "\n" ],
	'tabs, spaces and an empty value' => [ 'sb_ows', extra => ["X-Note:\t a b \t", 'X-Empty:'] ],
	'a query string with escapes' => [ 'sb_query', target => '/v1/events?x=%41&y' ],
	# a head that libmicrohttpd must grow its buffer for
	'a 20 kB header value' => [ 'sb_big_value', extra => [ 'X-Big: ' . ('a' x 20000) ] ],
	'200 headers' => [ 'sb_many', extra => [ map { "X-H$_: v$_" } 1 .. 200 ] ],
);
for my $name (sort keys %fine)
{
	my ($sandbox, %opt) = @{ $fine{$name} };
	like(raw(event_request($sandbox, %opt)), qr{^HTTP/1\.1 200 }, "$name: 200");
	is(stored($sandbox), '1', "$name: stored");
}

# the ordinary request still works
my $answer = raw(smuggled('sb_plain') =~ s/\r\n\r\n/\r\nConnection: close\r\n\r\n/r);
like($answer, qr{^HTTP/1\.1 200 }, 'a well-formed request: 200');
is(stored('sb_plain'), '1', 'and stored');

$node->stop;
done_testing();
