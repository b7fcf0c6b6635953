# Review of forwarding: stored events whose data a destination's encoder
# once could not handle, and settings that once made the worker fail.
# Each of these made the forward worker raise an ERROR on the same batch
# again and again (it exits and restarts), so nothing more was delivered.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use forward::Receiver;
use forward::Util;

my $node = forward_node('review_forward');
my $otel = forward::Receiver->new;
my $axiom = forward::Receiver->new;

# OTLP: data.durationMs is a number numeric holds but a double cannot
# (1e400 overflows, 1e-400 underflows); the span simply gets no duration.
add_destination($node, 'ot', 'otel', { endpoint => $otel->url, flushIntervalMs => 0 }, [ 'exec.*' ]);
my @events = map { encode_json(event_at(0, "sb_$_", 'exec.completed', { durationMs => 0 })) } 1 .. 3;
$events[0] =~ s/"durationMs":0/"durationMs":1e400/;
$events[1] =~ s/"durationMs":0/"durationMs":1e-400/;
$events[2] =~ s/"durationMs":0/"durationMs":250/;
is($node->safe_psql('postgres',
		"SELECT ingested FROM runra_obs.ingest('[" . join(',', @events) . "]')"),
	3, 'three events with extreme durations ingested');
wait_delivered($node, 'ot', 3, 'otlp: events with out-of-double-range durations are delivered');
my %span = map {
	my $s = $_;
	((grep { $_->{key} eq 'sandbox.id' } @{ $s->{attributes} })[0]{value}{stringValue} => $s)
} map { @{ decode_json($_->{body})->{resourceSpans}[0]{scopeSpans}[0]{spans} } } $otel->requests;
is($span{sb_1}{endTimeUnixNano}, $span{sb_1}{startTimeUnixNano}, 'otlp: 1e400 ms gives no duration');
is($span{sb_2}{endTimeUnixNano}, $span{sb_2}{startTimeUnixNano}, 'otlp: 1e-400 ms gives no duration');
is($span{sb_3}{endTimeUnixNano} - $span{sb_3}{startTimeUnixNano}, 250_000_000, 'otlp: 250 ms still does');

# A destination that may retry for a very long time (maxRetryMs beyond
# what an interval or a timestamp can reach back): a failure is recorded,
# and the retry delivers.
add_destination($node, 'patient', 'axiom',
	{ url => $axiom->url, dataset => 'd', token => 't', flushIntervalMs => 0,
	  maxRetryMs => 1_000_000_000_000_000 },
	[ 'tool.*' ]);
$axiom->plan('503');
ingest_events($node, event_at(0, 'sb_4', 'tool.invoked'));
wait_delivered($node, 'patient', 1, 'axiom: delivered after a 503 with a huge maxRetryMs');
is(status_of($node, 'patient', 'failed'), 1, 'axiom: the failed attempt was recorded');
is(status_of($node, 'patient', 'dead_lettered'), 0, 'axiom: nothing dead-lettered');

# A refusal whose answer is quoted in the error: cut at 300 bytes inside a
# two-byte character, it must still be stored as valid text (a dump of the
# table could not be restored otherwise).
my $loud = forward::Receiver->new;
$loud->plan('400 BODY x' . ("\xc3\xa9" x 200));
add_destination($node, 'loud', 'otel', { endpoint => $loud->url, flushIntervalMs => 0 }, [ 'file.*' ]);
ingest_events($node, event_at(0, 'sb_5', 'file.read'));
ok($node->poll_query_until('postgres',
		"SELECT dead_lettered = 1 FROM runra_obs.forward_status WHERE destination = 'loud'"),
	'otlp: a 400 dead-letters the event');
my ($rc, $out, $err) = $node->psql('postgres', q{
	SELECT convert_from(convert_to(l.error, 'UTF8'), 'UTF8') LIKE '%: xéé%',
	       convert_from(convert_to(c.last_error, 'UTF8'), 'UTF8') LIKE '%: xéé%'
	FROM runra_obs.dead_letters l
	JOIN runra_obs.forward_counters c USING (destination_id)
	JOIN runra_obs.destinations d ON d.id = l.destination_id WHERE d.name = 'loud'});
is($err, '', 'the quoted answer is stored as valid UTF-8');
is($out, 't|t', 'the error still quotes the answer');

# A JSONL destination without a practical size limit: maxFileSizeMb 1e13
# passes the option check ("a number above 0") but is beyond bigint in
# bytes; reading the destinations failed, for every destination.
add_destination($node, 'huge', 'jsonl',
	{ filePath => $node->basedir . '/huge.jsonl', maxFileSizeMb => 1e13, flushIntervalMs => 0 },
	[ 'port.*' ]);
ingest_events($node, event_at(0, 'sb_6', 'port.opened'));
wait_delivered($node, 'huge', 1, 'jsonl: delivered with maxFileSizeMb 1e13');

# Axiom refusing many events of a large batch: its answer names each by
# time with a reason, well over 64 kB here.  Cut short, the answer could
# not be read, and the whole batch (the taken events too) was sent again.
my $picky = forward::Receiver->new;
add_destination($node, 'picky', 'axiom',
	{ url => $picky->url, dataset => 'd', token => 't', flushIntervalMs => 0, batchSize => 1000 },
	[ 'net.*' ]);
my @many = map { event_at($_, 'sb_7', 'net.request', { i => $_ }) } 0 .. 499;
my $reason = 'field "i" has a type that conflicts with the dataset schema ' . ('.' x 140);
$picky->plan('200 BODY ' . encode_json({ ingested => 50, failed => 450,
	failures => [ map { { timestamp => $_->{timestamp}, error => $reason } } @many[50 .. 499] ] }));
ingest_events($node, @many);
ok($node->poll_query_until('postgres',
		"SELECT behind_events = 0 AND sent + dead_lettered = 500 FROM runra_obs.forward_status WHERE destination = 'picky'"),
	'axiom: a batch with 450 refusals is settled');
is(status_of($node, 'picky', 'sent') . '/' . status_of($node, 'picky', 'dead_lettered'), '50/450',
	'axiom: the 50 taken are acknowledged, the 450 refused dead-lettered');
is(scalar($picky->requests), 1, 'axiom: the batch was sent once');

my $log = slurp_file($node->logfile);
unlike($log, qr/out of range/, 'the forward worker raised no range error');
unlike($log, qr/"runra_obs forward" \(PID \d+\) exited with exit code 1/, 'the forward worker never exited on an error');

$node->stop;
done_testing();
