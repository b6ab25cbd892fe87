-- Blob storage for the PostgreSQL artifact backend (artifacts.PG), so workers on
-- several machines share checkpoints without a shared filesystem. Content is split
-- into chunks (1 MiB by default) of bytea, one row each; a blob becomes visible only
-- when its artifact_blobs row commits, in the same transaction as its chunks.

-- One data_id per upload: chunks are written before the content's hash is known.
CREATE SEQUENCE IF NOT EXISTS artifact_blob_data_id_seq;

CREATE TABLE IF NOT EXISTS artifact_blob_chunks (
    data_id bigint  NOT NULL,
    seq     integer NOT NULL CHECK (seq >= 0),
    data    bytea   NOT NULL,
    PRIMARY KEY (data_id, seq)
);
-- Weights barely compress; store chunks out of line without trying pglz on each.
ALTER TABLE artifact_blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE IF NOT EXISTS artifact_blobs (
    sha256     text        PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size       bigint      NOT NULL CHECK (size >= 0),
    data_id    bigint      NOT NULL UNIQUE,
    chunks     integer     NOT NULL CHECK (chunks >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
