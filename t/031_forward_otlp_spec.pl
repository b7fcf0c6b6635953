# The OTLP forwarder against the mapping contract (docs/otlp.md) and the
# official OpenTelemetry definitions: events covering every edge case go
# out as spans and as log records; every captured request body is decoded
# with the protobufjs code generated from opentelemetry-proto (verify, then
# encode/decode/compare) and checked strictly for what that lenient
# decoder would let through (t/lib/forward/otlp_check.js); then the exact
# mapping: built-in attributes, escaped keys, kvlists instead of flattened
# keys, numbers no double holds, span times, statuses, log records.
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::Local qw(timegm);
use NpmClients;
use RunraNode;
use forward::OtlpCheck;
use forward::Receiver;
use forward::Util;

my $clients = npm_clients_or_skip();
my $node = runra_node('otlp_spec',
	'runra_obs.forward_enabled = on', 'runra_obs.forward_poll_interval = 200ms');

my %rx = map { $_ => forward::Receiver->new } qw(traces traces_url logs logs_url);
add_destination($node, 'traces', 'otel', { endpoint => $rx{traces}->url, flushIntervalMs => 0 });
add_destination($node, 'traces_url', 'otel',
	{ endpoint => $rx{traces_url}->url . '/v1/traces', flushIntervalMs => 0,
	  resourceAttributes => { 'service.name' => 'agents', 'deployment.environment' => 'test' } });
add_destination($node, 'logs', 'otel',
	{ endpoint => $rx{logs}->url, signal => 'logs', flushIntervalMs => 0 });
add_destination($node, 'logs_url', 'otel',
	{ endpoint => $rx{logs_url}->url . '/v1/logs/', signal => 'logs', flushIntervalMs => 0,
	  resourceAttributes => { 'service.name' => 'agents' } });

# ---- the events: one sandbox id each, so each is found by it ----
# Numbers no Perl number can spell are put into the JSON text as written.
my $trace = 'ab' x 16;
my %raw = (
	BIG => '1e400', NEG_BIG => '-1e400', TINY => '1e-400', NEG_ZERO => '-0',
	ZERO_DEC => '0.000', HUGE_OK => '1e300', DENORMAL => '5e-324',
	INT64_MAX => '9223372036854775807', INT64_MIN => '-9223372036854775808',
	BEYOND_INT64 => '9223372036854775808', DUR_1E20 => '1e20', DUR_1E400 => '1e400');
my @events = (
	event_at(0, 'sb_ok', 'exec.completed',
		{ command => 'npm test', exitCode => 0, durationMs => 4521,
		  env => { CI => JSON::PP::true, depth => { n => 1.5 } } }, $trace),
	event_at(1, 'sb_fail', 'exec.completed', { command => 'false', exitCode => 1, durationMs => 250.5 }),
	event_at(2, 'sb_start', 'sandbox.started', { startupDurationMs => 1200, durationMs => 99 }),
	event_at(3, 'sb_file', 'file.created', { path => '/x', sizeBytes => 10 }),
	event_at(4, 'sb_num', 'exec.completed',
		{ exitCode => 0, fine => 1.5, map({ lc($_) => "<$_>" } grep { !/^DUR/ } keys %raw),
		  nested => { deep => ['<BIG>'] } }),
	event_at(5, 'sb_keys', 'tool.completed',
		{ '' => 'empty', 'sandbox.id' => 'evil', 'runra.event.id' => 7, 'runra.x' => 1,
		  'service.name' => 's', 'event.name' => 'e', 'a.b' => 1,
		  a => { b => 2, '' => 'nested-empty', 'sandbox.id' => 'nested' },
		  arr => [ 1, 'x', undef, { k => JSON::PP::true } ], n => undef, durationMs => 30 }),
	event_at(6, 'sb_neg', 'exec.completed', { exitCode => 0, durationMs => -5 }),
	event_at(7, 'sb_absurd', 'exec.completed', { exitCode => 0, durationMs => '<DUR_1E20>' }),
	event_at(8, 'sb_text', 'exec.completed', { exitCode => 0, durationMs => 'abc' }),
	event_at(9, 'sb_overflow', 'exec.completed', { exitCode => 0, durationMs => '<DUR_1E400>' }),
	event_at(10, 'sb_err', 'exec.failed', { error => 'boom' }),
	event_at(11, 'sb_term', 'sandbox.terminated', { totalRuntimeMs => 60000, reason => 'done' }));
