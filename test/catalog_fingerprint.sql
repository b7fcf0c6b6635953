-- Everything the extension puts into a database, one line per fact, sorted:
-- t/003_upgrade.pl runs it on a new install and on an updated one, and the
-- two must print the same lines.  Partitions are left out (a new install
-- makes today's, an old one made the days it was installed on); their
-- parents' definitions are in.
WITH ext AS (
    SELECT oid FROM pg_extension WHERE extname = 'runra_obs'
),
schemas AS (
    SELECT n.oid, n.nspname
    FROM pg_namespace AS n
    WHERE n.nspname IN ('runra_obs', 'runra_obs_sdk')
),
rels AS (
    SELECT c.oid, c.relname, c.relkind, s.nspname
    FROM pg_class AS c
    JOIN schemas AS s ON s.oid = c.relnamespace
    WHERE NOT c.relispartition
      AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'c', 'f')
),
facts(line) AS (
    -- which objects belong to the extension (any kind, by identity)
    SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
    FROM pg_depend AS d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid
      AND d.deptype = 'e'
    UNION ALL
    SELECT 'extension ' || e.extname || ' schema ' || e.extnamespace::regnamespace
           || ' config ' || coalesce((SELECT string_agg(r::regclass::text, ',' ORDER BY r::regclass::text)
                                      FROM unnest(e.extconfig) AS r), '')
           || ' conditions ' || coalesce(array_to_string(e.extcondition, '|'), '')
    FROM pg_extension AS e, ext WHERE e.oid = ext.oid
    UNION ALL
    SELECT 'schema ' || s.nspname || ' owner ' || n.nspowner::regrole
           || ' acl ' || coalesce(n.nspacl::text, '')
           || ' comment ' || coalesce(obj_description(s.oid, 'pg_namespace'), '')
    FROM schemas AS s JOIN pg_namespace AS n ON n.oid = s.oid
    UNION ALL
    -- relations: kind, options, privileges, comment, partition key
    SELECT 'relation ' || r.nspname || '.' || r.relname || ' kind ' || r.relkind::text
           || ' persistence ' || c.relpersistence::text
           || ' options ' || coalesce(c.reloptions::text, '')
           || ' acl ' || coalesce(c.relacl::text, '')
           || ' rls ' || c.relrowsecurity
           || ' partkey ' || coalesce(pg_get_partkeydef(c.oid), '')
           || ' comment ' || coalesce(obj_description(c.oid, 'pg_class'), '')
    FROM rels AS r JOIN pg_class AS c ON c.oid = r.oid
    UNION ALL
    -- columns, in order, with everything that defines them
    SELECT 'column ' || r.nspname || '.' || r.relname || ' ' || a.attnum || ' ' || a.attname
           || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || ' default ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
           || ' identity ' || a.attidentity::text || ' generated ' || a.attgenerated::text
           || ' collation ' || coalesce(nullif(a.attcollation, 0)::regcollation::text, '')
           || ' storage ' || a.attstorage::text || ' compression ' || a.attcompression::text
           || ' acl ' || coalesce(a.attacl::text, '')
           || ' comment ' || coalesce(col_description(r.oid, a.attnum), '')
    FROM rels AS r
    JOIN pg_attribute AS a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef AS ad ON ad.adrelid = r.oid AND ad.adnum = a.attnum
    UNION ALL
    SELECT 'constraint ' || r.nspname || '.' || r.relname || ' ' || co.conname || ' '
           || pg_get_constraintdef(co.oid)
    FROM rels AS r JOIN pg_constraint AS co ON co.conrelid = r.oid
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
    FROM rels AS r JOIN pg_index AS i ON i.indrelid = r.oid
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
    FROM rels AS r JOIN pg_trigger AS t ON t.tgrelid = r.oid AND NOT t.tgisinternal
    UNION ALL
    SELECT 'policy ' || r.nspname || '.' || r.relname || ' ' || p.polname || ' ' || p.polcmd::text
           || ' ' || p.polpermissive || ' ' || p.polroles::regrole[]::text
           || ' using ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '')
           || ' check ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
    FROM rels AS r JOIN pg_policy AS p ON p.polrelid = r.oid
    UNION ALL
    SELECT 'view ' || r.nspname || '.' || r.relname || ' ' || pg_get_viewdef(r.oid)
    FROM rels AS r WHERE r.relkind IN ('v', 'm')
    UNION ALL
    SELECT 'rule ' || pg_get_ruledef(rw.oid)
    FROM rels AS r JOIN pg_rewrite AS rw ON rw.ev_class = r.oid AND rw.rulename <> '_RETURN'
    UNION ALL
    SELECT 'sequence ' || r.nspname || '.' || r.relname || ' ' || format_type(sq.seqtypid, NULL)
           || ' start ' || sq.seqstart || ' increment ' || sq.seqincrement
           || ' min ' || sq.seqmin || ' max ' || sq.seqmax || ' cache ' || sq.seqcache
           || ' cycle ' || sq.seqcycle
    FROM rels AS r JOIN pg_sequence AS sq ON sq.seqrelid = r.oid
    UNION ALL
    -- functions, procedures and aggregates: the whole definition
    SELECT 'function ' || p.oid::regprocedure::text || ' '
           || CASE WHEN p.prokind = 'a'
                   THEN 'aggregate ' || ag.aggtransfn::regproc || ' ' || ag.aggfinalfn::regproc
                        || ' ' || ag.aggcombinefn::regproc || ' ' || ag.aggserialfn::regproc
                        || ' ' || ag.aggdeserialfn::regproc || ' ' || ag.aggtranstype::regtype
                        || ' ' || coalesce(ag.agginitval, '')
                   ELSE pg_get_functiondef(p.oid) END
           || ' owner ' || p.proowner::regrole
           || ' acl ' || coalesce(p.proacl::text, '')
           || ' comment ' || coalesce(obj_description(p.oid, 'pg_proc'), '')
    FROM pg_proc AS p
    JOIN schemas AS s ON s.oid = p.pronamespace
    LEFT JOIN pg_aggregate AS ag ON ag.aggfnoid = p.oid
    UNION ALL
    -- types of our own: enums with their labels, domains, base types
    SELECT 'type ' || t.oid::regtype::text || ' ' || t.typtype::text
           || ' ' || coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                               FROM pg_enum AS e WHERE e.enumtypid = t.oid), '')
           || ' base ' || coalesce(nullif(t.typbasetype, 0)::regtype::text, '')
           || ' acl ' || coalesce(t.typacl::text, '')
           || ' comment ' || coalesce(obj_description(t.oid, 'pg_type'), '')
    FROM pg_type AS t
    JOIN schemas AS s ON s.oid = t.typnamespace
    WHERE t.typtype IN ('e', 'd', 'b', 'r', 'm')
       OR (t.typtype = 'c' AND EXISTS (SELECT FROM pg_class AS c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
    UNION ALL
    SELECT 'event trigger ' || et.evtname || ' ' || et.evtevent || ' ' || et.evtfoid::regproc
           || ' ' || et.evtenabled::text || ' ' || coalesce(et.evttags::text, '')
    FROM pg_event_trigger AS et
    WHERE et.evtfoid IN (SELECT p.oid FROM pg_proc AS p JOIN schemas AS s ON s.oid = p.pronamespace)
    UNION ALL
    -- the roles it creates, what they may do and whom they contain
    SELECT 'role ' || ro.rolname || ' login ' || ro.rolcanlogin || ' inherit ' || ro.rolinherit
           || ' member of ' || coalesce((SELECT string_agg(m.roleid::regrole::text, ',' ORDER BY m.roleid::regrole::text)
                                         FROM pg_auth_members AS m WHERE m.member = ro.oid), '')
    FROM pg_roles AS ro
    WHERE ro.rolname LIKE 'runra\_obs\_%'
    UNION ALL
    -- rows an install puts into its own tables (settings, defaults): how
    -- many, and a digest of their text without the times they were made at
    SELECT 'rows ' || r.nspname || '.' || r.relname || ' ' || q.n
    FROM rels AS r
    CROSS JOIN LATERAL (
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) AS list
        FROM pg_attribute AS a
        WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
          AND a.atttypid NOT IN ('timestamptz'::regtype, 'timestamp'::regtype)) AS cols
    CROSS JOIN LATERAL (
        SELECT (xpath('/row/n/text()', query_to_xml(format(
                    'SELECT count(*) || '' '' || coalesce(md5(string_agg(t::text, '','' ORDER BY t::text COLLATE "C")), '''') AS n'
                    ' FROM (SELECT %s FROM %I.%I) AS t', cols.list, r.nspname, r.relname),
                false, true, '')))[1]::text AS n) AS q
    WHERE r.relkind IN ('r', 'p')
)
-- one fact per line: a definition's own line breaks are written as \n
SELECT fact
FROM facts CROSS JOIN LATERAL replace(facts.line, E'\n', '\n') AS fact
ORDER BY fact COLLATE "C";
