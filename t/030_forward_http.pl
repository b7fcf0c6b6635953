# Forwarding over HTTP: Axiom and OTLP destinations against local receivers.
# Every selected event arrives once in the right shape, the glob filter
# holds, and the OTLP payload follows the OTLP JSON mapping rules.
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use forward::Receiver;
use forward::Util;

my $node = forward_node('forward_http');
my $axiom = forward::Receiver->new;
my $otel = forward::Receiver->new;

add_destination($node, 'ax', 'axiom',
	{ url => $axiom->url, dataset => 'runra-events', token => 'secret-token',
	  flushIntervalMs => 50 },
	[ 'exec.*', 'sandbox.*' ]);
add_destination($node, 'ot', 'otel',
	{ endpoint => $otel->url, headers => { 'api-key' => 'k1' },
	  resourceAttributes => { 'service.name' => 'agents', 'service.version' => '1.0.0',
		'deployment.replicas' => 3 },
	  flushIntervalMs => 50 },
	[ 'exec.*', 'tool.failed' ]);

my $trace = 'aa' x 16;
my @events = (
	event_at(0, 'sb_1', 'exec.completed',
		{ command => 'npm test', exitCode => 0, durationMs => 4521,
		  env => { CI => JSON::PP::true, depth => { n => 1.5 } }, args => [ 'a', 2 ],
		  big => 9007199254740993, note => undef }, $trace),
	event_at(1, 'sb_2', 'exec.completed', { command => 'false', exitCode => 1 }),
	event_at(2, 'sb_1', 'sandbox.created', { image => 'node:20' }),
	event_at(3, 'sb_1', 'tool.failed', { toolName => 'grep', error => 'boom' }),
	event_at(4, 'sb_1', 'file.read', { path => '/x' }),
	event_at(5, 'sb_1', 'cost.runtime', { cost => 0.5 }));
is(ingest_events($node, @events), 6, 'six events ingested');

wait_delivered($node, 'ax', 3);
wait_delivered($node, 'ot', 3);

# ---- Axiom ----
my @ax = $axiom->requests;
is(scalar @ax, 1, 'axiom: one request for the batch');
is($ax[0]{path}, '/v1/datasets/runra-events/ingest', 'axiom: dataset ingest path');
is($ax[0]{headers}{authorization}, 'Bearer secret-token', 'axiom: bearer token');
is($ax[0]{headers}{'content-encoding'}, 'gzip', 'axiom: gzipped');
my $ax_events = decode_json($ax[0]{body});
is_deeply([ sort map { "$_->{type}/$_->{sandboxId}" } @$ax_events ],
	[ 'exec.completed/sb_1', 'exec.completed/sb_2', 'sandbox.created/sb_1' ],
	'axiom: exactly the exec.* and sandbox.* events');
my ($ax1) = grep { $_->{sandboxId} eq 'sb_1' && $_->{type} eq 'exec.completed' } @$ax_events;
is($ax1->{_time}, $events[0]{timestamp}, 'axiom: event time in _time');
is($ax1->{traceId}, $trace, 'axiom: trace id kept');
like($ax[0]{body}, qr/"big":9007199254740993/, 'axiom: a 64-bit integer keeps every digit');

# ---- OTLP ----
my @ot = $otel->requests;
is(scalar @ot, 1, 'otlp: one request for the batch');
is($ot[0]{path}, '/v1/traces', 'otlp: /v1/traces');
is($ot[0]{headers}{'api-key'}, 'k1', 'otlp: configured header sent');
is($ot[0]{headers}{'content-type'}, 'application/json', 'otlp: JSON encoding');
my $req = decode_json($ot[0]{body});
my $rs = $req->{resourceSpans}[0];
my %res = map { $_->{key} => $_->{value} } @{ $rs->{resource}{attributes} };
is_deeply($res{'service.name'}, { stringValue => 'agents' }, 'otlp: resource attribute string');
is_deeply($res{'deployment.replicas'}, { intValue => '3' }, 'otlp: resource int64 as a string');
my @spans = @{ $rs->{scopeSpans}[0]{spans} };
is_deeply([ sort map { $_->{name} } @spans ],
	[ 'exec.completed', 'exec.completed', 'tool.failed' ], 'otlp: exec.* and tool.failed as spans');

for my $s (@spans)
{
	like($s->{traceId}, qr/^[0-9a-f]{32}$/, "otlp: $s->{name} traceId is 32 hex digits");
	like($s->{spanId}, qr/^[0-9a-f]{16}$/, "otlp: $s->{name} spanId is 16 hex digits");
	ok(!ref $s->{startTimeUnixNano} && $s->{startTimeUnixNano} =~ /^\d{19}$/
		  && $ot[0]{body} =~ /"startTimeUnixNano":"\d+"/,
		"otlp: $s->{name} start time is an int64 string");
	is($s->{kind}, 1, "otlp: $s->{name} is an internal span");
}
my %by_sandbox = map { ("$_->{name}/" . (grep { $_->{key} eq 'sandbox.id' } @{ $_->{attributes} })[0]{value}{stringValue}) => $_ } @spans;
my $s1 = $by_sandbox{'exec.completed/sb_1'};
my $s2 = $by_sandbox{'exec.completed/sb_2'};
my $s4 = $by_sandbox{'tool.failed/sb_1'};
ok($s1 && $s2 && $s4, 'otlp: sandbox.id attribute on every span');
is($s1->{traceId}, $trace, 'otlp: the event trace id is the span trace id');
is($s2->{traceId}, md5_hex('sb_2'), 'otlp: without one, the trace id is derived from the sandbox id');
is($s4->{traceId}, md5_hex('sb_1'), 'otlp: same sandbox, same derived trace');
is($s1->{endTimeUnixNano} - $s1->{startTimeUnixNano}, 4521 * 1_000_000,
	'otlp: start = end - durationMs');
