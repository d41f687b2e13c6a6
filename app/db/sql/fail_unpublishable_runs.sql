-- Runs whose actor this deployment does not have: failed at once rather than retried by every tick.
UPDATE runs SET state = 'failed', finished_at = now(), error = u.error
FROM unnest($1::bigint[], $2::text[]) AS u (id, error)
WHERE runs.id = u.id AND runs.state = 'scheduled'
