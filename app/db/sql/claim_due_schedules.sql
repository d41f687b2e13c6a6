-- Lock a batch of due schedules; SKIP LOCKED lets concurrent ticks take disjoint batches. Every column: the
-- tick reads the schedule's options (app/schedule.py) by name into the runs' message options.
SELECT *
FROM schedules
WHERE NOT paused AND next_fire_at <= $1
ORDER BY next_fire_at
LIMIT $2
FOR UPDATE SKIP LOCKED
