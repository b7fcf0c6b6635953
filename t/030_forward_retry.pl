# Forwarding when receivers fail: 503 for a while then 200 loses nothing,
# 429 with Retry-After (seconds or HTTP date) is honoured, 400 dead-letters
# and one call re-queues, OTLP does not retry a 500, a destination that is
# down does not hold up another, and a destination failing for longer than
# its maxRetryMs dead-letters.  The cases run at once, each destination
# selecting its own event family, which also shows the destinations'
# cursors are independent.
use strict;
use warnings;
use JSON::PP;
use POSIX qw(strftime);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use forward::Receiver;
use forward::Util;

my $node = forward_node('forward_retry');

# Sandbox ids of the events in the requests a receiver answered 200 (Axiom bodies).
sub axiom_sandboxes
{
	my ($rx) = @_;
	return map { $_->{sandboxId} } map { @{ decode_json($_->{body}) } }
	  grep { $_->{status} == 200 } $rx->requests;
}

sub axiom_at
{
	my ($name, $rx, $family, %extra) = @_;
	add_destination($node, $name, 'axiom',
		{ url => $rx->url, dataset => 'd', token => 't', flushIntervalMs => 0, %extra },
		[ "$family.*" ]);
}

sub dead_letter_of
{
	my ($name, $column) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT $column FROM runra_obs.dead_letters l
		JOIN runra_obs.destinations d ON d.id = l.destination_id WHERE d.name = '$name'});
}

my %rx = map { $_ => forward::Receiver->new } qw(flaky limited dated strict otel down up);
$rx{flaky}->plan(('503') x 3);
$rx{limited}->plan('429 Retry-After: 2');
my $retry_date = int(time) + 5;	# an HTTP date: whole seconds
$rx{dated}->plan('503 Retry-After: ' . strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime($retry_date)));
$rx{strict}->plan('400 BODY {"message":"invalid dataset"}');
$rx{otel}->plan('502', '500');
$rx{down}->plan(('503') x 100);
axiom_at('flaky', $rx{flaky}, 'exec');
axiom_at('limited', $rx{limited}, 'tool');
axiom_at('dated', $rx{dated}, 'port');
axiom_at('strict', $rx{strict}, 'file');
add_destination($node, 'ot', 'otel', { endpoint => $rx{otel}->url, flushIntervalMs => 0 }, [ 'cost.*' ]);
axiom_at('down', $rx{down}, 'network');
axiom_at('up', $rx{up}, 'network');
my $nowhere = PostgreSQL::Test::Cluster::get_free_port();
add_destination($node, 'nowhere', 'otel',
	{ endpoint => "http://127.0.0.1:$nowhere", flushIntervalMs => 0, maxRetryMs => 1500 },
	[ 'resource.*' ]);

ingest_events($node,
	(map { event_at($_, "sb_$_", 'exec.started', { i => $_ }) } 1 .. 50),
	event_at(0, 'sb_r', 'tool.invoked'),
	event_at(0, 'sb_p', 'port.exposed'),
	(map { event_at($_, "sb_d$_", 'file.read') } 1 .. 3),
	event_at(0, 'sb_o', 'cost.runtime'),
	(map { event_at($_, "sb_u$_", 'network.egress') } 1 .. 5),
	event_at(0, 'sb_n', 'resource.cpu'));

# ---- a destination that is down does not stall another ----
wait_delivered($node, 'up', 5, 'the healthy destination delivers');
is($node->safe_psql('postgres', q{
	SELECT position < (SELECT min(id) FROM runra_obs.sandbox_events WHERE event_type = 'network.egress')
	FROM runra_obs.forward_status WHERE destination = 'down'}), 't',
	'while the cursor of the one that is down stays before its events');

