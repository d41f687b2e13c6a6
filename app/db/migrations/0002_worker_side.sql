-- The worker side: overlap leases, attempts, retries, timeouts, notifications, dependencies, jitter, cancel.

ALTER TABLE schedules
    -- retry an attempt that hit the schedule's timeout (otherwise a timeout is final)
    ADD COLUMN retry_timeouts boolean NOT NULL DEFAULT false,
    -- also notify on the first success after failures
    ADD COLUMN notify_on_recovery boolean NOT NULL DEFAULT false;

ALTER TABLE runs
    -- the run holding the lock when this one was skipped, or ahead of it when it waited (overlap 'queue')
    ADD COLUMN blocked_by bigint,
    -- jitter: how long after publishing the run may start, drawn once when it is fired (redelivery keeps it)
    ADD COLUMN delay_ms integer NOT NULL DEFAULT 0,
    -- retrying: when the next attempt is due
    ADD COLUMN next_attempt_at timestamptz,
    -- set by `runs cancel` on a running run: its heartbeat stops the actor
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;

-- Overlap leases: one row per held lock key, renewed by the holder's heartbeat; an expired row is free.
-- waiting_run_id: overlap 'queue' keeps at most one run waiting per key; it is re-published when the lock frees.
CREATE TABLE run_locks (
    lock_key        text PRIMARY KEY,
    run_id          bigint NOT NULL,
    expires_at      timestamptz NOT NULL,
    waiting_run_id  bigint
);

-- Every attempt of every run: its own timings, outcome, error, and the backoff chosen before the next one.
CREATE TABLE run_attempts (
    run_id          bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    state           text NOT NULL DEFAULT 'running'
                    CHECK (state IN ('running', 'succeeded', 'failed', 'retrying', 'timed_out', 'cancelled')),
    error           text,
    retry_delay_ms  integer,
    PRIMARY KEY (run_id, attempt)
);

-- Notifications about a run (final failure, timeout, recovery), one row per target, sent by their own actor.
-- target is the notify entry with any secret part (webhook path, token) masked; the full entry stays on the
-- schedule.
CREATE TABLE notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    target          text NOT NULL,
    event           text NOT NULL CHECK (event IN ('failure', 'recovery')),
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX notifications_by_run ON notifications (run_id);
CREATE INDEX run_attempts_recent ON run_attempts (started_at);
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
