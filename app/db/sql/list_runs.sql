-- `runs list` without --schedule: $1 state or NULL, $2 limit; newest first (the primary key, backwards).
SELECT * FROM runs
WHERE $1::text IS NULL OR state = $1
ORDER BY id DESC
LIMIT $2
