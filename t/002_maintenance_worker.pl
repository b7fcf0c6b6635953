# The maintenance worker: run_maintenance() at start and every
# runra_obs.maintenance_interval creates and drops day partitions when the
# window moves, expires old rejected events, and reports what it skipped
# or why it failed in the log and in runra_obs.worker_status; NOTIFY ingest
# (another worker) goes on while a run is stuck on a lock.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use notify::NotifyTest;

my $node = notify_node('maintenance', "runra_obs.maintenance_interval = '1s'");

# The maintenance worker's row of worker_status.
sub maintenance_row
{
	my ($columns) = @_;
	return $node->safe_psql('postgres',
		"SELECT $columns FROM runra_obs.worker_status WHERE role = 'maintenance'");
}
wait_listening($node, 'runra_events');

$node->poll_query_until('postgres', q{
	SELECT last_maintenance LIKE 'created 0, dropped 0, skipped 0 partitions%'
	FROM runra_obs.worker_status WHERE role = 'maintenance'})
  or die 'no maintenance run';
pass('maintenance ran at start; the window made by CREATE EXTENSION needed nothing');
my $first_run = maintenance_row('last_maintenance_at');
my $first_pid = maintenance_row('pid');
my $listener_pid = worker_pid($node);
$node->poll_query_until('postgres', qq{
	SELECT last_maintenance_at > '$first_run' FROM runra_obs.worker_status WHERE role = 'maintenance'})
  or die 'maintenance did not run again';
pass('and runs again after runra_obs.maintenance_interval');

# The window: UTC days from now() - retention to now() + premake.
sub window_is
{
	my ($back, $ahead) = @_;
	return qq{
	SELECT min(lower) = date_trunc('day', now() - interval '$back days', 'UTC')
	   AND max(lower) = date_trunc('day', now() + interval '$ahead days', 'UTC')
	   AND count(*) = $back + $ahead + 1
	FROM runra_obs.partitions};
}
is($node->safe_psql('postgres', window_is(30, 3)), 't', 'the default window: 30 days back, 3 ahead');

# -- move the window: 2 days back, 6 ahead.  What the log reports is
# compared with what changed in the catalog: 3 created and 28 dropped, or
# one more of each when the run crosses a UTC midnight and the window moves
# a day meanwhile.
sub partition_names
{
	return { map { $_ => 1 } split /\n/,
		$node->safe_psql('postgres', 'SELECT partition FROM runra_obs.partitions') };
}
my $log_offset = -s $node->logfile;
my $before = partition_names();
$node->safe_psql('postgres', q{ALTER SYSTEM SET runra_obs.retention = '2d'});
$node->safe_psql('postgres', q{ALTER SYSTEM SET runra_obs.premake = '6d'});
$node->reload;
$node->poll_query_until('postgres', window_is(2, 6)) or die 'the window did not move';
pass('maintenance moved the window to 2 days back and 6 ahead');
my $after = partition_names();
my $log = slurp_file($node->logfile, $log_offset);
my @created = $log =~ /LOG:  runra_obs maintenance created runra_obs\.sandbox_events_\d{8}/g;
# (the name of a dropped partition: run_maintenance() reports it after the
# drop, when only its oid is left; the lead fixes that in the store)
my @dropped = $log =~ /LOG:  runra_obs maintenance dropped \S+/g;
my $new = grep { !$before->{$_} } keys %$after;
my $gone = grep { !$after->{$_} } keys %$before;
is(scalar @created, $new, "it logged the $new partitions it created");
is(scalar @dropped, $gone, "and the $gone it dropped");
ok(($new == 3 && $gone == 28) || ($new == 4 && $gone == 29),
	"3 created and 28 dropped (or 4 and 29 across a midnight): $new and $gone");

# -- a partition locked by a session: maintenance cannot read the partition
# list (runra_obs.partitions sizes each one) and fails on its lock timeout;
# the failure is logged and shown, ingest goes on, the next run succeeds
my $oldest = $node->safe_psql('postgres',
	'SELECT partition FROM runra_obs.partitions ORDER BY lower LIMIT 1');
my $locker = $node->background_psql('postgres');
$locker->query_safe("BEGIN; LOCK TABLE $oldest IN ACCESS EXCLUSIVE MODE");
$node->safe_psql('postgres', q{ALTER SYSTEM SET runra_obs.retention = '1d'});
$node->reload;
$node->poll_query_until('postgres', qq{
	SELECT last_maintenance = 'failed: canceling statement due to lock timeout'
	   AND last_error = last_maintenance
	FROM runra_obs.worker_status WHERE role = 'maintenance'})
  or die 'the failed run is not reported';
pass('a maintenance run that failed on its lock timeout shows in worker_status as the last error');
like(slurp_file($node->logfile),
	qr/WARNING:  runra_obs maintenance failed: canceling statement due to lock timeout/,
	'and in the log');
# (a query on sandbox_events would wait for the locked partition too: the
# planner locks every partition it cannot prune, so watch the counter)
$node->safe_psql('postgres', notify_events_sql('runra_events', 'sb_during_lock', 3));
$node->poll_query_until('postgres',
	"SELECT events_ingested = 3 FROM runra_obs.worker_status WHERE role = 'notify'")
  or die 'ingest stopped while maintenance was stuck';
pass('notifications are still written while maintenance keeps timing out');
$locker->query_safe('COMMIT');
$locker->quit;
$node->poll_query_until('postgres', window_is(1, 6)) or die 'the partition was not dropped later';
pass('once the lock is gone the next run drops it');
is(event_count($node, 'sb_during_lock'), '3', 'and the events written meanwhile are there');

# -- old rejected events expire after runra_obs.rejected_retention
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{
	INSERT INTO runra_obs.rejected_events (received_at, source, position, reason, raw)
	VALUES (now() - interval '2 hours', 'test', 0, 'old', 'x'),
	       (now() - interval '2 hours', 'test', 1, 'old', 'y'),
	       (now(), 'test', 2, 'new', 'z')});
$node->safe_psql('postgres', q{ALTER SYSTEM SET runra_obs.rejected_retention = '1h'});
$node->reload;
$node->wait_for_log(qr/runra_obs maintenance expired runra_obs\.rejected_events\n.*DETAIL:  2 rejected events/,
	$log_offset);
is($node->safe_psql('postgres', q{SELECT string_agg(raw, ',') FROM runra_obs.rejected_events WHERE source = 'test'}),
	'z', 'rejected events older than runra_obs.rejected_retention are expired, newer ones kept');

is(maintenance_row('pid'), $first_pid, 'the maintenance worker survived all of it');
is(worker_pid($node), $listener_pid, 'and so did the listener');
is($node->safe_psql('postgres', "SELECT count(*) FROM runra_obs.worker_status WHERE role = 'notify' AND last_maintenance_at IS NOT NULL"),
	'0', 'the listener runs no maintenance of its own');

# the view is for runra_obs_reader
$node->safe_psql('postgres', 'CREATE ROLE grafana LOGIN IN ROLE runra_obs_reader');
is($node->safe_psql('postgres', q{SET ROLE grafana; SELECT role, events_ingested FROM runra_obs.worker_status WHERE role = 'notify'}),
	'notify|3', 'runra_obs_reader reads runra_obs.worker_status');

$node->stop;
done_testing();
