-- Run history at scale: every final run has a finishing time, retention prunes by it, the CLI's reads by schedule
-- have indexes, and `punchclock stats` reads a rollup instead of millions of rows.

-- Writes to runs wait until this migration commits, so that the rollup below starts from exactly the runs there are.
LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE;

-- 1. Every final run has a finishing time. `missed` rows were inserted without one (insert_runs.sql stamps only
--    `skipped`), and so may rows written by hand; a trigger stamps them from now on, whoever writes them.
UPDATE runs SET finished_at = greatest(created_at, enqueued_at, started_at)
WHERE finished_at IS NULL AND state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed');

CREATE FUNCTION punchclock_stamp_finish() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.finished_at := now();
    RETURN NEW;
END;
$$;
CREATE TRIGGER runs_stamp_finish BEFORE INSERT OR UPDATE OF state, finished_at ON runs
    FOR EACH ROW
    WHEN (NEW.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')
          AND NEW.finished_at IS NULL)
    EXECUTE FUNCTION punchclock_stamp_finish();

-- 2. Indexes for reading one schedule's history (`runs list --schedule`: list_runs.sql; `stats`: the runs at the
--    edges of its window, cli_stats_rollup.sql), for finding the runs that name a run in blocked_by, and for
--    prune. runs_finished (0002) is replaced by runs_prunable: no query reads finished runs by finishing time.
CREATE INDEX runs_by_schedule_name ON runs (schedule_name, id DESC);
CREATE INDEX runs_by_schedule_created ON runs (schedule_name, created_at);
CREATE INDEX runs_blocked_by ON runs (blocked_by) WHERE blocked_by IS NOT NULL;
-- Prune walks final runs by (hour created, schedule): a batch takes whole hours of a few schedules, which are
-- whole rows of run_stats below, so keeping the rollup exact costs a few row updates per batch, not one per run.
-- finished_at is a key column so that "finished before the cutoff" is checked in the index, without the heap.
DROP INDEX runs_finished;
CREATE INDEX runs_prunable ON runs
    (date_bin('1 hour', created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), schedule_name, finished_at)
    WHERE state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed');

