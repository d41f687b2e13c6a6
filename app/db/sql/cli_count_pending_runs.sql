-- `runs cancel --schedule`, `schedules delete|pause`: $1 schedule name, $2 states: how many of the schedule's runs
-- (a deleted schedule's too: they keep its name) are in each. Pending runs are few next to a schedule's history,
-- so runs_by_state finds them rather than a walk of the schedule's runs.
SELECT state, count(*) AS runs
FROM runs
WHERE state = ANY ($2::text[]) AND schedule_name = $1
GROUP BY state
