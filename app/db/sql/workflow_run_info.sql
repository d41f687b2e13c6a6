SELECT r.id, r.schedule_name, r.scheduled_for, r.trigger, r.attempts, coalesce(s.timezone, 'UTC') AS timezone
FROM runs r LEFT JOIN schedules s ON s.id = r.schedule_id
WHERE r.id = $1
