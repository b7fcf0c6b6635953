-- Review of forwarding: who may steer what the forward worker sends.
--
-- The worker reads events through runra_obs._forward_batch() and sends
-- what runra_obs.redeliveries names, as the extension's owner.  A role
-- that could write the redeliveries could have any stored event sent to
-- any destination; one that could run _forward_batch() could read a
-- destination's selection.  (The selection trigger of the old design, a
-- SECURITY DEFINER function anyone attaching it to a table could use, is
-- gone: nothing is attached to sandbox_events.)
SET client_min_messages = warning;
SELECT has_function_privilege('runra_obs_reader', 'runra_obs._forward_batch(integer, bigint, bigint, integer, bigint)', 'EXECUTE') AS reader_may_read,
       has_function_privilege('runra_obs_writer', 'runra_obs._forward_batch(integer, bigint, bigint, integer, bigint)', 'EXECUTE') AS writer_may_read,
       has_function_privilege('public', 'runra_obs._forward_batch(integer, bigint, bigint, integer, bigint)', 'EXECUTE') AS public_may_read,
       has_table_privilege('runra_obs_writer', 'runra_obs.redeliveries', 'INSERT') AS writer_may_redeliver,
       has_table_privilege('runra_obs_reader', 'runra_obs.redeliveries', 'INSERT') AS reader_may_redeliver,
       has_table_privilege('runra_obs_writer', 'runra_obs.consumers', 'UPDATE') AS writer_may_move_cursors;
SELECT count(*) AS triggers_on_events FROM pg_trigger
WHERE tgrelid = 'runra_obs.sandbox_events'::regclass;

-- An Axiom token goes into the Authorization header as it is: libcurl
-- does not check it, so a trailing line break would end the header block
-- early and every batch would be refused (and dead-lettered).
\set SHOW_CONTEXT never
SELECT runra_obs.add_destination('review_ax', 'axiom',
    jsonb_build_object('dataset', 'd', 'token', E'xaat-123\n'));
SELECT runra_obs.add_destination('review_ax', 'axiom', '{"dataset": "d", "token": "xaat-123"}');
SELECT runra_obs.change_destination('review_ax', jsonb_build_object('token', E'xaat-456\r\nX-Other: 1'));
SELECT secrets->>'token' AS token FROM runra_obs.destinations WHERE name = 'review_ax';
SELECT runra_obs.remove_destination('review_ax');
\set SHOW_CONTEXT errors