my $json = JSON::PP->new->canonical->encode(\@events);
$json =~ s/"<([A-Z0-9_]+)>"/$raw{$1}/g;
$json =~ s/'/''/g;
is($node->safe_psql('postgres', "SELECT ingested FROM runra_obs.ingest('$json'::jsonb)"),
	scalar @events, 'every edge-case event is stored');
my %id = split /[|\n]/, $node->safe_psql('postgres',
	'SELECT sandbox_id, id FROM runra_obs.sandbox_events');
my %observed = split /[|\n]/, $node->safe_psql('postgres',
	'SELECT sandbox_id, (extract(epoch FROM ingested_at) * 1000000)::bigint * 1000 FROM runra_obs.sandbox_events');
wait_delivered($node, $_, scalar @events) for sort keys %rx;

# ---- every body, by the official definitions and strictly ----
for my $name (sort keys %rx)
{
	my @requests = $rx{$name}->requests;
	my $path = $name =~ /logs/ ? '/v1/logs' : '/v1/traces';
	is_deeply([ map { $_->{path} } @requests ], [ ($path) x @requests ], "$name: posted to $path");
	for my $r (otlp_check($clients, @requests))
	{
		is($r->{verify}, undef, "$name: the official $r->{signal} definitions verify the request");
		is_deeply($r->{problems}, [], "$name: no AnyValue, key, id or time a strict receiver refuses")
		  or diag(join("\n", @{ $r->{problems} }));
		ok($r->{roundtrip}, "$name: encode, decode and toObject give the request back")
		  or diag(explain($r->{roundtrip_diff}));
		# the pinned definitions (opentelemetry-proto before 1.5) have no
		# LogRecord.event_name: it is checked below, on the body as sent
		ok(!$r->{event_name_known}, "$name: the definitions predate eventName (checked apart)")
		  if $r->{signal} eq 'logs';
	}
}

