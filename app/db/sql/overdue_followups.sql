-- The sweep: runs whose end was recorded at least $1 ago with follow-ups still due (their worker crashed or
-- lost the database or the broker in between), at most $2.
SELECT id FROM runs
WHERE followups_due AND finished_at < now() - $1::interval
ORDER BY id
LIMIT $2
