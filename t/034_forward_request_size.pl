# No single event, and no batch of big ones, can stop forwarding: requests
# stay under runra_obs.forward_max_request_size.  Big events are sent in
# several smaller requests, all delivered; an event that alone encodes to
# more is a dead letter with the reason; the worker never restarts and
# the other destinations go on.  (Issue 12: one 6 MB event once made an
# OTLP request of over 1 GB, and the worker ran out of memory, restarted
# and read the same batch again, forever.)
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use forward::Receiver;
use forward::Util;

my $node = forward_node('forward_request_size', "runra_obs.forward_max_request_size = '64kB'\n");
my $otel = forward::Receiver->new;
my $axiom = forward::Receiver->new;
add_destination($node, 'ot', 'otel', { endpoint => $otel->url, flushIntervalMs => 50 });
add_destination($node, 'ax', 'axiom',
	{ url => $axiom->url, dataset => 'd', token => 't', flushIntervalMs => 50 });
my $worker = $node->safe_psql('postgres',
	"SELECT pid FROM runra_obs.worker_status WHERE role = 'forward'");

# 20 events of 10 kB each: 200 kB, more than one request may carry
my $blob = 'x' x 10_000;
is(ingest_events($node, map { event_at($_, "sb_big_$_", 'exec.completed', { stdout => $blob, exitCode => 0 }) } 1 .. 20),
	20, 'twenty 10 kB events');
wait_delivered($node, 'ot', 20, 'OTLP: every big event delivered');
wait_delivered($node, 'ax', 20, 'Axiom: every big event delivered');
my @ot = $otel->requests;
cmp_ok(scalar @ot, '>=', 4, 'OTLP: in several requests (' . scalar(@ot) . ')');
is((grep { length($_->{body}) > 65536 } @ot), 0, 'OTLP: none larger than forward_max_request_size');
my $spans = 0;
$spans += scalar @{ decode_json($_->{body})->{resourceSpans}[0]{scopeSpans}[0]{spans} } for @ot;
is($spans, 20, 'OTLP: each event once');

# one event that alone encodes to more than the limit, between two small ones
is(ingest_events($node,
		event_at(0, 'sb_before', 'exec.started', {}),
		event_at(1, 'sb_huge', 'exec.completed', { stdout => 'y' x 100_000 }),
		event_at(2, 'sb_after', 'exec.started', {})),
	3, 'a 100 kB event between two small ones');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM runra_obs.dead_letters WHERE sandbox_id = 'sb_huge'"),
	'the huge event is a dead letter of the OTLP destination');
# Axiom's bodies are gzipped: the limit is on what is sent, and 100 kB of
# one letter is a few hundred bytes
wait_delivered($node, 'ax', 23, 'Axiom sends it, gzipped under the limit');
like($node->safe_psql('postgres',
		"SELECT DISTINCT error FROM runra_obs.dead_letters d JOIN runra_obs.destinations x ON x.id = d.destination_id"
		  . " WHERE x.name = 'ot' AND sandbox_id = 'sb_huge'"),
	qr/^event \d+ encodes to \d+ bytes, more than runra_obs.forward_max_request_size \(65536 bytes\)$/,
	'with the reason');
wait_delivered($node, 'ot', 22, 'the events around it are delivered');
ok(grep({ $_->{body} =~ /sb_after/ } $otel->requests), 'including the one after it');
is($node->safe_psql('postgres', "SELECT pid FROM runra_obs.worker_status WHERE role = 'forward'"),
	$worker, 'the forward worker never restarted');

# pg_terminate_backend() of the worker: it comes back (it used to exit 0,
# which unregisters a background worker until the server restarts)
$node->safe_psql('postgres', "SELECT pg_terminate_backend($worker)");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM runra_obs.worker_status WHERE role = 'forward' AND pid <> $worker"),
	'a terminated forward worker is started again');
ingest_events($node, event_at(0, 'sb_after_restart', 'exec.started', {}));
wait_delivered($node, 'ot', 23, 'and delivers');

$node->stop;
done_testing();
