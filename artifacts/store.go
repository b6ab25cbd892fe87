// Package artifacts is posttrain's content-addressed blob store: every dataset,
// checkpoint and model directory is stored under the sha256 of its bytes, written
// atomically and verified on every read. Two backends sit behind one Store interface:
// a filesystem directory (local disk or a shared mount; the default) and PostgreSQL
// itself (blobs split into bytea chunks), so workers on several machines can share
// artifacts without a shared filesystem. A model is a whole directory, stored as one
// blob per file plus a canonical JSON manifest whose sha256 is the directory's ID.
//
// The package knows nothing of Temporal, the training engine or the artifact
// metadata tables (kind, lineage); those live in datastore/.
package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound is returned (wrapped) when a blob or manifest is not in the store.
var ErrNotFound = errors.New("artifact not found")

// ErrCorrupt is returned (wrapped) when stored bytes do not hash to their key or do
// not have their recorded size: the blob was damaged or truncated after it was written.
var ErrCorrupt = errors.New("artifact corrupt")

// Ref names one stored blob: the lowercase hex sha256 of its content and its size.
type Ref struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Store is a content-addressed blob store. Implementations are safe for concurrent
// use by many goroutines and processes: writes are idempotent (the same bytes put
// twice are stored once) and atomic (a reader never sees a partial blob).
type Store interface {
	// Put streams r into the store and returns the content's Ref.
	Put(ctx context.Context, r io.Reader) (Ref, error)
	// Open returns a reader of the blob's bytes. The reader verifies the content
	// against sha as it goes and returns an error wrapping ErrCorrupt at EOF if it
	// does not match, so callers must read to EOF (io.Copy does) before trusting
	// what they read. ctx bounds the whole read, not only the call to Open.
	Open(ctx context.Context, sha string) (io.ReadCloser, error)
	// Stat returns the blob's Ref without reading its content.
	Stat(ctx context.Context, sha string) (Ref, error)
	// Has reports whether the blob is stored.
	Has(ctx context.Context, sha string) (bool, error)
	// Verify reads the whole blob and returns an error wrapping ErrCorrupt when it
	// does not hash to sha, or ErrNotFound when it is absent.
	Verify(ctx context.Context, sha string) error
	// PutDir stores every regular file under dir plus a manifest; the returned
	// Manifest's ID names the directory.
	PutDir(ctx context.Context, dir string) (Manifest, error)
	// GetDir materialises the directory stored under id at destDir, atomically (a
	// temporary sibling directory renamed into place), verifying every file.
	// destDir must not exist or be an empty directory.
	GetDir(ctx context.Context, id, destDir string) (Manifest, error)
	// Backend names the backend ("fs" or "postgres") for logs and errors.
	Backend() string
}

// Backend names accepted by New.
const (
	BackendFS       = "fs"
	BackendPostgres = "postgres"
)

// Options selects and configures a backend for New.
type Options struct {
	// Backend is BackendFS (the default when empty) or BackendPostgres.
	Backend string
	// Root is the filesystem backend's directory; it is created when missing.
	Root string
	// Pool is the PostgreSQL backend's connection pool (its tables come from
	// migrations/0010_artifact_blobs.sql).
	Pool *pgxpool.Pool
	// ChunkSize is the PostgreSQL backend's chunk size in bytes (0 = DefaultChunkSize).
	ChunkSize int
}

// New opens the store described by opts.
func New(opts Options) (Store, error) {
	switch strings.ToLower(opts.Backend) {
	case "", BackendFS, "filesystem", "file":
		return NewFS(opts.Root)
	case BackendPostgres, "postgresql", "pg":
		return NewPG(opts.Pool, opts.ChunkSize)
	default:
		return nil, fmt.Errorf("artifacts.backend %q: unknown backend (want %q or %q)", opts.Backend, BackendFS, BackendPostgres)
	}
}

// ValidateSHA256 returns an error unless s is 64 lowercase hex digits. Keys are
// validated before they touch a path or a query, which is what keeps a key from
// naming anything outside the store.
func ValidateSHA256(s string) error {
	if len(s) != sha256.Size*2 {
		return fmt.Errorf("invalid sha256 %q: want 64 lowercase hex digits, got %d characters", s, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("invalid sha256 %q: character %d (%q) is not lowercase hex", s, i, c)
		}
	}
	return nil
}

// SumBytes returns the lowercase hex sha256 of b.
func SumBytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// verifyingReader hashes what passes through it and checks the digest (and the size,
// when known) at EOF. Errors are sticky so a caller that keeps reading keeps failing.
type verifyingReader struct {
	ctx    context.Context
	r      io.Reader
	closer io.Closer
	want   string
	size   int64 // expected size; -1 when the backend has no independent record
	h      hash.Hash
	n      int64
	err    error
}

func newVerifyingReader(ctx context.Context, r io.Reader, closer io.Closer, sha string, size int64) *verifyingReader {
	return &verifyingReader{ctx: ctx, r: r, closer: closer, want: sha, size: size, h: sha256.New()}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if err := v.ctx.Err(); err != nil {
		v.err = fmt.Errorf("read blob %s: %w", v.want, err)
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		v.err = fmt.Errorf("%w: blob %s is longer than its recorded %d bytes", ErrCorrupt, v.want, v.size)
		return n, v.err
	}
	switch {
	case err == io.EOF:
		if v.size >= 0 && v.n != v.size {
			v.err = fmt.Errorf("%w: blob %s is truncated: %d of %d bytes", ErrCorrupt, v.want, v.n, v.size)
			return n, v.err
		}
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			v.err = fmt.Errorf("%w: blob %s: its %d stored bytes hash to %s", ErrCorrupt, v.want, v.n, got)
			return n, v.err
		}
		v.err = io.EOF
		return n, io.EOF
	case err != nil:
		v.err = fmt.Errorf("read blob %s: %w", v.want, err)
		return n, v.err
	}
	return n, nil
}

func (v *verifyingReader) Close() error {
	if v.closer == nil {
		return nil
	}
	return v.closer.Close()
}

// verifyBlob reads a blob through Open to EOF; shared by both backends' Verify.
func verifyBlob(ctx context.Context, s Store, sha string) error {
	rc, err := s.Open(ctx, sha)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return nil
}

// hashingReader passes bytes through while hashing and counting them.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func newHashingReader(r io.Reader) *hashingReader { return &hashingReader{r: r, h: sha256.New()} }

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func (h *hashingReader) ref() Ref { return Ref{SHA256: hex.EncodeToString(h.h.Sum(nil)), Size: h.n} }

// ctxReader fails reads once ctx is done, so a long Put stops promptly.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
