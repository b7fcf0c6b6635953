# The NOTIFY listener: notifications from one transaction and from many
# sessions all land; arrays of events; bad payloads are kept in
# rejected_events and the next one still lands; the channel is matched
# exactly; SIGTERM writes what was queued and the worker comes back.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RunraNode qw(ddl_beside_workers);
use notify::NotifyTest;

my $node = notify_node('notify_ingest');
wait_listening($node, 'runra_events');

# -- many notifications in one transaction
$node->safe_psql('postgres', notify_events_sql('runra_events', 'sb_one_tx', 200));
wait_for_events($node, 'sb_one_tx', 200)
  or die 'events of one transaction did not land';
is($node->safe_psql('postgres', q{
	SELECT count(DISTINCT data->>'i') FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_one_tx'}),
	'200', '200 notifications sent in one transaction are 200 distinct events');

# NOTIFY statements too, in an explicit transaction
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT format('NOTIFY runra_events, %L', json_build_object('timestamp', now(),
		'sandboxId', 'sb_stmt', 'type', 'sandbox.created', 'data', json_build_object('n', n)))
	FROM generate_series(1, 3) AS n \gexec
	COMMIT;});
wait_for_events($node, 'sb_stmt', 3)
  or die 'NOTIFY statements did not land';
pass('NOTIFY statements in a transaction land');

# -- many sessions at once: pgbench, 4 clients x 50 transactions
$node->pgbench('--no-vacuum --client=4 --transactions=50', 0, [qr{processed: 200/200}], [qr{^$}],
	'pgbench sends notifications from 4 sessions',
	{ 'notify.sql' => q{
SELECT pg_notify('runra_events', json_build_object('timestamp', now(), 'sandboxId', 'sb_many',
  'type', 'exec.completed', 'data', json_build_object('client', :client_id))::text);
} });
wait_for_events($node, 'sb_many', 200)
  or die 'events from many sessions did not land';
is($node->safe_psql('postgres', q{
	SELECT count(DISTINCT data->>'client') FROM runra_obs.sandbox_events WHERE sandbox_id = 'sb_many'}),
	'4', 'notifications from 4 sessions all land');

# -- one notification holding an array of events
my $array_sql = q{
	SELECT pg_notify('runra_events', json_agg(json_build_object('timestamp', now(),
		'sandboxId', 'sb_array', 'type', 'resource.cpu', 'data', json_build_object('k', k)))::text)
	FROM generate_series(1, %d) AS k};
$node->safe_psql('postgres', sprintf($array_sql, 50));
wait_for_events($node, 'sb_array', 50)
  or die 'an array of events did not land';
pass('a notification with an array of 50 events stores 50 events');
# what NOTIFY cannot carry: PostgreSQL refuses payloads of 8000 bytes and more
my ($rc, $out, $err) = $node->psql('postgres', sprintf($array_sql, 150));
like($err, qr/payload string too long/, 'a payload over 8000 bytes is refused by the sender\'s server');

# -- bad payloads: not JSON at all, and JSON that is not a valid event
$node->safe_psql('postgres', q[SELECT pg_notify('runra_events', 'this is {not json')]);
$node->safe_psql('postgres', q{SELECT pg_notify('runra_events',
	json_build_object('timestamp', now(), 'type', 'exec.completed')::text)});
$node->safe_psql('postgres', notify_events_sql('runra_events', 'sb_after_bad', 1));
wait_for_events($node, 'sb_after_bad', 1)
  or die 'the event after the bad payloads did not land';
pass('the event after two bad payloads still lands');
is($node->safe_psql('postgres', q{
	SELECT raw, position, reason ~ '\S' FROM runra_obs.rejected_events
	WHERE source = 'notify' AND raw LIKE 'this is%'}),
	'this is {not json|0|t', 'a payload that is not JSON is kept in rejected_events, source notify');
like($node->safe_psql('postgres', q{
	SELECT reason FROM runra_obs.rejected_events WHERE source = 'notify' AND raw NOT LIKE 'this is%'}),
	qr/sandboxId is missing/, 'an invalid event is rejected with the validation reason');

is(status_row($node, 'events_ingested, events_rejected'), '454|2',
	'worker_status counts what the worker stored and rejected');

# -- a write that fails for one payload (a trigger refuses it): the others
# are still stored, and that one is kept in rejected_events with the error
$node->safe_psql('postgres', q{
	CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.sandbox_id = 'sb_poison' THEN
			RAISE EXCEPTION 'sb_poison is not welcome';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER refuse_poison BEFORE INSERT ON runra_obs.sandbox_events
		FOR EACH ROW EXECUTE FUNCTION refuse_poison();
	SELECT pg_notify('runra_events', json_build_object('timestamp', now(),
		'sandboxId', sb, 'type', 'exec.completed', 'data', json_build_object('n', n))::text)
	FROM (VALUES (1, 'sb_good'), (2, 'sb_poison'), (3, 'sb_good')) AS v(n, sb);});
