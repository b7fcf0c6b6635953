# At-least-once across crashes.  A destination's cursor moves only over
# batches the destination accepted, in the same transaction as their
# counters, so:
#   - the forward worker killed while a request is on the wire sends that
#     batch again after its restart (duplicates allowed, losses not);
#   - the whole server killed (SIGKILL of the postmaster, then crash
#     recovery) with one batch accepted and the next on the wire sends
#     exactly the batches after the committed cursor again: every event
#     arrives, and those at or below the cursor arrive exactly once.
# One batch in flight at a time here (runra_obs.forward_requests = 1) so
# which batch is accepted before the crash is known.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use forward::Receiver;
use forward::Util;

my $node = forward_node('forward_crash', "restart_after_crash = on\nrunra_obs.forward_requests = 1\n");

# Per sandbox id, how often it arrived at the receiver.
sub arrived
{
	my ($rx) = @_;
	my %seen;
	$seen{ $_->{sandboxId} }++ for map { @{ decode_json($_->{body}) } } $rx->requests;
	return \%seen;
}

sub wait_arrivals
{
	my ($rx, $n) = @_;
	my $waited = 0;
	$waited += sleep 0.1 while $rx->arrivals < $n && $waited < 60;
	return $rx->arrivals;
}

sub position_of
{
	my ($name) = @_;
	return $node->safe_psql('postgres',
		"SELECT position FROM runra_obs.forward_status WHERE destination = '$name'");
}

# ---- the forward worker killed with a request on the wire ----
my $rx = forward::Receiver->new;
$rx->plan('200 DELAY=4');		# the first request hangs while we kill the worker
add_destination($node, 'ax', 'axiom',
	{ url => $rx->url, dataset => 'd', token => 't', flushIntervalMs => 0, batchSize => 1000 });
my $start = position_of('ax');
ingest_events($node, map { event_at($_, "sb_$_", 'exec.started') } 1 .. 200);

is(wait_arrivals($rx, 1), 1, 'the request is on the wire');
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'runra_obs forward'");
is(position_of('ax'), $start, 'the cursor has not moved while the request is on the wire');
kill 'KILL', $pid;
ok($node->poll_query_until('postgres',
	"SELECT behind_events = 0 AND sent >= 200 FROM runra_obs.forward_status WHERE destination = 'ax'"),
	'after the crash and restart, the destination catches up');
my $seen = arrived($rx);
is(scalar(keys %$seen), 200, 'every event arrived at least once');
is(scalar(grep { $_ > 2 } values %$seen), 0, 'and at most twice');
ok($node->log_contains(qr/background worker "runra_obs forward" \(PID $pid\) was terminated by signal 9/),
	'the worker really was killed');
$node->safe_psql('postgres', "SELECT runra_obs.remove_destination('ax')");

# ---- the whole server killed: one batch accepted, the next on the wire ----
my $rx2 = forward::Receiver->new;
$rx2->plan('200', '200 DELAY=5');
add_destination($node, 'big', 'axiom',
	{ url => $rx2->url, dataset => 'd', token => 't', flushIntervalMs => 0 });
my $p0 = position_of('big');
$node->safe_psql('postgres', q{
	INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type)
	SELECT now(), 'sb_big_' || i, 'exec.started' FROM generate_series(1, 25000) AS i});
is(wait_arrivals($rx2, 2), 2, 'the second batch is on the wire');
ok($node->poll_query_until('postgres',
	"SELECT position = $p0 + 10000 FROM runra_obs.forward_status WHERE destination = 'big'"),
	'the cursor passed the first batch (10,000 events, one request) once it was accepted');
my $committed = position_of('big');
$node->kill9;
# until its children have noticed and gone, the old postmaster.pid holds
# (a failed start reads that file's pid as the node's: forget it)
for my $try (1 .. 60)
{
	last if $node->start(fail_ok => 1);
	$node->{_pid} = undef;
	sleep 0.5;
}
ok($node->poll_query_until('postgres',
	"SELECT behind_events = 0 AND position >= $p0 + 25000 FROM runra_obs.forward_status WHERE destination = 'big'"),
	'after crash recovery the destination catches up');
$seen = arrived($rx2);
is(scalar(keys %$seen), 25000, 'every event arrived at least once');
my %first_batch = map { ("sb_big_$_" => 1) } 1 .. 10000;
is(scalar(grep { $first_batch{$_} && $seen->{$_} != 1 } keys %$seen), 0,
	'the events of the batch the cursor had passed arrived exactly once');
is(scalar(grep { $seen->{$_} > 2 } keys %$seen), 0,
	'the others at most twice (the batch on the wire reached the receiver, its answer never came back)');

$node->stop;
done_testing();
