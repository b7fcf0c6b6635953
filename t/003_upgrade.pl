# Upgrades: every released version, created with its frozen install script
# and brought forward with ALTER EXTENSION runra_obs UPDATE, ends with the
# same catalog as a new install of the current version (every object, its
# definition, privileges and comment; test/catalog_fingerprint.sql), keeps
# its events and configuration, and its workers wait for the update rather
# than run on an old schema.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RunraNode;

my $src = $ENV{RUNRA_OBS_SRC} // '.';
my $fingerprint_sql = slurp_file("$src/test/catalog_fingerprint.sql");
my ($current) = slurp_file("$src/runra_obs.control") =~ /^default_version = '([^']+)'/m;

# The released versions: the frozen install scripts beside the newest one.
my @released = sort map { m{--([0-9.]+)\.sql$} ? $1 : () }
  grep { !/--.*--/ } glob("$src/extension/runra_obs--*.sql");
@released = grep { $_ ne $current } @released;
ok(@released >= 1, "released versions to update from: @released (current $current)");

my $fresh = runra_node('fresh');
my $updated = runra_node_init('updated', conf => [
	"runra_obs.rollup_enabled = on", "runra_obs.rollup_interval = '200ms'"]);
$updated->start;

# The lines of the fingerprint only one side has, as a readable diff.
sub fingerprint_difference
{
	my ($want, $got) = @_;
	my %want = map { $_ => 1 } split /\n/, $want;
	my %got = map { $_ => 1 } split /\n/, $got;
	my @diff = ((map { "- $_" } grep { !$got{$_} } sort keys %want),
		(map { "+ $_" } grep { !$want{$_} } sort keys %got));
	return join("\n", @diff);
}

my $want = $fresh->safe_psql('postgres', $fingerprint_sql);
like($want, qr/^function runra_obs\.ingest\(jsonb\)/m, 'the fingerprint sees the functions');
like($want, qr/^column runra_obs\.sandbox_events 1 id bigint not null/m, 'and the columns');

foreach my $from (@released)
{
	my $db = 'from_' . ($from =~ s/\./_/gr);
	$updated->safe_psql('postgres', "CREATE DATABASE $db");
	$updated->safe_psql($db, "CREATE EXTENSION runra_obs VERSION '$from'");
	$updated->safe_psql($db, 'ALTER EXTENSION runra_obs UPDATE');
	is($updated->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'runra_obs'"),
		$current, "$from updates to $current");
	my $diff = fingerprint_difference($want, $updated->safe_psql($db, $fingerprint_sql));
	is($diff, '', "$from updated to $current has the catalog of a new $current install"
		. " (- only in the new install, + only in the updated one)");
}

# -- a database in use: events and configuration kept, workers waiting for
# the update, then folding what came before and after it.
my $oldest = $released[0];
$updated->safe_psql('postgres', "CREATE EXTENSION runra_obs VERSION '$oldest'");
$updated->poll_query_until('postgres', q{
	SELECT state = 'waiting for ALTER EXTENSION runra_obs UPDATE'
	FROM runra_obs.worker_status WHERE role = 'rollups'})
  or die 'the rollup worker is not waiting for the update';
pass("on a $oldest schema the rollup worker waits for ALTER EXTENSION UPDATE");
ok($updated->log_contains(
		qr/waiting for ALTER EXTENSION runra_obs UPDATE.*\n.*DETAIL:  The database has runra_obs \Q$oldest\E; the library is \Q$current\E/),
	'and says so in the log, with both versions');

# An event at now(), which every version's partition window holds.
sub ingest_now
{
	my ($sandbox, $cost) = @_;
	return $updated->safe_psql('postgres', qq{
	SELECT ingested FROM runra_obs.ingest(jsonb_build_object(
		'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
		'sandboxId', '$sandbox', 'type', 'cost.runtime', 'data', jsonb_build_object('cost', $cost)))});
}
is(ingest_now('sb_before', 1.25), '1', "events go in at $oldest");
$updated->safe_psql('postgres', q{
	SELECT runra_obs.add_destination('archive', 'jsonl', '{"filePath": "/dev/null"}', '{cost.runtime}')});

$updated->safe_psql('postgres', 'ALTER EXTENSION runra_obs UPDATE');
$updated->poll_query_until('postgres', q{
	SELECT state NOT LIKE 'waiting for%' FROM runra_obs.worker_status WHERE role = 'rollups'})
  or die 'the rollup worker did not start after the update';
pass('after the update the rollup worker runs');
is(ingest_now('sb_after', 2.5), '1', "and events go in at $current");
is($updated->safe_psql('postgres', q{
	SELECT string_agg(sandbox_id || '=' || (data->>'cost'), ',' ORDER BY sandbox_id)
	FROM runra_obs.sandbox_events}),
	'sb_after=2.5,sb_before=1.25', 'events from before the update are kept');
is($updated->safe_psql('postgres', q{SELECT name FROM runra_obs.destinations}),
	'archive', 'so is the configuration');
$updated->poll_query_until('postgres', q{
	SELECT sum(total_cost) = 3.75 FROM runra_obs.cost_per_sandbox(now() - interval '1 hour', now() + interval '1 hour')})
  or die 'the costs do not add up after the update';
pass('the API counts events from both sides of the update');

$fresh->stop;
$updated->stop;
done_testing();
