-- Run history at scale: every final run has a finishing time, retention prunes by it, the CLI's reads by schedule
-- have indexes, and `punchclock stats` reads a rollup instead of millions of rows.

-- Writes to runs wait until this migration commits, so that the rollup below starts from exactly the runs there are.
LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE;

-- 1. A run has a finishing time exactly when it is final: retention prunes by it, and the stats trigger and
--    runs_prunable below test it instead of the state (`finished_at IS NOT NULL` costs every update of a run less
--    than `state IN (...)`). `missed` rows were inserted without one (insert_runs.sql stamped only `skipped`);
--    they get the latest time they have. From now on a constraint says so, rather than a trigger stamping rows
--    for their writer: a trigger on runs costs every update of every run, a check almost nothing, and a writer
--    that forgets is told at once.
UPDATE runs SET finished_at = greatest(created_at, enqueued_at, started_at)
WHERE finished_at IS NULL AND state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed');
UPDATE runs SET finished_at = NULL
WHERE finished_at IS NOT NULL AND state NOT IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed');
ALTER TABLE runs ADD CONSTRAINT runs_finished_when_final
    CHECK ((finished_at IS NOT NULL) = (state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')));

-- 2. Indexes for reading one schedule's history, newest first or by creation time (`runs list --schedule`:
--    list_schedule_runs.sql; `stats`: the runs at the edges of its window, cli_stats_rollup.sql), for finding the
--    runs that name a run in blocked_by, and for prune. One index serves both reads of a schedule's history:
--    every index of runs gets an entry at each start and each end of a run (state is indexed, so no update of
--    a run is HOT), and one fewer is measurably cheaper. runs_finished (0002) is replaced by runs_prunable: no
--    query reads finished runs by finishing time.
CREATE INDEX runs_by_schedule_name ON runs (schedule_name, created_at, id);
CREATE INDEX runs_blocked_by ON runs (blocked_by) WHERE blocked_by IS NOT NULL;
-- Prune walks final runs by (hour created, schedule): a batch takes whole hours of a few schedules, which are
-- whole rows of run_stats below, so a batch appends a few rows of changes to the rollup, not one per run.
-- finished_at is a key column so that "finished before the cutoff" is checked in the index, without the heap.
DROP INDEX runs_finished;
CREATE INDEX runs_prunable ON runs
    (date_bin('1 hour', created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), schedule_name, finished_at)
    WHERE finished_at IS NOT NULL;

-- 3. The stats rollup: per schedule name, per UTC hour and per UTC day the runs were created in, the final runs
--    by state and a histogram of their durations (finished_at - started_at, for runs with both).
--
--    It is kept off the worker's path. Whatever changes the final runs (a run's end, a retry taking a failed run
--    back, a tick inserting missed instants, a prune) only appends what it did to run_stats_pending, in its own
--    transaction (punchclock_finish_run itself, the rest by the triggers below): +n runs of (schedule, hour,
--    state, duration bucket) in, -n out. The clock moves pending rows into run_stats every tick
--    (punchclock_run_stats_rollup). So in every snapshot
--        the final runs in `runs` = run_stats + run_stats_pending
--    and `punchclock stats` reads both (cli_stats_rollup.sql): exact, however far the rollup lags. A worker's
--    finish pays for stats one appended row in a table without indexes; the run_stats rows of a busy schedule,
--    which every finish would otherwise update in turn, are written by the rollup alone.
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

-- Changes to the final runs not yet in run_stats: n runs (negative: n fewer) of schedule_name created in the UTC
-- hour `hour`, in `state`, with duration bucket `bucket` (NULL: not timed). No key and no index: writers only
-- append, and the rollup reads it whole. Every row is deleted within a tick or two, hence the eager vacuum.
CREATE TABLE run_stats_pending (
    schedule_name text NOT NULL,
    hour          timestamptz NOT NULL,
    state         text NOT NULL,
    bucket        smallint,
    n             integer NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);

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

