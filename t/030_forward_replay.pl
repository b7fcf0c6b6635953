# A destination added with a start time (config startAt) replays history:
# exactly the events stored when it was added whose created_at is at or
# after startAt, in id order, with its event-type selection applied when
# reading; then everything that arrives later, late events (an older
# created_at, even before startAt) included, as a destination added "now"
# gets them.  A destination added without startAt starts at "now": it gets
# none of the history.
use strict;
use warnings;
use File::Temp qw(tempdir);
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use forward::Util;

my $node = forward_node('forward_replay');
my $dir = tempdir(CLEANUP => 1);

# history: four days, two event types, inserted out of created_at order
$node->safe_psql('postgres', q{
	INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type, data)
	SELECT date_trunc('hour', now()) - d * interval '1 day' + i * interval '1 minute',
	       format('sb_d%s_%s', d, i), CASE WHEN i % 2 = 0 THEN 'exec.started' ELSE 'file.read' END,
	       jsonb_build_object('d', d, 'i', i)
	FROM generate_series(1, 4) AS d, generate_series(1, 10) AS i
	ORDER BY random()});

my $start = $node->safe_psql('postgres',
	q{SELECT to_char((date_trunc('hour', now()) - interval '2 days') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')});
add_destination($node, 'replay', 'jsonl',
	{ filePath => "$dir/replay.jsonl", flushIntervalMs => 0, startAt => $start }, [ 'exec.*' ]);
add_destination($node, 'now', 'jsonl', { filePath => "$dir/now.jsonl", flushIntervalMs => 0 });
is($node->safe_psql('postgres', q{
	SELECT string_agg(format('%s:%s', name, start_at IS NOT NULL), ',' ORDER BY name)
	FROM runra_obs.destination_list}), 'now:f,replay:t',
	'one destination replays from its start time, the other starts now');

my $expected = $node->safe_psql('postgres', qq{
	SELECT count(*) FROM runra_obs.sandbox_events
	WHERE created_at >= '$start' AND event_type LIKE 'exec.%'});
is($expected, 10, 'ten exec events since the start time (two days of five)');
wait_delivered($node, 'replay', $expected, 'the history since startAt is replayed');

sub lines
{
	my ($file) = @_;
	return () unless -e $file;
	return map { decode_json($_) } split /\n/, slurp_file($file);
}
my @got = lines("$dir/replay.jsonl");
my $want = $node->safe_psql('postgres', qq{
	SELECT string_agg(sandbox_id, ',' ORDER BY id) FROM runra_obs.sandbox_events
	WHERE created_at >= '$start' AND event_type LIKE 'exec.%'});
is(join(',', map { $_->{sandboxId} } @got), $want,
	'exactly the selected events created since startAt, each once, in id order');
my @none = lines("$dir/now.jsonl");
is(scalar @none, 0, 'the destination added without startAt replays nothing');

# after the start: a new event, and a late one from before startAt
ingest_events($node, event_at(0, 'sb_new', 'exec.started'), event_at(0, 'sb_new', 'file.read'));
$node->safe_psql('postgres', q{
	INSERT INTO runra_obs.sandbox_events (created_at, sandbox_id, event_type)
	VALUES (now() - interval '3 days', 'sb_late', 'exec.completed')});
wait_delivered($node, 'replay', $expected + 2, 'the events that arrived later are delivered');
wait_delivered($node, 'now', 3, 'to the "now" destination too');
@got = lines("$dir/replay.jsonl");
is(join(',', map { $_->{sandboxId} } @got[$expected .. $#got]), 'sb_new,sb_late',
	'replay: the new exec event, and the late one although created before startAt');
is(join(',', map { "$_->{sandboxId}/$_->{type}" } lines("$dir/now.jsonl")),
	'sb_new/exec.started,sb_new/file.read,sb_late/exec.completed',
	'now: every event that arrived after it was added, in arrival order');

# startAt is for adding only, and must be a time
my ($rc, $out, $err) = $node->psql('postgres',
	q{SELECT runra_obs.change_destination('replay', '{"startAt": "2026-01-01T00:00:00Z"}')});
like($err, qr/option "startAt" can only be given when a destination is added/, 'startAt cannot be changed');
($rc, $out, $err) = $node->psql('postgres',
	q{SELECT runra_obs.add_destination('bad', 'jsonl', '{"filePath": "/tmp/x", "startAt": "yesterday-ish"}')});
like($err, qr/option "startAt" of jsonl destination must be a time/, 'startAt must be a time');

$node->stop;
done_testing();
