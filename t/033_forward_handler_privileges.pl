# SQL handlers never lend the worker's superuser to anyone: a handler runs
# as the owner of its function, restricted, and the settings it changes
# die with its call.  Both attacks of issue 12's first finding, each of
# which made the role "app" a superuser before:
#   1. app owns a handler a superuser registered, and changes its body to
#      ALTER ROLE app SUPERUSER;
#   2. app's SECURITY DEFINER handler leaves search_path = app, pg_catalog
#      in the worker's session, and app.md5() (the worker's own SQL calls
#      md5) runs as the superuser.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use forward::Util;

my $node = forward_node('forward_handler_privileges');
$node->safe_psql('postgres', q{
	CREATE ROLE app LOGIN;
	CREATE SCHEMA app AUTHORIZATION app;
	GRANT USAGE ON SCHEMA runra_obs TO app;
	SET ROLE app;
	CREATE TABLE app.seen (event_id bigint, as_role text, is_superuser bool, restricted_error text,
	                       search_path text);
	CREATE FUNCTION app.innocent(e runra_obs.sandbox_events) RETURNS void
	LANGUAGE sql AS $$ INSERT INTO app.seen (event_id, as_role) VALUES (e.id, current_user) $$;
	RESET ROLE;
});
my $innocent = $node->safe_psql('postgres',
	"SELECT runra_obs.on('exec.*', 'app.innocent(runra_obs.sandbox_events)')");

# 1. app rewrites the body of the handler it owns
$node->safe_psql('postgres', q{
	SET ROLE app;
	CREATE OR REPLACE FUNCTION app.innocent(e runra_obs.sandbox_events) RETURNS void
	LANGUAGE plpgsql AS $$
	DECLARE
	    refused text;
	BEGIN
	    BEGIN
	        ALTER ROLE app SUPERUSER;
	    EXCEPTION WHEN OTHERS THEN refused := SQLERRM;
	    END;
	    BEGIN
	        SET ROLE postgres;
	    EXCEPTION WHEN OTHERS THEN refused := refused || ' / ' || SQLERRM;
	    END;
	    BEGIN
	        CREATE TEMP TABLE shadow (a int);
	    EXCEPTION WHEN OTHERS THEN refused := refused || ' / ' || SQLERRM;
	    END;
	    INSERT INTO app.seen VALUES (e.id, current_user,
	        (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), refused,
	        current_setting('search_path'));
	END $$;
	RESET ROLE;
});
ingest_events($node, event_at(0, 'sb_1', 'exec.started'));
wait_delivered($node, $innocent, 1);
is($node->safe_psql('postgres', 'SELECT as_role, is_superuser FROM app.seen'), 'app|f',
	'the handler runs as the owner of its function, not as the worker');
like($node->safe_psql('postgres', 'SELECT restricted_error FROM app.seen'),
	qr{^must be superuser to alter superuser roles.* / cannot set parameter "role" within security-(definer function|restricted operation) / cannot create temporary table within security-restricted operation$},
	'and may neither make itself superuser, SET ROLE, nor create temporary objects');
is($node->safe_psql('postgres', 'SELECT search_path FROM app.seen'), '"$user", public',
	'with PostgreSQL\'s default search_path');
is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'app'"), 'f',
	'app is still not a superuser');

# 2. a SECURITY DEFINER handler that leaves its search_path behind
$node->safe_psql('postgres', q{
	SET ROLE app;
	CREATE TABLE app.calls (fn text, as_role text, is_superuser bool);
	CREATE FUNCTION app.escalate(fn text) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
	    INSERT INTO app.calls SELECT fn, current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
	    BEGIN
	        ALTER ROLE app SUPERUSER;
	    EXCEPTION WHEN OTHERS THEN NULL;
	    END;
	END $$;
	-- functions the worker's own SQL calls unqualified
	CREATE FUNCTION app.md5(text) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
	    PERFORM app.escalate('md5');
	    RETURN pg_catalog.md5($1);
	END $$;
	CREATE FUNCTION app.jsonb_each_text(jsonb) RETURNS TABLE (key text, value text)
	LANGUAGE plpgsql AS $$
	BEGIN
	    PERFORM app.escalate('jsonb_each_text');
	    RETURN QUERY SELECT * FROM pg_catalog.jsonb_each_text($1);
	END $$;
	CREATE FUNCTION app.sticky(e runra_obs.sandbox_events) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER AS $$
	BEGIN
	    PERFORM set_config('search_path', 'app, pg_catalog', false);
	END $$;
	RESET ROLE;
});
my $sticky = $node->safe_psql('postgres',
	"SELECT runra_obs.on('tool.*', 'app.sticky(runra_obs.sandbox_events)')");
# an OTLP destination with headers: the worker reads them with
# jsonb_each_text() each time it loads the destinations
my $receiver = PostgreSQL::Test::Cluster::get_free_port();
add_destination($node, 'otel', 'otel',
	{ endpoint => "http://127.0.0.1:$receiver/v1/traces", headers => { 'x-api-key' => 'k' } });
ingest_events($node, map { event_at($_, "sb_$_", 'tool.invoked') } 1 .. 5);
wait_delivered($node, $sticky, 5);
ingest_events($node, map { event_at($_, "sb_$_", 'exec.started') } 6 .. 10);
wait_delivered($node, $innocent, 6);
sleep 2;    # the worker reloads its destinations every second
is($node->safe_psql('postgres', 'SELECT count(*) FROM app.calls WHERE is_superuser'), '0',
	'the worker never runs app\'s functions as a superuser');
is($node->safe_psql('postgres', 'SELECT count(*) FROM app.calls'), '0',
	'nor at all: the handler\'s search_path died with its call');
is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'app'"), 'f',
	'app is still not a superuser');

$node->stop;
done_testing();