is($s2->{endTimeUnixNano}, $s2->{startTimeUnixNano}, 'otlp: no duration, start = end');
my $t0 = $events[0]{timestamp};
my ($ms) = $t0 =~ /\.(\d{3})Z$/;
is(substr($s1->{endTimeUnixNano}, -9), sprintf('%03d000000', $ms),
	'otlp: the end time is the event time (the event marks the end of its work)');

my %a1 = map { $_->{key} => $_->{value} } @{ $s1->{attributes} };
is_deeply($a1{exitCode}, { intValue => '0' }, 'otlp: integer attribute as intValue string');
is_deeply($a1{command}, { stringValue => 'npm test' }, 'otlp: string attribute');
is_deeply($a1{env}, { kvlistValue => { values => [
		{ key => 'CI', value => { boolValue => JSON::PP::true } },
		{ key => 'depth', value => { kvlistValue => { values => [
			{ key => 'n', value => { doubleValue => 1.5 } } ] } } } ] } },
	'otlp: a nested object is a kvlistValue (bool, double inside)');
is_deeply($a1{args}, { arrayValue => { values => [ { stringValue => 'a' }, { intValue => '2' } ] } },
	'otlp: array attribute');
is_deeply($a1{big}, { intValue => '9007199254740993' }, 'otlp: int64 beyond 2^53 exact');
is_deeply($a1{note}, {}, 'otlp: a null attribute is the empty AnyValue');
ok(!exists $s1->{status}, 'otlp: a successful exec has no error status');
is_deeply($s2->{status}, { code => 2, message => 'exit code 1' }, 'otlp: non-zero exit is ERROR');
is_deeply($s4->{status}, { code => 2, message => 'boom' }, 'otlp: tool.failed is ERROR with its error');

# the span id is a function of the event: re-sent, it is the same span
my $sid = $node->safe_psql('postgres',
	"SELECT id FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_2'");
$node->safe_psql('postgres', qq{
	INSERT INTO runra_obs.redeliveries (destination_id, event_id, created_at, sandbox_id)
	SELECT d.id, e.id, e.created_at, e.sandbox_id
	FROM runra_obs.sandbox_events e, runra_obs.destinations d
	WHERE e.id = $sid AND d.name = 'ot';
	SELECT runra_obs._forward_wake();});
wait_delivered($node, 'ot', 4, 'otlp: a redelivered event is sent again');
my $again = decode_json(($otel->requests)[1]{body})->{resourceSpans}[0]{scopeSpans}[0]{spans}[0];
is($again->{spanId}, $s2->{spanId}, 'otlp: a re-sent span has the same spanId');

is($node->safe_psql('postgres',
	"SELECT count(*) FROM runra_obs.redeliveries"), '0', 'nothing left to redeliver');

# ---- Axiom refusing some events of a batch ----
my $refuse = event_at(20, 'sb_9', 'exec.started', { command => 'x' });
$axiom->plan('200 BODY ' . encode_json({ ingested => 1, failed => 1,
	failures => [ { timestamp => $refuse->{timestamp}, error => 'field limit exceeded' } ] }));
# (sent counts deliveries: at least once, so a slow receiver can make an
# earlier batch count twice; count from here)
my $sent_before = $node->safe_psql('postgres', "SELECT sent FROM runra_obs.forward_status WHERE destination = 'ax'");
ingest_events($node, event_at(10, 'sb_9', 'exec.started', { command => 'y' }), $refuse);
ok($node->poll_query_until('postgres',
	"SELECT behind_events = 0 AND dead_lettered = 1 AND sent >= $sent_before + 1 FROM runra_obs.forward_status WHERE destination = 'ax'"),
	'axiom: the refused event is dead-lettered, the other one sent')
  or diag($node->safe_psql('postgres',
	"SELECT row_to_json(s) FROM runra_obs.forward_status AS s WHERE destination = 'ax'"));
ok((grep { ($_->{body} // '') =~ /"command":"y"/ } $axiom->requests), 'axiom: the accepted event reached the receiver');
like($node->safe_psql('postgres', 'SELECT error FROM runra_obs.dead_letters'),
	qr/field limit exceeded/, 'axiom: the dead letter says why');

# ---- OTLP partialSuccess: not retried, reported ----
$otel->plan('200 BODY {"partialSuccess":{"rejectedSpans":"1","errorMessage":"span too big"}}');
ingest_events($node, event_at(30, 'sb_3', 'exec.started', { command => 'z' }));
# ot has sent 3 + 1 re-queued + the 2 exec.started of the Axiom part + this one
wait_delivered($node, 'ot', 7, 'otlp: partial success acknowledged');
like(status_of($node, 'ot', 'last_error'), qr/rejected 1 spans: span too big/,
	'otlp: partialSuccess reported as last_error');
is(scalar(grep { $_->{body} =~ /sb_3/ } $otel->requests), 1, 'otlp: partialSuccess is not retried');

is($node->safe_psql('postgres', q{
	SELECT format('%s/%s', events_ingested, events_rejected) FROM runra_obs.worker_status WHERE role = 'forward'}),
	$node->safe_psql('postgres', q{
	SELECT format('%s/%s', sum(sent), sum(dead_lettered)) FROM runra_obs.forward_status}),
	'worker_status counts delivered and dead-lettered events');

$node->stop;
done_testing();
