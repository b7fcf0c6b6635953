# Axiom destinations with the options of the official client (@axiomhq/js
# 2.x): edge deployments take /v1/ingest/{dataset} on the region's edge
# URL, the legacy API (US East only) /v1/datasets/{dataset}/ingest, and a
# personal token needs the organization's id in X-AXIOM-ORG-ID.  Where
# runra_obs sends for each combination of options is compared with where
# the client itself resolves them (its resolveIngestUrl), and deliveries
# to local receivers show the path and the header on the wire.
use strict;
use warnings;
use File::Spec;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use NpmClients;
use RunraNode;
use forward::Receiver;
use forward::Util;

my $clients = npm_clients_or_skip();
my $node = runra_node('axiom_edge',
	'runra_obs.forward_enabled = on', 'runra_obs.forward_poll_interval = 200ms');

# ---- the URL for each set of options, as the client builds it ----
my @configs = (
	{},
	{ url => 'https://api.axiom.co/' },
	{ url => 'http://127.0.0.1:9' },
	{ url => 'http://127.0.0.1:9/custom/ingest/' },
	{ edge => 'eu-central-1.aws.edge.axiom.co' },
	{ edgeUrl => 'https://eu-central-1.aws.edge.axiom.co' },
	{ edgeUrl => 'http://localhost:3400/ingest' },
	{ url => 'https://api.eu.axiom.co', edge => 'eu-central-1.aws.edge.axiom.co' },
	{ edge => 'us-east-1.aws.edge.axiom.co', edgeUrl => 'https://eu-central-1.aws.edge.axiom.co/' });
my $sql_configs = encode_json([ map { { %$_, dataset => 'runra-events' } } @configs ]);
my @ours = split /\n/, $node->safe_psql('postgres', qq{
	SELECT runra_obs._forward_url('axiom', c)
	FROM jsonb_array_elements('$sql_configs') WITH ORDINALITY AS x (c, n) ORDER BY n});
my ($ok, $out, $err) = node_script($clients, <<'JS', CONFIGS => $sql_configs);
const path = require('path');
const { resolveIngestUrl } = require(path.join(process.env.NODE_PATH, '@axiomhq/js/dist/cjs/httpClient.cjs'));
const urls = JSON.parse(process.env.CONFIGS).map((c) => resolveIngestUrl(c, c.dataset));
process.stdout.write(urls.join('\n'));
JS
ok($ok, '@axiomhq/js resolves the ingest URLs') or diag($err);
my @theirs = split /\n/, $out;
for my $i (0 .. $#configs)
{
	is($ours[$i], $theirs[$i], 'the client\'s URL for ' . encode_json($configs[$i]));
}
is($ours[4], 'https://eu-central-1.aws.edge.axiom.co/v1/ingest/runra-events',
	'an EU edge dataset is reached at the edge ingest path');

# ---- on the wire ----
my $edge = forward::Receiver->new;
my $legacy = forward::Receiver->new;
my $custom = forward::Receiver->new;
add_destination($node, 'edge', 'axiom',
	{ edgeUrl => $edge->url, dataset => 'runra-events', token => 'xapt-personal', orgId => 'org-123',
	  flushIntervalMs => 0 });
add_destination($node, 'legacy', 'axiom',
	{ url => $legacy->url, dataset => 'runra-events', token => 'xaat-api', flushIntervalMs => 0 });
add_destination($node, 'custom', 'axiom',
	{ edgeUrl => $custom->url . '/proxy/axiom', dataset => 'runra-events', token => 't',
	  flushIntervalMs => 0 });
is(ingest_events($node, event_at(0, 'sb_1', 'exec.completed', { exitCode => 0 }),
		event_at(1, 'sb_1', 'sandbox.paused', { runtimeDurationMs => 5 })),
	2, 'two events ingested');
wait_delivered($node, $_, 2) for qw(edge legacy custom);

my @e = $edge->requests;
is_deeply([ map { $_->{path} } @e ], ['/v1/ingest/runra-events'], 'edgeUrl: POST /v1/ingest/{dataset}');
is($e[0]{headers}{'x-axiom-org-id'}, 'org-123', 'edge: the org id header is sent');
is($e[0]{headers}{authorization}, 'Bearer xapt-personal', 'edge: bearer token');
is(scalar @{ decode_json($e[0]{body}) }, 2, 'edge: both events in the gzipped array');
my @l = $legacy->requests;
is_deeply([ map { $_->{path} } @l ], ['/v1/datasets/runra-events/ingest'], 'url: the legacy path still works');
ok(!exists $l[0]{headers}{'x-axiom-org-id'}, 'legacy: no org id header without orgId');
is_deeply([ map { $_->{path} } $custom->requests ], ['/proxy/axiom'], 'an edgeUrl with a path is used as it is');

# ---- options refused, with what to do instead ----
for my $bad (
	[ { edge => 'https://eu-central-1.aws.edge.axiom.co' }, qr/"edge" of axiom destination must be a domain/ ],
	[ { edgeUrl => 'eu-central-1.aws.edge.axiom.co' }, qr/"edgeUrl" of axiom destination must be an http/ ],
	[ { url => 'https://user:pw@api.axiom.co' }, qr/"url" of axiom destination must not hold a user name/ ],
	[ { orgId => "org\n" }, qr/"orgId" of axiom destination must not hold control characters/ ],
	[ { orgId => 5 }, qr/"orgId" of axiom destination must be a non-empty string/ ])
{
	my $config = encode_json({ dataset => 'd', token => 't', %{ $bad->[0] } });
	my (undef, undef, $e) = $node->psql('postgres',
		"SELECT runra_obs.add_destination('bad', 'axiom', '$config')");
	like($e, $bad->[1], 'refused: ' . encode_json($bad->[0]));
}

$node->stop;
done_testing();
