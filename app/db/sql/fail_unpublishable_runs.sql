-- Runs whose actor this deployment does not have: failed at once rather than retried by every tick, their
-- failure notifications due.
UPDATE runs SET state = 'failed', finished_at = now(), error = u.error,
                followups_due = EXISTS (SELECT 1 FROM schedules s WHERE s.id = runs.schedule_id
                                                                    AND cardinality(s.notify) > 0)
FROM unnest($1::bigint[], $2::text[]) AS u (id, error)
WHERE runs.id = u.id AND runs.state = 'scheduled'
