# OTLP/HTTP receiver: POST /v1/traces and /v1/logs from the official
# OpenTelemetry JS exporters (JSON and protobuf, plain and gzipped), the
# docs/otlp.md mapping, partialSuccess with rejected_events, the error
# answers (401, 400, 415), and a round trip through our own otel forwarder.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use JSON::PP;
use NpmClients;
use POSIX qw(strftime);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use forward::Util;

my $clients = npm_clients_or_skip();
my ($node, $port) = start_http_node(name => 'otlp_in');
my $token = create_token($node, 'otel');
my $send_js = do { local (@ARGV, $/) = ("$FindBin::RealBin/lib/otlp/send.js"); <> };
my $json = JSON::PP->new->canonical;

# every time is relative to now (inside the stored window), in microseconds
my $t0 = int(time * 1e6) - 120_000_000;
sub iso_at
{
	my ($ms) = @_;
	my $us = $t0 + int($ms * 1000 + 0.5);
	return strftime('%Y-%m-%dT%H:%M:%S', gmtime int($us / 1e6)) . sprintf('.%06d', $us % 1e6);
}

# Sends with the JS SDK; returns its decoded report.
sub send_with
{
	my (%env) = @_;
	my ($ok, $out, $err) = node_script($clients, $send_js, T0 => $t0, TOKEN => $token, %env);
	ok($ok, "the OpenTelemetry SDK ran ($env{ENCODING}, $env{SANDBOX})") or diag($err);
	return eval { decode_json($out) } // {};
}

