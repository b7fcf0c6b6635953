# Credentials never reach what runra_obs_reader sees (issue 12): error
# texts quote URLs and remote answers, and a receiver may echo back the
# token it refused.  Every stored error goes through one mask
# (src/worker/secret_mask.c): the destination's or contact point's own
# secrets, a URL's user:password@, query parameters and JSON members named
# like token/key/password, and what follows "Bearer ".  Checked where each
# lands: forward_status (forward_counters), dead_letters, redeliveries,
# alert_notifications (last_error and answer), alert_rule_runs and
# worker_status.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib/http";
use HttpTest;
use PostgreSQL::Test::Utils;
use Test::More;
use RunraNode qw(ddl_beside_workers);
use forward::Receiver;
use forward::Util qw(ingest_events event_at add_destination);

my ($node, $port) = start_http_node(name => 'masking', conf => join("\n",
	'runra_obs.forward_enabled = on', 'runra_obs.forward_poll_interval = 50ms',
	'runra_obs.alert_enabled = on', 'runra_obs.alert_poll_interval = 100ms'));
my $token = create_token($node, 'masking');

# Fails the test if $text shows any of the secrets, and checks it shows the mask.
sub masked_ok
{
	my ($text, $what, @secrets) = @_;
	my @shown = grep { index($text // '', $_) >= 0 } @secrets;
	ok(!@shown && ($text // '') =~ /\*\*\*/, $what) or diag("shown: @shown in: " . ($text // 'NULL'));
}

sub query { return $node->safe_psql('postgres', $_[0]); }

# ---- forwarding: a receiver that echoes the token, a URL with a key in it
my $axiom = forward::Receiver->new;
$axiom->plan('401 BODY {"message":"token tok-Secret-4242 is not valid, log in at https://admin:hunter2@login.example/?access_token=qq-9999"}');
add_destination($node, 'ax', 'axiom',
	{ url => $axiom->url, dataset => 'd', token => 'tok-Secret-4242', flushIntervalMs => 0 }, [ 'exec.*' ]);
my $otel = forward::Receiver->new;
$otel->plan(('500 BODY {"echo":"you sent hdr-Secret-5151"}') x 50);
add_destination($node, 'ot', 'otel',
	{ endpoint => $otel->url . '/v1/traces?api_key=urlkey-7777', headers => { 'x-custom' => 'hdr-Secret-5151' },
	  flushIntervalMs => 0 }, [ 'exec.*' ]);
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.poster(e runra_obs.sandbox_events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
	    RAISE EXCEPTION 'could not post to https://bot:pw-9911@hooks.example/x?token=zz-8822';
	END $$;
	SELECT runra_obs.on('exec.*', 'public.poster(runra_obs.sandbox_events)');});
ingest_events($node, event_at(0, 'sb_mask', 'exec.started'));

ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM runra_obs.dead_letters AS l JOIN runra_obs.destinations AS d ON d.id = l.destination_id
	WHERE d.name = 'ax'}), 'the refused batch is a dead letter');
my @ax = ('tok-Secret-4242', 'hunter2', 'qq-9999');
masked_ok(query("SELECT last_error FROM runra_obs.forward_status WHERE destination = 'ax'"),
	'forward_status.last_error: the echoed token, the URL\'s password and its access_token masked', @ax);
my $dead_sql = q{SELECT l.error FROM runra_obs.dead_letters AS l
	JOIN runra_obs.destinations AS d ON d.id = l.destination_id WHERE d.name = 'ax'};
masked_ok(query($dead_sql), 'dead_letters.error too', @ax);
like(query($dead_sql),
	qr{^HTTP 401 from http://127\.0\.0\.1:\d+/v1/datasets/d/ingest: .*token \*\*\* is not valid, log in at https://\*\*\*\@login\.example/\?access_token=\*\*\*}s,
	'and the rest of the message is kept');

ok($node->poll_query_until('postgres', q{SELECT failed > 0 FROM runra_obs.forward_status WHERE destination = 'ot'}),
	'the OTLP receiver failed the batch');
my $ot_error = query("SELECT last_error FROM runra_obs.forward_status WHERE destination = 'ot'");
masked_ok($ot_error, 'a secret header echoed back and a key in the endpoint URL: masked', 'hdr-Secret-5151', 'urlkey-7777');
like($ot_error, qr{/v1/traces\?api_key=\*\*\*: \{"echo":"you sent \*\*\*"\}}, 'where they were');

ok($node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM runra_obs.redeliveries AS r JOIN runra_obs.destinations AS d ON d.id = r.destination_id
	WHERE d.provider = 'function' AND r.last_error IS NOT NULL}), 'the handler failed');
