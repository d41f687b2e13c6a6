-- Record a delivery's outcome ($2 'sent' or 'failed') and the attempts it took; only a pending row changes.
UPDATE notifications
SET state = $2,
    attempts = attempts + $3,
    error = $4,
    sent_at = CASE WHEN $2 = 'sent' THEN now() END
WHERE id = $1 AND state = 'pending'
