-- Starting and finishing an attempt, each one round trip: run state, attempt row and overlap lease together.

-- Which schedules run after a given one (dependencies), without scanning every schedule on each success.
CREATE INDEX schedules_after ON schedules USING gin (after);

-- Start an attempt of run p_run_id under the lease p_lock_key (NULL: no lock, overlap 'allow').
-- outcome:
--   'started'  the run is running (attempt = its number); the lease is ours for p_ttl
--   'over'     the run is finished, cancelled or unknown: a redelivered or stale message, drop it
--   'skipped'  another live run holds the lease (policy 'skip', or 'queue' with its one waiting slot taken)
--   'queued'   policy 'queue': this run waits in the lease's slot and is re-published when the lease frees
--   'wait'     a backfill run finds the lease held or an earlier instant of its backfill pending: it is not
--              skipped, the caller re-sends it a little later (holder: the run it waits for)
-- holder: the run holding the lease when it was not ours. p_trace_id: the attempt's trace, kept on a run that
-- has none yet (a manual run: a cron run carries the trace of its fire).
CREATE FUNCTION punchclock_start_run(p_run_id bigint, p_lock_key text, p_policy text, p_ttl interval,
                                     p_trace_id text)
RETURNS TABLE (outcome text, attempt integer, holder bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_trigger text;
    v_schedule_id bigint;
    v_scheduled_for timestamptz;
    v_earlier bigint;
    v_attempt integer;
    v_lock run_locks%ROWTYPE;
BEGIN
    SELECT r.trigger, r.schedule_id, r.scheduled_for INTO v_trigger, v_schedule_id, v_scheduled_for FROM runs r
    WHERE r.id = p_run_id AND r.state IN ('scheduled', 'enqueued', 'running', 'retrying')
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'over'::text, NULL::integer, NULL::bigint;
        RETURN;
    END IF;
    -- A backfill runs its instants in order: one waits while an earlier instant of the same backfill is pending.
    IF v_trigger = 'backfill' THEN
        SELECT r.id INTO v_earlier FROM runs r
        WHERE r.schedule_id = v_schedule_id AND r.trigger = 'backfill' AND r.scheduled_for < v_scheduled_for
          AND r.state IN ('scheduled', 'enqueued', 'running', 'retrying')
        ORDER BY r.scheduled_for LIMIT 1;
        IF FOUND THEN
            RETURN QUERY SELECT 'wait'::text, NULL::integer, v_earlier;
            RETURN;
        END IF;
    END IF;

    IF p_lock_key IS NOT NULL THEN
        INSERT INTO run_locks AS l (lock_key, run_id, expires_at) VALUES (p_lock_key, p_run_id, now() + p_ttl)
        ON CONFLICT (lock_key) DO UPDATE
            SET run_id = excluded.run_id, expires_at = excluded.expires_at,
                waiting_run_id = NULLIF(l.waiting_run_id, excluded.run_id)
            WHERE l.expires_at < now() OR l.run_id = excluded.run_id
        RETURNING * INTO v_lock;
        IF NOT FOUND THEN
            SELECT * INTO v_lock FROM run_locks WHERE lock_key = p_lock_key FOR UPDATE;
            IF v_trigger = 'backfill' THEN
                RETURN QUERY SELECT 'wait'::text, NULL::integer, v_lock.run_id;
                RETURN;
            END IF;
            IF p_policy = 'queue' AND (v_lock.waiting_run_id IS NULL OR v_lock.waiting_run_id = p_run_id) THEN
                UPDATE run_locks SET waiting_run_id = p_run_id WHERE lock_key = p_lock_key;
                UPDATE runs SET state = 'enqueued', blocked_by = v_lock.run_id WHERE id = p_run_id;
                RETURN QUERY SELECT 'queued'::text, NULL::integer, v_lock.run_id;
                RETURN;
            END IF;
            UPDATE runs SET state = 'skipped', blocked_by = v_lock.run_id, finished_at = now(),
                            error = format('skipped: run %s of the same lock (%s) was still running',
                                           v_lock.run_id, p_lock_key)
            WHERE id = p_run_id;
            RETURN QUERY SELECT 'skipped'::text, NULL::integer, v_lock.run_id;
            RETURN;
        END IF;
    END IF;

    UPDATE runs SET state = 'running', attempts = runs.attempts + 1, started_at = coalesce(started_at, now()),
                    error = NULL, next_attempt_at = NULL, trace_id = coalesce(trace_id, p_trace_id)
    WHERE id = p_run_id
    RETURNING runs.attempts INTO v_attempt;
    INSERT INTO run_attempts AS a (run_id, attempt) VALUES (p_run_id, v_attempt)
    ON CONFLICT ON CONSTRAINT run_attempts_pkey
    DO UPDATE SET started_at = now(), finished_at = NULL, state = 'running', error = NULL, retry_delay_ms = NULL;
    RETURN QUERY SELECT 'started'::text, v_attempt, NULL::bigint;
END;
$$;

-- Finish the running attempt of p_run_id in state p_state (succeeded, failed, timed_out, cancelled, retrying).
-- A final state frees the run's lease; the run waiting on it, if any, goes back to the outbox ('scheduled').
-- Returns what the worker does next: the waiting run to publish, the schedule's previous final state (for a
-- recovery notice), its notify targets, and whether schedules depend on it. Nothing when the run was not
-- running (a duplicate delivery finishing late).
CREATE FUNCTION punchclock_finish_run(p_run_id bigint, p_state text, p_output jsonb, p_error text,
                                      p_retry_delay_ms integer)
