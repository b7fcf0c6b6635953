-- House rules that every part of the extension must keep, checked over the
-- whole catalog so a new object cannot forget them.

-- Every public object (not starting with an underscore) has a COMMENT.
SELECT kind, name AS missing_comment
FROM (
    SELECT 'relation' AS kind, c.oid::regclass::text AS name,
           obj_description(c.oid, 'pg_class') AS comment
    FROM pg_class AS c
    WHERE c.relnamespace IN ('runra_obs'::regnamespace, 'runra_obs_sdk'::regnamespace)
      AND c.relkind IN ('r', 'p', 'v', 'm')
      AND NOT c.relispartition
      AND c.relname NOT LIKE '\_%'
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text, obj_description(p.oid, 'pg_proc')
    FROM pg_proc AS p
    WHERE p.pronamespace IN ('runra_obs'::regnamespace, 'runra_obs_sdk'::regnamespace)
      AND p.proname NOT LIKE '\_%'
      AND p.prorettype <> 'trigger'::regtype
) AS objects
WHERE comment IS NULL
ORDER BY kind, name COLLATE "C";

-- SECURITY DEFINER functions pin their search_path.
SELECT p.oid::regprocedure AS definer_without_search_path
FROM pg_proc AS p
WHERE p.pronamespace IN ('runra_obs'::regnamespace, 'runra_obs_sdk'::regnamespace)
  AND p.prosecdef
  AND NOT EXISTS (SELECT FROM unnest(p.proconfig) AS c WHERE c LIKE 'search_path=%');

-- No function is executable by PUBLIC unless it is meant for everyone:
-- what PUBLIC may run is listed here, so a change to it is a visible diff.
-- Trigger functions too: firing a trigger needs no EXECUTE, but anyone who
-- may execute one can attach it to a table of their own.
SELECT p.oid::regprocedure AS public_function
FROM pg_proc AS p
WHERE p.pronamespace IN ('runra_obs'::regnamespace, 'runra_obs_sdk'::regnamespace)
  AND has_function_privilege('public', p.oid, 'EXECUTE')
ORDER BY p.oid::regprocedure::text COLLATE "C";

-- What the two roles can read and write: a change is a visible diff, and
-- neither may read a table that holds secrets.
SELECT c.oid::regclass AS relation,
       has_table_privilege('runra_obs_reader', c.oid, 'SELECT') AS reader_select,
       has_table_privilege('runra_obs_writer', c.oid, 'SELECT') AS writer_select,
       has_any_column_privilege('runra_obs_writer', c.oid, 'INSERT') AS writer_insert
FROM pg_class AS c
WHERE c.relnamespace IN ('runra_obs'::regnamespace, 'runra_obs_sdk'::regnamespace)
  AND c.relkind IN ('r', 'p', 'v', 'm')
  AND NOT c.relispartition
ORDER BY c.oid::regclass::text COLLATE "C";

-- What admins may write (alert rules and contact points, nothing else),
-- and that they may not read a contact point's secrets.
SELECT c.oid::regclass AS admin_writes
FROM pg_class AS c
WHERE c.relnamespace IN ('runra_obs'::regnamespace, 'runra_obs_sdk'::regnamespace)
  AND c.relkind IN ('r', 'p', 'v', 'm')
  AND NOT c.relispartition
  AND (has_table_privilege('runra_obs_admin', c.oid, 'INSERT')
       OR has_table_privilege('runra_obs_admin', c.oid, 'UPDATE')
       OR has_table_privilege('runra_obs_admin', c.oid, 'DELETE'))
ORDER BY c.oid::regclass::text COLLATE "C";
SELECT has_column_privilege('runra_obs_admin', 'runra_obs.contact_points', 'secrets', 'SELECT')
       AS admin_reads_secrets;

-- Writers may not choose the store's own columns.
SELECT a.attname AS column_writer_may_insert
FROM pg_attribute AS a
WHERE a.attrelid = 'runra_obs.sandbox_events'::regclass AND a.attnum > 0
  AND has_column_privilege('runra_obs_writer', a.attrelid, a.attnum, 'INSERT')
ORDER BY a.attnum;
