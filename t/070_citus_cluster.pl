# Citus: a coordinator and two workers on one machine (t/lib/CitusCluster.pm),
# citus and runra_obs preloaded on each.  Citus itself works there: a
# distributed table spreads its rows over both workers, counted where they
# are stored, and the coordinator counts them all.  Then runra_obs is
# created on the coordinator.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use CitusCluster;

skip_all_without_citus();

my $cluster = citus_cluster('citus');
my $coordinator = $cluster->coordinator;
my @workers = $cluster->workers;

is( $coordinator->safe_psql('postgres',
		'SELECT string_agg(node_port::text, \',\' ORDER BY node_port) FROM citus_get_active_worker_nodes()'),
	join(',', sort { $a <=> $b } map { $_->port } @workers),
	'the coordinator knows both workers');

$coordinator->safe_psql('postgres', q{
	CREATE TABLE citus_probe (id bigint PRIMARY KEY, note text);
	SELECT create_distributed_table('citus_probe', 'id', shard_count := 4);
	INSERT INTO citus_probe SELECT g, 'row ' || g FROM generate_series(1, 1000) g;
});
is($coordinator->safe_psql('postgres', 'SELECT count(*) FROM citus_probe'),
	'1000', 'the coordinator counts every row of the distributed table');

# Each worker counts the rows of the shards placed on it, read from its own
# tables, not through Citus.
my $total = 0;
for my $worker (@workers)
{
	my $shards = $coordinator->safe_psql('postgres', q{
		SELECT string_agg(format('SELECT count(*) FROM %s', shard_name('citus_probe'::regclass, shardid)),
		                  ' UNION ALL ')
		FROM pg_dist_shard JOIN pg_dist_placement USING (shardid) JOIN pg_dist_node USING (groupid)
		WHERE logicalrelid = 'citus_probe'::regclass AND nodeport = } . $worker->port);
	isnt($shards, '', $worker->name . ' holds shards');
	my $rows = $shards eq '' ? 0
	  : $worker->safe_psql('postgres', "SELECT sum(count) FROM ($shards) s");
	cmp_ok($rows, '>', 0, $worker->name . ' stores rows of the table');
	$total += $rows;
}
is($total, 1000, 'the workers together store every row, once');

my ($ret, $out, $err) = $cluster->create_runra_obs;
is($ret, 0, 'CREATE EXTENSION runra_obs on the coordinator') or diag($err);

done_testing();