# ---- 503 for a while, then 200: nothing lost, nothing twice ----
wait_delivered($node, 'flaky', 50, '503 x3 then 200: all 50 delivered');
my @got = axiom_sandboxes($rx{flaky});
is(scalar @got, 50, '503 then 200: 50 events arrived');
my %seen = map { $_ => 1 } @got;
is(scalar keys %seen, 50, '503 then 200: each once');
is(scalar(grep { $_->{status} == 503 } $rx{flaky}->requests), 3, 'three 503 answers were retried');
is(status_of($node, 'flaky', 'failed'), '150', 'failed counts the events of the three failed attempts');
like(status_of($node, 'flaky', 'last_error'), qr/HTTP 503/, 'last_error names the 503');
is(status_of($node, 'flaky', 'dead_lettered'), '0', 'nothing dead-lettered');

# ---- 429 + Retry-After in seconds, and 503 + Retry-After as an HTTP date ----
wait_delivered($node, 'limited', 1, '429: delivered after waiting');
my @r = $rx{limited}->requests;
is(scalar @r, 2, '429: one retry');
cmp_ok($r[1]{t} - $r[0]{t}, '>=', 1.9, '429: Retry-After: 2 honoured (waited 2 s, not the 0.5 s backoff)');
wait_delivered($node, 'dated', 1, '503 with an HTTP-date Retry-After: delivered');
@r = $rx{dated}->requests;
# (how long that is after the 503 depends on how fast the setup went; what
# is promised is no retry before the date)
cmp_ok($r[1]{t}, '>=', $retry_date, 'Retry-After as an HTTP date honoured: no retry before it');

# ---- 400 dead-letters; one call re-queues ----
ok($node->poll_query_until('postgres',
	"SELECT behind_events = 0 AND dead_lettered = 3 FROM runra_obs.forward_status WHERE destination = 'strict'"),
	'400: the batch is dead-lettered');
is(scalar($rx{strict}->requests), 1, '400: not retried');
like(dead_letter_of('strict', 'DISTINCT error'), qr/HTTP 400 .*invalid dataset/,
	'400: the dead letter keeps the answer');
is($node->safe_psql('postgres', "SELECT runra_obs.requeue_dead_letters('strict')"), '3',
	'requeue_dead_letters moves 3 to the redeliveries');
wait_delivered($node, 'strict', 3, 'redelivered events delivered, behind the cursor');
is(scalar(grep { $_->{body} =~ /sb_d1/ } $rx{strict}->requests), 2, 'the dead letters were sent again');
is(status_of($node, 'strict', 'dead_lettered'), '0', 'no dead letters left');

# ---- OTLP retries only 429/502/503/504: a 500 is permanent ----
ok($node->poll_query_until('postgres',
	"SELECT dead_lettered = 1 FROM runra_obs.forward_status WHERE destination = 'ot'"),
	'otlp: 502 retried, then 500 dead-letters');
is(scalar($rx{otel}->requests), 2, 'otlp: two attempts');

# ---- nobody listening, limit of 1.5 s: dead-lettered after the limit ----
ok($node->poll_query_until('postgres',
	"SELECT dead_lettered = 1 AND behind_events = 0 FROM runra_obs.forward_status WHERE destination = 'nowhere'"),
	'connection refused: retried, dead-lettered past maxRetryMs');
like(dead_letter_of('nowhere', 'error'), qr/still failing after 1500 ms.*connection failure/,
	'the dead letter says it gave up after the limit');
cmp_ok(dead_letter_of('nowhere', 'attempts'), '>=', 2, 'after more than one attempt');
# after dead-lettering, the destination still backs off; a new event is
# tried (and, nobody listening still, dead-lettered too): it is not stuck
ingest_events($node, event_at(0, 'sb_n2', 'resource.memory'));
ok($node->poll_query_until('postgres',
	"SELECT dead_lettered = 2 AND behind_events = 0 FROM runra_obs.forward_status WHERE destination = 'nowhere'"),
	'a destination that dead-lettered a batch goes on to the next events');

$node->stop;
done_testing();
