-- Runs, rounds and stages: the state of every PostTraining workflow, keyed by natural
-- keys so a retried activity updates its row instead of adding one.

CREATE TABLE runs (
    id               text PRIMARY KEY CHECK (id <> ''),
    workflow_id      text NOT NULL DEFAULT '',
    temporal_run_id  text NOT NULL DEFAULT '',
    -- series groups scheduled runs; each continues from the latest best model of its series.
    series           text NOT NULL DEFAULT '',
    preset           text NOT NULL DEFAULT '',
    config           jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'paused', 'waiting', 'completed', 'failed', 'cancelled')),
    error            text NOT NULL DEFAULT '',
    -- result_artifact_id is the run's final model (an artifacts.id; no FK because runs are
    -- created before any artifact exists and artifacts are created by another package).
    result_artifact_id text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_series_idx ON runs (series, created_at);
CREATE INDEX runs_created_idx ON runs (created_at);

CREATE TABLE rounds (
    run_id       text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    n            integer NOT NULL CHECK (n >= 1),
    status       text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'paused', 'waiting', 'completed', 'failed', 'cancelled')),
    -- policy_artifact_id is the model this round samples with (round n-1's final model).
    policy_artifact_id text NOT NULL DEFAULT '',
    -- final_artifact_id is the round's final (DPO, averaged) model.
    final_artifact_id  text NOT NULL DEFAULT '',
    summary      jsonb NOT NULL DEFAULT '{}'::jsonb,
    error        text NOT NULL DEFAULT '',
    approved_at  timestamptz,
    started_at   timestamptz,
    finished_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, n)
);

-- A stage is one unit of work of a round: a training variant, a sampling shard, an
-- averaging or evaluation step, the annotation step. Its natural key is
-- (run, round, kind, variant); variant is free text by convention ("0", "1" for training
-- variants, "shard-3" for sampling shards, "reward"/"sft"/"dpo" for average and eval).
CREATE TABLE stages (
    id          bigserial PRIMARY KEY,
    run_id      text NOT NULL,
    round       integer NOT NULL CHECK (round >= 0),
    kind        text NOT NULL
        CHECK (kind IN ('reward', 'sampling', 'sft', 'dpo', 'average', 'eval', 'annotate', 'summary')),
    variant     text NOT NULL DEFAULT '',
    status      text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled', 'skipped')),
    attempt     integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    error       text NOT NULL DEFAULT '',
    -- The last durably saved checkpoint: where a retried attempt resumes.
    checkpoint_artifact_id text NOT NULL DEFAULT '',
    checkpoint_step        bigint NOT NULL DEFAULT 0 CHECK (checkpoint_step >= 0),
    -- output_artifact_id is what the stage produced (a model, a dataset, a report).
    output_artifact_id     text NOT NULL DEFAULT '',
    started_at  timestamptz,
    finished_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, round, kind, variant),
    FOREIGN KEY (run_id) REFERENCES runs (id) ON DELETE CASCADE
);
