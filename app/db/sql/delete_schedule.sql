DELETE FROM schedules WHERE name = $1 RETURNING id
