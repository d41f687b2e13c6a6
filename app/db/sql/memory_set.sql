INSERT INTO workflow_memory (workflow, key, value, run_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (workflow, key) DO UPDATE SET value = excluded.value, run_id = excluded.run_id, updated_at = now()
