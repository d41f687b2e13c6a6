-- The newest run of the reindex actor for knowledge base $1 (a reindex from `punchclock kb reindex` is no run).
SELECT id, schedule_name, state, trigger, started_at, finished_at, error
FROM runs
WHERE actor = 'reindex' AND args ->> 'kb' = $1
ORDER BY id DESC
LIMIT 1
