# forward::Util — what the forwarding TAP tests share: a node with the
# forward worker running, event helpers, and waiting for deliveries.
package forward::Util;

use strict;
use warnings;
use Exporter 'import';
use JSON::PP;
use POSIX qw(strftime);
use RunraNode;
use Test::More;
use Time::HiRes qw(time);

our @EXPORT = qw(forward_node ingest_events event_at add_destination wait_delivered status_of);

# A started RunraNode (t/lib/RunraNode.pm: every other worker off) with the
# extension and a fast-polling forward worker; $extra, a string of settings,
# goes after (a test that needs another worker turns it on there).
sub forward_node
{
	my ($name, $extra) = @_;
	return runra_node($name,
		"runra_obs.forward_enabled = on",
		"runra_obs.forward_poll_interval = 200ms",
		"log_min_messages = info",
		$extra // ());
}

# An event hash at now (+ $ms milliseconds), in the seed's envelope.
sub event_at
{
	my ($ms, $sandbox, $type, $data, $trace) = @_;
	my $t = time + ($ms // 0) / 1000;
	my $ts = strftime('%Y-%m-%dT%H:%M:%S', gmtime int $t) . sprintf('.%03dZ', ($t - int $t) * 1000);
	return { timestamp => $ts, sandboxId => $sandbox, type => $type,
		data => $data // {}, defined $trace ? (traceId => $trace) : () };
}

# Ingests events through runra_obs.ingest(); returns how many were stored.
sub ingest_events
{
	my ($node, @events) = @_;
	my $json = encode_json(\@events);
	$json =~ s/'/''/g;
	return $node->safe_psql('postgres',
		"SELECT ingested FROM runra_obs.ingest('$json'::jsonb)");
}

sub add_destination
{
	my ($node, $name, $provider, $config, $types) = @_;
	my $json = encode_json($config);
	my $arr = $types ? "'{" . join(',', @$types) . "}'" : "'{}'";
	$node->safe_psql('postgres',
		"SELECT runra_obs.add_destination('$name', '$provider', '$json', $arr)");
}

# Waits until the destination has caught up with the watermark, has
# nothing to redeliver and has sent $sent events.
sub wait_delivered
{
	my ($node, $name, $sent, $what) = @_;
	ok($node->poll_query_until('postgres',
			"SELECT behind_events = 0 AND redelivering = 0 AND sent >= $sent FROM runra_obs.forward_status WHERE destination = '$name'"),
		$what // "$name: $sent events delivered");
}

# One forward_status column of a destination.
sub status_of
{
	my ($node, $name, $column) = @_;
	return $node->safe_psql('postgres',
		"SELECT $column FROM runra_obs.forward_status WHERE destination = '$name'");
}

1;
