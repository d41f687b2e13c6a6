-- One row per (schedule, instant); a row that exists already (another tick won) is left alone. Skipped rows
-- (an upstream not ready) carry their error and the upstream run that blocked them; skipped and missed rows are
-- final from the start, so they are finished now.
INSERT INTO runs (schedule_id, schedule_name, actor, args, options, scheduled_for, trigger, state, delay_ms,
                  trace_id, error, blocked_by, finished_at)
SELECT u.*, CASE WHEN u.state IN ('skipped', 'missed') THEN now() END
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::jsonb[], $5::jsonb[], $6::timestamptz[],
            $7::text[], $8::text[], $9::integer[], $10::text[], $11::text[], $12::bigint[])
     AS u (schedule_id, schedule_name, actor, args, options, scheduled_for, trigger, state, delay_ms, trace_id,
           error, blocked_by)
ON CONFLICT (schedule_id, scheduled_for) WHERE trigger IN ('cron', 'dependency') DO NOTHING
RETURNING id, state, schedule_name, scheduled_for
