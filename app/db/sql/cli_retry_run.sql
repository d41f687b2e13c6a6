-- `runs retry`: a new manual run with the schedule, actor, args and options of run $1, left for the outbox.
INSERT INTO runs (schedule_id, schedule_name, actor, args, options, scheduled_for, trigger)
SELECT schedule_id, schedule_name, actor, args, options, now(), 'manual'
FROM runs
WHERE id = $1
RETURNING *
