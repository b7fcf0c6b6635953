# The postmaster dies under load: the HTTP workers stop serving and exit
# while clients still send, the server starts again, and every event that
# was acknowledged is there.  Before, a worker kept serving while requests were pending, and
# under 16 clients answered 2xx for up to 11.5 s after the postmaster's
# SIGKILL, while pg_ctl start could not succeed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $clients = 8;
my ($node, $port) = start_http_node(name => 'pm_death', workers => 2);
my $token = create_token($node, 'load');
my @workers = worker_pids($node);
my $dir = PostgreSQL::Test::Utils::tempdir;

# Each client posts batches of 20 events with one sandbox id per batch, and
# notes the id and the time of every batch answered 2xx, until told to stop.
my @children = start_children($clients, sub {
	my ($c) = @_;
	open my $log, '>>', "$dir/acked.$c" or return 1;
	$log->autoflush(1);
	for (my $n = 0; !-e "$dir/stop"; $n++)
	{
		my $sandbox = "sb_${c}_$n";
		my $r = post_events($port, $token, event_json([ map { event($sandbox) } 1 .. 20 ]),
			timeout => 5);
		printf $log "%s %.6f\n", $sandbox, time if $r->{status} =~ /^2/;
		usleep(100_000) if $r->{status} == 599;    # nobody listens any more
	}
	return 0;
});

# let the load build, then kill the postmaster itself
$node->poll_query_until('postgres', "SELECT count(*) >= 200 FROM runra_obs.sandbox_events")
  or die 'the load did not start';
my $killed_at = time;
$node->kill9;

# the workers leave while the clients go on sending
my $gone = 0;
for (1 .. 300)
{
	$gone = !grep { kill 0, $_ } @workers;
	last if $gone;
	usleep(100_000);
}
ok($gone, 'the HTTP workers exit while the clients are still sending');
usleep(500_000);
open my $stop, '>', "$dir/stop" or die $!;
close $stop;
is(wait_children(@children), $clients, 'every client ran to the end');

my (@acked, $after);
for my $c (1 .. $clients)
{
	open my $log, '<', "$dir/acked.$c" or next;
	while (<$log>)
	{
		my ($sandbox, $at) = split;
		push @acked, $sandbox;
		$after++ if $at > $killed_at;
	}
}
# How many were acknowledged after the kill depends on when each worker
# next looks (a group being written when the postmaster died is still
# answered): shown, not asserted.  Seen: 0 to 31 with the check, 17 in the
# one run without it.
diag('batches acknowledged after the kill: ' . ($after // 0));

# the server starts again once every child of the dead postmaster is gone
my $started = 0;
for (1 .. 60)
{
	last if $started = $node->start(fail_ok => 1);
	sleep 1;
}
ok($started, 'the server starts again');
my $missing = $node->safe_psql('postgres',
	"SELECT count(*) FROM unnest(ARRAY['" . join("','", @acked) . "']) AS a(sandbox)"
	  . " WHERE (SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id = a.sandbox) <> 20");
is($missing, '0', scalar(@acked) . ' acknowledged batches, every event of each stored');

$node->stop;
done_testing();
