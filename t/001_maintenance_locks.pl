# run_maintenance() beside ingest: creating partitions never waits for
# writers, and a drop that would have to wait gives up after its lock
# timeout, says so, and is done by the next run.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use RunraNode;
use Test::More;
use Time::HiRes qw(time);

# run_maintenance() is called by hand; no other worker is needed
my $node = runra_node('maintenance');

sub event_at
{
	my ($interval) = @_;
	return qq{SELECT failed FROM runra_obs.ingest(jsonb_build_object(
		'timestamp', to_char((now() + interval '$interval') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
		'sandboxId', 'sb_lock', 'type', 'exec.started'))};
}

# A writer holds its transaction open (RowExclusiveLock on sandbox_events).
my $writer = $node->background_psql('postgres');
$writer->query_safe('BEGIN');
is($writer->query_safe(event_at('0 s')), '0', 'writer ingests inside an open transaction');

# Widening premake creates partitions while the writer is still open.
$node->safe_psql('postgres', "ALTER SYSTEM SET runra_obs.premake = '5d'");
$node->reload;
my $start = time;
my $created = $node->safe_psql('postgres',
	"SELECT count(*) FROM runra_obs.run_maintenance(500) WHERE action = 'created'");
ok($created >= 2, "partitions created beside an open writer ($created)");
ok(time - $start < 5, 'creating partitions did not wait for the writer');

# Shrinking retention must drop partitions, which needs the writer gone:
# maintenance gives up after its lock timeout and reports the skip.
$node->safe_psql('postgres', "ALTER SYSTEM SET runra_obs.retention = '10d'");
$node->reload;
$start = time;
my $skipped = $node->safe_psql('postgres',
	"SELECT count(*) FROM runra_obs.run_maintenance(300) WHERE action = 'skipped' AND detail LIKE '%lock timeout%'");
ok($skipped == 1, 'the first drop that would wait is skipped and reported');
ok(time - $start < 3, 'maintenance waited for one lock timeout only, not one per partition');

# The writer was never blocked and commits; the next run drops.
is($writer->query_safe(event_at('1 s')), '0', 'writer still ingests after maintenance gave up');
$writer->query_safe('COMMIT');
$writer->quit;
my $dropped = $node->safe_psql('postgres',
	"SELECT count(*) FROM runra_obs.run_maintenance() WHERE action = 'dropped'");
ok($dropped >= 19, "the next run drops them ($dropped)");
is($node->safe_psql('postgres', 'SELECT count(*) FROM runra_obs.sandbox_events'),
	'2', 'both events committed');

# A role with no grants cannot hold maintenance back: the advisory locks
# it used to block are not what maintenance takes any more, and the locks
# maintenance does take it may not touch.
$node->safe_psql('postgres', 'CREATE ROLE nobody LOGIN');
my $squatter = $node->background_psql('postgres', extra_params => [ '-U', 'nobody' ]);
$squatter->query_safe(q{SELECT pg_advisory_lock(hashtext('runra_obs.run_maintenance')),
	pg_advisory_lock(hashtext('runra_obs.rollups'))});
my ($rc, $out, $err) = $node->psql('postgres',
	'BEGIN; SELECT FROM runra_obs._locks FOR UPDATE; LOCK TABLE runra_obs._locks',
	extra_params => [ '-U', 'nobody' ]);
like($err, qr/permission denied for (schema runra_obs|table _locks)/,
	'an unprivileged role cannot take the maintenance locks');
$start = time;
my $actions = $node->safe_psql('postgres',
	"SELECT count(*) FROM runra_obs.run_maintenance(500) WHERE action <> 'skipped'");
ok(time - $start < 5, 'maintenance runs while another role holds the old advisory locks');
is($node->safe_psql('postgres', 'SELECT runra_obs._maintain_rollups() LIKE \'rollups: %\''), 't',
	'and so does rollup compaction');
$squatter->quit;

$node->stop;
done_testing();