-- Add runs to run_stats (a negative count subtracts them): element i says that p_counts[i] runs of schedule
-- p_names[i] ('' for none) created in the hour p_hours[i], in state p_states[i], with duration bucket
-- p_buckets[i], came or went. Rows are written in key order, so that two writers never deadlock on them; rows
-- left with no run are deleted.
CREATE FUNCTION punchclock_run_stats_apply(p_names text[], p_hours timestamptz[], p_states text[],
                                           p_buckets smallint[], p_counts integer[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH grouped AS (
        SELECT u.name AS schedule_name, g.grain, g.period_start,
               coalesce(sum(u.n) FILTER (WHERE u.state = 'succeeded'), 0) AS succeeded,
               coalesce(sum(u.n) FILTER (WHERE u.state = 'failed'), 0) AS failed,
               coalesce(sum(u.n) FILTER (WHERE u.state = 'timed_out'), 0) AS timed_out,
               coalesce(sum(u.n) FILTER (WHERE u.state = 'cancelled'), 0) AS cancelled,
               coalesce(sum(u.n) FILTER (WHERE u.state = 'skipped'), 0) AS skipped,
               coalesce(sum(u.n) FILTER (WHERE u.state = 'missed'), 0) AS missed,
               coalesce(array_agg(u.bucket) FILTER (WHERE u.bucket IS NOT NULL), '{}') AS buckets,
               coalesce(array_agg(u.n) FILTER (WHERE u.bucket IS NOT NULL), '{}') AS counts
        FROM unnest(p_names, p_hours, p_states, p_buckets, p_counts) AS u (name, hour, state, bucket, n)
        CROSS JOIN LATERAL (VALUES
            ('hour', u.hour), ('day', date_bin('1 day', u.hour, TIMESTAMPTZ '2000-01-01 00:00:00+00'))
        ) AS g (grain, period_start)
        GROUP BY 1, 2, 3
    ), added AS (
        -- one element per bucket, ascending (elements of several states or hours may share a bucket)
        SELECT g.schedule_name, g.grain, g.period_start, g.succeeded, g.failed, g.timed_out, g.cancelled,
               g.skipped, g.missed, h.buckets, h.counts
        FROM grouped g
        CROSS JOIN LATERAL punchclock_histogram_add('{}', '{}', g.buckets, g.counts) h
    )
    INSERT INTO run_stats AS s
    SELECT * FROM added
    ORDER BY schedule_name, grain, period_start
    ON CONFLICT (schedule_name, grain, period_start) DO UPDATE
    SET succeeded = s.succeeded + excluded.succeeded, failed = s.failed + excluded.failed,
        timed_out = s.timed_out + excluded.timed_out, cancelled = s.cancelled + excluded.cancelled,
        skipped = s.skipped + excluded.skipped, missed = s.missed + excluded.missed,
        (buckets, counts) = (SELECT h.buckets, h.counts
                             FROM punchclock_histogram_add(s.buckets, s.counts, excluded.buckets, excluded.counts) h);

    DELETE FROM run_stats s
    USING (SELECT DISTINCT u.name, g.grain, g.period_start
           FROM unnest(p_names, p_hours) AS u (name, hour)
           CROSS JOIN LATERAL (VALUES
               ('hour', u.hour), ('day', date_bin('1 day', u.hour, TIMESTAMPTZ '2000-01-01 00:00:00+00'))
           ) AS g (grain, period_start)) AS k
    WHERE s.schedule_name = k.name AND s.grain = k.grain AND s.period_start = k.period_start
      AND s.succeeded + s.failed + s.timed_out + s.cancelled + s.skipped + s.missed = 0;
END;
$$;

-- Pending changes moved into run_stats: all the pending rows of the (schedule, hour) groups that the first
-- p_batch rows belong to, so that the run_stats rows of each group taken become exactly its final runs as of
-- this statement's snapshot (rows committed after it wait for the next call). Whole groups, because a group
-- taken in part could reach zero runs with states that cancel out (+1 succeeded, -1 failed: a run that failed,
-- was retried and succeeded), and a row at zero runs is deleted. A run's changes all fall in its group unless
-- its name or creation time changed. One caller at a time (a second one returns -1 at once); returns how many
-- pending rows were taken.
CREATE FUNCTION punchclock_run_stats_rollup(p_batch integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_taken integer;
    v_names text[];
    v_hours timestamptz[];
    v_states text[];
    v_buckets smallint[];
    v_counts integer[];
BEGIN
    -- "the stats rollup": one more than the migrations lock (app/db/migrate.py)
    IF NOT pg_try_advisory_xact_lock(7202611251) THEN
        RETURN -1;
    END IF;
    WITH groups AS (
        SELECT DISTINCT first.schedule_name, first.hour
        FROM (SELECT schedule_name, hour FROM run_stats_pending LIMIT p_batch) AS first
    ), taken AS (
        DELETE FROM run_stats_pending p
        USING groups g
        WHERE p.schedule_name = g.schedule_name AND p.hour = g.hour
        RETURNING p.schedule_name, p.hour, p.state, p.bucket, p.n
    ), summed AS (
        SELECT schedule_name, hour, state, bucket, sum(n)::integer AS n, count(*) AS rows
        FROM taken
        GROUP BY 1, 2, 3, 4
    )
    SELECT coalesce(sum(rows), 0), array_agg(schedule_name) FILTER (WHERE n <> 0),
           array_agg(hour) FILTER (WHERE n <> 0), array_agg(state) FILTER (WHERE n <> 0),
           array_agg(bucket) FILTER (WHERE n <> 0), array_agg(n) FILTER (WHERE n <> 0)
    INTO v_taken, v_names, v_hours, v_states, v_buckets, v_counts
    FROM summed;
    IF v_names IS NOT NULL THEN
        PERFORM punchclock_run_stats_apply(v_names, v_hours, v_states, v_buckets, v_counts);
    END IF;
    RETURN v_taken;
END;
$$;

-- A run inserted final, or updated while it was or is final (the triggers' WHEN): into the stats as it is and,
-- updated, out of them as it was, if its state, name, creation, start or finish changed.
CREATE FUNCTION punchclock_run_stats_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF (OLD.state, OLD.schedule_name, OLD.created_at, OLD.started_at, OLD.finished_at)
           IS NOT DISTINCT FROM (NEW.state, NEW.schedule_name, NEW.created_at, NEW.started_at, NEW.finished_at) THEN
            RETURN NULL;
        END IF;
        IF OLD.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed') THEN
            INSERT INTO run_stats_pending (schedule_name, hour, state, bucket, n)
            VALUES (coalesce(OLD.schedule_name, ''),
                    date_bin('1 hour', OLD.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), OLD.state,
                    punchclock_duration_bucket(OLD.started_at, OLD.finished_at), -1);
        END IF;
    END IF;
    IF NEW.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed') THEN
        INSERT INTO run_stats_pending (schedule_name, hour, state, bucket, n)
        VALUES (coalesce(NEW.schedule_name, ''),
                date_bin('1 hour', NEW.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), NEW.state,
                punchclock_duration_bucket(NEW.started_at, NEW.finished_at), 1);
    END IF;
    RETURN NULL;
END;
$$;

-- The final runs a delete took away (with its transition table), aggregated: a 5,000-run prune batch appends a
-- few thousand rows at most, not one per run.
CREATE FUNCTION punchclock_run_stats_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_stats_pending (schedule_name, hour, state, bucket, n)
    SELECT coalesce(r.schedule_name, ''), date_bin('1 hour', r.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
           r.state, punchclock_duration_bucket(r.started_at, r.finished_at), -count(*)
    FROM old_runs r
    WHERE r.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')
    GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END;
$$;

CREATE FUNCTION punchclock_run_stats_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE run_stats, run_stats_pending;
    RETURN NULL;
END;
$$;

-- run_stats starts from the runs already recorded (writes to runs wait for this migration: see the top).
DO $$
DECLARE
    v_from bigint := 0;
    v_last bigint := (SELECT max(id) FROM runs);
BEGIN
    WHILE v_from <= coalesce(v_last, -1) LOOP
        PERFORM punchclock_run_stats_apply(array_agg(c.schedule_name), array_agg(c.hour), array_agg(c.state),
                                           array_agg(c.bucket), array_agg(c.n))
        FROM (SELECT coalesce(r.schedule_name, ''),
                     date_bin('1 hour', r.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS hour, r.state,
                     punchclock_duration_bucket(r.started_at, r.finished_at) AS bucket, count(*)::integer AS n
              FROM runs r
              WHERE r.id >= v_from AND r.id < v_from + 500000
                AND r.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')
              GROUP BY 1, 2, 3, 4) AS c (schedule_name, hour, state, bucket, n)
        HAVING count(*) > 0;
        v_from := v_from + 500000;
    END LOOP;
END;
$$;

-- Row by row, and only for runs inserted final (the clock's missed and skipped instants), so that the inserts
-- that matter, a tick's fan-out of new runs, pay a test of one column and nothing else: a statement trigger with
-- a transition table would copy every row it inserts.
CREATE TRIGGER runs_stats_inserted AFTER INSERT ON runs
    FOR EACH ROW WHEN (NEW.finished_at IS NOT NULL)
    EXECUTE FUNCTION punchclock_run_stats_updated();
-- Every update of runs evaluates this WHEN, a start's included, so it is as cheap as can be: a run has a
-- finished_at exactly when it is final (runs_finished_when_final), so a start or a retry's start does not call
-- the function. Comparing states here instead cost
-- a start about 40 us of PostgreSQL CPU. Unless the one updating records the change itself: punchclock_finish_run,
-- below.
CREATE TRIGGER runs_stats_updated AFTER UPDATE OF state, schedule_name, created_at, started_at, finished_at ON runs
    FOR EACH ROW
    WHEN ((OLD.finished_at IS NOT NULL OR NEW.finished_at IS NOT NULL)
          AND current_setting('punchclock.run_stats_recorded', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION punchclock_run_stats_updated();
CREATE TRIGGER runs_stats_deleted AFTER DELETE ON runs REFERENCING OLD TABLE AS old_runs
    FOR EACH STATEMENT EXECUTE FUNCTION punchclock_run_stats_deleted();
CREATE TRIGGER runs_stats_truncated AFTER TRUNCATE ON runs
    FOR EACH STATEMENT EXECUTE FUNCTION punchclock_run_stats_truncated();

-- 4. A run's end records its stats change itself: punchclock_finish_run (migration 0005) as it was, plus one row
--    appended to run_stats_pending. It is the way from `running` to a final state, which every executed run
--    takes once, and there an AFTER row trigger (its call, and the wide row it is handed) costs more than the row
--    it appends (about 70 us of PostgreSQL CPU per run, measured: 15 % of a start and a finish). The setting
--    punchclock.run_stats_recorded, on for its one UPDATE, makes runs_stats_updated stand aside; set local, it
--    never outlives the transaction, whatever happens in it.
CREATE OR REPLACE FUNCTION punchclock_finish_run(p_run_id bigint, p_attempt integer, p_state text, p_output jsonb,
                                      p_error text, p_retry_delay_ms integer)
RETURNS TABLE (released_waiting_run bigint, has_dependents boolean, followups_due boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_run runs%ROWTYPE;
    v_schedule schedules%ROWTYPE;
    v_waiting bigint;
    v_dependents boolean := false;
    v_previous text;
    v_notify text[];
    v_due boolean;
BEGIN
    -- The schedule first, unlocked (the update below is what takes the run's row): what the follow-ups need.
    -- Two primary-key lookups, not a join: a join's plan depends on statistics a fresh table does not have yet.
    SELECT * INTO v_schedule FROM schedules WHERE id = (SELECT schedule_id FROM runs WHERE id = p_run_id);
    v_notify := coalesce(v_schedule.notify, '{}');
    IF p_state = 'succeeded' AND v_schedule.name IS NOT NULL THEN
        -- schedules with a cron of their own fire at its instants, gated by their upstreams (app/upstream_gate.py)
        v_dependents := EXISTS (SELECT 1 FROM schedules d WHERE d.after @> ARRAY[v_schedule.name] AND d.cron IS NULL);
        IF v_schedule.notify_on_recovery THEN
            -- the run before it (newest first by id: the index)
            SELECT r.state INTO v_previous FROM runs r
            WHERE r.schedule_id = v_schedule.id AND r.id < p_run_id
              AND r.state IN ('succeeded', 'failed', 'timed_out')
            ORDER BY r.id DESC LIMIT 1;
        END IF;
    END IF;
    v_due := (p_state IN ('failed', 'timed_out') AND cardinality(v_notify) > 0)
             OR (p_state = 'succeeded' AND (v_dependents OR (cardinality(v_notify) > 0
                                                             AND coalesce(v_previous IN ('failed', 'timed_out'), false))));
    -- the stats change of this update is recorded below, so runs_stats_updated stands aside
    PERFORM set_config('punchclock.run_stats_recorded', 'on', true);
    UPDATE runs SET state = p_state, output = p_output, error = p_error, alive_until = NULL,
                    finished_at = CASE WHEN p_state = 'retrying' THEN NULL ELSE now() END,
                    next_attempt_at = CASE WHEN p_state = 'retrying'
                                           THEN now() + make_interval(secs => p_retry_delay_ms / 1000.0) END,
                    followups_due = v_due
    WHERE id = p_run_id AND state = 'running' AND (p_attempt IS NULL OR attempts = p_attempt)
    RETURNING * INTO v_run;
    IF NOT FOUND THEN
        PERFORM set_config('punchclock.run_stats_recorded', 'off', true);
        RETURN;
    END IF;
    PERFORM set_config('punchclock.run_stats_recorded', 'off', true);
    IF p_state IN ('succeeded', 'failed', 'timed_out', 'cancelled') THEN
        INSERT INTO run_stats_pending (schedule_name, hour, state, bucket, n)
        VALUES (coalesce(v_run.schedule_name, ''),
                date_bin('1 hour', v_run.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), p_state,
                punchclock_duration_bucket(v_run.started_at, v_run.finished_at), 1);
    END IF;
    UPDATE run_attempts SET finished_at = now(), state = p_state, error = p_error, retry_delay_ms = p_retry_delay_ms
    WHERE run_id = p_run_id AND attempt = v_run.attempts;

    IF p_state <> 'retrying' THEN
        DELETE FROM run_locks WHERE run_id = p_run_id RETURNING waiting_run_id INTO v_waiting;
        IF v_waiting IS NOT NULL THEN
            UPDATE runs SET state = 'scheduled' WHERE id = v_waiting AND state = 'enqueued';
        END IF;
    END IF;
    RETURN QUERY SELECT v_waiting, v_dependents, v_due;
END;
$$;
