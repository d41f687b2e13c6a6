-- The schedules that run after the schedule of run $1 and whose every upstream has a succeeded run for the
-- same instant, each with the upstream outputs by schedule name (the newest success per upstream). Schedules
-- with a cron of their own are not fired here: their cron decides when, gated by the upstreams at the tick.
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
)
SELECT c.id, c.name, c.actor, c.args, c.scheduled_for, c.max_retries, c.min_backoff, c.max_backoff, c.timeout,
       c.overlap, c.lock_key, c.retry_timeouts,
       jsonb_object_agg(up.name, coalesce(up.output, 'null'::jsonb)) AS upstream
FROM candidates c JOIN upstream up ON up.candidate = c.id
GROUP BY c.id, c.name, c.actor, c.args, c.scheduled_for, c.max_retries, c.min_backoff, c.max_backoff, c.timeout,
         c.overlap, c.lock_key, c.retry_timeouts, c.after
HAVING count(*) = cardinality(c.after)
