-- Rejection-sampling candidates: every sample of every prompt with its reward, and
-- whether it was selected for SFT. Keyed by (run, round, prompt, sample index).

CREATE TABLE sampling_candidates (
    run_id        text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    round         integer NOT NULL CHECK (round >= 0),
    prompt_id     text NOT NULL,
    sample_index  integer NOT NULL CHECK (sample_index >= 0),
    text          text NOT NULL DEFAULT '',
    token_ids     integer[] NOT NULL DEFAULT '{}',
    reward        double precision NOT NULL,
    selected      boolean NOT NULL DEFAULT false,
    shard         integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, round, prompt_id, sample_index)
);
CREATE INDEX sampling_candidates_selected_idx ON sampling_candidates (run_id, round) WHERE selected;
