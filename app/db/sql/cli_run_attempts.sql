-- $1 run id: its attempts, first first.
SELECT attempt, state, started_at, finished_at, error, retry_delay_ms
FROM run_attempts
WHERE run_id = $1
ORDER BY attempt
