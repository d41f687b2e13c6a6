-- Resuming restarts the clock at $3 (the next instant after now): time spent paused is not a misfire.
UPDATE schedules
SET paused = $2,
    next_fire_at = CASE WHEN $2 THEN next_fire_at ELSE $3 END,
    updated_at = now()
WHERE name = $1
RETURNING *
