-- $1 schedule name or NULL, $2 state or NULL, $3 limit: newest first.
SELECT * FROM runs
WHERE ($1::text IS NULL OR schedule_name = $1) AND ($2::text IS NULL OR state = $2)
ORDER BY id DESC
LIMIT $3
