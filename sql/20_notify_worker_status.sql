-- runra_obs.worker_status: its columns, and who may read it.  (What the
-- workers put in it is checked by the TAP tests t/020_notify_*.pl.)
SELECT attname, format_type(atttypid, atttypmod)
FROM pg_attribute
WHERE attrelid = 'runra_obs.worker_status'::regclass AND attnum > 0
ORDER BY attnum;
SELECT has_table_privilege('runra_obs_reader', 'runra_obs.worker_status', 'SELECT') AS reader_reads;
-- every column is described
SELECT count(*) AS undocumented_columns
FROM pg_attribute
WHERE attrelid = 'runra_obs.worker_status'::regclass AND attnum > 0
  AND col_description(attrelid, attnum) IS NULL;
-- a channel name that could never be notified is refused when it is set
ALTER SYSTEM SET runra_obs.notify_channel = 'a_channel_name_that_is_longer_than_sixty_three_bytes_so_pg_notify_refuses_it';
