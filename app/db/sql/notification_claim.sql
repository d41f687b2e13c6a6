-- A delivery takes notification $1 for $2 (an interval) before sending: a pending row nobody else is delivering.
-- No row: it was sent or failed meanwhile, or another delivery holds it (a re-send by the sweep raced it).
UPDATE notifications SET claimed_until = now() + $2::interval
WHERE id = $1 AND state = 'pending' AND (claimed_until IS NULL OR claimed_until <= now())
RETURNING id
