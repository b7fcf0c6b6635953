# Review of the JSONL destination: a write that fails part-way (disk full)
# must not leave part of a line in the file.  The batch is retried and
# appended after it, so the fragment and the retried first line would make
# one line no reader can parse, and that event would be lost to them.
#
# The server runs under a file size limit (ulimit -f; the postmaster
# ignores SIGXFSZ so that, as its source says, "ulimit violations work like
# disk full"), and the file starts just under the limit.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use forward::Util;

my $limit = 32 * 1024 * 1024;	# above a WAL segment, so the server itself is unhindered
my $node = forward_node('review_jsonl');
$node->stop;
system_or_bail('bash', '-c',
	'ulimit -f ' . ($limit / 1024) . ' && exec pg_ctl -w -D "$0" -l "$1" start',
	$node->data_dir, $node->logfile);
$node->_update_pid(1);

my $path = $node->basedir . '/events.jsonl';
my $start = $limit - 40;	# room for 40 bytes: less than one line
open my $fh, '>', $path or die "$path: $!";
truncate $fh, $start or die "truncate: $!";
close $fh;

add_destination($node, 'file', 'jsonl', { filePath => $path, flushIntervalMs => 0 }, [ 'exec.*' ]);
ingest_events($node, event_at(0, 'sb_full', 'exec.started', { command => 'make' }));
ok($node->poll_query_until('postgres',
		"SELECT failed >= 1 FROM runra_obs.forward_status WHERE destination = 'file'"),
	'the write past the limit fails');
is(-s $path, $start, 'the failed write left no part of a line behind');

# space comes back: the retry writes the whole line, once
truncate $path, 0 or die "truncate: $!";
wait_delivered($node, 'file', 1, 'delivered once there is room');
my @lines = split /\n/, slurp_file($path);
is(scalar @lines, 1, 'one line in the file');
is(eval { decode_json($lines[0])->{sandboxId} }, 'sb_full', 'and it is the whole event');

$node->stop;
done_testing();