# ---- spans ----
sub items
{
	my ($name) = @_;
	my @all;
	for my $req (map { decode_json($_->{body}) } $rx{$name}->requests)
	{
		my $res = $req->{resourceSpans} // $req->{resourceLogs};
		for my $rs (@$res)
		{
			for my $scope (@{ $rs->{scopeSpans} // $rs->{scopeLogs} })
			{
				push @all, map { { %$_, resource => attributes_of($rs->{resource}{attributes}) } }
				  @{ $scope->{spans} // $scope->{logRecords} };
			}
		}
	}
	return { map { (attributes_of($_->{attributes})->{'sandbox.id'}{stringValue} => $_) } @all };
}

# Nanoseconds since 1970 of an event's ISO time (milliseconds).
sub nanos
{
	my ($iso) = @_;
	my ($y, $mo, $d, $h, $mi, $s, $ms) = $iso =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)\.(\d{3})Z$/
	  or die "bad time $iso";
	return timegm($s, $mi, $h, $d, $mo - 1, $y) * 1_000_000_000 + $ms * 1_000_000;
}
my %time = map { $_->{sandboxId} => nanos($_->{timestamp}) } @events;

my $spans = items('traces');
is(scalar keys %$spans, scalar @events, 'traces: one span per event');
for my $sb (sort keys %$spans)
{
	my $s = $spans->{$sb};
	my $a = attributes_of($s->{attributes});
	is($s->{endTimeUnixNano}, $time{$sb}, "span $sb: ends at the event time");
	is_deeply($a->{'runra.event.id'}, I($id{$sb}), "span $sb: runra.event.id is the stored id");
	is($s->{kind}, 1, "span $sb: internal");
	is_deeply($s->{resource}, { 'service.name' => S('runra-sandbox') },
		"span $sb: service.name runra-sandbox when none is configured");
}
my %length = (sb_ok => 4521_000_000, sb_fail => 250_500_000, sb_start => 1_200_000_000,
	sb_keys => 30_000_000, sb_term => 60_000_000_000);
for my $sb (sort keys %$spans)
{
	is($spans->{$sb}{endTimeUnixNano} - $spans->{$sb}{startTimeUnixNano}, $length{$sb} // 0,
		"span $sb: start = end - " . (($length{$sb} // 0) / 1e6) . ' ms');
}

my $ok = $spans->{sb_ok};
is($ok->{name}, 'exec.completed', 'span name is the event type');
is($ok->{traceId}, $trace, 'the event trace id is the span trace id');
is($spans->{sb_fail}{traceId}, md5_hex('sb_fail'), 'without one, md5 of the sandbox id');
my $ok_a = attributes_of($ok->{attributes});
is_deeply($ok_a->{env}, KV(CI => B(1), depth => KV(n => D(1.5))),
	'a nested object is a kvlistValue, not dotted keys');
ok(!exists $ok_a->{'env.CI'} && !exists $ok_a->{'env.depth.n'}, 'nothing flattened');
ok(!exists $ok->{status}, 'a successful exec has no status');
is_deeply($spans->{sb_fail}{status}, { code => 2, message => 'exit code 1' }, 'a failed exec is ERROR');
is_deeply($spans->{sb_err}{status}, { code => 2, message => 'boom' }, 'exec.failed is ERROR with its error');

my $num = attributes_of($spans->{sb_num}{attributes});
is_deeply($num->{big}, S('1' . '0' x 400), '1e400: stringValue of its text');
is_deeply($num->{neg_big}, S('-1' . '0' x 400), '-1e400: stringValue of its text');
is_deeply($num->{tiny}, S('0.' . '0' x 399 . '1'), '1e-400 (a double reads 0): stringValue');
is_deeply($num->{neg_zero}, I(0), '-0: intValue 0');
is_deeply($num->{zero_dec}, D(0), '0.000: doubleValue 0 (it is zero)');
is_deeply($num->{fine}, D(1.5), '1.5: doubleValue');
is_deeply($num->{huge_ok}, D(1e300), '1e300: doubleValue');
is_deeply($num->{denormal}, D(5e-324), '5e-324: a double holds it');
is_deeply($num->{int64_max}, I('9223372036854775807'), 'int64 max: intValue');
is_deeply($num->{int64_min}, I('-9223372036854775808'), 'int64 min: intValue');
is_deeply($num->{beyond_int64}, D(9223372036854775808), 'beyond int64: doubleValue');
is_deeply($num->{nested}, KV(deep => A(S('1' . '0' x 400))), 'inside kvlists and arrays too');
my ($num_body) = grep { $_->{body} =~ /sb_num/ } $rx{traces}->requests;
like($num_body->{body}, qr/"doubleValue":1e\+300\b/, 'a double is written as the double, not 301 digits');

my $keys = attributes_of($spans->{sb_keys}{attributes});
is_deeply([ sort keys %$keys ],
	[ sort 'sandbox.id', 'runra.event.id', 'runra.data.', 'runra.data.sandbox.id',
		'runra.data.runra.event.id', 'runra.data.runra.x', 'runra.data.service.name',
		'runra.data.event.name', 'a.b', 'a', 'arr', 'n', 'durationMs' ],
	'escaped: the empty key, built-in names and runra.* keys');
is_deeply($keys->{'sandbox.id'}, S('sb_keys'), 'sandbox.id is the built-in, not data');
is_deeply($keys->{'runra.data.sandbox.id'}, S('evil'), 'data.sandbox.id as runra.data.sandbox.id');
is_deeply($keys->{'runra.data.runra.event.id'}, I(7), 'data.runra.event.id escaped');
is_deeply($keys->{'runra.data.'}, S('empty'), 'the empty key as runra.data.');
is_deeply($keys->{'a.b'}, I(1), 'a dotted data key stays one attribute');
is_deeply($keys->{a}, KV('' => S('nested-empty'), b => I(2), 'sandbox.id' => S('nested')),
	'a kvlist keeps its keys as they are (only attribute lists hold built-ins)');
is_deeply($keys->{arr}, A(I(1), S('x'), NUL, KV(k => B(1))), 'an array: each element its AnyValue');
is_deeply($keys->{n}, NUL, 'null: the empty AnyValue');

my $named = items('traces_url');
is_deeply($named->{sb_ok}{resource},
	{ 'service.name' => S('agents'), 'deployment.environment' => S('test') },
	'a configured service.name is the only one');

# ---- log records ----
for my $dest (qw(logs logs_url))
{
	my $logs = items($dest);
	is(scalar keys %$logs, scalar @events, "$dest: one log record per event");
	for my $sb (sort keys %$logs)
	{
		my $r = $logs->{$sb};
		my ($type) = map { $_->{type} } grep { $_->{sandboxId} eq $sb } @events;
		my $failed = $sb eq 'sb_fail' || $sb eq 'sb_err';
		is($r->{eventName}, $type, "$dest $sb: eventName is the type");
		is_deeply(attributes_of($r->{attributes}),
			{ 'sandbox.id' => S($sb), 'runra.event.id' => I($id{$sb}), 'event.name' => S($type) },
			"$dest $sb: attributes sandbox.id, runra.event.id, event.name");
		is($r->{timeUnixNano}, $time{$sb}, "$dest $sb: time is the event time");
		is($r->{observedTimeUnixNano}, $observed{$sb}, "$dest $sb: observed time is when stored");
		is("$r->{severityNumber}/$r->{severityText}", $failed ? '17/ERROR' : '9/INFO',
			"$dest $sb: severity by event_failed()");
		is($r->{traceId}, $sb eq 'sb_ok' ? $trace : undef, "$dest $sb: traceId only when the event has one");
	}
	is_deeply($logs->{sb_ok}{body},
		KV(env => KV(CI => B(1), depth => KV(n => D(1.5))), command => S('npm test'),
			exitCode => I(0), durationMs => I(4521)),
		"$dest: body is data as a kvlistValue");
	my $body = { map { $_->{key} => $_->{value} } @{ $logs->{sb_keys}{body}{kvlistValue}{values} } };
	is_deeply($body->{'sandbox.id'}, S('evil'), "$dest: body keys are data's own (no built-ins there)");
	is_deeply($logs->{sb_num}{body}{kvlistValue}{values}[0]{value}, S('1' . '0' x 400),
		"$dest: numbers no double holds are strings in the body too");
	is_deeply($logs->{sb_ok}{resource},
		$dest eq 'logs' ? { 'service.name' => S('runra-sandbox') } : { 'service.name' => S('agents') },
		"$dest: service.name");
}

# ---- the endpoint and signal options ----
my ($rc, $out, $err) = $node->psql('postgres', q{SELECT runra_obs.add_destination('bad', 'otel',
	'{"endpoint": "http://127.0.0.1:9/v1/traces", "signal": "logs"}')});
like($err, qr/ends in \/v1\/traces, but "signal" is logs/, 'a traces URL for the logs signal is refused');
($rc, $out, $err) = $node->psql('postgres', q{SELECT runra_obs.add_destination('bad', 'otel',
	'{"endpoint": "http://127.0.0.1:9", "signal": "metrics"}')});
like($err, qr/"signal" of otel destination must be "traces" or "logs"/, 'an unknown signal is refused');

$node->stop;
done_testing();
