# Axiom-compatible ingest: @axiomhq/js pointed at runra_obs on both of its
# paths (classic /v1/datasets/{ds}/ingest through `url`, edge
# /v1/ingest/{ds} through `edgeUrl`), NDJSON, gzip, _time beside or
# instead of timestamp, Axiom's answer shape with failures, its error
# shape, and what our own Axiom forwarder sends, end to end.
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
use forward::Util;

my $clients = npm_clients_or_skip();
my ($node, $port) = start_http_node(name => 'axiom_in');
my $token = create_token($node, 'axiom');

# ISO 8601 times relative to now (always inside the stored window): in
# UTC, and the same instant written with a +02:00 offset.
sub iso_utc { strftime('%Y-%m-%dT%H:%M:%S', gmtime(time + $_[0])) . '.250Z' }
sub iso_plus2 { strftime('%Y-%m-%dT%H:%M:%S', gmtime(time + $_[0] + 7200)) . '.250+02:00' }

sub post_axiom
{
	my ($path, $body, %opt) = @_;
	my %headers = ('Content-Type' => $opt{type} // 'application/json',
		%{ $opt{headers} // {} });
	$headers{Authorization} = "Bearer " . ($opt{token} // $token) unless $opt{no_token};
	return http_request($port, 'POST', $path, headers => \%headers, body => $body);
}

# ---- the official client, classic path (url) and edge path (edgeUrl)
my ($t1, $t2) = (iso_utc(-60), iso_utc(-30));
my $js = <<'JS';
const { Axiom, AxiomWithoutBatching } = require('@axiomhq/js');
const base = 'http://127.0.0.1:' + process.env.PORT;
const errors = [];
const onError = (e) => errors.push(String(e && e.message || e));
(async () => {
  const classic = new AxiomWithoutBatching({ token: process.env.TOKEN, url: base, onError });
  const answer = await classic.ingest('runra-events', [
    { _time: process.env.T1, sandboxId: 'sb_ax_js', type: 'exec.completed',
      data: { command: 'npm test', exitCode: 0, env: { CI: true } } },
    { _time: process.env.T2, sandboxId: 'sb_ax_js', type: 'cost.runtime', data: { cost: 0.25 } },
  ]);
  const edge = new Axiom({ token: process.env.TOKEN, edgeUrl: base, onError });
  edge.ingest('runra.edge_1', { _time: process.env.T1, sandboxId: 'sb_ax_edge', type: 'sandbox.created', data: {} });
  await edge.flush();
  const bad = new AxiomWithoutBatching({ token: 'rro_wrong', url: base, onError });
  await bad.ingest('runra-events', [{ _time: process.env.T1, sandboxId: 'sb_ax_bad', type: 'sandbox.created' }]);
  console.log(JSON.stringify({ answer, errors }));
})().catch((e) => { console.error(e); process.exit(1); });
JS
my ($ok, $out, $err) = node_script($clients, $js, PORT => $port, TOKEN => $token, T1 => $t1, T2 => $t2);
ok($ok, '@axiomhq/js ran') or diag($err);
my $res = eval { decode_json($out) } // {};
is_deeply($res->{answer},
	{ ingested => 2, failed => 0, failures => [], processedBytes => $res->{answer}{processedBytes},
	  blocksCreated => 0, walLength => 0 },
	'classic path: the client reads Axiom\'s answer, both ingested');
ok(($res->{answer}{processedBytes} // 0) > 100, 'processedBytes counts the body');
(my $t1_us = $t1) =~ s/\.250Z$/.250000/;
(my $t2_us = $t2) =~ s/\.250Z$/.250000/;
is(stored_events($node, 'sb_ax_js'),
	"$t1_us | exec.completed | {\"env\": {\"CI\": true}, \"command\": \"npm test\", \"exitCode\": 0} | -\n"
	  . "$t2_us | cost.runtime | {\"cost\": 0.25} | -",
	'classic path: both events stored with _time as their time and data as sent');
is(stored_events($node, 'sb_ax_edge'), "$t1_us | sandbox.created | {} | -", 'edge path (edgeUrl, batching client): stored');
is_deeply($res->{errors}, ['forbidden'], 'a wrong token: the client reports 401 as Axiom\'s "forbidden"');
is(stored_events($node, 'sb_ax_bad'), '', 'a wrong token: nothing stored');

# ---- NDJSON, gzip, the edge path; _time and timestamp for the same instant
my $json = JSON::PP->new->canonical;
sub ev { return $json->encode({ sandboxId => $_[0], type => $_[1], @_[ 2 .. $#_ ] }) }
my $ndjson = join("\n",
	ev('sb_ax_nd', 'tool.invoked', _time => iso_utc(-20), data => { toolName => 'grep' }),
	ev('sb_ax_nd', 'tool.completed', _time => iso_plus2(-10), timestamp => iso_utc(-10)),
	ev('sb_ax_nd', 'sandbox.stopped', timestamp => iso_utc(-5)), '');
my $r = post_axiom('/v1/ingest/runra-events', gzip_text($ndjson), type => 'application/x-ndjson',
	headers => { 'Content-Encoding' => 'gzip' });
is($r->{status}, 200, 'gzipped NDJSON on the edge path: 200');
is($r->{content},
	'{"ingested":3,"failed":0,"failures":[],"processedBytes":' . length($ndjson)
	  . ',"blocksCreated":0,"walLength":0}' . "\n",
	'gzipped NDJSON: Axiom\'s answer, processedBytes the decoded size');
is($node->safe_psql('postgres', "SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_ax_nd'"),
	3, 'NDJSON: _time alone, _time with the same instant in timestamp, timestamp alone: all stored');

# one object on its own is a body too
$r = post_axiom('/v1/datasets/runra-events/ingest', ev('sb_ax_one', 'sandbox.created', _time => iso_utc(-3)));
like($r->{content}, qr/^\{"ingested":1,"failed":0,/, 'a single object: ingested');

# ---- a mixed batch: Axiom's failures, each named by its time
my $bad_time = iso_utc(-8);
my $mixed = '[' . join(',',
	ev('sb_ax_mix', 'exec.started', _time => iso_utc(-9), data => { n => 1 }),
	ev('sb_ax_mix', 'Not A Type', _time => $bad_time),
	ev('sb_ax_mix', 'exec.started', _time => iso_utc(-7), timestamp => iso_utc(-6)),
	ev('sb_ax_mix', 'exec.started', _time => 'yesterday'),
	ev('sb_ax_mix', 'exec.started')) . ']';
$r = post_axiom('/v1/datasets/runra-events/ingest', $mixed);
is($r->{status}, 200, 'mixed batch: 200');
my $answer = eval { decode_json($r->{content}) } // {};
is_deeply([ map { $answer->{$_} } qw(ingested failed processedBytes blocksCreated walLength) ],
	[ 1, 4, length($mixed), 0, 0 ], 'mixed batch: counts and Axiom\'s other members');
my @f = @{ $answer->{failures} // [] };
is(scalar @f, 4, 'mixed batch: four failures');
is($f[0]{timestamp}, $bad_time, 'a failure with a readable time is named by it');
like($f[0]{error}, qr/^type must be .*"Not A Type"/, 'and says why');
like($f[1]{error}, qr/^timestamp ".*" and _time ".*" are different instants$/,
	'_time and timestamp for different instants: refused');
like($f[2]{error}, qr/^_time "yesterday" must look like/, 'an unreadable _time: refused, named by the field');
is($f[3]{error}, 'timestamp (or _time) is missing', 'no time at all: refused');
like($f[2]{timestamp} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/,
	'a failure without a readable time is named by the time it was received');
is($node->safe_psql('postgres',
	"SELECT string_agg(position::text, ',' ORDER BY position) FROM runra_obs.rejected_events WHERE source = 'axiom'"),
	'1,2,3,4', 'mixed batch: the refused events are kept with source axiom');

# ---- errors in Axiom's shape
$r = post_axiom('/v1/datasets/runra-events/ingest', '[{"_time": ,}]');
is($r->{status}, 400, 'a body that is not JSON: 400');
like($r->{content}, qr/^\{"message":"The body could not be parsed.*line 1/, '400: {"message"} saying where');
$r = post_axiom('/v1/datasets/runra-events/ingest', '[]', no_token => 1);
is($r->{status}, 401, 'no token: 401');
like($r->{content}, qr/^\{"message":"Missing bearer token/, '401: {"message"}');
$r = post_axiom('/v1/ingest/runra-events', '[]', token => 'rro_wrong');
is($r->{status}, 401, 'an unknown token: 401');
like($r->{content}, qr/^\{"message":"Invalid bearer token/, 'unknown token: {"message"}');
$r = post_axiom('/v1/datasets/runra%20events/ingest', '[]');
is($r->{status}, 400, 'an invalid dataset name: 400');
like($r->{content}, qr/^\{"message":"Invalid dataset name/, 'invalid dataset: says so');
$r = post_axiom('/v1/datasets/' . ('d' x 129) . '/ingest', '[]');
is($r->{status}, 400, 'a dataset name past 128 characters: 400');
$r = post_axiom('/v1/datasets/runra-events/ingest', "_time,sandboxId\n", type => 'text/csv');
is($r->{status}, 415, 'CSV: 415');
like($r->{content}, qr/^\{"message":"CSV is not supported/, 'CSV: a clear message');
$r = http_request($port, 'GET', '/v1/datasets/runra-events/ingest');
is($r->{status}, 405, 'GET on an ingest path: 405');
$r = post_axiom('/v1/datasets/runra-events/query', '[]');
is($r->{status}, 404, 'another Axiom path: 404');

# "_time" belongs to the Axiom routes only
$r = post_events($port, $token, '[' . ev('sb_ax_ours', 'sandbox.created', _time => iso_utc(-2)) . ']');
like($r->{content}, qr/"failed":1,.*unknown field \\"_time\\"/, 'POST /v1/events still refuses _time');

# ---- our own Axiom forwarder, on another node, sending here unchanged
my $sender = forward_node('axiom_out');
add_destination($sender, 'to_runra', 'axiom',
	{ url => "http://127.0.0.1:$port", dataset => 'runra-events', token => $token,
	  flushIntervalMs => 50 });
my $trace = '4bf92f3577b34da6a3ce929d0e0e4736';
my @sent = (
	event_at(-4000, 'sb_ax_fwd', 'exec.completed',
		{ command => 'make', exitCode => 2, durationMs => 1500, env => { deep => { x => [ 1, 'two' ] } } }, $trace),
	event_at(-3000, 'sb_ax_fwd', 'sandbox.created', { image => 'node:20' }),
	event_at(-2000, 'sb_ax_fwd', 'cost.runtime', { cost => 0.123456789 }));
is(ingest_events($sender, @sent), 3, 'forwarder node: three events ingested');
wait_delivered($sender, 'to_runra', 3, 'forwarder: the three events delivered and acknowledged');
my $sent_rows = $sender->safe_psql('postgres', qq{
	SELECT string_agg(concat_ws(' | ', created_at, event_type, data::text, coalesce(trace_id, '-')), E'\\n'
	  ORDER BY created_at) FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_ax_fwd'});
my $got_rows = $node->safe_psql('postgres', qq{
	SELECT string_agg(concat_ws(' | ', created_at, event_type, data::text, coalesce(trace_id, '-')), E'\\n'
	  ORDER BY created_at) FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_ax_fwd'});
is($got_rows, $sent_rows, 'forwarded events arrive equal: time, type, data and trace id');
is(status_of($sender, 'to_runra', 'failed'), 0, 'the forwarder saw no failures');

# ---- the metrics count the route
$r = http_request($port, 'GET', '/metrics');
like($r->{content}, qr/^runra_obs_http_requests_total\{route="axiom",code="415"\} 1$/m,
	'metrics: answers counted by route');

done_testing();
