INSERT INTO runs (schedule_id, schedule_name, actor, args, options, scheduled_for, trigger)
VALUES ($1, $2, $3, $4, $5, now(), 'manual')
RETURNING *
