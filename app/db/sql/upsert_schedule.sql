-- Create or update a schedule by name. $1 is its definition, one jsonb record keyed by column: name, actor, args,
-- cron, paused and the options. The option columns are not listed here: {options} (and {d_options},
-- {excluded_options}) are filled in from their one declaration, app/schedule.py (see app/schedule_store.py).
-- A changed cron or time zone restarts the schedule's clock at $3 (the next instant after now); an unchanged
-- one keeps its next_fire_at so no pending instant is lost.
-- A code sync ($2 = 'code') never unpauses what an operator paused, unless the schedule was orphaned.
INSERT INTO schedules AS s (name, actor, args, cron, paused, source, next_fire_at, {options})
SELECT d.name, d.actor, d.args, d.cron, d.paused, $2::text, $3::timestamptz, {d_options}
FROM jsonb_populate_record(NULL::schedules, $1::jsonb) AS d
ON CONFLICT (name) DO UPDATE SET
    actor = excluded.actor,
    args = excluded.args,
    cron = excluded.cron,
    paused = excluded.paused OR (s.paused AND NOT s.orphaned),
    source = excluded.source,
    ({options}) = ROW({excluded_options}),
    orphaned = false,
    next_fire_at = CASE
        WHEN s.cron IS DISTINCT FROM excluded.cron OR s.timezone <> excluded.timezone OR s.next_fire_at IS NULL
            OR s.orphaned
        THEN excluded.next_fire_at
        ELSE s.next_fire_at END,
    updated_at = now()
RETURNING *
