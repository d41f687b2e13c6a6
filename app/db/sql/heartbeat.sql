-- The worker's heartbeat for the attempts it is running ($1 run ids, $2 their attempt numbers, $3 lock TTL):
-- each attempt still running is alive for another TTL, and so is its lease. Returned: the attempts to stop,
-- those `runs cancel` asked to stop (cancel_requested) and those no longer running here (superseded: declared
-- lost and taken over, or ended, while this worker could not reach the database).
WITH mine AS (
    SELECT * FROM unnest($1::bigint[], $2::integer[]) AS m (id, attempt)
), alive AS (
    UPDATE runs r SET alive_until = now() + $3::interval
    FROM mine
    WHERE r.id = mine.id AND r.attempts = mine.attempt AND r.state = 'running'
    RETURNING r.id, r.cancel_requested
), renewed AS (
    UPDATE run_locks SET expires_at = now() + $3::interval WHERE run_id IN (SELECT id FROM alive)
)
SELECT mine.id, mine.attempt, alive.id IS NULL AS superseded
FROM mine LEFT JOIN alive ON alive.id = mine.id
WHERE alive.id IS NULL OR alive.cancel_requested
