# Only members of runra_obs_writer may send events by NOTIFY, which itself
# needs no privilege: a role with no grants once stored forged cost.total
# and exec.completed events this way.  A refused payload is kept in
# rejected_events with the reason, nothing of it stored.  Senders that end
# right after their commit (psql -c) are still known: every session notes
# its pid and role as it ends.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use notify::NotifyTest;

my $node = notify_node('notify_senders');
wait_listening($node, 'runra_events');
$node->safe_psql('postgres', q{
	CREATE ROLE forger LOGIN;
	CREATE ROLE sdk LOGIN IN ROLE runra_obs_writer;});

sub notify_as
{
	my ($role, $sandbox, $n) = @_;
	$node->safe_psql('postgres', notify_events_sql('runra_events', $sandbox, $n),
		defined $role ? (extra_params => [ '-U', $role ]) : ());
}

# each psql here ends right after its commit, before the listener reads
notify_as('forger', 'sb_forged', 5);
notify_as('sdk', 'sb_writer', 5);
notify_as(undef, 'sb_superuser', 5);    # the bootstrap superuser
wait_for_events($node, 'sb_writer', 5) or die 'the writer\'s events did not land';
wait_for_events($node, 'sb_superuser', 5) or die 'the superuser\'s events did not land';
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 5 FROM runra_obs.rejected_events WHERE source = 'notify' AND raw LIKE '%sb_forged%'"),
	'the forger\'s five notifications are kept in rejected_events');
is(event_count($node, 'sb_forged'), '0', 'and none of them is stored');
is($node->safe_psql('postgres',
		"SELECT DISTINCT reason FROM runra_obs.rejected_events WHERE raw LIKE '%sb_forged%'"),
	'not stored: sent by role "forger", which is not a member of runra_obs_writer',
	'with the reason');

# a sender that is still connected when its notification is read
my $open = $node->background_psql('postgres', extra_params => [ '-U', 'forger' ]);
$open->query_safe(notify_events_sql('runra_events', 'sb_forged_open', 2));
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM runra_obs.rejected_events WHERE raw LIKE '%sb_forged_open%'"),
	'a connected forger is refused too');
my $writer = $node->background_psql('postgres', extra_params => [ '-U', 'sdk' ]);
$writer->query_safe(notify_events_sql('runra_events', 'sb_writer_open', 2));
ok(wait_for_events($node, 'sb_writer_open', 2), 'a connected writer is stored');
$open->quit;
$writer->quit;

$node->stop;
done_testing();