wait_for_events($node, 'sb_good', 2) or die 'the good events next to a poisonous one did not land';
$node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM runra_obs.rejected_events
	WHERE source = 'notify' AND reason = 'could not be stored: sb_poison is not welcome'
	  AND raw LIKE '%sb_poison%'})
  or die 'the poisonous payload was not kept';
pass('a payload that cannot be stored is kept in rejected_events, the others are stored');
like(status_row($node, 'last_error'), qr/sb_poison is not welcome/, 'worker_status shows the error');
ddl_beside_workers($node, 'DROP TRIGGER refuse_poison ON runra_obs.sandbox_events');

# -- a write that fails on a lock timeout is retried, not rejected
$node->safe_psql('postgres', q{ALTER SYSTEM SET lock_timeout = '200ms'});
$node->reload;
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE runra_obs.sandbox_events IN ACCESS EXCLUSIVE MODE');
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', notify_events_sql('runra_events', 'sb_waited', 2));
$node->wait_for_log(qr/runra_obs notify could not write 2 notifications; retrying in 1000 ms/, $log_offset);
$node->wait_for_log(qr/retrying in 2000 ms/, $log_offset);
pass('a write blocked by a lock is retried with backoff');
$locker->query_safe('COMMIT');
$locker->quit;
$node->safe_psql('postgres', q{ALTER SYSTEM RESET lock_timeout});
$node->reload;
wait_for_events($node, 'sb_waited', 2) or die 'the events blocked by a lock did not land';
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM runra_obs.rejected_events WHERE raw LIKE '%sb_waited%'}),
	'0', 'once the lock is gone they are stored, none rejected');

# -- the channel is matched exactly (quoted identifier), and changes on reload
$node->safe_psql('postgres', q{ALTER SYSTEM SET runra_obs.notify_channel = 'Runra Events'});
$node->reload;
wait_listening($node, 'Runra Events');
$node->safe_psql('postgres', notify_events_sql('runra_events', 'sb_old_channel', 1));
$node->safe_psql('postgres', notify_events_sql('Runra Events', 'sb_new_channel', 2));
wait_for_events($node, 'sb_new_channel', 2)
  or die 'the new channel is not listened to';
is(event_count($node, 'sb_old_channel'), '0', 'after a reload only the new channel is listened to');

# -- another role for the connection: "user=..." alone overrides the default;
# the role needs nothing but LOGIN (the worker writes, not the connection)
$node->safe_psql('postgres', q{CREATE ROLE runra_listener LOGIN});
$node->safe_psql('postgres', q{ALTER SYSTEM SET runra_obs.notify_conninfo = 'user=runra_listener'});
$node->reload;
$node->poll_query_until('postgres', q{
	SELECT usename = 'runra_listener' FROM pg_stat_activity
	WHERE application_name = 'runra_obs notify listener'})
  or die 'the listener did not reconnect as runra_listener';
wait_listening($node, 'Runra Events');
$node->safe_psql('postgres', notify_events_sql('Runra Events', 'sb_other_role', 2));
wait_for_events($node, 'sb_other_role', 2) or die 'events did not land with the other role';
pass('the listener connects as a plain LOGIN role given in runra_obs.notify_conninfo');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET runra_obs.notify_conninfo});

# -- an empty channel: no listener connection, the worker idles
$node->safe_psql('postgres', q{ALTER SYSTEM SET runra_obs.notify_channel = ''});
$node->reload;
$node->poll_query_until('postgres', q{
	SELECT state LIKE 'idle (runra_obs.notify_channel is empty)%' FROM runra_obs.worker_status WHERE role = 'notify'})
  or die 'the worker did not stop listening';
is(listener_pid($node), '', 'with an empty channel there is no listener connection');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET runra_obs.notify_channel});

# -- SIGTERM: what is queued is written, then the worker comes back
$node->safe_psql('postgres', q{ALTER SYSTEM SET runra_obs.notify_flush_ms = '60s'});
$node->safe_psql('postgres', q{ALTER SYSTEM SET runra_obs.notify_batch_size = 100000});
$node->reload;
wait_listening($node, 'runra_events');
my $pid = worker_pid($node);
$node->safe_psql('postgres', notify_events_sql('runra_events', 'sb_queued', 5));
$node->poll_query_until('postgres', q{
	SELECT state LIKE '%5 events queued' FROM runra_obs.worker_status WHERE role = 'notify'})
  or die 'the worker did not queue the notifications';
is(event_count($node, 'sb_queued'), '0', 'with a long flush time the events wait in the queue');
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$node->wait_for_log(qr/runra_obs notify stopping/, $log_offset);
wait_for_events($node, 'sb_queued', 5)
  or die 'queued events were lost at SIGTERM';
pass('SIGTERM writes the queued events before the worker exits');
$node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM runra_obs.worker_status WHERE role = 'notify' AND pid <> $pid})
  or die 'the worker did not come back';
wait_listening($node, 'runra_events');
pass('the postmaster starts the worker again');

$node->stop;
unlike(slurp_file($node->logfile), qr/exits with \d+ notifications/, 'nothing was left unwritten');
done_testing();
