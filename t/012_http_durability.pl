# HTTP ingest under trouble: two workers on one port, a held table lock,
# SIGTERM of a worker, SIGKILL of a worker and of the whole server in the
# middle of a load, with no acknowledged event lost.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my ($node, $port) = start_http_node(name => 'http_dur', workers => 2,
	conf => "runra_obs.http_lock_timeout = 300ms\nsynchronous_commit = on\nrestart_after_crash = on\n");
my $token = create_token($node, 'dur');
my $ackdir = PostgreSQL::Test::Utils::tempdir();

# ---- two workers share the port
for my $i (1 .. 40)
{
	post_events($port, $token, event_json(event("sb_share_$i")));
}
is($node->safe_psql('postgres',
	"SELECT count(*) FROM runra_obs.worker_status WHERE role = 'http' AND events_ingested > 0"),
	2, 'two workers on one port: both served requests');
is($node->safe_psql('postgres', "SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id LIKE 'sb_share_%'"),
	40, 'two workers on one port: every event stored');

# ---- a held table lock: answers come within the lock timeout, the worker lives
my @pids_before = worker_pids($node);
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE runra_obs.sandbox_events IN ACCESS EXCLUSIVE MODE');
my $t0 = time;
my $r = post_events($port, $token, event_json(event('sb_locked')));
my $took = time - $t0;
is($r->{status}, 503, 'table locked: 503');
ok(defined $r->{headers}{'retry-after'}, 'table locked: Retry-After');
like($r->{content}, qr/lock timeout/, 'table locked: the answer says it was a lock timeout');
ok($took < 5, "table locked: answered within the lock timeout, not stuck ($took s)");
is(http_request($port, 'GET', '/metrics')->{status}, 200, 'table locked: the worker still answers');
$locker->query_safe('COMMIT');
$locker->quit;
$r = post_events($port, $token, event_json(event('sb_unlocked')));
is($r->{status}, 200, 'lock released: 200 again');
is(join(',', worker_pids($node)), join(',', @pids_before), 'lock: the same workers still run');

# ---- a slow statement: the statement timeout answers, the worker goes on
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF EXISTS (SELECT FROM new_rows WHERE sandbox_id = 'sb_slow') THEN PERFORM pg_sleep(5); END IF;
		RETURN NULL;
	END $$;
	CREATE TRIGGER slow_insert AFTER INSERT ON runra_obs.sandbox_events
		REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.slow_insert();
	ALTER SYSTEM SET runra_obs.http_statement_timeout = '300ms';
	SELECT pg_reload_conf();
});
sleep 1;
$t0 = time;
$r = post_events($port, $token, event_json(event('sb_slow')));
$took = time - $t0;
is($r->{status}, 503, 'slow statement: 503');
like($r->{content}, qr/statement timeout/, 'slow statement: the answer says it was the statement timeout');
ok($took < 4, "slow statement: answered at the timeout ($took s)");

$node->safe_psql('postgres', q{
	DROP TRIGGER slow_insert ON runra_obs.sandbox_events;
	ALTER SYSTEM RESET runra_obs.http_statement_timeout;
	SELECT pg_reload_conf();
});
is(join(',', worker_pids($node)), join(',', @pids_before), 'timeouts and errors: the same workers still run');

# ---- SIGTERM: the worker stops cleanly and is started again
my $victim = $pids_before[0];
kill 'TERM', $victim;
$node->wait_for_log(qr/runra_obs http worker stopped/);
ok(1, 'SIGTERM: the worker says it stopped');
$r = post_events($port, $token, event_json(event('sb_after_term')));
is($r->{status}, 200, 'SIGTERM: the other worker serves meanwhile');
$node->poll_query_until('postgres',
	"SELECT count(*) = 2 AND bool_and(pid <> $victim) FROM runra_obs.worker_status WHERE role = 'http' AND state = 'listening'")
  or die 'worker not restarted';
ok(1, 'SIGTERM: the worker is restarted');
ok(!$node->log_contains('terminating any other active server processes'),
	'SIGTERM: no crash restart of the cluster');

# ---- load: children post 5-event batches and note what was acknowledged
sub start_load
{
	my ($tag, $seconds) = @_;
	return start_children(4, sub {
		my ($child) = @_;
		open(my $ack, '>', "$ackdir/$tag.$child") or die;
		$ack->autoflush(1);
		my $until = time + $seconds;
		for (my $i = 0; time < $until; $i++)
		{
			my $id = "$tag-$child-$i";
			my $r = post_events($port, $token, event_json([ map { event($id) } 1 .. 5 ]), timeout => 5);
			print $ack "$id\n" if $r->{status} == 200 && $r->{content} =~ /^\{"ingested":5,/;
			select(undef, undef, undef, 0.05) if $r->{status} == 599;
		}
		return 0;
	});
}

# Every acknowledged batch has its 5 events in the table.
sub check_acknowledged
{
	my ($tag) = @_;
	my @acked = map { chomp; $_ } map { open(my $f, '<', $_) or die; <$f> } glob("$ackdir/$tag.*");
	my %stored = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
		"SELECT sandbox_id, count(*) FROM runra_obs.sandbox_events WHERE sandbox_id LIKE '$tag-%' GROUP BY 1");
	my @lost = grep { ($stored{$_} // 0) != 5 } @acked;
	ok(@acked > 10, "$tag: the load was acknowledged (" . scalar(@acked) . ' batches)');
	is(scalar(@lost), 0, "$tag: no acknowledged event lost" . (@lost ? " (lost: @lost[0 .. 2])" : ''));
}

# ---- SIGKILL of a worker mid-load: the postmaster restarts everything
my @load = start_load('killworker', 4);
sleep 1.5;
kill 'KILL', (worker_pids($node))[0];
wait_children(@load);
$node->poll_query_until('postgres', 'SELECT true') or die;
wait_for_workers($node, 2);
check_acknowledged('killworker');

# ---- SIGKILL of the whole server mid-load
@load = start_load('killserver', 4);
sleep 1.5;
my @orphans = worker_pids($node);
$node->kill9;
wait_children(@load);
# the orphaned workers notice the postmaster is gone and leave
for (1 .. 100)
{
	last unless grep { kill 0, $_ } @orphans;
	select(undef, undef, undef, 0.1);
}
ok(!(grep { kill 0, $_ } @orphans), 'kill -9 of the server: its HTTP workers exit too');
$node->start;
wait_for_workers($node, 2);
check_acknowledged('killserver');
$r = post_events($port, $token, event_json(event('sb_after_crash')));
is($r->{status}, 200, 'after the crash: 200 again');

$node->stop;
done_testing();
