package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultChunkSize is the PostgreSQL backend's chunk size: large enough that a
// model needs few rows, small enough that a reader holds little in memory.
const DefaultChunkSize = 1 << 20

// PG is the PostgreSQL backend. A Put streams the content into
// artifact_blob_chunks with COPY inside one transaction, hashing as it goes, and
// commits an artifact_blobs row naming the chunks; if that row already exists the
// transaction is rolled back, so the same content put twice (even concurrently) is
// stored once and an interrupted put leaves nothing behind. Reads fetch one chunk
// at a time.
type PG struct {
	pool      *pgxpool.Pool
	chunkSize int
}

// NewPG returns a PostgreSQL store on pool; chunkSize 0 means DefaultChunkSize.
// The tables come from migrations/0010_artifact_blobs.sql.
func NewPG(pool *pgxpool.Pool, chunkSize int) (*PG, error) {
	if pool == nil {
		return nil, errors.New("postgres artifact store: no database connection (set the database URL)")
	}
	if chunkSize == 0 {
		chunkSize = DefaultChunkSize
	}
	if chunkSize < 1 || chunkSize > 64<<20 {
		return nil, fmt.Errorf("postgres artifact store: chunk size %d out of range [1, 64 MiB]", chunkSize)
	}
	return &PG{pool: pool, chunkSize: chunkSize}, nil
}

// Backend implements Store.
func (s *PG) Backend() string { return BackendPostgres }

// chunkSource feeds COPY one chunk per row while hashing the stream.
type chunkSource struct {
	ctx    context.Context
	hr     *hashingReader
	dataID int64
	buf    []byte
	n      int // bytes in buf for the current row
	seq    int32
	rows   int32
	err    error
	done   bool
}

func (c *chunkSource) Next() bool {
	if c.done || c.err != nil {
		return false
	}
	if err := c.ctx.Err(); err != nil {
		c.err = err
		return false
	}
	n, err := io.ReadFull(c.hr, c.buf)
	switch {
	case err == io.EOF:
		c.done = true
		return false
	case err == io.ErrUnexpectedEOF:
		c.done = true
	case err != nil:
		c.err = err
		return false
	}
	c.n = n
	c.seq = c.rows
	c.rows++
	return true
}

// Values returns the current row; COPY encodes it before calling Next again, so
// reusing buf is safe.
func (c *chunkSource) Values() ([]any, error) {
	return []any{c.dataID, c.seq, c.buf[:c.n]}, nil
}

func (c *chunkSource) Err() error { return c.err }

// Put implements Store.
func (s *PG) Put(ctx context.Context, r io.Reader) (Ref, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Ref{}, fmt.Errorf("postgres artifact store: begin: %w", withCtx(ctx, err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var dataID int64
	if err := tx.QueryRow(ctx, `SELECT nextval('artifact_blob_data_id_seq')`).Scan(&dataID); err != nil {
		return Ref{}, fmt.Errorf("postgres artifact store: allocate data id: %w", withCtx(ctx, err))
	}
	src := &chunkSource{ctx: ctx, hr: newHashingReader(r), dataID: dataID, buf: make([]byte, s.chunkSize)}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"artifact_blob_chunks"}, []string{"data_id", "seq", "data"}, src); err != nil {
		return Ref{}, fmt.Errorf("postgres artifact store: write chunks: %w", withCtx(ctx, err))
	}
	ref := src.hr.ref()
	tag, err := tx.Exec(ctx,
		`INSERT INTO artifact_blobs (sha256, size, data_id, chunks) VALUES ($1, $2, $3, $4)
		 ON CONFLICT (sha256) DO NOTHING`, ref.SHA256, ref.Size, dataID, src.rows)
	if err != nil {
		return Ref{}, fmt.Errorf("postgres artifact store: record blob %s: %w", ref.SHA256, withCtx(ctx, err))
	}
	if tag.RowsAffected() == 0 {
		// Already stored (perhaps by a concurrent put that just committed): drop
		// our copy of the chunks by rolling back.
		return ref, nil
	}
	if err := tx.Commit(ctx); err != nil {
		return Ref{}, fmt.Errorf("postgres artifact store: commit blob %s: %w", ref.SHA256, withCtx(ctx, err))
	}
	return ref, nil
}

type blobRow struct {
	size   int64
	dataID int64
	chunks int32
}

func (s *PG) lookup(ctx context.Context, sha string) (blobRow, error) {
	if err := ValidateSHA256(sha); err != nil {
		return blobRow{}, err
	}
	var b blobRow
	err := s.pool.QueryRow(ctx, `SELECT size, data_id, chunks FROM artifact_blobs WHERE sha256 = $1`, sha).
		Scan(&b.size, &b.dataID, &b.chunks)
	if errors.Is(err, pgx.ErrNoRows) {
		return blobRow{}, fmt.Errorf("blob %s in postgres: %w", sha, ErrNotFound)
	}
	if err != nil {
		return blobRow{}, fmt.Errorf("postgres artifact store: look up blob %s: %w", sha, withCtx(ctx, err))
	}
	return b, nil
}

// Open implements Store.
func (s *PG) Open(ctx context.Context, sha string) (io.ReadCloser, error) {
	b, err := s.lookup(ctx, sha)
	if err != nil {
		return nil, err
	}
	cr := &chunkReader{ctx: ctx, pool: s.pool, sha: sha, row: b}
	return newVerifyingReader(ctx, cr, nil, sha, b.size), nil
}

// chunkReader fetches a blob's chunks in order, one query per chunk.
type chunkReader struct {
	ctx  context.Context
	pool *pgxpool.Pool
	sha  string
	row  blobRow
	next int32
	buf  []byte
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.next >= c.row.chunks {
			return 0, io.EOF
		}
		var data []byte
		err := c.pool.QueryRow(c.ctx, `SELECT data FROM artifact_blob_chunks WHERE data_id = $1 AND seq = $2`,
			c.row.dataID, c.next).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("%w: blob %s: chunk %d of %d is missing", ErrCorrupt, c.sha, c.next, c.row.chunks)
		}
		if err != nil {
			return 0, fmt.Errorf("chunk %d: %w", c.next, withCtx(c.ctx, err))
		}
		c.next++
		c.buf = data
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// Stat implements Store.
func (s *PG) Stat(ctx context.Context, sha string) (Ref, error) {
	b, err := s.lookup(ctx, sha)
	if err != nil {
		return Ref{}, err
	}
	return Ref{SHA256: sha, Size: b.size}, nil
}

// Has implements Store.
func (s *PG) Has(ctx context.Context, sha string) (bool, error) {
	_, err := s.Stat(ctx, sha)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Verify implements Store.
func (s *PG) Verify(ctx context.Context, sha string) error { return verifyBlob(ctx, s, sha) }

// PutDir implements Store.
func (s *PG) PutDir(ctx context.Context, dir string) (Manifest, error) {
	return StoreDir(ctx, s, dir, DirOptions{})
}

// GetDir implements Store.
func (s *PG) GetDir(ctx context.Context, id, destDir string) (Manifest, error) {
	return FetchDir(ctx, s, id, destDir, DirOptions{})
}

// withCtx makes a failure caused by cancellation match context.Canceled (or
// DeadlineExceeded): pgx reports a cancelled COPY as a network timeout.
func withCtx(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}
