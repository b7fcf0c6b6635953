# Smoke test: the library preloads, the extension installs in a cluster
# started the production way, and an event goes in through SQL.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use RunraNode;
use Test::More;

# "The production way": only the library preloaded and every runra_obs
# setting at its default, so every worker starts as it would on a real
# server (RunraNode's production option; other tests get quiet nodes).
my $node = runra_node_init('smoke', production => 1);
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION runra_obs');

my $result = $node->safe_psql('postgres', q{
    SELECT ingested, failed FROM runra_obs.ingest(jsonb_build_object(
        'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'sandboxId', 'sb_smoke', 'type', 'sandbox.created'))});
is($result, '1|0', 'an event goes in through runra_obs.ingest()');
is($node->safe_psql('postgres', 'SELECT count(*) FROM runra_obs.sandbox_events'),
   '1', 'and is stored');
# The README's reference lists exactly the public objects, with their
# COMMENTs (scripts/reference rewrites it).
my $src = $ENV{RUNRA_OBS_SRC} // '.';
my $expected = $node->safe_psql('postgres', slurp_file("$src/test/reference.sql"));
my $readme = slurp_file("$src/README.md");
my ($listed) = $readme =~ /<!-- reference:begin[^\n]*\n\|[^\n]*\n\|---\|---\|---\|\n(.*?)<!-- reference:end -->/s;
ok(defined $listed, 'README has a reference table');
$listed //= '';
chomp $listed;
is($listed, $expected, 'README reference matches the catalog (run scripts/reference)');

$node->stop;
done_testing();
