-- Schedules and their runs: the clock's whole state.
-- Durations are stored as interval; instants as timestamptz (UTC on the wire).

CREATE TABLE schedules (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    actor           text NOT NULL,
    args            jsonb NOT NULL DEFAULT '{}'::jsonb,
    cron            text,
    timezone        text NOT NULL DEFAULT 'UTC',
    paused          boolean NOT NULL DEFAULT false,
    misfire         text NOT NULL DEFAULT 'latest' CHECK (misfire IN ('skip', 'latest', 'all')),
    catchup_window  interval NOT NULL DEFAULT '1 hour',
    -- used by the worker side (overlap, retries, timeouts, alerts, dependencies)
    overlap         text NOT NULL DEFAULT 'skip' CHECK (overlap IN ('skip', 'queue', 'allow')),
    lock_key        text,
    max_retries     integer NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    min_backoff     interval NOT NULL DEFAULT '10 seconds',
    max_backoff     interval NOT NULL DEFAULT '5 minutes',
    timeout         interval NOT NULL DEFAULT '25 minutes',
    jitter          interval NOT NULL DEFAULT '0 seconds',
    notify          text[] NOT NULL DEFAULT '{}',
    after           text[] NOT NULL DEFAULT '{}',
    description     text NOT NULL DEFAULT '',
    -- 'code': declared in schedules.py and synced at boot; 'cli': stored only here.
    source          text NOT NULL DEFAULT 'cli' CHECK (source IN ('code', 'cli')),
    -- a code schedule no longer in schedules.py: paused, kept for its history
    orphaned        boolean NOT NULL DEFAULT false,
    -- the earliest cron instant not yet fired (UTC); NULL when the schedule has no cron
    next_fire_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The tick reads only due, unpaused schedules: its cost grows with what is due, not with the total.
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused AND next_fire_at IS NOT NULL;

CREATE TABLE runs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- SET NULL: deleting a schedule keeps its runs' history (schedule_name stays)
    schedule_id     bigint REFERENCES schedules (id) ON DELETE SET NULL,
    schedule_name   text,
    actor           text NOT NULL,
    args            jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- the message options the run is published with (retries, backoff, time limit)
    options         jsonb NOT NULL DEFAULT '{}'::jsonb,
    scheduled_for   timestamptz NOT NULL,
    trigger         text NOT NULL
                    CHECK (trigger IN ('cron', 'manual', 'backfill', 'dependency', 'condition')),
    state           text NOT NULL DEFAULT 'scheduled'
                    CHECK (state IN ('scheduled', 'enqueued', 'running', 'retrying', 'succeeded', 'failed',
                                     'timed_out', 'cancelled', 'skipped', 'missed', 'awaiting_approval')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    enqueued_at     timestamptz,
    started_at      timestamptz,
    finished_at     timestamptz,
    error           text,
    output          jsonb,
    trace_id        text
);

-- Exactly once: one run per (schedule, instant) for the clock's own triggers, however many ticks race.
CREATE UNIQUE INDEX runs_one_per_instant ON runs (schedule_id, scheduled_for)
    WHERE trigger IN ('cron', 'dependency');
-- The outbox: runs inserted but not yet published.
CREATE INDEX runs_unpublished ON runs (id) WHERE state = 'scheduled';
CREATE INDEX runs_by_schedule ON runs (schedule_id, id DESC);
CREATE INDEX runs_by_state ON runs (state, id DESC);
