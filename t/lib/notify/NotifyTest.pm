# notify::NotifyTest — what the NOTIFY listener's TAP tests share: a cluster
# with runra_obs preloaded and quick settings, waiting for the listener, and
# SQL that sends distinct events as notifications.
package notify::NotifyTest;
use strict;
use warnings;
use Exporter 'import';
use RunraNode;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(notify_node wait_listening listener_pid worker_pid
  notify_events_sql event_count wait_for_events status_row);

# A started cluster with the extension created; extra lines go into
# postgresql.conf.  Batches flush fast so tests do not wait.
sub notify_node
{
	my ($name, @conf) = @_;
	return runra_node($name,
		"runra_obs.notify_channel = 'runra_events'",
		"runra_obs.notify_flush_ms = 50",
		"log_min_messages = debug1",
		@conf);
}

sub wait_listening
{
	my ($node, $channel) = @_;
	my $like = defined $channel ? qq{listening on "$channel"%} : 'listening on%';
	$like =~ s/'/''/g;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM runra_obs.worker_status"
		  . " WHERE role = 'notify' AND state LIKE '$like'")
	  or die "the notify worker did not start listening";
}

# The pid of the listener's libpq connection (its server backend).
sub listener_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE application_name = 'runra_obs notify listener'");
}

# The pid of the notify worker itself.
sub worker_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM runra_obs.worker_status WHERE role = 'notify'");
}

# A SELECT that sends $n notifications on $channel, one event each, with
# sandboxId $sandbox and data {"i": 1..n}; all in one transaction.
sub notify_events_sql
{
	my ($channel, $sandbox, $n) = @_;
	return qq{SELECT count(pg_notify('$channel', json_build_object(
		'timestamp', now(), 'sandboxId', '$sandbox', 'type', 'exec.completed',
		'data', json_build_object('i', i))::text))
	  FROM generate_series(1, $n) AS i};
}

# How many events of $sandbox are stored.
sub event_count
{
	my ($node, $sandbox) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id = '$sandbox'");
}

# Waits until $n events of $sandbox are stored; false if they never are.
sub wait_for_events
{
	my ($node, $sandbox, $n) = @_;
	return $node->poll_query_until('postgres',
		"SELECT count(*) = $n FROM runra_obs.sandbox_events WHERE sandbox_id = '$sandbox'");
}

# One column list of the notify worker's status row, joined by |.
sub status_row
{
	my ($node, $columns) = @_;
	return $node->safe_psql('postgres',
		"SELECT $columns FROM runra_obs.worker_status WHERE role = 'notify'");
}

1;
