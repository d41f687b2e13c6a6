-- The schedules that run after the schedule of run $1 and whose every upstream has a succeeded run for the
-- same instant, each with the upstream outputs by schedule name (the newest success per upstream). Schedules
-- with a cron of their own are not fired here: their cron decides when, gated by the upstreams at the tick.
-- Every column of the schedule: its options (app/schedule.py) are read by name into the run's message options.
WITH done AS (
    SELECT r.scheduled_for, s.name FROM runs r JOIN schedules s ON s.id = r.schedule_id WHERE r.id = $1
), candidates AS (
    SELECT d.*, done.scheduled_for FROM schedules d, done
    WHERE d.after @> ARRAY[done.name] AND NOT d.paused AND d.cron IS NULL
), upstream AS (
    SELECT DISTINCT ON (c.id, u.name) c.id AS candidate, u.name, r.output
    FROM candidates c
    JOIN schedules u ON u.name = ANY (c.after)
    JOIN runs r ON r.schedule_id = u.id AND r.scheduled_for = c.scheduled_for AND r.state = 'succeeded'
    ORDER BY c.id, u.name, r.id DESC
), ready AS (
    SELECT up.candidate, count(*) AS succeeded,
           jsonb_object_agg(up.name, coalesce(up.output, 'null'::jsonb)) AS upstream
    FROM upstream up
    GROUP BY up.candidate
)
SELECT c.*, ready.upstream
FROM candidates c JOIN ready ON ready.candidate = c.id
WHERE ready.succeeded = cardinality(c.after)
