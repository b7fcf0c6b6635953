# The listener's connection comes back: after pg_terminate_backend of its
# connection, during an outage where connecting fails for a while (logged
# once, retried with backoff, never in a tight loop), and after a server
# restart.  A notification sent while nobody listens is gone: the README
# says so, and this test shows it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Socket::INET;
use notify::NotifyTest;

my $node = notify_node('notify_reconnect', 'restart_after_crash = on');
wait_listening($node, 'runra_events');

# -- pg_terminate_backend of the listener's connection
my $old_listener = listener_pid($node);
ok($old_listener =~ /^\d+$/, 'the listener connection shows in pg_stat_activity');
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old_listener)");
$node->wait_for_log(qr/runra_obs notify is listening on channel "runra_events" again/, $log_offset);
isnt(listener_pid($node), $old_listener, 'a new listener connection replaced the terminated one');
like(slurp_file($node->logfile, $log_offset),
	qr/lost its connection to the server\n.*DETAIL:  terminating connection due to administrator command \(server closed the connection unexpectedly\)/,
	'the log says why the connection was lost');
like(status_row($node, 'last_error'), qr/terminating connection due to administrator command/,
	'worker_status shows the last error');
ok(status_row($node, 'last_error_at') ne '', 'and when it happened');
$node->safe_psql('postgres', notify_events_sql('runra_events', 'sb_after_kill', 3));
wait_for_events($node, 'sb_after_kill', 3)
  or die 'events after the reconnect did not land';
pass('events sent after the reconnect land');

# -- a longer outage: the database refuses new connections for 3 seconds
$log_offset = -s $node->logfile;
$node->safe_psql('template1', 'ALTER DATABASE postgres ALLOW_CONNECTIONS false');
$node->safe_psql('template1',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'runra_obs notify listener'");
$node->wait_for_log(qr/lost its connection/, $log_offset);
# gone: sent while nobody listens (the test's own session is in template1)
$node->safe_psql('template1', q{SELECT pg_notify('runra_events', 'nobody hears this')});
sleep 3;
$node->safe_psql('template1', 'ALTER DATABASE postgres ALLOW_CONNECTIONS true');
$node->wait_for_log(qr/listening on channel "runra_events" again after [\d.]+ s and \d+ failed attempts/,
	$log_offset);
my $outage_log = slurp_file($node->logfile, $log_offset);
my @lost = $outage_log =~ /lost its connection/g;
is(scalar @lost, 1, 'the outage is logged once');
my ($attempts) = $outage_log =~ /again after [\d.]+ s and (\d+) failed attempts/;
my @debug = $outage_log =~ /attempt \d+ to reconnect failed/g;
ok($attempts >= 3 && $attempts <= 8, "it retried with backoff, $attempts times in about 3 s")
  or diag $outage_log;
is(scalar @debug, $attempts - 1, 'each later attempt only at DEBUG1');
like($outage_log, qr/not currently accepting connections/, 'with the reason');
$node->safe_psql('postgres', notify_events_sql('runra_events', 'sb_after_outage', 2));
wait_for_events($node, 'sb_after_outage', 2)
  or die 'events after the outage did not land';
pass('events sent after the outage land');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM runra_obs.rejected_events WHERE raw = 'nobody hears this'"),
	'0', 'a notification sent while nobody listened is gone');

# -- server restart
$node->restart;
wait_listening($node, 'runra_events');
$node->safe_psql('postgres', notify_events_sql('runra_events', 'sb_after_restart', 4));
wait_for_events($node, 'sb_after_restart', 4)
  or die 'events after the restart did not land';
pass('events sent after a server restart land');

# -- a crash of the listener's backend (kill -9): the postmaster resets all
# backends; the worker starts again and listens again
my $listener = listener_pid($node);
kill 'KILL', $listener;
$node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM pg_stat_activity
	WHERE application_name = 'runra_obs notify listener' AND pid <> $listener})
  or die 'no listener after the crash';
wait_listening($node, 'runra_events');
$node->safe_psql('postgres', notify_events_sql('runra_events', 'sb_after_crash', 2));
wait_for_events($node, 'sb_after_crash', 2)
  or die 'events after the crash did not land';
pass('events sent after a crash and reset land');

# -- a server that accepts connections and never answers: the listener
# gives up after connect_timeout, and SIGTERM is answered while connecting
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
	Listen => 8, ReuseAddr => 1) or die "cannot listen on 127.0.0.1:$port: $!";
$log_offset = -s $node->logfile;
$node->safe_psql('postgres',
	"ALTER SYSTEM SET runra_obs.notify_conninfo = 'host=127.0.0.1 port=$port connect_timeout=1'");
$node->reload;
$node->wait_for_log(qr/lost its connection to the server\n.*DETAIL:  no answer from the server within connect_timeout/,
	$log_offset);
pass('a connection attempt that gets no answer is given up after connect_timeout');

$node->safe_psql('postgres',
	"ALTER SYSTEM SET runra_obs.notify_conninfo = 'host=127.0.0.1 port=$port connect_timeout=0'");
$node->reload;
$node->poll_query_until('postgres', q{
	SELECT state = 'connecting' FROM runra_obs.worker_status WHERE role = 'notify'})
  or die 'the worker is not connecting';
my $pid = worker_pid($node);
$log_offset = -s $node->logfile;
my $t0 = time;
kill 'TERM', $pid;
$node->wait_for_log(qr/background worker "runra_obs notify" \(PID $pid\) exited with exit code 1/, $log_offset);
ok(time - $t0 <= 3, 'SIGTERM stops the worker at once while it is connecting');
like(slurp_file($node->logfile, $log_offset), qr/runra_obs notify stopping/, 'and it stopped cleanly');

$node->safe_psql('postgres', 'ALTER SYSTEM RESET runra_obs.notify_conninfo');
$node->reload;
$silent->close;
wait_listening($node, 'runra_events');
pass('back on the default connection after the conninfo is reset');

$node->stop;
done_testing();
