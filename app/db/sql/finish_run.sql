-- $2 is the run's new state: succeeded, failed or retrying. Only a running run can finish.
UPDATE runs
SET state = $2, output = $3, error = $4,
    finished_at = CASE WHEN $2 = 'retrying' THEN NULL ELSE now() END
WHERE id = $1 AND state = 'running'
