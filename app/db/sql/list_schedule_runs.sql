-- `runs list --schedule`: $1 schedule name, $2 state or NULL, $3 limit; newest first, by creation (the index
-- runs_by_schedule_name, backwards: a schedule's runs are read, never every run's).
SELECT * FROM runs
WHERE schedule_name = $1 AND ($2::text IS NULL OR state = $2)
ORDER BY created_at DESC, id DESC
LIMIT $3
