# HTTP ingest API: every status code, partial batches, gzip, NDJSON, the
# error bodies, /healthz and /metrics.
use strict;
use POSIX qw(strftime);
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RunraNode qw(ddl_beside_workers);

# the rollup worker on: /metrics shows its consumer lag
my ($node, $port) = start_http_node(name => 'http_api',
	conf => "runra_obs.http_max_body_size = 65536\nrunra_obs.http_lock_timeout = 20s\n"
	  . "runra_obs.rollup_enabled = on\n");
my $token = create_token($node, 'api');
like($token, qr/^rro_[0-9a-f]{64}$/, 'a token is returned once');

sub count_where
{
	my ($cond) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM runra_obs.sandbox_events WHERE $cond");
}

# ---- 200: one event, an array, a partial batch
my $r = post_events($port, $token, event_json(event('sb_one')));
is($r->{status}, 200, 'one event: 200');
is($r->{content}, qq{{"ingested":1,"failed":0,"failures":[]}\n}, 'one event: the answer counts it');
is($r->{headers}{'content-type'}, 'application/json', 'answers are JSON');
is(count_where("sandbox_id = 'sb_one'"), 1, 'and it is stored');

my $partial = '[' . join(',',
	event_json(event('sb_partial')),
	'{"timestamp":"not a time","sandboxId":"sb_partial","type":"sandbox.created"}',
	event_json(event('sb_partial', type => 'exec.completed')),
	'{"sandboxId":"sb_partial","type":"sandbox.created"}') . ']';
