# CitusCluster — a Citus cluster on one machine for TAP tests: a coordinator
# and workers (two unless told), each a RunraNode node with citus and
# runra_obs preloaded, talking to each other over TCP on 127.0.0.1 with
# trust authentication.  Citus comes from the private install (the Makefile
# copies scripts/citus-build's cached build into tmp_install/); without it a
# test skips, or fails when the suite was promised Citus
# (RUNRA_CITUS_REQUIRED, set by scripts/test).
#
#   skip_all_without_citus();
#   my $cluster = citus_cluster('citus');          # started, workers added
#   my ($ret, $out, $err) = $cluster->create_runra_obs;
#   $cluster->coordinator->safe_psql('postgres', ...);
#   $_->safe_psql('postgres', ...) for $cluster->workers;
#
# Creating runra_obs is a step of its own, so that a test sees how it goes.
package CitusCluster;
use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Utils;
use Test::More;
use RunraNode;

our @EXPORT = qw(citus_available skip_all_without_citus citus_cluster);

# Settings of every node.  No SSL between nodes: Citus's default
# node_conninfo (sslmode=require) makes CREATE EXTENSION citus generate a
# certificate and turn ssl on, which costs time and tests nothing of ours.
my @CITUS_CONF = ("citus.node_conninfo = 'sslmode=disable'");

# (1) when the server on PATH (tmp_install/) has Citus; (0, why) otherwise.
sub citus_available
{
	my $libdir   = `pg_config --pkglibdir`;
	my $sharedir = `pg_config --sharedir`;
	return (0, 'pg_config not found') unless $libdir && $sharedir;
	chomp($libdir, $sharedir);
	return (0, "no citus.so in $libdir (scripts/test builds Citus with scripts/citus-build; "
		  . 'make test takes it as CITUS_DIR)')
	  unless -f "$libdir/citus.so";
	return (0, "no citus.control in $sharedir/extension")
	  unless -f "$sharedir/extension/citus.control";
	return (1);
}

# Skips the whole test file when Citus is not available, with the reason;
# dies instead when RUNRA_CITUS_REQUIRED says it must be.
sub skip_all_without_citus
{
	my ($ok, $why) = citus_available();
	return if $ok;
	die "Citus is required here (RUNRA_CITUS_REQUIRED) but not available: $why\n"
	  if $ENV{RUNRA_CITUS_REQUIRED};
	plan skip_all => "Citus not available: $why";
}

# A started cluster named $name: "${name}_coordinator" and
# "${name}_worker1".."${name}_workerN", citus created on each, the
# coordinator's host set and the workers added.  Options:
#   workers          => 2         how many workers
#   conf             => [lines]   postgresql.conf lines for every node
#   coordinator_conf => [lines]   for the coordinator only (after conf)
#   worker_conf      => [lines]   for every worker only (after conf)
# Returns the cluster object (methods below).
sub citus_cluster
{
	my ($name, %opt) = @_;
	my $self = bless { name => $name }, __PACKAGE__;
	$self->{coordinator} =
	  citus_node("${name}_coordinator", @{ $opt{conf} // [] }, @{ $opt{coordinator_conf} // [] });
	$self->{workers} = [
		map { citus_node("${name}_worker$_", @{ $opt{conf} // [] }, @{ $opt{worker_conf} // [] }) }
		  1 .. ($opt{workers} // 2) ];
	$_->start for $self->nodes;
	$_->safe_psql('postgres', 'CREATE EXTENSION citus') for $self->nodes;
	my $coordinator = $self->{coordinator};
	$coordinator->safe_psql('postgres',
		"SELECT citus_set_coordinator_host('127.0.0.1', " . $coordinator->port . ')');
	$coordinator->safe_psql('postgres', "SELECT citus_add_node('127.0.0.1', " . $_->port . ')')
	  for $self->workers;
	return $self;
}

# One initialised node, not started, that trusts TCP from 127.0.0.1.
sub citus_node
{
	my ($name, @conf) = @_;
	my $node = RunraNode::runra_node_init($name,
		preload => 'citus,runra_obs', tcp => 1, conf => [ @CITUS_CONF, @conf ]);
	trust_local_tcp($node);
	return $node;
}

# Nodes connect to each other as the test's own user over 127.0.0.1; the
# first matching pg_hba.conf line wins, so trust goes first whatever
# initdb wrote.
sub trust_local_tcp
{
	my ($node) = @_;
	my $hba = $node->data_dir . '/pg_hba.conf';
	my $old = slurp_file($hba);
	open my $fh, '>', $hba or die "cannot write $hba: $!";
	print $fh "# CitusCluster: the nodes connect to each other here\n",
	  "host all all 127.0.0.1/32 trust\n", $old;
	close $fh;
	return;
}

# The coordinator node (a PostgreSQL::Test::Cluster).
sub coordinator { return $_[0]->{coordinator}; }

# The worker nodes, in order.
sub workers { return @{ $_[0]->{workers} }; }

# The coordinator, then the workers.
sub nodes { my ($self) = @_; return ($self->{coordinator}, $self->workers); }

# CREATE EXTENSION runra_obs in "postgres" on the coordinator: psql's
# ($ret, $stdout, $stderr), $ret 0 when it succeeded.  Does not die.
sub create_runra_obs
{
	my ($self) = @_;
	my ($ret, $out, $err) = $self->{coordinator}->psql('postgres',
		'CREATE EXTENSION runra_obs', on_error_stop => 1);
	return ($ret, $out, $err);
}

# Stops every node, workers first.
sub stop
{
	my ($self) = @_;
	$_->stop for reverse $self->nodes;
	return;
}

1;
