-- A run that cannot start (its lock key cannot be filled from its arguments, its message carries options that
-- make no sense): failed at once, its failure notifications due. A running run is left alone: its live attempt
-- decides its end, whatever a forged or broken duplicate message says.
UPDATE runs SET state = 'failed', finished_at = now(), error = $2, alive_until = NULL,
                followups_due = EXISTS (SELECT 1 FROM schedules s WHERE s.id = runs.schedule_id
                                                                    AND cardinality(s.notify) > 0)
WHERE id = $1 AND state IN ('scheduled', 'enqueued', 'retrying')