$r = post_events($port, $token, $partial);
is($r->{status}, 200, 'partial batch: 200');
like($r->{content}, qr/^\{"ingested":2,"failed":2,"failures":\[\{"index":1,.*\{"index":3,/,
	'partial batch: valid ones stored, invalid ones reported by index');
is(count_where("sandbox_id = 'sb_partial'"), 2, 'partial batch: two stored');
is($node->safe_psql('postgres',
	"SELECT string_agg(position::text, ',' ORDER BY position) FROM runra_obs.rejected_events WHERE source = 'http'"),
	'1,3', 'partial batch: the two invalid ones are kept in rejected_events');

# ---- a traceId of the right length that is not hex: a warning, never the
# whole request (the table's CHECK would refuse the row if validation let
# it through)
my $not_hex = '4bf92f3577b34da6a3ce929d0e0e473g';
my $bad_trace = event('sb_trace', type => 'tool.invoked');
$bad_trace->{traceId} = $not_hex;
$r = post_events($port, $token, event_json([event('sb_trace'), $bad_trace, event('sb_trace')]));
is($r->{status}, 200, 'a traceId that is not hex: 200');
like($r->{content}, qr/^\{"ingested":3,"failed":0,"failures":\[\{"index":1,"warning":"traceId is not 32 hex digits/,
	'a traceId that is not hex: stored with a warning');
is(count_where("sandbox_id = 'sb_trace' AND trace_id IS NULL"), 3, 'a traceId that is not hex: all three stored, none with it');

# ---- 400: a body that is not JSON at all, with where
$r = post_events($port, $token, '[{"timestamp": "2024-01-01T00:00:00Z",, }]');
is($r->{status}, 400, 'unparsable body: 400');
like($r->{content}, qr/"error":"Bad Request","message":"The body could not be parsed.*line 1/,
	'400 says what and where');

# ---- NDJSON with CRLF line ends and one bad line
my $ndjson = join("\r\n", event_json(event('sb_nd')), '{"broken": ', event_json(event('sb_nd')), '') ;
$r = post_events($port, $token, $ndjson, type => 'application/x-ndjson');
is($r->{status}, 200, 'NDJSON with CRLF: 200');
like($r->{content}, qr/^\{"ingested":2,"failed":1,"failures":\[\{"index":1,"line":2,/,
	'NDJSON: the bad line is reported with its line number');
is(count_where("sandbox_id = 'sb_nd'"), 2, 'NDJSON: the good lines are stored');

# ---- gzip
$r = post_events($port, $token, gzip_text(event_json([event('sb_gz'), event('sb_gz')])),
	headers => { 'Content-Encoding' => 'gzip' });
is($r->{status}, 200, 'gzip body: 200');
is(count_where("sandbox_id = 'sb_gz'"), 2, 'gzip body: stored');
$r = post_events($port, $token, "\x1f\x8b\x08\x00garbage", headers => { 'Content-Encoding' => 'gzip' });
is($r->{status}, 400, 'corrupt gzip: 400');
like($r->{content}, qr/not valid gzip/, 'corrupt gzip: says so');
$r = post_events($port, $token, gzip_text(' ' x 200_000), headers => { 'Content-Encoding' => 'gzip' });
is($r->{status}, 413, 'gzip that decodes past the limit: 413');

# ---- 401
$r = post_events($port, undef, event_json(event('sb_noauth')));
is($r->{status}, 401, 'no token: 401');
like($r->{headers}{'www-authenticate'}, qr/^Bearer/, '401 names the scheme');
like($r->{content}, qr/create_ingest_token/, '401 says how to get a token');
$r = post_events($port, 'rro_wrong', event_json(event('sb_noauth')));
is($r->{status}, 401, 'unknown token: 401');
my $fresh = create_token($node, 'fresh');
$r = post_events($port, $fresh, event_json(event('sb_fresh')));
is($r->{status}, 200, 'a token made a moment ago works at once');
$node->safe_psql('postgres', "SELECT runra_obs.revoke_ingest_token('fresh')");
$r = post_events($port, $fresh, event_json(event('sb_revoked')));
is($r->{status}, 401, 'a revoked token: 401 at once');
is(count_where("sandbox_id IN ('sb_noauth', 'sb_revoked')"), 0, 'nothing unauthenticated stored');

# ---- 404, 405
$r = http_request($port, 'GET', '/nope');
is($r->{status}, 404, 'unknown path: 404');
$r = http_request($port, 'GET', '/v1/events');
is($r->{status}, 405, 'GET /v1/events: 405');
is($r->{headers}{allow}, 'POST', '405 says what is allowed');
$r = http_request($port, 'DELETE', '/metrics');
is($r->{status}, 405, 'DELETE /metrics: 405');

# ---- 413
$r = post_events($port, $token, ' ' x 70_000);
is($r->{status}, 413, 'body past http_max_body_size: 413');
my @chunks = (' ' x 40_000, ' ' x 40_000);
$r = http_request($port, 'POST', '/v1/events',
	headers => { 'Content-Type' => 'application/json', Authorization => "Bearer $token" },
	body => sub { shift @chunks });
is($r->{status}, 413, 'chunked body past the limit: 413');

# ---- 415
$r = post_events($port, $token, event_json(event('sb_415')), type => 'text/plain');
is($r->{status}, 415, 'text/plain: 415');
like($r->{content}, qr/application\/x-ndjson/, '415 names the types accepted');
$r = post_events($port, $token, event_json(event('sb_415')), headers => { 'Content-Encoding' => 'br' });
is($r->{status}, 415, 'Content-Encoding br: 415');
$r = post_events($port, $token, event_json(event('sb_charset')),
	type => 'application/json; charset=utf-8');
is($r->{status}, 200, 'a charset parameter is fine');

# ---- /healthz and /metrics
$r = http_request($port, 'GET', '/healthz');
is($r->{status}, 200, 'healthz: 200 when writable');
is($r->{content}, qq{{"status":"ok"}\n}, 'healthz body');
$node->safe_psql('postgres', "ALTER SYSTEM SET default_transaction_read_only = on; SELECT pg_reload_conf()");
my $status;
for (1 .. 50)
{
	$r = http_request($port, 'GET', '/healthz');
	last if $r->{status} == 503;
	sleep 0.1;
}
is($r->{status}, 503, 'healthz: 503 when the database is read-only');
ok(defined $r->{headers}{'retry-after'}, '503 has Retry-After');
$r = post_events($port, $token, event_json(event('sb_ro')));
is($r->{status}, 503, 'events while read-only: 503');
like($r->{content}, qr/read-only/, '503 says why');
$node->safe_psql('postgres', "ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf()");
for (1 .. 50)
{
	$r = http_request($port, 'GET', '/healthz');
	last if $r->{status} == 200;
	select(undef, undef, undef, 0.1);
}
is($r->{status}, 200, 'healthz: 200 again');

$r = http_request($port, 'GET', '/metrics');
is($r->{status}, 200, 'metrics: 200');
like($r->{headers}{'content-type'}, qr{^text/plain; version=0.0.4}, 'metrics: Prometheus text');
my $m = $r->{content};
my $stored = $node->safe_psql('postgres',
	"SELECT count(*) FROM runra_obs.sandbox_events");
like($m, qr/^runra_obs_http_events_ingested_total $stored$/m, 'metrics: events ingested match the table');
like($m, qr/^runra_obs_http_events_rejected_total 3$/m, 'metrics: events rejected');
like($m, qr/^runra_obs_http_requests_total\{route="events",code="401"\} 3$/m, 'metrics: requests by status');
like($m, qr/^runra_obs_http_batch_commit_seconds_bucket\{le="\+Inf"\} \d+$/m, 'metrics: commit histogram');
like($m, qr/^runra_obs_http_open_connections 1$/m, 'metrics: open connections (this one)');
like($m, qr/^runra_obs_safe_watermark \d+$/m, 'metrics: the safe watermark');
like($m, qr/^runra_obs_consumer_lag_ids\{consumer="rollups"\} \d+$/m, 'metrics: the rollup consumer\'s lag in ids');
like($m, qr/^runra_obs_consumer_lag_seconds\{consumer="rollups"\} [0-9.]+$/m, 'metrics: and in seconds');

# ---- group commit: requests that arrive while a group is written go into
# the next one together; a poisonous one fails alone.  A trigger holds the
# first group on an advisory lock while the others arrive (this node's
# http_lock_timeout is long enough for that).
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.gate() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF EXISTS (SELECT FROM new_rows WHERE sandbox_id = 'sb_gate') THEN
			PERFORM pg_advisory_xact_lock(42);
		END IF;
		IF EXISTS (SELECT FROM new_rows WHERE sandbox_id = 'sb_poison') THEN
			RAISE EXCEPTION 'poisonous event';
		END IF;
		RETURN NULL;
	END $$;
	CREATE TRIGGER gate AFTER INSERT ON runra_obs.sandbox_events
		REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.gate();
});
my $holder = $node->background_psql('postgres');
$holder->query_safe('SELECT pg_advisory_lock(42)');
my @gate = start_children(1, sub {
	return post_events($port, $token, event_json(event('sb_gate')))->{status} == 200 ? 0 : 1;
});
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") or die;
my @group = start_children(7, sub {
	my ($i) = @_;
	my $r = post_events($port, $token, event_json(event($i == 1 ? 'sb_poison' : "sb_neighbour_$i")));
	return $i == 1 ? ($r->{status} == 500 && $r->{content} =~ /poisonous event/ ? 0 : 1)
	  : ($r->{status} == 200 ? 0 : 1);
});
sleep 2;	# let all seven arrive while the worker is held
$holder->query_safe('SELECT pg_advisory_unlock(42)');
$holder->quit;
is(wait_children(@gate), 1, 'group commit: the held request is answered 200 once released');
is(wait_children(@group), 7, 'group commit: the poisonous request gets 500 with the reason, the six others 200');
my ($group_size) = slurp_file($node->logfile) =~ /writing a group of (\d+) requests one by one after an error: poisonous event/;
ok(($group_size // 0) >= 2,
	'group commit: those that arrived meanwhile were one group (' . ($group_size // 'none') . ' of 7)');
is(count_where("sandbox_id LIKE 'sb_neighbour_%' OR sandbox_id = 'sb_poison'"), 6,
	'group commit: the six neighbours are stored, the poison is not');
ddl_beside_workers($node, 'DROP TRIGGER gate ON runra_obs.sandbox_events');

# ---- privileges: tokens and keys are not for the API roles
for my $role (qw(runra_obs_reader runra_obs_writer))
{
	my ($rc, $out, $err) = $node->psql('postgres',
		"SET ROLE $role; SELECT count(*) FROM runra_obs.ingest_tokens");
	like($err, qr/permission denied/, "$role cannot read ingest_tokens");
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM runra_obs.ingest_tokens WHERE token_hash = sha256(convert_to(\'' . $token . '\', \'UTF8\'))'),
	1, 'only the hash is stored');

# ---- invalid UTF-8: repaired inside data, refused in a sandbox id (two
# ids that differ only there would become one sandbox)
{
	my $ts = strftime('%Y-%m-%dT%H:%M:%SZ', gmtime);
	my $body = qq([{"timestamp":"$ts","sandboxId":"sb_utf_\xff","type":"exec.started"},)
	  . qq({"timestamp":"$ts","sandboxId":"sb_utf_\xfe","type":"exec.started"},)
	  . qq({"timestamp":"$ts","sandboxId":"sb_utf_ok","type":"exec.completed","data":{"stdout":"a\xffb"}}]);
	my $r = post_events($port, $token, $body);
	like($r->{content}, qr/"ingested":1,"failed":2,.*sandboxId is not valid text/,
		'invalid UTF-8 in sandboxId: refused, with the reason');
	is($node->safe_psql('postgres',
			"SELECT string_agg(sandbox_id || ' ' || (data->>'stdout'), ',') FROM runra_obs.sandbox_events WHERE sandbox_id LIKE 'sb_utf_%'"),
		"sb_utf_ok a\xef\xbf\xbdb", 'and repaired inside data (U+FFFD)');
}

$node->stop;
done_testing();
