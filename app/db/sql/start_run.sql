-- A delivery of a run's message starts an attempt, unless the run is over (a redelivered duplicate).
-- 'running' is allowed: it means the worker that held the message died and the broker redelivered it.
UPDATE runs
SET state = 'running', attempts = attempts + 1, started_at = coalesce(started_at, now()), error = NULL
WHERE id = $1 AND state IN ('scheduled', 'enqueued', 'running', 'retrying')
RETURNING attempts
