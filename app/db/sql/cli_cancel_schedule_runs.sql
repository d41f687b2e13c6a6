-- `runs cancel --schedule`: $1 schedule name, $2 states (among scheduled, enqueued, retrying, running), $3 the
-- error a cancelled run records. What cli_cancel_run.sql does to one run, to each of the schedule's runs in those
-- states (a deleted schedule's too): one not started yet is cancelled at once, a running one is asked to stop.
UPDATE runs
SET state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END,
    finished_at = CASE WHEN state = 'running' THEN finished_at ELSE now() END,
    error = CASE WHEN state = 'running' THEN error ELSE $3 END,
    next_attempt_at = CASE WHEN state = 'running' THEN next_attempt_at END,
    cancel_requested = true
WHERE state = ANY ($2::text[]) AND state IN ('scheduled', 'enqueued', 'retrying', 'running') AND schedule_name = $1
RETURNING id, state
