-- The analyst's SQL API, the rollups and the dashboards read numbers out
-- of event data with runra_obs.json_numeric() (the one definition,
-- 15_event_facts.sql): what counts as a number, and what is skipped (NULL)
-- without failing the query.
SELECT input, runra_obs.json_numeric(input) AS number
FROM (VALUES ('5000'::jsonb),          -- a JSON number
             ('4521.75'),
             ('-1.5e3'),
             ('1e40'),                 -- 1e30 or more: not taken
             ('"5000"'),               -- a string holding a plain decimal number
             ('"0.004"'),
             ('"-2"'),
             ('"5e3"'),
             ('"1e1000"'),             -- exponent of four digits: not taken
             ('" 5000"'),              -- spaces around it: taken, as ::numeric takes them
             ('"5000 ms"'),
             ('"fast"'),
             ('"NaN"'),
             ('"Infinity"'),
             ('"0x10"'),
             ('"5x5"'),              -- only a dot separates decimals
             ('"１２"'),               -- full-width digits
             ('".5"'),                -- taken, as ::numeric takes it
             ('""'),
             ('true'),
             ('null'),
             ('{"ms": 3}'),
             ('[1]'),
             (NULL)) AS t(input);