RETURNS TABLE (released_waiting_run bigint, previous_state text, notify text[], notify_on_recovery boolean,
               has_dependents boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_run runs%ROWTYPE;
    v_waiting bigint;
BEGIN
    UPDATE runs SET state = p_state, output = p_output, error = p_error,
                    finished_at = CASE WHEN p_state = 'retrying' THEN NULL ELSE now() END,
                    next_attempt_at = CASE WHEN p_state = 'retrying'
                                           THEN now() + make_interval(secs => p_retry_delay_ms / 1000.0) END
    WHERE id = p_run_id AND state = 'running'
    RETURNING * INTO v_run;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE run_attempts SET finished_at = now(), state = p_state, error = p_error, retry_delay_ms = p_retry_delay_ms
    WHERE run_id = p_run_id AND attempt = v_run.attempts;

    IF p_state <> 'retrying' THEN
        DELETE FROM run_locks WHERE run_id = p_run_id RETURNING waiting_run_id INTO v_waiting;
        IF v_waiting IS NOT NULL THEN
            UPDATE runs SET state = 'scheduled' WHERE id = v_waiting AND state = 'enqueued';
        END IF;
    END IF;

    RETURN QUERY
    SELECT v_waiting,
           -- only a success that may be a recovery needs the run before it (newest first by id: the index)
           CASE WHEN p_state = 'succeeded' AND s.notify_on_recovery THEN
               (SELECT r.state FROM runs r
                WHERE r.schedule_id = v_run.schedule_id AND r.id < p_run_id
                  AND r.state IN ('succeeded', 'failed', 'timed_out')
                ORDER BY r.id DESC LIMIT 1)
           END,
           s.notify, s.notify_on_recovery,
           p_state = 'succeeded' AND EXISTS (SELECT 1 FROM schedules d WHERE d.after @> ARRAY[s.name])
    FROM (SELECT v_run.schedule_id AS id) AS this
    LEFT JOIN schedules s ON s.id = this.id;
END;
$$;

-- Expired leases (their holder's worker died): free them, and send the run waiting on one back to the outbox.
CREATE FUNCTION punchclock_release_expired_locks() RETURNS integer
LANGUAGE sql AS $$
    WITH expired AS (
        DELETE FROM run_locks WHERE expires_at < now() RETURNING waiting_run_id
    ), requeued AS (
        UPDATE runs SET state = 'scheduled' WHERE id IN (SELECT waiting_run_id FROM expired) AND state = 'enqueued'
        RETURNING id
    )
    SELECT count(*)::integer FROM requeued
$$;
