# RunraNode — the one way a TAP test gets a server with runra_obs: the
# library preloaded, the extension created in "postgres", and only the
# workers the test asks for (every worker is off unless its settings are
# passed in the conf lines).
package RunraNode;
use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

our @EXPORT = qw(runra_node runra_node_init ddl_beside_workers);

# The one shared_preload_libraries line of every test node ($preload: runra_obs
# alone, or with the libraries it must come after, as Citus).
sub preload_line
{
	my ($preload) = @_;
	return "shared_preload_libraries = '$preload'";
}

# The settings every test node starts from: the library preloaded and every
# runra_obs worker off.
sub quiet_defaults
{
	my ($preload) = @_;
	return (
		preload_line($preload),
		"runra_obs.http_workers = 0",
		"runra_obs.notify_channel = ''",
		"runra_obs.forward_enabled = off",
		"runra_obs.rollup_enabled = off",
		"runra_obs.alert_enabled = off");
}

# An initialised node named $name, its postgresql.conf written, not started:
# for tests that must act before the first start (a Citus cluster, a node
# that must fail to start).  Options:
#   conf    => [lines]       added after the quiet defaults
#   preload => 'citus,runra_obs'   shared_preload_libraries (default runra_obs)
#   tcp     => 1             also listen on 127.0.0.1 at the node's port
#   production => 1          no quiet defaults: only the library preloaded,
#                            every runra_obs setting (so every worker) at its
#                            built-in default, as a production server starts
sub runra_node_init
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $preload = $opt{preload} // 'runra_obs';
	my @lines = $opt{production}
	  ? (preload_line($preload))
	  : quiet_defaults($preload);
	push @lines, "listen_addresses = '127.0.0.1'" if $opt{tcp};
	push @lines, @{ $opt{conf} // [] };
	$node->append_conf('postgresql.conf', join("\n", @lines) . "\n");
	return $node;
}

# A started node named $name with the extension created; @conf lines are
# added to postgresql.conf after the quiet defaults.
sub runra_node
{
	my ($name, @conf) = @_;
	my $node = runra_node_init($name, conf => \@conf);
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION runra_obs');
	return $node;
}

# Runs $sql (DDL on a table the workers read, such as a test's trigger on
# sandbox_events) in "postgres", again when PostgreSQL chose it as a
# deadlock's victim.  DDL on a partitioned table locks its partitions in an
# order a worker's reading transaction can cross, so either side may be
# chosen; a worker retries on its own, and so does this.
sub ddl_beside_workers
{
	my ($node, $sql) = @_;
	for my $try (1 .. 5)
	{
		my ($rc, $out, $err) = $node->psql('postgres', $sql);
		return $out if $rc == 0;
		die "ddl_beside_workers: $err" unless $err =~ /deadlock detected/;
	}
	die "ddl_beside_workers: still a deadlock victim after 5 tries: $sql";
}

1;
