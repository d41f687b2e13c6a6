SELECT s.*,
       (SELECT r.state FROM runs r WHERE r.schedule_id = s.id ORDER BY r.id DESC LIMIT 1) AS last_state
FROM schedules s
ORDER BY s.name
