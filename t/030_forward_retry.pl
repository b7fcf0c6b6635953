# Forwarding when receivers fail: 503 for a while then 200 loses nothing,
# 429 with Retry-After (seconds or HTTP date) is honoured, 400 dead-letters
# and one call re-queues, OTLP does not retry a 500, a destination that is
# down does not hold up another, and a destination failing for longer than
# its maxRetryMs dead-letters.
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

# Sandbox ids of the events in all requests a receiver logged (Axiom bodies).
sub axiom_sandboxes
{
	my ($rx) = @_;
	return map { $_->{sandboxId} } map { @{ decode_json($_->{body}) } }
	  grep { $_->{status} == 200 } $rx->requests;
}

# ---- 503 for a while, then 200: nothing lost, nothing twice ----
my $flaky = forward::Receiver->new;
$flaky->plan(('503') x 3);
add_destination($node, 'flaky', 'axiom',
	{ url => $flaky->url, dataset => 'd', token => 't', flushIntervalMs => 0 });
ingest_events($node, map { event_at($_, "sb_$_", 'exec.started', { i => $_ }) } 1 .. 50);
wait_delivered($node, 'flaky', 50, '503 x3 then 200: all 50 delivered');
my @got = axiom_sandboxes($flaky);
is(scalar @got, 50, '503 then 200: 50 events arrived');
my %seen = map { $_ => 1 } @got;
is(scalar keys %seen, 50, '503 then 200: each once');
is(scalar(grep { $_->{status} == 503 } $flaky->requests), 3, 'three 503 answers were retried');
is(status_of($node, 'flaky', 'failed'), '150', 'failed counts the events of the three failed attempts');
like(status_of($node, 'flaky', 'last_error'), qr/HTTP 503/, 'last_error names the 503');
is(status_of($node, 'flaky', 'dead_lettered'), '0', 'nothing dead-lettered');
$node->safe_psql('postgres', "SELECT runra_obs.remove_destination('flaky')");

# ---- 429 + Retry-After in seconds, then as an HTTP date ----
my $limited = forward::Receiver->new;
$limited->plan('429 Retry-After: 2');
add_destination($node, 'limited', 'axiom',
	{ url => $limited->url, dataset => 'd', token => 't', flushIntervalMs => 0 });
ingest_events($node, event_at(0, 'sb_r', 'exec.started'));
wait_delivered($node, 'limited', 1, '429: delivered after waiting');
my @r = $limited->requests;
is(scalar @r, 2, '429: one retry');
cmp_ok($r[1]{t} - $r[0]{t}, '>=', 1.9, '429: Retry-After: 2 honoured (waited 2 s, not the 0.5 s backoff)');

my $date = strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime(int(time) + 3));
$limited->plan("503 Retry-After: $date");
ingest_events($node, event_at(1, 'sb_r2', 'exec.started'));
wait_delivered($node, 'limited', 2, '503 with an HTTP-date Retry-After: delivered');
@r = $limited->requests;
cmp_ok($r[3]{t} - $r[2]{t}, '>=', 1.5, 'Retry-After as an HTTP date honoured');
$node->safe_psql('postgres', "SELECT runra_obs.remove_destination('limited')");

# ---- 400 dead-letters; one call re-queues ----
my $strict = forward::Receiver->new;
$strict->plan('400 BODY {"message":"invalid dataset"}');
add_destination($node, 'strict', 'axiom',
	{ url => $strict->url, dataset => 'd', token => 't', flushIntervalMs => 0 });
ingest_events($node, map { event_at($_, "sb_d$_", 'exec.started') } 1 .. 3);
ok($node->poll_query_until('postgres',
	"SELECT queued = 0 AND dead_lettered = 3 FROM runra_obs.forward_status WHERE destination = 'strict'"),
	'400: the batch is dead-lettered');
is(scalar($strict->requests), 1, '400: not retried');
like($node->safe_psql('postgres',
	"SELECT DISTINCT error FROM runra_obs.dead_letters"), qr/HTTP 400 .*invalid dataset/,
	'400: the dead letter keeps the answer');
is($node->safe_psql('postgres', "SELECT runra_obs.requeue_dead_letters('strict')"), '3',
	'requeue_dead_letters moves 3 back');
wait_delivered($node, 'strict', 3, 're-queued events delivered');
is(status_of($node, 'strict', 'dead_lettered'), '0', 'no dead letters left');
$node->safe_psql('postgres', "SELECT runra_obs.remove_destination('strict')");

# ---- OTLP retries only 429/502/503/504: a 500 is permanent ----
my $otel = forward::Receiver->new;
$otel->plan('502', '500');
add_destination($node, 'ot', 'otel', { endpoint => $otel->url, flushIntervalMs => 0 });
ingest_events($node, event_at(0, 'sb_o', 'exec.started'));
ok($node->poll_query_until('postgres',
	"SELECT dead_lettered = 1 FROM runra_obs.forward_status WHERE destination = 'ot'"),
	'otlp: 502 retried, then 500 dead-letters');
is(scalar($otel->requests), 2, 'otlp: two attempts');
$node->safe_psql('postgres', "SELECT runra_obs.remove_destination('ot')");

# ---- a destination that is down does not stall another ----
my $down = forward::Receiver->new;
$down->plan(('503') x 100);
my $up = forward::Receiver->new;
add_destination($node, 'down', 'axiom', { url => $down->url, dataset => 'd', token => 't', flushIntervalMs => 0 });
add_destination($node, 'up', 'axiom', { url => $up->url, dataset => 'd', token => 't', flushIntervalMs => 0 });
ingest_events($node, map { event_at($_, "sb_u$_", 'exec.started') } 1 .. 5);
wait_delivered($node, 'up', 5, 'the healthy destination delivers');
is(status_of($node, 'down', 'queued'), '5', 'while the other keeps its events queued');

# ---- nobody listening, limit of 1.5 s: dead-lettered after the limit ----
my $nowhere = PostgreSQL::Test::Cluster::get_free_port();
add_destination($node, 'nowhere', 'otel',
	{ endpoint => "http://127.0.0.1:$nowhere", flushIntervalMs => 0, maxRetryMs => 1500 });
ingest_events($node, event_at(0, 'sb_n', 'exec.started'));
ok($node->poll_query_until('postgres',
	"SELECT dead_lettered = 1 AND queued = 0 FROM runra_obs.forward_status WHERE destination = 'nowhere'"),
	'connection refused: retried, dead-lettered past maxRetryMs');
like($node->safe_psql('postgres',
	"SELECT error FROM runra_obs.dead_letters l JOIN runra_obs.destinations d ON d.id = l.destination_id WHERE d.name = 'nowhere'"),
	qr/still failing after 1500 ms.*connection failure/, 'the dead letter says it gave up after the limit');
cmp_ok($node->safe_psql('postgres',
	"SELECT attempts FROM runra_obs.dead_letters l JOIN runra_obs.destinations d ON d.id = l.destination_id WHERE d.name = 'nowhere'"),
	'>=', 2, 'after more than one attempt');

$node->stop;
done_testing();
