-- The newest run for knowledge base $1 of a schedule of the reindex actor (a reindex from `punchclock kb reindex`
-- is no run). Per schedule through runs_by_schedule (schedule_id, id DESC): the runs table is never scanned.
SELECT r.id, r.schedule_name, r.state, r.trigger, r.started_at, r.finished_at, r.error
FROM schedules s
CROSS JOIN LATERAL (
    SELECT * FROM runs
    WHERE schedule_id = s.id AND args ->> 'kb' = $1
    ORDER BY id DESC
    LIMIT 1
) r
WHERE s.actor = 'reindex'
ORDER BY r.id DESC
LIMIT 1