# What every SDK run must have stored, for sandbox prefix $sb.
sub check_sdk_events
{
	my ($sb, $report, $how) = @_;
	my @spans = @{ $report->{spans} // [] };
	is_deeply([ map { $_->{code} } @{ $report->{results} // [] } ], [ 0, 0, 0, 0 ],
		"$how: every export succeeded");
	is(stored_events($node, "${sb}_res"),
		iso_at(3000) . ' | exec.started | {"body": "hello", "tags": {"a": [1, "b"]}} | -' . "\n"
		  . iso_at(4521) . ' | exec.completed | {"command": "npm test", "exitCode": 0, "durationMs": 4521} | '
		  . ($spans[0]{traceId} // '?'),
		"$how: the span on the resource's sandbox.id (end time, attributes, its own duration, trace id) and the log record named by event.name (body kept as \"body\", nested attribute)");
	is(stored_events($node, "${sb}_attr"),
		iso_at(1250.5) . ' | tool.invoked | {"ok": true, "args": ["-r", "x"], "ratio": 0.5, "toolName": "grep", "durationMs": 250.5} | '
		  . ($spans[1]{traceId} // '?'),
		"$how: a span's own sandbox.id wins, and it gets durationMs = end - start");
	is(stored_events($node, "${sb}_log"),
		iso_at(2000) . ' | sandbox.created | {"image": "node:20", "limits": {"cpu": 2, "memoryMb": 512}, "region": "eu"} | -',
		"$how: a log record: eventName, the kvlist body's members (winning over an attribute), attributes");
}

sub post_otlp
{
	my ($path, $body, %opt) = @_;
	my %headers = ('Content-Type' => $opt{type} // 'application/json', %{ $opt{headers} // {} });
	$headers{Authorization} = 'Bearer ' . ($opt{token} // $token);
	return http_request($port, 'POST', $path, headers => \%headers, body => $body);
}

# ---- the JSON exporters, plain and gzipped
check_sdk_events('sb_oj', send_with(ENCODING => 'http', SANDBOX => 'sb_oj',
		ENDPOINT => "http://127.0.0.1:$port"), 'JSON');
check_sdk_events('sb_ojz', send_with(ENCODING => 'http', SANDBOX => 'sb_ojz', COMPRESSION => 'gzip',
		ENDPOINT => "http://127.0.0.1:$port"), 'JSON, gzip');

# ---- the protobuf exporters, configured by the standard environment variables
my %otel_env = (OTEL_EXPORTER_OTLP_ENDPOINT => "http://127.0.0.1:$port",
	OTEL_EXPORTER_OTLP_HEADERS => "Authorization=Bearer%20$token");
check_sdk_events('sb_op', send_with(ENCODING => 'proto', SANDBOX => 'sb_op', %otel_env), 'protobuf');
check_sdk_events('sb_opz', send_with(ENCODING => 'proto', SANDBOX => 'sb_opz', COMPRESSION => 'gzip', %otel_env),
	'protobuf, gzip');

# ---- protobuf bodies made with the official definitions, answers decoded with them
my ($ok, $out, $err) = node_script($clients, do { local (@ARGV, $/) = ("$FindBin::RealBin/lib/otlp/proto_bodies.js"); <> },
	BODIES_T0 => $t0);
ok($ok, 'protobuf bodies made') or diag($err);
my %pb;
{
	my $hex = eval { decode_json($out) } // {};
	%pb = map { $_ => pack('H*', $hex->{$_}) } keys %$hex;
}
sub decode_answer
{
	my ($signal, $bytes) = @_;
	my ($ok, $out) = node_script($clients, do { local (@ARGV, $/) = ("$FindBin::RealBin/lib/otlp/proto_bodies.js"); <> },
		ANSWER => unpack('H*', $bytes), SIGNAL => $signal, BODIES_T0 => $t0);
	return eval { decode_json($out) } // {};
}
my $pr = post_otlp('/v1/traces', $pb{partial}, type => 'application/x-protobuf');
is($pr->{status}, 200, 'protobuf partial: 200');
is($pr->{headers}{'content-type'}, 'application/x-protobuf', 'protobuf partial: answered in protobuf');
my $decoded = decode_answer('traces', $pr->{content});
is($decoded->{partialSuccess}{rejectedSpans}, '1', 'protobuf partial: one span rejected');
like($decoded->{partialSuccess}{errorMessage} // '', qr/^span 0 "exec.started": no sandbox.id/,
	'protobuf partial: errorMessage says which and why');
is($node->safe_psql('postgres', q{SELECT raw::jsonb->>'traceId' FROM runra_obs.rejected_events
	WHERE source = 'otlp' AND raw LIKE '%exec.started%' AND raw NOT LIKE '%sandbox.id%' AND raw LIKE '%0af765%'}),
	'0af7651916cd43dd8448eb211c80319c', 'protobuf partial: kept as OTLP JSON, the trace id in hex');
is(stored_events($node, 'sb_oppart'), iso_at(31) . ' | exec.started | {} | 0af7651916cd43dd8448eb211c80319c',
	'protobuf partial: the good span stored, with its trace id');

# nesting: data past runra_obs.max_json_depth refuses that span alone; a body
# past the decoder's limit, or past what protobuf-c can unpack on the stack, is a 400
$pr = post_otlp('/v1/traces', $pb{deep_record}, type => 'application/x-protobuf');
$decoded = decode_answer('traces', $pr->{content});
like($decoded->{partialSuccess}{errorMessage} // '', qr/nested deeper than 64 levels/,
	'protobuf: data nested past max_json_depth: that span refused, by the validation');
for my $case ([ deep_body => qr/nests more than 272 messages deep/ ],
	[ very_deep => qr/nests too deeply to unpack/ ], [ bad_utf8 => qr/is not valid UTF-8/ ])
{
	$pr = post_otlp('/v1/traces', $pb{ $case->[0] }, type => 'application/x-protobuf');
	is($pr->{status}, 400, "protobuf $case->[0]: 400");
	like(decode_answer('status', $pr->{content})->{status} // '', $case->[1], "protobuf $case->[0]: a Status saying why");
}
$pr = post_otlp('/v1/traces', "\x0a\xff\xff\xff\x0f garbage", type => 'application/x-protobuf');
is($pr->{status}, 400, 'a corrupt protobuf body: 400');
like($pr->{content}, qr/not a protobuf ExportTraceServiceRequest/, 'corrupt protobuf: a Status saying so');
$pr = post_otlp('/v1/logs', '', type => 'application/x-protobuf', token => 'rro_wrong');
is($pr->{status}, 401, 'protobuf, unknown token: 401');
like($pr->{content}, qr/Invalid bearer token/, 'protobuf 401: a packed Status with the message');
is($node->safe_psql('postgres', "SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_opdeep'"),
	0, 'protobuf: nothing of the refused bodies stored');

# ---- a wrong token: 401, nothing stored
my $bad = send_with(ENCODING => 'http', SANDBOX => 'sb_o401', ENDPOINT => "http://127.0.0.1:$port",
	TOKEN => 'rro_wrong');
is_deeply([ map { $_->{code} } @{ $bad->{results} // [] } ], [ 1, 1, 1, 1 ], 'wrong token: every export failed');
like($bad->{results}[0]{error} // '', qr/401|Unauthorized/i, 'wrong token: the exporter saw 401');
is($node->safe_psql('postgres', "SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id LIKE 'sb_o401%'"),
	0, 'wrong token: nothing stored');

# ---- partialSuccess: one span without sandbox.id, one with a bad name, one good
my $ns = sub { my ($ms) = @_; return sprintf('%d', ($t0 + $ms * 1000) * 1000) };
my $attr = sub { return { key => $_[0], value => { stringValue => $_[1] } } };
my $partial = $json->encode({ resourceSpans => [ { resource => { attributes => [ $attr->('service.name', 'x') ] },
	scopeSpans => [ { spans => [
		{ name => 'exec.started', startTimeUnixNano => $ns->(10), endTimeUnixNano => $ns->(10),
		  traceId => '5b8efff798038103d269b633813fc60c', spanId => 'eee19b7ec3c1b174' },
		{ name => 'Bad Name', startTimeUnixNano => $ns->(11), endTimeUnixNano => $ns->(11),
		  attributes => [ $attr->('sandbox.id', 'sb_opart') ] },
		{ name => 'exec.started', startTimeUnixNano => $ns->(12), endTimeUnixNano => $ns->(12),
		  attributes => [ $attr->('sandbox.id', 'sb_opart') ] } ] } ] } ] });
my $r = post_otlp('/v1/traces', $partial);
is($r->{status}, 200, 'partial: 200');
my $answer = eval { decode_json($r->{content}) } // {};
is($answer->{partialSuccess}{rejectedSpans}, '2', 'partial: two spans rejected');
like($answer->{partialSuccess}{errorMessage} // '',
	qr/^span 0 "exec.started": no sandbox.id attribute on it or its resource; span 1 "Bad Name": type must be .*"Bad Name"$/,
	'partial: errorMessage names each refused span and why');
is(stored_events($node, 'sb_opart'), iso_at(12) . ' | exec.started | {} | -', 'partial: the good span is stored');
is($node->safe_psql('postgres', q{
	SELECT string_agg(position || ' ' || (raw::jsonb->>'name'), ',' ORDER BY position)
	FROM runra_obs.rejected_events WHERE source = 'otlp'
	  AND (raw LIKE '%5b8efff798038103d269b633813fc60c%' OR raw LIKE '%sb_opart%')}),
	'0 exec.started,1 Bad Name', 'partial: both kept in rejected_events, source otlp, as their OTLP JSON');

# ---- the store's cap per body (as for /v1/events): of 1500 refused spans,
# half not translatable at all (no sandbox.id), half refused by the
# validation (a bad name), 1000 are kept one by one and the rest counted,
# with the request kept whole once; the same for log records
my @capped = map {
	$_ % 2
	  ? { name => 'Bad Name', startTimeUnixNano => $ns->(13), endTimeUnixNano => $ns->(13),
		  attributes => [ $attr->('sandbox.id', 'sb_ocap'), $attr->('mark', 'cap-t') ] }
	  : { name => 'exec.started', startTimeUnixNano => $ns->(13), endTimeUnixNano => $ns->(13),
		  attributes => [ $attr->('mark', 'cap-t') ] }
} 0 .. 1499;
push @capped, { name => 'exec.completed', startTimeUnixNano => $ns->(14), endTimeUnixNano => $ns->(14),
	attributes => [ $attr->('sandbox.id', 'sb_ocap') ] };
$r = post_otlp('/v1/traces', $json->encode({ resourceSpans => [ { scopeSpans => [ { spans => \@capped } ] } ] }));
is($r->{status}, 200, 'capped: 200');
$answer = eval { decode_json($r->{content}) } // {};
is($answer->{partialSuccess}{rejectedSpans}, '1500', 'capped: every refused span counted');
like($answer->{partialSuccess}{errorMessage} // '',
	qr/; and 980 more; 500 more events of this body were rejected; only the first 1000 are kept one by one, and runra_obs.rejected_events keeps the whole body \(position 1000\)$/,
	'capped: errorMessage names 20, counts the other kept ones, and says how many more were only counted');
is(stored_events($node, 'sb_ocap'), iso_at(14) . ' | exec.completed | {} | -', 'capped: the good span is stored');
is($node->safe_psql('postgres', q{
	SELECT count(*) || ' ' || count(*) FILTER (WHERE raw::jsonb ? 'resourceSpans') || ' '
	       || count(*) FILTER (WHERE position = 1000 AND raw::jsonb ? 'resourceSpans' AND reason ~ '^500 more events')
	FROM runra_obs.rejected_events WHERE source = 'otlp' AND raw LIKE '%cap-t%'}),
	'1001 1 1', 'capped: 1001 rows (1000 spans, then the request once as its OTLP JSON), not 1500');
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE reason ~ 'sandbox.id') || ' ' || count(*) FILTER (WHERE reason ~ 'type must be')
	FROM runra_obs.rejected_events WHERE source = 'otlp' AND raw LIKE '%cap-t%' AND NOT raw::jsonb ? 'resourceSpans'}),
	'750 250', 'capped: one cap for both kinds, in the order of the request (translation first, then validation)');
my @logs = map { { timeUnixNano => $ns->(15), eventName => 'exec.started', attributes => [ $attr->('mark', 'cap-l') ] } } 1 .. 1200;
$r = post_otlp('/v1/logs', $json->encode({ resourceLogs => [ { scopeLogs => [ { logRecords => \@logs } ] } ] }));
$answer = eval { decode_json($r->{content}) } // {};
is($answer->{partialSuccess}{rejectedLogRecords}, '1200', 'capped logs: every refused log record counted');
is($node->safe_psql('postgres', q{
	SELECT count(*) || ' ' || count(*) FILTER (WHERE position = 1000 AND raw::jsonb ? 'resourceLogs')
	FROM runra_obs.rejected_events WHERE source = 'otlp' AND raw LIKE '%cap-l%'}),
	'1001 1', 'capped logs: 1000 kept one by one, the request once');

# ---- proto field names, int64 numbers, a kvlist attribute, runra.data. keys,
# a log record timed only by observedTimeUnixNano
my $snake = $json->encode({ resource_logs => [ { scope_logs => [ { log_records => [
	{ observed_time_unix_nano => $t0 * 1000 + 20_000_000, event_name => 'tool.completed',
	  attributes => [ $attr->('sandbox.id', 'sb_osnake'),
		{ key => 'runra.data.sandbox.id', value => { int_value => 7 } },
		{ key => 'runra.event.id', value => { int_value => '99' } },
		{ key => 'runra.other', value => { string_value => 'dropped' } },
		{ key => 'nested', value => { kvlist_value => { values => [
			{ key => 'deep', value => { array_value => { values => [ { double_value => 1.5 }, {} ] } } } ] } } } ],
	  trace_id => '4BF92F3577B34DA6A3CE929D0E0E4736' } ] } ] } ] });
$r = post_otlp('/v1/logs', $snake);
is($r->{content}, '{}', 'proto field names: accepted, the empty answer');
is(stored_events($node, 'sb_osnake'),
	iso_at(20) . ' | tool.completed | {"nested": {"deep": [1.5, null]}, "sandbox.id": 7} | 4bf92f3577b34da6a3ce929d0e0e4736',
	'proto field names: stored; runra.data. stripped, runra.* dropped, empty AnyValue null');

# ---- 400, 415
$r = post_otlp('/v1/traces', '{"resourceSpans": [}');
is($r->{status}, 400, 'not JSON: 400');
like($r->{content}, qr/^\{"code":3,"message":"The body could not be read as an OTLP export request.*line 1, column 20/,
	'400: a google.rpc.Status saying where');
$r = post_otlp('/v1/traces', qq{{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"a\xff"}]}]}]}});
is($r->{status}, 400, 'invalid UTF-8: 400');
like($r->{content}, qr/not valid UTF-8/, 'invalid UTF-8: says so');
$r = post_otlp('/v1/logs', '{"resourceLogs":' . ('[' x 5000) . (']' x 5000) . '}');
is($r->{status}, 400, 'nested too deep: 400');
like($r->{content}, qr/nests 5001 levels deep/, 'nested too deep: says how deep');
$r = post_otlp('/v1/logs', '{"resourceLogs":{"scopeLogs":[]}}');
is($r->{status}, 400, 'resourceLogs not an array: 400');
$r = post_otlp('/v1/traces', '{}', type => 'text/plain');
is($r->{status}, 415, 'text/plain: 415');
like($r->{content}, qr/^\{"code":3,"message":"Unsupported Content-Type/, '415: a Status');
$r = post_otlp('/v1/traces', '{}', token => 'rro_wrong');
is($r->{status}, 401, 'unknown token: 401');

# ---- round trip: our own otel forwarder on another node sends here, as
# spans and as log records, and the events arrive equal (docs/otlp.md):
# nested objects, arrays, an escaped runra.* key, a duration, a trace id.
my $sender = forward_node('otlp_out');
for my $signal (qw(traces logs))
{
	add_destination($sender, "to_runra_$signal", 'otel',
		{ endpoint => "http://127.0.0.1:$port", signal => $signal,
		  headers => { Authorization => "Bearer $token" }, flushIntervalMs => 50 });
}
my $row_sql = q{SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), sandbox_id,
	data::text, coalesce(trace_id, '-') FROM runra_obs.sandbox_events WHERE sandbox_id = '%s' AND event_type = '%s'};
my @round = (
	[ -5000, 'sandbox.created', { image => 'node:20', cpu => 2 } ],
	[ -4000, 'exec.completed',
		{ command => 'make', exitCode => 2, durationMs => 1500,
		  env => { CI => JSON::PP::true, deep => { x => [ 1, 'two' ] } } }, '4bf92f3577b34da6a3ce929d0e0e4736' ],
	[ -3000, 'tool.failed', { toolName => 'grep', 'runra.k' => 1, '' => 'empty key', limits => { n => 1.5 } } ],
	[ -2500, 'sandbox.started', { startupDurationMs => 820 } ],
	[ -2000, 'cost.runtime', { cost => 0.125, items => [ 'a', 'b' ] } ]);
is(ingest_events($sender, map { event_at($_->[0], 'sb_ort', $_->[1], $_->[2], $_->[3]) } @round),
	scalar(@round), 'round trip: the events on the sending node');
for my $signal (qw(traces logs))
{
	wait_delivered($sender, "to_runra_$signal", scalar(@round), "round trip ($signal): delivered and acknowledged");
}
# both destinations deliver the same events here: each arrives twice
$node->poll_query_until('postgres',
	"SELECT count(*) = " . 2 * @round . " FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_ort'")
  or die 'the round trip did not arrive';
for my $case (@round)
{
	my $type = $case->[1];
	my $sent = $sender->safe_psql('postgres', sprintf($row_sql, 'sb_ort', $type));
	my @got = split /\n/, $node->safe_psql('postgres', sprintf($row_sql, 'sb_ort', $type));
	is_deeply(\@got, [ $sent, $sent ], "round trip: $type arrives equal, as a span and as a log record");
}

$r = http_request($port, 'GET', '/metrics');
like($r->{content}, qr/^runra_obs_http_requests_total\{route="otlp_traces",code="415"\} 1$/m,
	'metrics: OTLP answers counted by route');

done_testing();
