-- $1 run id: the notifications about it, in the order they were created.
SELECT target, event, state, attempts, error, created_at, sent_at
FROM notifications
WHERE run_id = $1
ORDER BY id
