-- Artifacts (models, checkpoints, dataset snapshots, reports) and their lineage. The
-- content lives in the artifact store; these rows say what it is and where it came from.

CREATE TABLE artifacts (
    id          text PRIMARY KEY CHECK (id <> ''),
    kind        text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.-]*$'),
    uri         text NOT NULL DEFAULT '',
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size        bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Producing stage, when a pipeline stage made it (NULL for imports and CLI use).
    stage_id    bigint REFERENCES stages (id) ON DELETE SET NULL,
    run_id      text NOT NULL DEFAULT '',
    round       integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- The same content recorded twice as the same kind is the same artifact.
    UNIQUE (kind, sha256)
);
CREATE INDEX artifacts_run_idx ON artifacts (run_id, round, kind);
CREATE INDEX artifacts_created_idx ON artifacts (created_at);

-- artifact_lineage says child was made from parent in the given role ("base", "init",
-- "reference", "policy", "reward_model", "train_data", "eval_data", "variant", ...).
CREATE TABLE artifact_lineage (
    parent_id   text NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    child_id    text NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (parent_id, child_id, role),
    CHECK (parent_id <> child_id)
);
CREATE INDEX artifact_lineage_child_idx ON artifact_lineage (child_id);
