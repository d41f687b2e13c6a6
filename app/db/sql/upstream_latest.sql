-- A cron schedule's upstreams ($1 names) at instant $2: each one's latest run that executed (not missed, not
-- skipped) for an instant at or before it, or NULLs when there is none. The clock's own runs only (cron and
-- dependency triggers), found through the one-run-per-instant index.
SELECT u.name, r.id, r.state, r.output
FROM unnest($1::text[]) WITH ORDINALITY AS u (name, position)
LEFT JOIN schedules s ON s.name = u.name
LEFT JOIN LATERAL (
    SELECT id, state, output FROM runs
    WHERE schedule_id = s.id AND trigger IN ('cron', 'dependency') AND scheduled_for <= $2
      AND state NOT IN ('missed', 'skipped')
    ORDER BY scheduled_for DESC
    LIMIT 1
) r ON true
ORDER BY u.position
