-- `runs show`: $1 run id: the steps of each of its attempts (ctx.step(name)), in the order they ran.
SELECT attempt, seq, name, started_at, finished_at, status, error, input_tokens, output_tokens
FROM run_steps
WHERE run_id = $1
ORDER BY attempt, seq
