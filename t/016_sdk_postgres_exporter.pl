# The SDK's Postgres exporter with nothing but a connection string: the
# real `pg` client from the npm registry, a login from create_login(), and
# the exporter's pattern (multi-row INSERT INTO sandbox_events, batches of
# 100, JavaScript Dates and objects as parameters).  One batch carries two
# bad events: its 98 good ones are stored, the two are in rejected_events
# with their reasons, and the client is told.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use NpmClients;
use RunraNode;

my $clients = npm_clients_or_skip();

my $node = runra_node('sdk', "listen_addresses = '127.0.0.1'");
# passwords must count: every TCP connection is checked with SCRAM
$node->append_conf('pg_hba.conf', '');
open my $hba, '>', $node->data_dir . '/pg_hba.conf' or die $!;
print $hba "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n";
close $hba;
$node->reload;

my ($writer_url) = split /\n/, $node->safe_psql('postgres',
	"SELECT database_url FROM runra_obs.create_login('sdk_exporter')");
my ($reader_url) = split /\n/, $node->safe_psql('postgres',
	"SELECT database_url FROM runra_obs.create_login('grafana', 'reader')");
like($writer_url, qr{^postgresql://sdk_exporter:[0-9a-f]{64}\@127\.0\.0\.1:\d+/postgres$},
	'create_login gives a DATABASE_URL for the server\'s address');

# The exporter's pattern: 3 batches of 100 events, one INSERT each; in the
# second, event 10 has a type in capitals and event 20 an empty sandbox id.
my $exporter = <<'JS';
const { Client } = require('pg');
(async () => {
  const client = new Client({ connectionString: process.env.DATABASE_URL });
  const warnings = [];
  client.on('notice', (n) => warnings.push(n.message));
  await client.connect();
  const now = Date.now();
  const counts = [];
  for (let b = 0; b < 3; b++) {
    const values = [], params = [];
    for (let i = 0; i < 100; i++) {
      let type = ['exec.completed', 'cost.runtime', 'tool.invoked'][i % 3];
      let sandbox = 'sb_js_' + (i % 7);
      if (b === 1 && i === 10) type = 'Exec.Completed';
      if (b === 1 && i === 20) sandbox = '';
      const data = type === 'cost.runtime' ? { cost: 0.0025 }
                 : type === 'tool.invoked' ? { toolName: 'bash', toolArgs: { cmd: 'ls' }, agentId: 'a1' }
                 : { command: 'npm test', exitCode: i % 5 === 0 ? 1 : 0, durationMs: 100 * i };
      const n = params.length;
      values.push(`($${n + 1}, $${n + 2}, $${n + 3}, $${n + 4})`);
      params.push(sandbox, type, data, new Date(now - 60000 + b * 1000 + i));
    }
    const r = await client.query(
      'INSERT INTO sandbox_events (sandbox_id, event_type, data, created_at) VALUES ' + values.join(', '),
      params);
    counts.push(r.rowCount);
  }
  await client.end();
  console.log(JSON.stringify({ counts, warnings }));
})().catch((e) => { console.error(e.message); process.exit(1); });
JS
my ($ok, $out, $err) = node_script($clients, $exporter, DATABASE_URL => $writer_url);
ok($ok, 'the exporter\'s batches ran with only the connection string') or diag $err;
like($out, qr/"counts":\[100,98,100\]/, 'each INSERT reports the rows it stored: 100, 98, 100');
like($out, qr/stored 98 of 100 rows; the other 2 are in runra_obs.rejected_events/,
	'the client is warned about the two it did not store');

is($node->safe_psql('postgres',
		"SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id LIKE 'sb_js_%'"),
	'298', 'every good event is stored');
is($node->safe_psql('postgres',
		"SELECT string_agg(position || ': ' || reason, E'\\n' ORDER BY position)"
		  . " FROM runra_obs.rejected_events WHERE source = 'insert'"),
	"10: type must be lowercase family.name, such as exec.completed, not \"Exec.Completed\"\n"
	  . "20: sandboxId must not be empty",
	'the two bad ones are kept with their place in the batch and the reason');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM runra_obs.sandbox_events WHERE sandbox_id LIKE 'sb_js_%'"
		  . " AND created_at > now() - interval '2 minutes' AND created_at < now()"),
	'298', 'JavaScript Dates keep their instant');

# The seed's own query, as a reader would run it (Grafana, an analyst).
my $seed_query = <<'JS';
const { Client } = require('pg');
(async () => {
  const client = new Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  const r = await client.query(`SELECT sandbox_id, SUM((data->>'cost')::numeric) as total_cost
    FROM sandbox_events WHERE event_type = 'cost.runtime' AND created_at > NOW() - INTERVAL '24 hours'
    GROUP BY sandbox_id ORDER BY total_cost DESC, sandbox_id`);
  const jit = await client.query('SHOW jit');
  await client.end();
  console.log(JSON.stringify({ rows: r.rows.length, first: r.rows[0], jit: jit.rows[0].jit }));
})().catch((e) => { console.error(e.message); process.exit(1); });
JS
($ok, $out, $err) = node_script($clients, $seed_query, DATABASE_URL => $reader_url);
ok($ok, 'the reader runs the seed\'s query unchanged') or diag $err;
like($out, qr/"rows":7,.*"jit":"off"/, 'over every sandbox, with jit off for the reader');

(my $wrong = $writer_url) =~ s/:[0-9a-f]{64}\@/:0000\@/;
($ok, $out, $err) = node_script($clients, $seed_query, DATABASE_URL => $wrong);
ok(!$ok && $err =~ /password authentication failed/, 'a wrong password is refused')
  or diag "$out $err";

$node->stop;
done_testing();
