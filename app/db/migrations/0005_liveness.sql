-- Exactly once under faults. Delivery is at-least-once (a broker blip redelivers every unacknowledged message,
-- a re-publish sends a second copy), so execution needs its own rule:
--   * a running attempt proves it is alive: `alive_until`, set when it starts and renewed by its worker's
--     heartbeat. A message for a run whose attempt is alive never starts another attempt: it is deferred, and
--     dropped once that attempt has finished;
--   * only an attempt whose `alive_until` has passed (its worker died or lost the database for longer than the
--     lock TTL) is taken over, by a redelivered message or by the tick's recovery sweep, and recorded `lost`;
--   * a finish names its attempt: the late finish of a lost attempt changes nothing (a fencing token);
--   * a run's follow-ups (notifications, dependents) are due in the same statement that records its end
--     (`followups_due`), so a crash between the two leaves a flag the sweep finds, never a silent gap.

ALTER TABLE runs
    -- the running attempt is alive until then; NULL when no attempt is running
    ADD COLUMN alive_until timestamptz,
    -- the run's end was recorded, its notifications and dependents not yet: the sweep does what is left
    ADD COLUMN followups_due boolean NOT NULL DEFAULT false;

-- Runs left running by workers of the version before this one: give them one lock TTL (the default, 5 min) to
-- show they are alive; after that they count as lost and are recovered.
UPDATE runs SET alive_until = now() + interval '5 minutes' WHERE state = 'running';

ALTER TABLE run_attempts DROP CONSTRAINT run_attempts_state_check;
ALTER TABLE run_attempts ADD CONSTRAINT run_attempts_state_check
    CHECK (state IN ('running', 'succeeded', 'failed', 'retrying', 'timed_out', 'cancelled', 'lost'));

-- The sweep's reads follow what is in flight, not the history: runs by state through runs_by_state (0001), and
-- these two partial indexes, empty but for what a crash left behind.
CREATE INDEX runs_followups_due ON runs (id) WHERE followups_due;
CREATE INDEX notifications_pending ON notifications (id) WHERE state = 'pending';

ALTER TABLE notifications
    -- a delivery in progress owns the row until then, so a re-send by the sweep never races a slow delivery
    ADD COLUMN claimed_until timestamptz;

DROP FUNCTION punchclock_start_run(bigint, text, text, interval, text);
DROP FUNCTION punchclock_finish_run(bigint, text, jsonb, text, integer);

