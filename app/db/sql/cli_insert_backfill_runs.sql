-- `schedules backfill`: one run per instant of $6 (sorted), ids ascending in instant order, left for the outbox.
-- $1 schedule id, $2 name, $3 actor, $4 args, $5 options. The trigger kind is outside the one-run-per-instant
-- key, so a backfill never collides with the clock's own runs of those instants.
INSERT INTO runs (schedule_id, schedule_name, actor, args, options, scheduled_for, trigger)
SELECT $1, $2, $3, $4, $5, instant, 'backfill'
FROM unnest($6::timestamptz[]) WITH ORDINALITY AS instants (instant, position)
ORDER BY position
RETURNING id
