-- The sweep: notifications still pending $1 after they were created and after the last send or delivery claim
-- (their message was lost, or their delivery died), at most $2; stamped so the next sweep waits $1 again.
UPDATE notifications n SET claimed_until = now()
FROM (
    SELECT id FROM notifications
    WHERE state = 'pending' AND created_at < now() - $1::interval
      AND coalesce(claimed_until, created_at) < now() - $1::interval
    ORDER BY id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
) due
WHERE n.id = due.id
RETURNING n.id
