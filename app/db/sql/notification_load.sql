-- A notification with what its message needs: the run, and the schedule's notify entries (unmasked).
-- same_target_before: how many earlier rows of this run and event share this masked target, so that two entries
-- masking alike (two Slack channels) each find their own entry on the schedule.
SELECT n.id, n.run_id, n.target, n.event, n.state, n.attempts,
       r.schedule_name, r.state AS run_state, r.error AS run_error, r.attempts AS run_attempts,
       r.started_at, r.finished_at, r.trace_id, r.scheduled_for,
       coalesce(s.notify, '{}') AS notify,
       (SELECT count(*) FROM notifications o
        WHERE o.run_id = n.run_id AND o.event = n.event AND o.target = n.target AND o.id < n.id
       ) AS same_target_before
FROM notifications n
JOIN runs r ON r.id = n.run_id
LEFT JOIN schedules s ON s.id = r.schedule_id
WHERE n.id = $1
