# Forwarding to JSONL files: the seed's exact line format, size rotation
# keeping maxFiles files, and a failing write retried until it works.
use strict;
use warnings;
use File::Temp qw(tempdir);
use PostgreSQL::Test::Utils;
use Test::More;
use forward::Util;

my $node = forward_node('forward_jsonl');
my $dir = tempdir(CLEANUP => 1);

# ---- one line, exactly the seed's format ----
add_destination($node, 'file', 'jsonl',
	{ filePath => "$dir/events.jsonl", flushIntervalMs => 0 }, [ 'exec.*', 'sandbox.paused' ]);
my $e1 = event_at(0, 'sb_abc123', 'exec.completed',
	{ command => 'npm test', exitCode => 0, durationMs => 4521 });
my $e2 = event_at(1, 'sb_abc123', 'sandbox.paused', { runtimeDurationMs => 120000 },
	'0123456789abcdef0123456789abcdef');
my $e3 = event_at(2, 'sb_abc123', 'file.read', { path => '/etc/hosts' });
ingest_events($node, $e1, $e2, $e3);
wait_delivered($node, 'file', 2);
is(slurp_file("$dir/events.jsonl"),
	qq({"timestamp":"$e1->{timestamp}","sandboxId":"sb_abc123","type":"exec.completed","data":{"command":"npm test","exitCode":0,"durationMs":4521}}\n)
	  . qq({"timestamp":"$e2->{timestamp}","sandboxId":"sb_abc123","type":"sandbox.paused","data":{"runtimeDurationMs":120000},"traceId":"0123456789abcdef0123456789abcdef"}\n),
	'lines in the seed format, selected events only, traceId when the event has one');
$node->safe_psql('postgres', "SELECT runra_obs.remove_destination('file')");

# ---- rotation: ~2 kB files, 3 kept ----
my $limit = int(0.002 * 1048576);
add_destination($node, 'rot', 'jsonl',
	{ filePath => "$dir/rot.jsonl", maxFileSizeMb => 0.002, maxFiles => 3,
	  flushIntervalMs => 0, batchSize => 40 }, [ 'exec.*' ]);
ingest_events($node, map { event_at($_, 'sb_rot', 'exec.started', { i => $_ }) } 1 .. 120);
wait_delivered($node, 'rot', 120);
ok(-f "$dir/rot.jsonl" && -f "$dir/rot.jsonl.1" && -f "$dir/rot.jsonl.2",
	'rotated into rot.jsonl, .1 and .2');
ok(!-e "$dir/rot.jsonl.3", 'no more than maxFiles files kept');
my @files = ("$dir/rot.jsonl.2", "$dir/rot.jsonl.1", "$dir/rot.jsonl");
ok(!(grep { -s $_ > $limit } @files), "every file within maxFileSizeMb ($limit bytes)");
my @lines = map { split /\n/, slurp_file($_) } @files;
my @i = map { /"data":\{"i":(\d+)\}/ ? $1 : -1 } @lines;
is_deeply(\@i, [ $i[0] .. 120 ], 'the kept files hold the newest events, in order, none twice');
cmp_ok(scalar @i, '>', 20, 'and a fair number of them');
ok(!(grep { !/^\{"timestamp":"[^"]+Z","sandboxId":"sb_rot","type":"exec.started","data":\{"i":\d+\}\}$/ } @lines),
	'every rotated line in the seed format');
$node->safe_psql('postgres', "SELECT runra_obs.remove_destination('rot')");

# ---- a directory that does not exist yet: retried until it does ----
add_destination($node, 'later', 'jsonl',
	{ filePath => "$dir/later/events.jsonl", flushIntervalMs => 0 });
ingest_events($node, event_at(0, 'sb_l', 'exec.started'));
ok($node->poll_query_until('postgres',
	"SELECT failed >= 2 FROM runra_obs.forward_status WHERE destination = 'later'"),
	'a failing write is counted and retried');
like(status_of($node, 'later', 'last_error'), qr/could not open .*later\/events.jsonl/,
	'last_error says what could not be opened');
mkdir "$dir/later";
wait_delivered($node, 'later', 1, 'delivered once the directory exists');
like(slurp_file("$dir/later/events.jsonl"), qr/"sandboxId":"sb_l"/, 'the event is in the file');

# ---- a redelivery whose event is no longer stored (its partition dropped) is dead-lettered ----
$node->safe_psql('postgres', q{
	INSERT INTO runra_obs.redeliveries (destination_id, event_id, created_at, sandbox_id)
	SELECT id, 999999999, now() - interval '40 days', 'sb_gone'
	FROM runra_obs.destinations WHERE name = 'later';
	SELECT runra_obs._forward_wake();});
ok($node->poll_query_until('postgres',
	"SELECT dead_lettered = 1 AND redelivering = 0 FROM runra_obs.forward_status WHERE destination = 'later'"),
	'an event gone from sandbox_events is dead-lettered, not skipped');
like($node->safe_psql('postgres', 'SELECT error FROM runra_obs.dead_letters'),
	qr/no longer in runra_obs.sandbox_events/, 'with the reason');

# ---- nothing is attached to the event table: forwarding reads it ----
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_trigger WHERE tgrelid = 'runra_obs.sandbox_events'::regclass}), '0',
	'no trigger on sandbox_events while destinations exist');
ingest_events($node, event_at(0, 'sb_back', 'exec.started'));
wait_delivered($node, 'later', 2, 'new events are read and delivered');
like(slurp_file("$dir/later/events.jsonl"), qr/"sandboxId":"sb_back"/, 'the new event is in the file');

# ---- never through a symbolic link ----
mkdir "$dir/linked";
open my $victim, '>', "$dir/victim" or die $!;
close $victim;
symlink("$dir/victim", "$dir/linked/events.jsonl") or die "symlink: $!";
add_destination($node, 'linked', 'jsonl', { filePath => "$dir/linked/events.jsonl", flushIntervalMs => 0 });
ingest_events($node, event_at(0, 'sb_link', 'exec.started'));
ok($node->poll_query_until('postgres',
		"SELECT last_error LIKE '%symbolic links%' FROM runra_obs.forward_status WHERE destination = 'linked'"),
	'a filePath that is a symbolic link is refused');
is(-s "$dir/victim", 0, 'and the file it points to is untouched');

$node->stop;
done_testing();