-- 3. The stats rollup: per schedule name, per UTC hour and per UTC day the runs were created in, the final runs
--    by state and a histogram of their durations (finished_at - started_at, for runs with both). It is exactly
--    the final runs present in `runs`, kept so in the writing transaction by triggers: inserts and deletes by
--    statement (their rows aggregated first, so a 5,000-run prune batch or a tick's missed instants cost a few row
--    updates), updates by row (a run's end: two single-row updates, in the worker's one statement). Runs not final
--    yet are not in it: stats reads those from `runs` (few, by runs_by_state).
--
--    Histogram buckets are fixed and log-scale, 8 per doubling: bucket 0 holds durations under 1 ms, bucket
--    b >= 1 holds [2^((b-1)/8), 2^(b/8)) ms (up to b = 400, the last one open-ended). app/stats.py reads them
--    back (percentiles within 2^(1/16) - 1 = 4.4 %). Stored sparse: `buckets` ascending, `counts` alongside.
--    schedule_name '' stands for runs without one (schedule names are never empty).
CREATE TABLE run_stats (
    schedule_name  text NOT NULL,
    grain          text NOT NULL CHECK (grain IN ('hour', 'day')),
    period_start   timestamptz NOT NULL,
    succeeded      integer NOT NULL DEFAULT 0,
    failed         integer NOT NULL DEFAULT 0,
    timed_out      integer NOT NULL DEFAULT 0,
    cancelled      integer NOT NULL DEFAULT 0,
    skipped        integer NOT NULL DEFAULT 0,
    missed         integer NOT NULL DEFAULT 0,
    buckets        smallint[] NOT NULL DEFAULT '{}',
    counts         integer[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (schedule_name, grain, period_start)
);
-- Stats over every schedule read one grain over a range of periods.
CREATE INDEX run_stats_by_period ON run_stats (grain, period_start);

-- The histogram bucket of a run that ran from p_started to p_finished; NULL when it lacks either.
CREATE FUNCTION punchclock_duration_bucket(p_started timestamptz, p_finished timestamptz) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_started IS NULL OR p_finished IS NULL THEN NULL
        WHEN p_finished - p_started < interval '1 millisecond' THEN 0
        ELSE least(400, 1 + floor(8 * ln(date_part('epoch', p_finished - p_started) * 1000) / ln(2)))::smallint
    END
$$;

-- Two sparse histograms added (a negative count subtracts); buckets left at zero are dropped.
CREATE FUNCTION punchclock_histogram_add(p_buckets smallint[], p_counts integer[], p_add_buckets smallint[],
                                         p_add_counts integer[], OUT buckets smallint[], OUT counts integer[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(b ORDER BY b), '{}'), coalesce(array_agg(n ORDER BY b), '{}')
    FROM (SELECT b, sum(n)::integer AS n
          FROM unnest(p_buckets || p_add_buckets, p_counts || p_add_counts) AS u (b, n)
          GROUP BY b
          HAVING sum(n) <> 0) AS merged
$$;

-- Add runs to the rollup (a negative count subtracts them): element i says that p_counts[i] runs of schedule
-- p_names[i] created in the hour p_hours[i], in state p_states[i], with duration bucket p_buckets[i], came or went.
-- Rows are written in key order (concurrent writers never deadlock on them); rows left with no run are deleted.
-- p_grain 'hour' or 'day': that row of each only.
CREATE FUNCTION punchclock_run_stats_apply(p_names text[], p_hours timestamptz[], p_states text[],
                                           p_buckets smallint[], p_counts integer[], p_grain text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_names text[];
    v_grains text[];
    v_periods timestamptz[];
BEGIN
    WITH grouped AS (
        SELECT coalesce(u.name, '') AS schedule_name, g.grain, g.period_start,
               sum(u.n) FILTER (WHERE u.state = 'succeeded') AS succeeded,
               sum(u.n) FILTER (WHERE u.state = 'failed') AS failed,
               sum(u.n) FILTER (WHERE u.state = 'timed_out') AS timed_out,
               sum(u.n) FILTER (WHERE u.state = 'cancelled') AS cancelled,
               sum(u.n) FILTER (WHERE u.state = 'skipped') AS skipped,
               sum(u.n) FILTER (WHERE u.state = 'missed') AS missed,
               array_agg(u.bucket) FILTER (WHERE u.bucket IS NOT NULL) AS buckets,
               array_agg(u.n) FILTER (WHERE u.bucket IS NOT NULL) AS counts
        FROM unnest(p_names, p_hours, p_states, p_buckets, p_counts) AS u (name, hour, state, bucket, n)
        CROSS JOIN LATERAL (VALUES
            ('hour', u.hour), ('day', date_bin('1 day', u.hour, TIMESTAMPTZ '2000-01-01 00:00:00+00'))
        ) AS g (grain, period_start)
        WHERE p_grain IS NULL OR g.grain = p_grain
        GROUP BY 1, 2, 3
    ), added AS (
        -- one element per bucket, ascending (elements of several states or hours may share a bucket)
        SELECT g.schedule_name, g.grain, g.period_start, coalesce(g.succeeded, 0) AS succeeded,
               coalesce(g.failed, 0) AS failed, coalesce(g.timed_out, 0) AS timed_out,
               coalesce(g.cancelled, 0) AS cancelled, coalesce(g.skipped, 0) AS skipped,
               coalesce(g.missed, 0) AS missed, h.buckets, h.counts
        FROM grouped g
        CROSS JOIN LATERAL punchclock_histogram_add('{}', '{}', coalesce(g.buckets, '{}'), coalesce(g.counts, '{}')) h
    ), written AS (
        INSERT INTO run_stats AS s
        SELECT * FROM added
        ORDER BY schedule_name, grain, period_start
        ON CONFLICT (schedule_name, grain, period_start) DO UPDATE
        SET succeeded = s.succeeded + excluded.succeeded, failed = s.failed + excluded.failed,
            timed_out = s.timed_out + excluded.timed_out, cancelled = s.cancelled + excluded.cancelled,
            skipped = s.skipped + excluded.skipped, missed = s.missed + excluded.missed,
            -- a row whose runs are all gone (prune takes whole hours) is emptied without merging
            (buckets, counts) = (
                SELECT h.buckets, h.counts
                FROM punchclock_histogram_add(s.buckets, s.counts, excluded.buckets, excluded.counts) h
                WHERE s.succeeded + s.failed + s.timed_out + s.cancelled + s.skipped + s.missed
                      + excluded.succeeded + excluded.failed + excluded.timed_out + excluded.cancelled
                      + excluded.skipped + excluded.missed <> 0
                UNION ALL
                SELECT '{}', '{}'
                WHERE s.succeeded + s.failed + s.timed_out + s.cancelled + s.skipped + s.missed
                      + excluded.succeeded + excluded.failed + excluded.timed_out + excluded.cancelled
                      + excluded.skipped + excluded.missed = 0)
        RETURNING s.schedule_name, s.grain, s.period_start,
                  s.succeeded + s.failed + s.timed_out + s.cancelled + s.skipped + s.missed AS runs
    )
    SELECT array_agg(schedule_name), array_agg(grain), array_agg(period_start)
    INTO v_names, v_grains, v_periods
    FROM written
    WHERE runs = 0;

    IF v_names IS NOT NULL THEN
        DELETE FROM run_stats s
        USING unnest(v_names, v_grains, v_periods) AS k (schedule_name, grain, period_start)
        WHERE s.schedule_name = k.schedule_name AND s.grain = k.grain AND s.period_start = k.period_start
          AND s.succeeded + s.failed + s.timed_out + s.cancelled + s.skipped + s.missed = 0;
    END IF;
END;
$$;

-- A sparse histogram with p_n more runs (fewer, when negative) in bucket p_bucket (NULL: unchanged).
CREATE FUNCTION punchclock_histogram_bump(p_buckets smallint[], p_counts integer[], p_bucket smallint,
                                          p_n integer, OUT buckets smallint[], OUT counts integer[])
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    i integer;
BEGIN
    buckets := p_buckets;
    counts := p_counts;
    IF p_bucket IS NULL THEN
        RETURN;
    END IF;
    i := array_position(p_buckets, p_bucket);
    IF i IS NULL THEN
        i := 1;
        WHILE i <= cardinality(p_buckets) AND p_buckets[i] < p_bucket LOOP
            i := i + 1;
        END LOOP;
        buckets := p_buckets[:i - 1] || p_bucket || p_buckets[i:];
        counts := p_counts[:i - 1] || p_n || p_counts[i:];
    ELSIF p_counts[i] + p_n = 0 THEN
        buckets := p_buckets[:i - 1] || p_buckets[i + 1:];
        counts := p_counts[:i - 1] || p_counts[i + 1:];
    ELSE
        counts[i] := p_counts[i] + p_n;
    END IF;
END;
$$;

-- One run added to the rollup (p_n = 1) or taken out of it (-1): its day row, then its hour row (the key order
-- punchclock_run_stats_apply writes in, so the two never deadlock). What a worker's finish pays for stats: two
-- single-row updates in its statement (an insert, the first time in the hour).
CREATE FUNCTION punchclock_run_stats_add_run(p_name text, p_created timestamptz, p_state text, p_bucket smallint,
                                             p_n integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_grain text;
    v_period timestamptz;
BEGIN
    FOREACH v_grain IN ARRAY ARRAY['day', 'hour'] LOOP
        v_period := date_bin(CASE v_grain WHEN 'day' THEN interval '1 day' ELSE interval '1 hour' END, p_created,
                             TIMESTAMPTZ '2000-01-01 00:00:00+00');
        UPDATE run_stats AS s
        SET succeeded = s.succeeded + CASE WHEN p_state = 'succeeded' THEN p_n ELSE 0 END,
            failed = s.failed + CASE WHEN p_state = 'failed' THEN p_n ELSE 0 END,
            timed_out = s.timed_out + CASE WHEN p_state = 'timed_out' THEN p_n ELSE 0 END,
            cancelled = s.cancelled + CASE WHEN p_state = 'cancelled' THEN p_n ELSE 0 END,
            skipped = s.skipped + CASE WHEN p_state = 'skipped' THEN p_n ELSE 0 END,
            missed = s.missed + CASE WHEN p_state = 'missed' THEN p_n ELSE 0 END,
            (buckets, counts) = (SELECT h.buckets, h.counts
                                 FROM punchclock_histogram_bump(s.buckets, s.counts, p_bucket, p_n) h)
        WHERE s.schedule_name = coalesce(p_name, '') AND s.grain = v_grain AND s.period_start = v_period;
        IF NOT FOUND THEN
            -- the first run of its hour or day; another transaction may be creating the row too
            PERFORM punchclock_run_stats_apply(ARRAY[p_name], ARRAY[date_bin('1 hour', p_created,
                                               TIMESTAMPTZ '2000-01-01 00:00:00+00')], ARRAY[p_state],
                                               ARRAY[p_bucket], ARRAY[p_n], v_grain);
        ELSIF p_n < 0 THEN
            DELETE FROM run_stats s
            WHERE s.schedule_name = coalesce(p_name, '') AND s.grain = v_grain AND s.period_start = v_period
              AND s.succeeded + s.failed + s.timed_out + s.cancelled + s.skipped + s.missed = 0;
        END IF;
    END LOOP;
END;
$$;

-- A run whose state, name, creation, start or finish changed, from or to a final state (the trigger's WHEN):
-- out of the rollup as it was, into it as it is. A row trigger, so that a worker's finish pays two upserts and
-- nothing for the statement; a heartbeat or an outbox mark does not even call it.
CREATE FUNCTION punchclock_run_stats_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed') THEN
        PERFORM punchclock_run_stats_add_run(OLD.schedule_name, OLD.created_at, OLD.state,
                                             punchclock_duration_bucket(OLD.started_at, OLD.finished_at), -1);
    END IF;
    IF NEW.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed') THEN
        PERFORM punchclock_run_stats_add_run(NEW.schedule_name, NEW.created_at, NEW.state,
                                             punchclock_duration_bucket(NEW.started_at, NEW.finished_at), 1);
    END IF;
    RETURN NULL;
END;
$$;

-- What an insert or a delete did to the final runs, applied to the rollup (one trigger per operation, with its
-- transition table), aggregated first: a 5,000-run prune batch takes whole hours of a few schedules, so it comes
-- to a few hundred elements, and a tick's missed instants to one per schedule.
CREATE FUNCTION punchclock_run_stats_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_names text[];
    v_hours timestamptz[];
    v_states text[];
    v_buckets smallint[];
    v_counts integer[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(c.schedule_name), array_agg(c.hour), array_agg(c.state), array_agg(c.bucket),
               array_agg(c.n)
        INTO v_names, v_hours, v_states, v_buckets, v_counts
        FROM (SELECT r.schedule_name, date_bin('1 hour', r.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS hour,
                     r.state, punchclock_duration_bucket(r.started_at, r.finished_at) AS bucket, count(*)::integer AS n
              FROM new_runs r
              WHERE r.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')
              GROUP BY 1, 2, 3, 4) AS c;
    ELSE
        SELECT array_agg(c.schedule_name), array_agg(c.hour), array_agg(c.state), array_agg(c.bucket),
               array_agg(c.n)
        INTO v_names, v_hours, v_states, v_buckets, v_counts
        FROM (SELECT r.schedule_name, date_bin('1 hour', r.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS hour,
                     r.state, punchclock_duration_bucket(r.started_at, r.finished_at) AS bucket, -count(*)::integer AS n
              FROM old_runs r
              WHERE r.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')
              GROUP BY 1, 2, 3, 4) AS c;
    END IF;
    IF v_counts IS NOT NULL THEN
        PERFORM punchclock_run_stats_apply(v_names, v_hours, v_states, v_buckets, v_counts);
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION punchclock_run_stats_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE run_stats;
    RETURN NULL;
END;
$$;

-- The rollup starts from the runs already recorded (writes to runs wait for this migration: see the top).
DO $$
DECLARE
    v_from bigint := 0;
    v_last bigint := (SELECT max(id) FROM runs);
BEGIN
    WHILE v_from <= coalesce(v_last, -1) LOOP
        PERFORM punchclock_run_stats_apply(array_agg(c.schedule_name), array_agg(c.hour), array_agg(c.state),
                                           array_agg(c.bucket), array_agg(c.n))
        FROM (SELECT r.schedule_name,
                     date_bin('1 hour', r.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS hour, r.state,
                     punchclock_duration_bucket(r.started_at, r.finished_at) AS bucket, count(*)::integer AS n
              FROM runs r
              WHERE r.id >= v_from AND r.id < v_from + 500000
                AND r.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')
              GROUP BY 1, 2, 3, 4) AS c
        HAVING count(*) > 0;
        v_from := v_from + 500000;
    END LOOP;
END;
$$;

CREATE TRIGGER runs_stats_inserted AFTER INSERT ON runs REFERENCING NEW TABLE AS new_runs
    FOR EACH STATEMENT EXECUTE FUNCTION punchclock_run_stats_changed();
CREATE TRIGGER runs_stats_updated AFTER UPDATE OF state, schedule_name, created_at, started_at, finished_at ON runs
    FOR EACH ROW
    WHEN ((OLD.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')
           OR NEW.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed'))
          AND (OLD.state, OLD.schedule_name, OLD.created_at, OLD.started_at, OLD.finished_at)
              IS DISTINCT FROM (NEW.state, NEW.schedule_name, NEW.created_at, NEW.started_at, NEW.finished_at))
    EXECUTE FUNCTION punchclock_run_stats_updated();
CREATE TRIGGER runs_stats_deleted AFTER DELETE ON runs REFERENCING OLD TABLE AS old_runs
    FOR EACH STATEMENT EXECUTE FUNCTION punchclock_run_stats_changed();
CREATE TRIGGER runs_stats_truncated AFTER TRUNCATE ON runs
    FOR EACH STATEMENT EXECUTE FUNCTION punchclock_run_stats_truncated();
