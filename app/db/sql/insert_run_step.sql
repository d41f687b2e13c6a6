INSERT INTO run_steps (run_id, attempt, seq, name, started_at, finished_at, status, error, input_tokens, output_tokens)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (run_id, attempt, seq) DO NOTHING
