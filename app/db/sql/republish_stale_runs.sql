-- The sweep: runs whose message should have arrived long ago and did not — enqueued (and not waiting in a
-- lease's queue slot) more than $1 after it was published and its jitter delay passed, or retrying more than $1
-- after its next attempt was due — go back to the outbox, at most $2. A message that was only slow is then a
-- duplicate, which the start check absorbs (a run starts once).
WITH stale AS (
    SELECT r.id, r.state AS was FROM runs r
    WHERE (r.state = 'enqueued'
           AND coalesce(r.enqueued_at, r.created_at) + make_interval(secs => r.delay_ms / 1000.0) < now() - $1::interval
           AND NOT EXISTS (SELECT 1 FROM run_locks l WHERE l.waiting_run_id = r.id))
       OR (r.state = 'retrying' AND r.next_attempt_at < now() - $1::interval)
    ORDER BY r.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE runs SET state = 'scheduled', next_attempt_at = NULL
FROM stale
WHERE runs.id = stale.id
RETURNING runs.id, stale.was
