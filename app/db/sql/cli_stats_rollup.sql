-- `punchclock stats`: per schedule name, the runs created since s = now() - $1 (an interval); $2 a schedule name
-- to report on alone, or NULL for every one; $3 the most timed runs (with a start and a finish) for which the
-- percentiles are computed exactly, from the runs. One row per schedule name ('' for runs without one):
-- states {state: count}; timed, and the histogram of their durations (buckets, counts: see migration 0006);
-- p50 / p95 (seconds, percentile_cont) when timed <= $3, else NULL (app/stats.py estimates them from the
-- histogram); recent: the durations of the last ten timed runs created in the window, newest first.
--
-- Final runs are read from the stats rollup: run_stats plus the changes not moved into it yet, run_stats_pending,
-- which together hold exactly the final runs of `runs` per UTC day and hour of creation (migration 0006). With d
-- the day boundary nearest to s and h the hour boundary nearest to s, the window is
--     days from d on,  minus the hours from d to h (or plus those from h to d),
--     minus the runs created from h to s (or plus those from s to h)
-- so it reads at most 12 hour rows and 30 minutes of runs per schedule, however long the window, and the pending
-- changes (a tick's worth while the clock runs). Runs not final yet are few and read from `runs` (runs_by_state).
-- Every part is read in one snapshot, so they add up exactly.
WITH w AS (
    SELECT x.s,
           date_bin('1 day', x.s + interval '12 hours', TIMESTAMPTZ '2000-01-01 00:00:00+00') AS d,
           date_bin('1 hour', x.s + interval '30 minutes', TIMESTAMPTZ '2000-01-01 00:00:00+00') AS h
    FROM (SELECT now() - $1::interval AS s) AS x
), p AS (
    SELECT w.s, w.d, w.h,
           least(w.d, w.h) AS hours_from, greatest(w.d, w.h) AS hours_to,
           CASE WHEN w.h > w.d THEN -1 ELSE 1 END AS hours_sign,
           least(w.s, w.h) AS raw_from, greatest(w.s, w.h) AS raw_to,
           CASE WHEN w.s > w.h THEN -1 ELSE 1 END AS raw_sign,
           date_bin('1 hour', least(w.s, w.h), TIMESTAMPTZ '2000-01-01 00:00:00+00') AS raw_hour
    FROM w
), rolled AS (
    SELECT r.schedule_name, 1 AS sign, r.succeeded, r.failed, r.timed_out, r.cancelled, r.skipped, r.missed,
           r.buckets, r.counts
    FROM run_stats r, p
    WHERE r.grain = 'day' AND r.period_start >= p.d AND ($2::text IS NULL OR r.schedule_name = $2::text)
    UNION ALL
    SELECT r.schedule_name, p.hours_sign, r.succeeded, r.failed, r.timed_out, r.cancelled, r.skipped, r.missed,
           r.buckets, r.counts
    FROM run_stats r, p
    WHERE r.grain = 'hour' AND r.period_start >= p.hours_from AND r.period_start < p.hours_to
      AND ($2::text IS NULL OR r.schedule_name = $2::text)
), pending AS (
    SELECT x.schedule_name, x.hour, x.state, x.bucket, x.n
    FROM run_stats_pending x
    WHERE $2::text IS NULL OR x.schedule_name = $2::text
), raw_final AS (
    -- the final runs created between h and s: those of the schedules with final runs in that hour, each read
    -- through runs_by_schedule_name (OFFSET 0 keeps the planner from trading that for a scan of every run)
    SELECT n.schedule_name, p.raw_sign AS sign, x.state, x.bucket
    FROM p
    CROSS JOIN LATERAL (
        SELECT r.schedule_name
        FROM run_stats r
        WHERE r.grain = 'hour' AND r.period_start = p.raw_hour AND r.schedule_name <> ''
          AND ($2::text IS NULL OR r.schedule_name = $2::text)
        UNION
        SELECT x.schedule_name FROM pending x WHERE x.hour = p.raw_hour AND x.schedule_name <> ''
    ) AS n
    CROSS JOIN LATERAL (
        SELECT r.state, punchclock_duration_bucket(r.started_at, r.finished_at) AS bucket
        FROM runs r
        WHERE r.schedule_name = n.schedule_name AND r.created_at >= p.raw_from AND r.created_at < p.raw_to
          AND r.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')
        OFFSET 0
    ) AS x
    UNION ALL
    SELECT '', p.raw_sign, r.state, punchclock_duration_bucket(r.started_at, r.finished_at)
    FROM runs r, p
    WHERE $2::text IS NULL AND r.schedule_name IS NULL AND r.created_at >= p.raw_from AND r.created_at < p.raw_to
      AND r.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')
), loose AS (
    -- runs counted one by one (raw_final) or as pending changes, each with its sign: (schedule, state, bucket, n)
    SELECT schedule_name, state, bucket, sign AS n FROM raw_final
    UNION ALL
    SELECT x.schedule_name, x.state, x.bucket, x.n
    FROM pending x, p
    WHERE date_bin('1 day', x.hour, TIMESTAMPTZ '2000-01-01 00:00:00+00') >= p.d
    UNION ALL
    SELECT x.schedule_name, x.state, x.bucket, p.hours_sign * x.n
    FROM pending x, p
    WHERE x.hour >= p.hours_from AND x.hour < p.hours_to
), in_flight AS (
    SELECT coalesce(r.schedule_name, '') AS schedule_name, r.state
    FROM runs r, p
    WHERE r.state IN ('scheduled', 'enqueued', 'running', 'retrying', 'awaiting_approval') AND r.created_at >= p.s
      AND ($2::text IS NULL OR r.schedule_name = $2::text)
), rolled_states AS (
    SELECT schedule_name, sum(sign * succeeded) AS succeeded, sum(sign * failed) AS failed,
           sum(sign * timed_out) AS timed_out, sum(sign * cancelled) AS cancelled, sum(sign * skipped) AS skipped,
           sum(sign * missed) AS missed
    FROM rolled
    GROUP BY 1
), states AS (
    SELECT schedule_name, jsonb_object_agg(state, n) AS states
    FROM (SELECT schedule_name, state, sum(n) AS n
          FROM (SELECT rs.schedule_name, c.state, c.n
                FROM rolled_states rs
                CROSS JOIN LATERAL (VALUES ('succeeded', rs.succeeded), ('failed', rs.failed),
                                           ('timed_out', rs.timed_out), ('cancelled', rs.cancelled),
                                           ('skipped', rs.skipped), ('missed', rs.missed)) AS c (state, n)
                UNION ALL
                SELECT schedule_name, state, n FROM loose
                UNION ALL
                SELECT schedule_name, state, 1 FROM in_flight) AS signed
          GROUP BY 1, 2
          HAVING sum(n) <> 0) AS counted
    GROUP BY 1
), histogram AS (
    -- unnest in the select list: far cheaper per element than in FROM. Buckets come unsorted (app/stats.py sorts).
    SELECT schedule_name, sum(n)::bigint AS timed, array_agg(bucket) AS buckets, array_agg(n) AS counts
    FROM (SELECT schedule_name, bucket, sum(n)::bigint AS n
          FROM (SELECT schedule_name, bucket, sign * n AS n
                FROM (SELECT schedule_name, sign, unnest(buckets) AS bucket, unnest(counts) AS n FROM rolled) AS rows
                UNION ALL
                SELECT schedule_name, bucket, n FROM loose WHERE bucket IS NOT NULL) AS elements
          GROUP BY 1, 2
          HAVING sum(n) <> 0) AS counted
    GROUP BY 1
)
SELECT nullif(st.schedule_name, '') AS schedule_name, st.states, coalesce(hg.timed, 0) AS timed,
       coalesce(hg.buckets, '{}') AS buckets, coalesce(hg.counts, '{}') AS counts, ex.p50, ex.p95,
       coalesce(rc.recent, '{}') AS recent
FROM states st
CROSS JOIN p
LEFT JOIN histogram hg ON hg.schedule_name = st.schedule_name
LEFT JOIN LATERAL (
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t.seconds) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY t.seconds) AS p95
    FROM (SELECT extract(epoch FROM r.finished_at - r.started_at)::float8 AS seconds
          FROM runs r
          WHERE coalesce(hg.timed, 0) BETWEEN 1 AND $3 AND r.schedule_name = st.schedule_name
            AND r.created_at >= p.s AND r.started_at IS NOT NULL AND r.finished_at IS NOT NULL
          UNION ALL
          SELECT extract(epoch FROM r.finished_at - r.started_at)::float8
          FROM runs r
          WHERE coalesce(hg.timed, 0) BETWEEN 1 AND $3 AND st.schedule_name = '' AND r.schedule_name IS NULL
            AND r.created_at >= p.s AND r.started_at IS NOT NULL AND r.finished_at IS NOT NULL) AS t
) AS ex ON true
LEFT JOIN LATERAL (
    SELECT array_agg(t.seconds ORDER BY t.created_at DESC, t.id DESC) AS recent
    FROM ((SELECT r.id, r.created_at, extract(epoch FROM r.finished_at - r.started_at)::float8 AS seconds
           FROM runs r
           WHERE r.schedule_name = st.schedule_name AND r.created_at >= p.s
             AND r.started_at IS NOT NULL AND r.finished_at IS NOT NULL
           ORDER BY r.created_at DESC, r.id DESC
           LIMIT 10)
          UNION ALL
          (SELECT r.id, r.created_at, extract(epoch FROM r.finished_at - r.started_at)::float8
           FROM runs r
           WHERE st.schedule_name = '' AND r.schedule_name IS NULL AND r.created_at >= p.s
             AND r.started_at IS NOT NULL AND r.finished_at IS NOT NULL
           ORDER BY r.created_at DESC, r.id DESC
           LIMIT 10)) AS t
) AS rc ON true
ORDER BY nullif(st.schedule_name, '') NULLS LAST
