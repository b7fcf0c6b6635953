# HTTP ingest: Idempotency-Key retries, token scoping, SIGHUP reload of the
# settings (unauthenticated mode on and off), and key expiry.
use strict;
use IO::Socket::INET;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node, $port) = start_http_node(name => 'http_idem', workers => 2);
my $alice = create_token($node, 'alice');
my $bob = create_token($node, 'bob');

sub stored
{
	my ($sandbox) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id = '$sandbox'");
}

# ---- a retried batch is stored once and answered as the first time
my $body = event_json([ event('sb_idem'), event('sb_idem'), { sandboxId => 'sb_idem' } ]);
my $first = post_events($port, $alice, $body, headers => { 'Idempotency-Key' => 'batch-1' });
is($first->{status}, 200, 'first send: 200');
like($first->{content}, qr/^\{"ingested":2,"failed":1,/, 'first send: answer');
ok(!defined $first->{headers}{'idempotent-replayed'}, 'first send is not a replay');
my $again = post_events($port, $alice, $body, headers => { 'Idempotency-Key' => 'batch-1' });
is($again->{status}, 200, 'retry: 200');
is($again->{content}, $first->{content}, 'retry: the first answer again');
is($again->{headers}{'idempotent-replayed'}, 'true', 'retry: marked as a replay');
is(stored('sb_idem'), 2, 'retry: the events are stored once');
is($node->safe_psql('postgres', "SELECT count(*) FROM runra_obs.rejected_events WHERE source = 'http'"),
	1, 'retry: the rejected one is kept once');

# the same body gzipped is the same request
$again = post_events($port, $alice, gzip_text($body),
	headers => { 'Idempotency-Key' => 'batch-1', 'Content-Encoding' => 'gzip' });
is($again->{headers}{'idempotent-replayed'}, 'true', 'retry gzipped: still a replay');

# ---- a key reused for another body is refused
my $other = post_events($port, $alice, event_json(event('sb_idem_other')),
	headers => { 'Idempotency-Key' => 'batch-1' });
is($other->{status}, 422, 'same key, other body: 422');
like($other->{content}, qr/different body/, '422 says why');
is(stored('sb_idem_other'), 0, 'same key, other body: nothing stored');

# ---- keys are per token
my $bobs = post_events($port, $bob, event_json(event('sb_idem_bob')),
	headers => { 'Idempotency-Key' => 'batch-1' });
is($bobs->{status}, 200, 'another token may use the same key');
is(stored('sb_idem_bob'), 1, 'and its events are stored');

# ---- the same key sent by many clients at once is stored once
my $race_body = event_json(event('sb_race'));
my @kids = start_children(6, sub {
	my $r = post_events($port, $alice, $race_body, headers => { 'Idempotency-Key' => 'race' });
	return $r->{status} == 200 ? 0 : 1;
});
my $all_ok = wait_children(@kids) == 6;
ok($all_ok, 'six concurrent sends of one key: all 200');
is(stored('sb_race'), 1, 'six concurrent sends of one key: stored once');

my $r = post_events($port, $alice, $body, headers => { 'Idempotency-Key' => 'x' x 256 });
is($r->{status}, 400, 'an Idempotency-Key longer than 255: 400');
# (by hand: HTTP::Tiny will not send such a header)
{
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or die $!;
	print $sock "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $alice\r\n"
	  . "Content-Type: application/json\r\nIdempotency-Key: caf\xc3\xa9-\xff\r\n"
	  . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
	my $answer = do { local $/; <$sock> };
	like($answer, qr{^HTTP/1\.1 400 .*printable ASCII}s,
		'an Idempotency-Key that is not printable ASCII: 400, saying so');
}

# ---- expiry
$node->safe_psql('postgres',
	"UPDATE runra_obs.idempotency_keys SET created_at = now() - interval '2 days' WHERE key = 'batch-1'");
is($node->safe_psql('postgres', 'SELECT runra_obs._expire_idempotency_keys()'), 2,
	'_expire_idempotency_keys removes keys past the window and says how many');
is($node->safe_psql('postgres', 'SELECT count(*) FROM runra_obs.idempotency_keys'), 1,
	'the others stay');

# ---- SIGHUP reloads settings: unauthenticated mode on, then off
$r = post_events($port, undef, event_json(event('sb_open')));
is($r->{status}, 401, 'no token: 401');
$node->append_conf('postgresql.conf', "runra_obs.http_allow_unauthenticated = on\n");
$node->reload;
my $ok = 0;
for (1 .. 100)
{
	# both workers must have reloaded: ask several times
	my @s = map { post_events($port, undef, event_json(event('sb_open')))->{status} } 1 .. 4;
	if (!grep { $_ != 200 } @s) { $ok = 1; last; }
	select(undef, undef, undef, 0.1);
}
ok($ok, 'after SIGHUP with http_allow_unauthenticated = on: no token needed');
$node->append_conf('postgresql.conf', "runra_obs.http_allow_unauthenticated = off\n");
$node->reload;
$ok = 0;
for (1 .. 100)
{
	my @s = map { post_events($port, undef, event_json(event('sb_closed')))->{status} } 1 .. 4;
	if (!grep { $_ != 401 } @s) { $ok = 1; last; }
	select(undef, undef, undef, 0.1);
}
ok($ok, 'after SIGHUP with it off again: 401');
is(scalar(worker_pids($node)), 2, 'both workers still run');

$node->stop;
done_testing();
