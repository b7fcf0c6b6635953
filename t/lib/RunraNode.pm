# RunraNode — the one way a TAP test gets a server with runra_obs: the
# library preloaded, the extension created in "postgres", and only the
# workers the test asks for (every worker is off unless its settings are
# passed in @conf).
package RunraNode;
use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

our @EXPORT = qw(runra_node);

# A started node named $name with the extension created; @conf lines are
# added to postgresql.conf after the quiet defaults below.
sub runra_node
{
	my ($name, @conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', join("\n",
		"shared_preload_libraries = 'runra_obs'",
		"runra_obs.http_workers = 0",
		"runra_obs.notify_channel = ''",
		"runra_obs.forward_enabled = off",
		"runra_obs.rollup_enabled = off",
		"runra_obs.alert_enabled = off",
		@conf) . "\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION runra_obs');
	return $node;
}

1;
