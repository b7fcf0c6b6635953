# A Citus worker node killed under load and restarted loses nothing
# acknowledged.  Three clients send events to the coordinator in a loop,
# two over HTTP (each request with its own Idempotency-Key, some sent a
# second time as a client unsure of the answer would) and one through SQL
# ingest(); each event carries a unique data.seq, and each client logs
# what it sent and what was acknowledged (ingest() returned, HTTP 2xx).
# One more ingest() is held between Citus's PREPARE and COMMIT PREPARED
# when worker 1 is killed with SIGKILL (its postmaster, then every process
# it left); the clients see errors, and the worker is started again.
# Afterwards, once Citus has committed what the worker had prepared, every
# acknowledged event is in sandbox_events, found through Citus and in the
# shards read one by one; an event is stored at most as often as it was
# sent, exactly once when HTTP acknowledged it (once or twice), and as
# often as ingest() acknowledged it; nothing is in the coordinator's
# shells; and the consumers (rollups, a JSONL destination) saw every event.
use strict;
use warnings;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use CitusCluster;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest qw(post_events create_token start_children wait_children);

skip_all_without_citus();

my $http_port = PostgreSQL::Test::Cluster::get_free_port();
my $cluster = citus_cluster('restart',
	conf => [ "runra_obs.retention = '2d'", "runra_obs.premake = '1d'" ],    # few partitions: less to scan
	coordinator_conf => [
		"runra_obs.http_workers = 1",
		"runra_obs.http_port = $http_port",
		"runra_obs.http_listen_addresses = '127.0.0.1'",
		"runra_obs.rollup_enabled = on",
		"runra_obs.forward_enabled = on",
		"runra_obs.forward_poll_interval = '200ms'",
		# Citus commits what a killed worker had prepared but not committed
		# every recover_2pc_interval (a minute unless told); here the test
		# says when, after the consumers have read what they could
		"citus.recover_2pc_interval = -1",
		# a session that asks for synchronous_commit = on waits after its
		# commit record, before it is visible and before Citus's COMMIT
		# PREPARED: how the test holds one transaction in doubt
		"wal_level = replica",
		"max_wal_senders = 2",
		"synchronous_standby_names = 'nobody'",
		"synchronous_commit = local"]);
my $coordinator = $cluster->coordinator;
my ($victim) = $cluster->workers;
my ($ret, $out, $err) = $cluster->create_runra_obs;
is($ret, 0, 'CREATE EXTENSION runra_obs on the coordinator') or BAIL_OUT($err);
$coordinator->safe_psql('postgres', 'SELECT * FROM runra_obs.distribute(shard_count => 4)');
my $token = create_token($coordinator, 'load');
$coordinator->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM runra_obs.worker_status WHERE role = 'http' AND state = 'listening'")
  or die 'the HTTP worker did not start';

# the consumers run through it all: the rollup worker, and a destination
my $archive = $coordinator->basedir . '/archive.jsonl';
$coordinator->safe_psql('postgres',
	qq{SELECT runra_obs.add_destination('archive', 'jsonl', '{"filePath": "$archive", "flushIntervalMs": 0}')});

# ---- the clients
my $base = $coordinator->safe_psql('postgres', q{SELECT extract(epoch FROM now() - interval '1 hour')::bigint});
my $dir = PostgreSQL::Test::Utils::tempdir();
my @types = ('exec.completed', 'tool.invoked', 'resource.memory', 'cost.runtime', 'sandbox.created');

# Batch $n of client $name: $BATCH events of 24 sandboxes (so of shards
# on both workers), each with its seq.
my $BATCH = 40;
sub batch
{
	my ($name, $n) = @_;
	return [ map {
		my $k = $n * $BATCH + $_;
		{ timestamp => POSIX::strftime('%Y-%m-%dT%H:%M:%SZ', gmtime($base + $k % 3000)),
		  sandboxId => sprintf('sb_%02d', $k % 24), type => $types[ $k % @types ],
		  data => { seq => "$name-$n-$_", durationMs => $k % 1000, cost => 0.25 } } } 0 .. $BATCH - 1 ];
}

