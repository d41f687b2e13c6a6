-- Workflows: their memory across runs, the steps of each run, and the tokens a run spent.

-- What a workflow remembers between runs ("yesterday's suggestion"), per workflow and key.
CREATE TABLE workflow_memory (
    workflow    text NOT NULL,
    key         text NOT NULL,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    run_id      bigint,
    PRIMARY KEY (workflow, key)
);

-- The steps of a run (ctx.step(name)): timings, status and the tokens spent inside each.
CREATE TABLE run_steps (
    run_id          bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    seq             integer NOT NULL,
    name            text NOT NULL,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL,
    status          text NOT NULL CHECK (status IN ('ok', 'error')),
    error           text,
    input_tokens    integer NOT NULL DEFAULT 0,
    output_tokens   integer NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, attempt, seq)
);

ALTER TABLE runs
    ADD COLUMN input_tokens integer NOT NULL DEFAULT 0,
    ADD COLUMN output_tokens integer NOT NULL DEFAULT 0;