-- Finish attempt p_attempt of run p_run_id in state p_state (succeeded, failed, timed_out, cancelled, retrying).
-- p_attempt NULL: whichever attempt is running. A final state frees the run's lease (the run waiting on it, if
-- any, goes back to the outbox). Its follow-ups are marked due in the same statement when there is something to
-- do: notify on a final failure or timeout, notify a recovery (a success after a failure, when asked), fire
-- dependents after a success. Returns what the worker does next (the waiting run to publish, whether dependents
-- may have been made ready, whether follow-ups are due); nothing when that attempt was not the one running (a
-- late duplicate, or an attempt declared lost and taken over meanwhile).
CREATE FUNCTION punchclock_finish_run(p_run_id bigint, p_attempt integer, p_state text, p_output jsonb,
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
    UPDATE runs SET state = p_state, output = p_output, error = p_error, alive_until = NULL,
                    finished_at = CASE WHEN p_state = 'retrying' THEN NULL ELSE now() END,
                    next_attempt_at = CASE WHEN p_state = 'retrying'
                                           THEN now() + make_interval(secs => p_retry_delay_ms / 1000.0) END,
                    followups_due = v_due
    WHERE id = p_run_id AND state = 'running' AND (p_attempt IS NULL OR attempts = p_attempt)
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
    RETURN QUERY SELECT v_waiting, v_dependents, v_due;
END;
$$;

-- The running attempt of p_run_id stopped proving it is alive (its worker died, or lost the database for longer
-- than the lock TTL). Resolve it by the run's own rules and return the run's new state:
--   'cancelled'  `runs cancel` had asked it to stop: nobody is left to stop, so it is over;
--   'failed'     no retry left (the lost attempt counts as one): the run fails saying what happened;
--   'scheduled'  the attempt is recorded `lost` and the run goes back to the outbox for its next attempt.
-- The caller holds the run's row lock (FOR UPDATE) and has checked that alive_until has passed.
CREATE FUNCTION punchclock_lose_attempt(p_run_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_run runs%ROWTYPE;
    v_max_retries integer;
    v_why text;
BEGIN
    SELECT * INTO v_run FROM runs WHERE id = p_run_id AND state = 'running';
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_why := format('attempt %s lost: its worker stopped heartbeating (alive until %s)',
                    v_run.attempts, to_char(v_run.alive_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
    IF v_run.cancel_requested THEN
        PERFORM punchclock_finish_run(p_run_id, v_run.attempts, 'cancelled', NULL,
                                      'cancelled by punchclock runs cancel; ' || v_why, NULL);
        RETURN 'cancelled';
    END IF;
    v_max_retries := coalesce((v_run.options ->> 'max_retries')::integer, 3);
    IF v_run.attempts > v_max_retries THEN
        PERFORM punchclock_finish_run(p_run_id, v_run.attempts, 'failed', NULL,
                                      format('%s; no retry left (max_retries %s)', v_why, v_max_retries), NULL);
        RETURN 'failed';
    END IF;
    UPDATE run_attempts SET state = 'lost', finished_at = now(), error = v_why
    WHERE run_id = p_run_id AND attempt = v_run.attempts;
    UPDATE runs SET state = 'scheduled', alive_until = NULL, error = v_why WHERE id = p_run_id;
    RETURN 'scheduled';
END;
$$;

-- Start an attempt of run p_run_id under the lease p_lock_key (NULL: no lock, overlap 'allow').
-- outcome:
--   'started'    the run is running (attempt = its number); the lease is ours for p_ttl, and so is the run
--   'took_over'  as 'started', after declaring the previous attempt lost (its alive_until had passed)
--   'over'       the run is finished, cancelled or unknown: a redelivered or stale message, drop it
--   'busy'       another attempt of this run is alive: this message is a duplicate; look again in wait_ms
--   'early'      the run is retrying and its next attempt is not due for wait_ms: a duplicate arrived early
--   'skipped'    another live run holds the lease (policy 'skip', or 'queue' with its one waiting slot taken)
--   'queued'     policy 'queue': this run waits in the lease's slot and is re-published when the lease frees
--   'wait'       a backfill run finds the lease held or an earlier instant of its backfill pending: it is not
--                skipped, the caller re-sends it a little later (holder: the run it waits for)
-- holder: the run holding the lease when it was not ours. p_trace_id: the attempt's trace, kept on a run that
-- has none yet (a manual run: a cron run carries the trace of its fire).
CREATE FUNCTION punchclock_start_run(p_run_id bigint, p_lock_key text, p_policy text, p_ttl interval,
                                     p_trace_id text)
RETURNS TABLE (outcome text, attempt integer, holder bigint, wait_ms integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_run runs%ROWTYPE;
    v_earlier bigint;
    v_attempt integer;
    v_lock run_locks%ROWTYPE;
    v_took_over boolean := false;
BEGIN
    SELECT * INTO v_run FROM runs r
    WHERE r.id = p_run_id AND r.state IN ('scheduled', 'enqueued', 'running', 'retrying')
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'over'::text, NULL::integer, NULL::bigint, NULL::integer;
        RETURN;
    END IF;
    IF v_run.state = 'running' THEN
        IF v_run.alive_until IS NULL OR v_run.alive_until > now() THEN
            RETURN QUERY SELECT 'busy'::text, v_run.attempts, NULL::bigint,
                greatest(0, ceil(extract(epoch FROM coalesce(v_run.alive_until, now() + p_ttl) - now()) * 1000))::integer;
            RETURN;
        END IF;
        IF punchclock_lose_attempt(p_run_id) <> 'scheduled' THEN
            RETURN QUERY SELECT 'over'::text, NULL::integer, NULL::bigint, NULL::integer;
            RETURN;
        END IF;
        v_took_over := true;
    ELSIF v_run.state = 'retrying' AND v_run.next_attempt_at > now() + interval '1 second' THEN
        RETURN QUERY SELECT 'early'::text, NULL::integer, NULL::bigint,
            ceil(extract(epoch FROM v_run.next_attempt_at - now()) * 1000)::integer;
        RETURN;
    END IF;
    -- A backfill runs its instants in order: one waits while an earlier instant of the same backfill is pending.
    IF v_run.trigger = 'backfill' THEN
        SELECT r.id INTO v_earlier FROM runs r
        WHERE r.schedule_id = v_run.schedule_id AND r.trigger = 'backfill' AND r.scheduled_for < v_run.scheduled_for
          AND r.state IN ('scheduled', 'enqueued', 'running', 'retrying')
        ORDER BY r.scheduled_for LIMIT 1;
        IF FOUND THEN
            -- its message goes round again: it is in flight, which the sweep reads from enqueued_at
            UPDATE runs SET enqueued_at = now() WHERE id = p_run_id AND state = 'enqueued';
            RETURN QUERY SELECT 'wait'::text, NULL::integer, v_earlier, NULL::integer;
            RETURN;
        END IF;
    END IF;

    IF p_lock_key IS NOT NULL THEN
        -- A run re-takes its own lease only here, after the checks above: never while an attempt of it is alive.
        INSERT INTO run_locks AS l (lock_key, run_id, expires_at) VALUES (p_lock_key, p_run_id, now() + p_ttl)
        ON CONFLICT (lock_key) DO UPDATE
            SET run_id = excluded.run_id, expires_at = excluded.expires_at,
                waiting_run_id = NULLIF(l.waiting_run_id, excluded.run_id)
            WHERE l.expires_at < now() OR l.run_id = excluded.run_id
        RETURNING * INTO v_lock;
        IF NOT FOUND THEN
            SELECT * INTO v_lock FROM run_locks WHERE lock_key = p_lock_key FOR UPDATE;
            IF v_run.trigger = 'backfill' THEN
                UPDATE runs SET enqueued_at = now() WHERE id = p_run_id AND state = 'enqueued';
                RETURN QUERY SELECT 'wait'::text, NULL::integer, v_lock.run_id, NULL::integer;
                RETURN;
            END IF;
            IF p_policy = 'queue' AND (v_lock.waiting_run_id IS NULL OR v_lock.waiting_run_id = p_run_id) THEN
                UPDATE run_locks SET waiting_run_id = p_run_id WHERE lock_key = p_lock_key;
                UPDATE runs SET state = 'enqueued', blocked_by = v_lock.run_id WHERE id = p_run_id;
                RETURN QUERY SELECT 'queued'::text, NULL::integer, v_lock.run_id, NULL::integer;
                RETURN;
            END IF;
            UPDATE runs SET state = 'skipped', blocked_by = v_lock.run_id, finished_at = now(),
                            error = format('skipped: run %s of the same lock (%s) was still running',
                                           v_lock.run_id, p_lock_key)
            WHERE id = p_run_id;
            RETURN QUERY SELECT 'skipped'::text, NULL::integer, v_lock.run_id, NULL::integer;
            RETURN;
        END IF;
    END IF;

    UPDATE runs SET state = 'running', attempts = runs.attempts + 1, started_at = coalesce(started_at, now()),
                    error = NULL, next_attempt_at = NULL, trace_id = coalesce(trace_id, p_trace_id),
                    alive_until = now() + p_ttl
    WHERE id = p_run_id
    RETURNING runs.attempts INTO v_attempt;
    INSERT INTO run_attempts AS a (run_id, attempt) VALUES (p_run_id, v_attempt)
    ON CONFLICT ON CONSTRAINT run_attempts_pkey
    DO UPDATE SET started_at = now(), finished_at = NULL, state = 'running', error = NULL, retry_delay_ms = NULL;
    RETURN QUERY SELECT CASE WHEN v_took_over THEN 'took_over' ELSE 'started' END, v_attempt, NULL::bigint,
                        NULL::integer;
END;
$$;

-- The recovery sweep's first half: every running run whose attempt stopped proving it is alive, resolved by
-- punchclock_lose_attempt; at most p_batch runs per call (SKIP LOCKED: concurrent sweeps take disjoint runs).
-- Returns each run resolved with its new state.
CREATE FUNCTION punchclock_recover_lost(p_batch integer)
RETURNS TABLE (run_id bigint, state text)
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    FOR v_id IN
        SELECT r.id FROM runs r
        WHERE r.state = 'running' AND r.alive_until < now()
        ORDER BY r.id
        LIMIT p_batch
        FOR UPDATE SKIP LOCKED
    LOOP
        run_id := v_id;
        state := punchclock_lose_attempt(v_id);
        RETURN NEXT;
    END LOOP;
END;
$$;