# Sends one batch: (1, '') when acknowledged, (0, why) when not.
sub send_batch
{
	my ($kind, $events, $key) = @_;
	if ($kind eq 'http')
	{
		my $r = post_events($http_port, $token, encode_json($events),
			headers => { 'Idempotency-Key' => $key }, timeout => 20);
		return (1, '') if $r->{status} =~ /^2/ && $r->{content} =~ /"ingested":$BATCH,/;
		return (0, "HTTP $r->{status} retry-after:" . ($r->{headers}{'retry-after'} // '-') . ' '
			  . substr($r->{content} // '', 0, 300));
	}
	my ($rc, $stdout, $stderr) = $coordinator->psql('postgres',
		'SELECT ingested FROM runra_obs.ingest(' . quote(encode_json($events)) . '::jsonb)');
	return (1, '') if $rc == 0 && $stdout eq $BATCH;
	return (0, "psql $rc: " . ($stderr =~ s/\n/ /gr));
}
sub quote { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }
sub first10 { return join(' ', grep { defined } @_[ 0 .. 9 ]); }

# Client $i: sends batches until told to stop, each until acknowledged;
# its log says what was sent, acknowledged and refused, one line each.
sub client
{
	my ($i) = @_;
	my ($kind, $name) = $i <= 2 ? ('http', "http$i") : ('sql', "sql$i");
	open my $log, '>>', "$dir/$name.log" or return 1;
	$log->autoflush(1);
	my ($parent, $deadline) = (getppid(), time() + 300);    # never outlive the test
	for (my $n = 1; !-e "$dir/stop" && getppid() == $parent && time() < $deadline; $n++)
	{
		my $events = batch($name, $n);
		my $seqs = join(' ', map { $_->{data}{seq} } @$events);
		my $acked = 0;
		while (!$acked)
		{
			print $log "sent $seqs\n";
			my ($ok, $why) = send_batch($kind, $events, "$name-$n");
			if ($ok) { print $log "acked $seqs\n"; $acked = 1; next; }
			print $log "error $why\n";
			last if -e "$dir/stop" || getppid() != $parent;
			usleep(100_000);
		}
		# now and then the same request again, as a client unsure of the answer
		if ($acked && $kind eq 'http' && $n % 3 == 0)
		{
			print $log "sent $seqs\n";
			my ($ok, $why) = send_batch($kind, $events, "$name-$n");
			print $log $ok ? "acked $seqs\n" : "error $why\n";
		}
	}
	close $log;
	return 0;
}

# What the logs say so far: {sent}{seq}, {acked}{seq}, {errors}[...].
sub read_logs
{
	my %seen = (sent => {}, acked => {}, errors => []);
	for my $file (glob "$dir/*.log")
	{
		open my $fh, '<', $file or die "$file: $!";
		while (my $line = <$fh>)
		{
			chomp $line;
			my ($what, $rest) = split / /, $line, 2;
			next unless defined $rest;
			if ($what eq 'error') { push @{ $seen{errors} }, $rest; next; }
			$seen{$what}{$_}++ for split / /, $rest;
		}
		close $fh;
	}
	return \%seen;
}

# Waits (at most 60 s) until $cond->(read_logs()) holds.
sub wait_logs
{
	my ($cond) = @_;
	for (1 .. 600)
	{
		return 1 if $cond->(read_logs());
		usleep(100_000);
	}
	return 0;
}

my @clients = start_children(3, \&client);
ok(wait_logs(sub { keys %{ $_[0]{acked} } >= 200 }), 'the clients are sending, and acknowledged');

# ---- one transaction in doubt when the worker dies: prepared on both
# workers, committed on the coordinator, not yet on the workers (the
# window between Citus's PREPARE and COMMIT PREPARED, held open here)
my $doubt = $coordinator->background_psql('postgres', on_error_stop => 0);
my $doubt_pid = $doubt->query_safe('SET synchronous_commit = on; SELECT pg_backend_pid();');
my $doubt_events = batch('doubt', 1);
$doubt->query_until(qr/sending/, "\\echo sending\n"
	  . 'SELECT ingested FROM runra_obs.ingest(' . quote(encode_json($doubt_events)) . "::jsonb);\n");
$coordinator->poll_query_until('postgres', "SELECT wait_event = 'SyncRep' FROM pg_stat_activity WHERE pid = $doubt_pid")
  or diag('the transaction did not wait');
cmp_ok($victim->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '>=', 1,
	'a transaction is prepared on the worker, its commit on the coordinator held');

# ---- worker 1 killed: its postmaster, then every process it left
my $postmaster = (split /\n/, slurp_file($victim->data_dir . '/postmaster.pid'))[0];
my @left = split ' ', `ps -o pid= --ppid $postmaster`;
my $before = read_logs();
$victim->kill9;
kill 'KILL', @left;
# the held commit goes on: visible on the coordinator, COMMIT PREPARED
# fails on the dead worker, and ingest() returns: acknowledged
$coordinator->safe_psql('postgres', "SELECT pg_cancel_backend($doubt_pid)");
like($doubt->query_until(qr/^done$/m, "\\echo done\n"), qr/^$BATCH\n/,
	'the transaction in doubt is acknowledged (ingest() returned)');
$doubt->quit;
open my $doubt_log, '>', "$dir/doubt.log" or die $!;
my $doubt_seqs = join(' ', map { $_->{data}{seq} } @$doubt_events);
print $doubt_log "sent $doubt_seqs\nacked $doubt_seqs\n";
close $doubt_log;
my $errors_before = @{ $before->{errors} };
ok(wait_logs(sub { @{ $_[0]{errors} } > $errors_before + 3 }), 'the clients see errors while the worker is down');
my $acked_down = keys %{ read_logs()->{acked} };
# (a start while the killed postmaster's pid still exists would be refused)
for (1 .. 300)
{
	last unless grep { kill 0, $_ } $postmaster, @left;
	usleep(100_000);
}
$victim->start;
ok(wait_logs(sub { keys %{ $_[0]{acked} } >= $acked_down + 200 }), 'after the restart, events are acknowledged again');
open my $stop, '>', "$dir/stop" or die $!;
close $stop;
is(wait_children(@clients), 3, 'the clients finished');

my $seen = read_logs();
my ($sent, $acked) = ($seen->{sent}, $seen->{acked});
my %errors;
$errors{ s/\d{4,5}/PORT/gr }++ for @{ $seen->{errors} };
note(sprintf("%d events sent, %d acknowledged; errors:\n", scalar keys %$sent, scalar keys %$acked)
	  . join("\n", map { "$errors{$_} x $_" } sort keys %errors));

# The worker being down is a "not now": the documented answer is 503 with
# Retry-After (docs/http.md), as for recovery or shutdown.
my @not_now = grep { /^HTTP / && !/^HTTP 503 retry-after:\d/ } sort keys %errors;
is(scalar @not_now, 0, 'while the worker is down, HTTP answers 503 with Retry-After') or diag(join("\n", @not_now));

# The consumers read what is safe: with a transaction committed on the
# coordinator and still prepared on the restarted worker, the watermark
# stays below its ids (and so below the sequence, which later commits
# passed).  Then Citus commits what the worker had prepared, as its
# maintenance daemon would do within recover_2pc_interval.
$coordinator->poll_query_until('postgres', q{
	SELECT behind_events = 0 FROM runra_obs.forward_status WHERE destination = 'archive'})
  or diag($coordinator->safe_psql('postgres', 'SELECT * FROM runra_obs.forward_status'));
is($coordinator->safe_psql('postgres', q{
	SELECT c.watermark < s.last_value
	  FROM runra_obs.consumer_status AS c, runra_obs.sandbox_events_id_seq AS s
	 WHERE c.name = 'rollups'}),
	't', 'the safe watermark waits for a commit in doubt on a worker');
my $in_doubt = $victim->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts');
my $recovered = $coordinator->safe_psql('postgres', 'SELECT recover_prepared_transactions()');
note("prepared on the killed worker after its restart: $in_doubt; recovered: $recovered");
is(join(',', map { $_->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts') } $cluster->workers), '0,0',
	'no prepared transaction is left on the workers');

# ---- every acknowledged event is stored, as often as it should be
my %stored = map { split /\|/ } split /\n/,
  $coordinator->safe_psql('postgres', q{SELECT data ->> 'seq', count(*) FROM runra_obs.sandbox_events GROUP BY 1});
my @missing = grep { !$stored{$_} } sort keys %$acked;
is(scalar @missing, 0, 'every acknowledged event is found through Citus (' . scalar(keys %$acked) . ')')
  or diag("missing: " . first10(@missing));
my @unsent = grep { !$sent->{$_} } sort keys %stored;
is(scalar @unsent, 0, 'nothing is stored that was not sent') or diag(first10(@unsent));
my @too_often = grep { $stored{$_} > ($sent->{$_} // 0) } sort keys %stored;
is(scalar @too_often, 0, 'no event is stored more often than it was sent') or diag(first10(@too_often));
my @http_twice = grep { /^http/ && $stored{$_} > 1 } sort keys %stored;
is(scalar @http_twice, 0, 'HTTP (Idempotency-Key): each event stored once, however often sent and acknowledged')
  or diag(first10(@http_twice));
ok((grep { /^http/ && $acked->{$_} > 1 } keys %$acked) > 0, 'some HTTP requests were acknowledged twice');
my @sql_off = grep { /^(sql|doubt)/ && ($stored{$_} // 0) != ($acked->{$_} // 0) && $acked->{$_} } sort keys %$acked;
is(scalar @sql_off, 0, 'ingest(): each acknowledged event stored once') or diag(first10(@sql_off));

# counted where they are stored: each shard of each day partition, read on
# its worker; the same events as through Citus
my $total = 0;
$total += $_ for values %stored;
is($coordinator->safe_psql('postgres', 'SELECT count(*) FROM runra_obs.sandbox_events'), $total,
	'count(*) through Citus: every stored event');
my %in_shards;
for my $line (split /\n/, $coordinator->safe_psql('postgres', q{
	SELECT s.result FROM runra_obs.partitions AS p,
	     run_command_on_shards(p.partition, $$SELECT coalesce(string_agg(data ->> 'seq', ' '), '') FROM %s$$) AS s}))
{
	$in_shards{$_}++ for split / /, $line;
}
my $shard_total = 0;
$shard_total += $_ for values %in_shards;
is($shard_total, $total, 'the shards, read one by one, hold as many events');
is_deeply(\%in_shards, \%stored, 'and the same events, as often');
is($coordinator->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE pg_relation_size(p.partition) > 0) FROM runra_obs.partitions AS p}),
	'0', 'the coordinator\'s shell partitions hold none');
is($coordinator->safe_psql('postgres', 'SELECT count(DISTINCT id) = count(*) FROM runra_obs.sandbox_events'),
	't', 'no id was handed out twice');

# ---- the consumers, which ran through it all, saw every event, the ones
# in doubt included
$coordinator->safe_psql('postgres', 'SELECT runra_obs.fold_rollups()');
$coordinator->poll_query_until('postgres', q{
	SELECT behind_events = 0 FROM runra_obs.forward_status WHERE destination = 'archive'});
my %forwarded;
$forwarded{ decode_json($_)->{data}{seq} // '?' } = 1 for split /\n/, slurp_file($archive);
my @not_forwarded = grep { !$forwarded{$_} } sort keys %stored;
is($coordinator->safe_psql('postgres', 'SELECT sum(events) FROM runra_obs.rollup_1h'), $total,
	'the rollups count every stored event once');
is(scalar @not_forwarded, 0, 'the destination got every stored event') or diag(first10(@not_forwarded));

$cluster->stop;
done_testing();
