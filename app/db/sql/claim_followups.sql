-- Take run $1's due follow-ups (clearing the flag in the caller's transaction, so a concurrent sweep or worker
-- finds nothing left) with what deciding them needs: the run's state, its schedule's notify targets, the state
-- of the schedule's previous finished run (a recovery), and whether schedules run after it.
WITH claimed AS (
    UPDATE runs SET followups_due = false WHERE id = $1 AND followups_due RETURNING id, schedule_id, state
)
SELECT c.state,
       coalesce(s.notify, '{}') AS notify,
       coalesce(s.notify_on_recovery, false) AS notify_on_recovery,
       (SELECT r.state FROM runs r
        WHERE r.schedule_id = c.schedule_id AND r.id < c.id AND r.state IN ('succeeded', 'failed', 'timed_out')
        ORDER BY r.id DESC LIMIT 1) AS previous_state
FROM claimed c
LEFT JOIN schedules s ON s.id = c.schedule_id
