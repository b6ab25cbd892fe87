-- Metrics: one value per (run, round, stage, variant, step, name). A retried step
-- overwrites its own value instead of adding a row.

CREATE TABLE metrics (
    run_id      text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    round       integer NOT NULL DEFAULT 0 CHECK (round >= 0),
    stage       text NOT NULL,
    variant     text NOT NULL DEFAULT '',
    step        bigint NOT NULL DEFAULT 0 CHECK (step >= 0),
    name        text NOT NULL CHECK (name <> ''),
    value       double precision NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, round, stage, variant, step, name)
);
CREATE INDEX metrics_name_idx ON metrics (run_id, name);
