-- The README's reference table: every public object of the extension with
-- its COMMENT, one markdown row each (scripts/reference writes it into the
-- README; t/000_smoke.pl checks that the README has exactly these rows).
WITH objects AS (
    SELECT 'table' AS kind, c.oid::regclass::text AS name,
           obj_description(c.oid, 'pg_class') AS comment, 1 AS ord
    FROM pg_class AS c
    WHERE c.relnamespace IN ('runra_obs'::regnamespace, 'runra_obs_sdk'::regnamespace) AND c.relkind IN ('r', 'p')
      AND NOT c.relispartition AND c.relname NOT LIKE '\_%'
    UNION ALL
    SELECT 'view', c.oid::regclass::text, obj_description(c.oid, 'pg_class'), 2
    FROM pg_class AS c
    WHERE c.relnamespace IN ('runra_obs'::regnamespace, 'runra_obs_sdk'::regnamespace) AND c.relkind IN ('v', 'm')
      AND c.relname NOT LIKE '\_%'
    UNION ALL
    SELECT CASE p.prokind WHEN 'a' THEN 'aggregate' ELSE 'function' END,
           p.oid::regprocedure::text, obj_description(p.oid, 'pg_proc'), 3
    FROM pg_proc AS p
    WHERE p.pronamespace IN ('runra_obs'::regnamespace, 'runra_obs_sdk'::regnamespace) AND p.proname NOT LIKE '\_%'
)
SELECT '| ' || kind || ' | `' || name || '` | '
       || replace(coalesce(comment, ''), '|', '\|') || ' |'
FROM objects
ORDER BY ord, name COLLATE "C";
