-- A run that cannot even start (its lock key cannot be filled from its arguments): failed at once.
UPDATE runs SET state = 'failed', finished_at = now(), error = $2
WHERE id = $1 AND state IN ('scheduled', 'enqueued', 'running', 'retrying')
