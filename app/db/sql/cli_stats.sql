-- `punchclock stats`: per schedule name, the runs created since now() - $1 (an interval). States as
-- {state: count}; p50 / p95 of the durations (seconds) of runs with a start and a finish; the last ten such
-- durations, newest first. A run whose schedule was deleted keeps its name; one with no name groups as NULL.
WITH windowed AS (
    SELECT id, schedule_name, state, finished_at,
           extract(epoch FROM finished_at - started_at)::float8 AS seconds
    FROM runs
    WHERE created_at >= now() - $1::interval
),
states AS (
    SELECT schedule_name, jsonb_object_agg(state, n) AS states
    FROM (SELECT schedule_name, state, count(*) AS n FROM windowed GROUP BY schedule_name, state) counted
    GROUP BY schedule_name
),
durations AS (
    SELECT schedule_name,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE seconds IS NOT NULL) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE seconds IS NOT NULL) AS p95,
           (array_agg(seconds ORDER BY finished_at DESC, id DESC) FILTER (WHERE seconds IS NOT NULL))[1:10]
               AS recent
    FROM windowed
    GROUP BY schedule_name
)
SELECT states.schedule_name, states.states, durations.p50, durations.p95, coalesce(durations.recent, '{}') AS recent
FROM states
JOIN durations ON durations.schedule_name IS NOT DISTINCT FROM states.schedule_name
ORDER BY states.schedule_name NULLS LAST
