-- The outbox: runs committed but not yet published, locked so that one publisher sends each.
SELECT id, actor, args, options, delay_ms
FROM runs
WHERE state = 'scheduled'
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED
