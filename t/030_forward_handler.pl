# SQL handlers (runra_obs.on): called by the worker outside the inserting
# transaction, once per event (the cursor moves in the handlers'
# transaction); an error is logged, counted and the event retried from
# runra_obs.redeliveries, without holding up the events after it.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use forward::Util;

my $node = forward_node('forward_handler');
$node->safe_psql('postgres', q{
	CREATE TABLE seen (event_id bigint, type text, sandbox text, xid xid8);
	CREATE FUNCTION remember(e runra_obs.sandbox_events) RETURNS void
	LANGUAGE sql AS $$ INSERT INTO seen VALUES (e.id, e.event_type, e.sandbox_id, pg_current_xact_id()) $$;
	CREATE TABLE broken (sandbox text);
	CREATE FUNCTION picky(e runra_obs.sandbox_events) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
	    IF EXISTS (SELECT FROM broken WHERE sandbox = e.sandbox_id) THEN
	        RAISE EXCEPTION 'cannot handle sandbox %', e.sandbox_id;
	    END IF;
	    INSERT INTO seen VALUES (e.id, 'picky:' || e.event_type, e.sandbox_id, pg_current_xact_id());
	END $$;
});

my $name = $node->safe_psql('postgres',
	"SELECT runra_obs.on('exec.*', 'remember(runra_obs.sandbox_events)')");
like($name, qr/^on:exec\.\*:\d+$/, 'runra_obs.on names its destination');
my ($ok, $out, $err) = $node->psql('postgres',
	"SELECT runra_obs.on('exec.*', 'now()')");
like($err, qr/handler now\(\) must take exactly one argument of type runra_obs.sandbox_events/,
	'a handler of the wrong shape is refused');

my $ingest_xid = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT runra_obs.ingest(jsonb_build_array(
	    jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_1', 'type', 'exec.started'),
	    jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_1', 'type', 'exec.completed'),
	    jsonb_build_object('timestamp', now(), 'sandboxId', 'sb_1', 'type', 'sandbox.created')));
	SELECT pg_current_xact_id();
	COMMIT;});
($ingest_xid) = $ingest_xid =~ /(\d+)$/;
wait_delivered($node, $name, 2);
is($node->safe_psql('postgres', 'SELECT string_agg(type, \',\' ORDER BY event_id) FROM seen'),
	'exec.started,exec.completed', 'the handler saw each exec.* event once');
is($node->safe_psql('postgres', "SELECT count(*) FROM seen WHERE xid = '$ingest_xid'"), '0',
	'outside the inserting transaction');

# ---- errors: logged, counted, retried; the rest of the batch goes on ----
$node->safe_psql('postgres', q{
	INSERT INTO broken VALUES ('sb_bad');
	SELECT runra_obs.on('tool.*', 'picky(runra_obs.sandbox_events)');});
my $picky = $node->safe_psql('postgres',
	"SELECT destination FROM runra_obs.forward_status WHERE destination LIKE 'on:tool.*:%'");
ingest_events($node,
	event_at(0, 'sb_good', 'tool.invoked'), event_at(1, 'sb_bad', 'tool.invoked'),
	event_at(2, 'sb_good', 'tool.completed'));
ok($node->poll_query_until('postgres',
	"SELECT failed >= 2 AND sent = 2 AND redelivering = 1 AND behind_events = 0 FROM runra_obs.forward_status WHERE destination = '$picky'"),
	'the failing event is retried from the redeliveries, the others delivered and passed');
like(status_of($node, $picky, 'last_error'), qr/cannot handle sandbox sb_bad/, 'last_error has the handler error');
ok($node->log_contains(qr/handler public\.picky\(runra_obs\.sandbox_events\) failed on event \d+: cannot handle sandbox sb_bad/),
	'the error is logged');
$node->safe_psql('postgres', 'DELETE FROM broken');
wait_delivered($node, $picky, 3, 'delivered once the handler works');
is($node->safe_psql('postgres', "SELECT count(*) FROM seen WHERE type LIKE 'picky:%'"), '3',
	'each tool event handled exactly once despite the retries');

$node->stop;
done_testing();
