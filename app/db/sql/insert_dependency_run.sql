-- Exactly once per (schedule, instant), like the clock's fires: a second upstream finishing late adds nothing.
INSERT INTO runs (schedule_id, schedule_name, actor, args, options, scheduled_for, trigger, trace_id)
VALUES ($1, $2, $3, $4, $5, $6, 'dependency', $7)
ON CONFLICT (schedule_id, scheduled_for) WHERE trigger IN ('cron', 'dependency') DO NOTHING
RETURNING id
