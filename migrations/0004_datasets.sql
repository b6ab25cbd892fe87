-- Datasets of prompts, preference pairs and SFT examples. Each row's id is the sha256 of
-- its dataset name and content, so importing the same file twice adds nothing.
-- A conversation segment (prompt, chosen, completion, ...) is stored as JSON:
-- {"text": "..."} or {"messages": [{"role","content"}...]}, with "ids": [token ids]
-- when it was given pre-tokenized.

CREATE TABLE datasets (
    name        text PRIMARY KEY CHECK (name <> ''),
    kind        text NOT NULL CHECK (kind IN ('prompts', 'preferences', 'sft')),
    source      text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE prompts (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{64}$'),
    dataset     text NOT NULL REFERENCES datasets (name) ON DELETE CASCADE,
    ord         bigint NOT NULL DEFAULT 0,
    prompt      jsonb NOT NULL,
    source      text NOT NULL DEFAULT '',
    round       integer NOT NULL DEFAULT 0 CHECK (round >= 0),
    split       text NOT NULL DEFAULT 'train' CHECK (split IN ('train', 'eval')),
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX prompts_dataset_idx ON prompts (dataset, split, ord);

CREATE TABLE preference_pairs (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{64}$'),
    dataset     text NOT NULL REFERENCES datasets (name) ON DELETE CASCADE,
    ord         bigint NOT NULL DEFAULT 0,
    prompt_id   text NOT NULL DEFAULT '',
    prompt      jsonb NOT NULL,
    chosen      jsonb NOT NULL,
    rejected    jsonb NOT NULL,
    -- edited is the optional third response, ranked edited > chosen > rejected.
    edited      jsonb,
    margin      double precision,
    rating      text NOT NULL DEFAULT '',
    source      text NOT NULL DEFAULT '',
    round       integer NOT NULL DEFAULT 0 CHECK (round >= 0),
    split       text NOT NULL DEFAULT 'train' CHECK (split IN ('train', 'eval')),
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX preference_pairs_dataset_idx ON preference_pairs (dataset, split, ord);

CREATE TABLE sft_examples (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{64}$'),
    dataset     text NOT NULL REFERENCES datasets (name) ON DELETE CASCADE,
    ord         bigint NOT NULL DEFAULT 0,
    -- Either messages (a whole conversation) or prompt + completion.
    messages    jsonb,
    prompt      jsonb,
    completion  jsonb,
    source      text NOT NULL DEFAULT '',
    round       integer NOT NULL DEFAULT 0 CHECK (round >= 0),
    split       text NOT NULL DEFAULT 'train' CHECK (split IN ('train', 'eval')),
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (messages IS NOT NULL OR (prompt IS NOT NULL AND completion IS NOT NULL))
);
CREATE INDEX sft_examples_dataset_idx ON sft_examples (dataset, split, ord);
