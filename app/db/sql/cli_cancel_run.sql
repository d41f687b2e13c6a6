-- `runs cancel`: $1 run id, $2 the error a cancelled run records. One statement, so a run that starts meanwhile
-- is seen in its new state (READ COMMITTED re-checks the row): one not started yet is cancelled at once (its
-- message, when it arrives, finds it over and does nothing); a running one is asked to stop (its heartbeat
-- stops it and marks it cancelled). No row: the run is unknown or already over.
UPDATE runs
SET state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END,
    finished_at = CASE WHEN state = 'running' THEN finished_at ELSE now() END,
    error = CASE WHEN state = 'running' THEN error ELSE $2 END,
    next_attempt_at = CASE WHEN state = 'running' THEN next_attempt_at END,
    cancel_requested = true
WHERE id = $1 AND state IN ('scheduled', 'enqueued', 'retrying', 'running')
RETURNING *
