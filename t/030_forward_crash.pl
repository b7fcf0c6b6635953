# The forward worker killed while a request is on the wire loses nothing:
# its events are still queued, and after the restart they are sent again
# (duplicates allowed, losses not).
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use forward::Receiver;
use forward::Util;

my $node = forward_node('forward_crash', "restart_after_crash = on\n");
my $rx = forward::Receiver->new;
$rx->plan('200 DELAY=4');		# the first request hangs while we kill the worker
add_destination($node, 'ax', 'axiom',
	{ url => $rx->url, dataset => 'd', token => 't', flushIntervalMs => 0, batchSize => 1000 });
ingest_events($node, map { event_at($_, "sb_$_", 'exec.started') } 1 .. 200);

my $waited = 0;
$waited += sleep 0.1 while $rx->arrivals < 1 && $waited < 60;
is($rx->arrivals, 1, 'the request is on the wire');
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'runra_obs forward'");
is($node->safe_psql('postgres', "SELECT queued FROM runra_obs.forward_status"), '200',
	'all 200 still queued while the request is on the wire');
kill 'KILL', $pid;
ok($node->poll_query_until('postgres',
	"SELECT queued = 0 AND sent >= 200 FROM runra_obs.forward_status WHERE destination = 'ax'"),
	'after the crash and restart, the queue drains');
my %seen;
$seen{ $_->{sandboxId} }++ for map { @{ decode_json($_->{body}) } } $rx->requests;
is(scalar(keys %seen), 200, 'every event arrived at least once');
is(scalar(grep { $_ > 2 } values %seen), 0, 'and at most twice');
ok($node->log_contains(qr/background worker "runra_obs forward" \(PID $pid\) was terminated by signal 9/),
	'the worker really was killed');

$node->stop;
done_testing();