masked_ok(query(q{SELECT r.last_error FROM runra_obs.redeliveries AS r JOIN runra_obs.destinations AS d ON d.id = r.destination_id
	WHERE d.provider = 'function'}), 'redeliveries.last_error: a handler\'s error quoting a URL', 'pw-9911', 'zz-8822');
masked_ok(query(q{SELECT last_error FROM runra_obs.forward_status WHERE provider = 'function'}),
	'and its forward_status.last_error', 'pw-9911', 'zz-8822');
ok($node->log_contains(qr/HTTP 401 from .*token \*\*\* is not valid/), 'the server log has the masked text too');

# ---- alerts: a webhook that echoes its Authorization, Slack echoing its URL
my $hook = forward::Receiver->new;
$hook->plan('400 BODY {"error":"Authorization Bearer cp-Secret-6363 refused"}');
my $slack = forward::Receiver->new;
$slack->plan('400 BODY {"error":"no hook at /services/T1/B1/slackSecret77"}');
$node->safe_psql('postgres', qq{
	SELECT runra_obs.add_contact_point('hook', 'webhook', '{"url": "@{[ $hook->url ]}/alerts", "authorization": "Bearer cp-Secret-6363"}');
	SELECT runra_obs.add_contact_point('slack', 'slack', '{"url": "@{[ $slack->url ]}/services/T1/B1/slackSecret77"}');
	CREATE ROLE alert_author IN ROLE runra_obs_admin;
	CREATE TABLE public.urls (u text);
	GRANT SELECT ON public.urls TO alert_author;
	SET ROLE alert_author;
	SELECT runra_obs.create_alert('always', 'query', '{"sql": "SELECT 1 AS value"}',
	    '{"every": "1s", "contactPoints": ["hook", "slack"]}');
	SELECT runra_obs.create_alert('broken', 'query',
	    '{"sql": "SELECT u::int AS value FROM public.urls"}', '{"every": "1s"}');
	RESET ROLE;
	INSERT INTO public.urls VALUES ('https://u:pw-4545\@db.example/?password=p-3434');});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM runra_obs.alert_notifications WHERE status = 'dead'}),
	'both contact points refused their notification');
masked_ok(query(q{SELECT answer FROM runra_obs.alert_notifications AS n JOIN runra_obs.contact_points AS c
	ON c.id = n.contact_point_id WHERE c.name = 'hook'}),
	'alert_notifications.answer: the Authorization a webhook echoed', 'cp-Secret-6363');
masked_ok(query(q{SELECT answer FROM runra_obs.alert_notifications AS n JOIN runra_obs.contact_points AS c
	ON c.id = n.contact_point_id WHERE c.name = 'slack'}),
	'and the part of Slack\'s URL (the secret) Slack echoed', 'slackSecret77');
ok($node->poll_query_until('postgres', q{SELECT health = 'error' FROM runra_obs.alert_rule_status WHERE name = 'broken'}),
	'the broken rule is in error');
masked_ok(query(q{SELECT last_error FROM runra_obs.alert_rule_status WHERE name = 'broken'}),
	'alert_rule_runs.last_error: a URL in a rule\'s error', 'pw-4545', 'p-3434');
masked_ok(query(q{SELECT error FROM runra_obs.alert_states WHERE rule = 'broken'}), 'and alert_states.error', 'pw-4545', 'p-3434');

# ---- worker_status: an HTTP write that fails with a URL in its error
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
	    RAISE EXCEPTION 'quota service https://svc:pw-1212@quota.example/check?sig=1&api-key=k-5656 said no';
	END $$;
	CREATE TRIGGER refuse BEFORE INSERT ON runra_obs.sandbox_events FOR EACH ROW EXECUTE FUNCTION public.refuse();});
is(post_events($port, $token, event_json([ event('sb_refused') ]))->{status}, 500, 'a write that fails: 500');
ddl_beside_workers($node, 'DROP TRIGGER refuse ON runra_obs.sandbox_events');
masked_ok(query(q{SELECT last_error FROM runra_obs.worker_status WHERE role = 'http'}),
	'worker_status.last_error: the password and the api-key masked', 'pw-1212', 'k-5656');
like(query(q{SELECT last_error FROM runra_obs.worker_status WHERE role = 'http'}),
	qr{quota service https://\*\*\*\@quota\.example/check\?sig=1&api-key=\*\*\* said no}, 'the rest of it kept');

$_->stop for ($axiom, $otel, $hook, $slack);
$node->stop;
done_testing();
