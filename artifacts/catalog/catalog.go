// Package catalog joins what the datastore records about artifacts (kind, run,
// lineage) with their content in the artifact store: it resolves an artifact ID, or
// a bare content sha256, to its bytes, and records, shows, fetches and verifies
// artifacts. `posttrain artifacts` is a thin layer over it.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/datastore"
)

// Catalog resolves artifacts against one datastore and the stores their URIs name.
type Catalog struct {
	db   *datastore.Store
	pool *pgxpool.Pool
	opts artifacts.Options

	mu     sync.Mutex
	stores map[string]artifacts.Store
}

// New returns a catalog. db and pool may be nil, in which case only content
// digests (not artifact IDs) can be resolved and only the fs backend is available.
// opts.Backend is the default backend (for new artifacts and for bare digests) and
// opts.Root the fs backend's directory.
func New(db *datastore.Store, pool *pgxpool.Pool, opts artifacts.Options) *Catalog {
	if opts.Backend == "" {
		opts.Backend = artifacts.BackendFS
	}
	return &Catalog{db: db, pool: pool, opts: opts, stores: map[string]artifacts.Store{}}
}

// Progress receives the total size of a transfer before it starts and byte counts
// as it goes; either func may be nil.
type Progress struct {
	Start func(total int64)
	Add   func(n int64)
}

func (p Progress) start(total int64) {
	if p.Start != nil {
		p.Start(total)
	}
}

func (p Progress) dirOptions() artifacts.DirOptions { return artifacts.DirOptions{Progress: p.Add} }

// Store returns the store of a backend ("" = the default), opening it on first use.
// An fs store that does not exist yet is created only when create is set, so a
// read against a mistyped root fails instead of reporting an empty store.
func (c *Catalog) Store(backend string, create bool) (artifacts.Store, error) {
	if backend == "" {
		backend = c.opts.Backend
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.stores[backend]; ok {
		return s, nil
	}
	opts := c.opts
	opts.Backend = backend
	opts.Pool = c.pool
	if backend == artifacts.BackendFS && !create {
		if opts.Root == "" {
			return nil, errors.New("artifacts.root: no directory configured for the fs artifact store")
		}
		if _, err := os.Stat(filepath.Join(opts.Root, "blobs")); err != nil {
			return nil, fmt.Errorf("artifact store %s: %w (check artifacts.root or --artifact-root)", opts.Root, err)
		}
	}
	s, err := artifacts.New(opts)
	if err != nil {
		return nil, err
	}
	c.stores[backend] = s
	return s, nil
}

// Entry is a resolved artifact: its row (when recorded) and where its content is.
type Entry struct {
	// Artifact is the datastore row; only SHA256 is set for a bare content digest.
	Artifact datastore.Artifact `json:"artifact"`
	// Recorded is false when the entry was addressed by content digest alone.
	Recorded bool   `json:"recorded"`
	Backend  string `json:"backend"`
	SHA256   string `json:"sha256"`
}

// Resolve finds an artifact by ID, or treats a 64-hex-digit argument that is no
// recorded ID as a content digest in the default store.
func (c *Catalog) Resolve(ctx context.Context, id string) (Entry, error) {
	if c.db != nil {
		a, err := c.db.GetArtifact(ctx, id)
		if err == nil {
			return c.entryOf(a)
		}
		if !errors.Is(err, datastore.ErrNotFound) {
			return Entry{}, explain(err)
		}
	}
	if artifacts.ValidateSHA256(id) == nil {
		return Entry{Artifact: datastore.Artifact{SHA256: id}, Backend: c.opts.Backend, SHA256: id}, nil
	}
	if c.db == nil {
		return Entry{}, fmt.Errorf("artifact %s: no database configured to look up artifact IDs (set --database-url or POSTTRAIN_DATABASE_URL), or give a content sha256", id)
	}
	return Entry{}, fmt.Errorf("artifact %s: %w", id, datastore.ErrNotFound)
}

// entryOf reads an artifact row's URI ("<backend>:<sha256>"); an empty URI means
// the default store.
func (c *Catalog) entryOf(a datastore.Artifact) (Entry, error) {
	e := Entry{Artifact: a, Recorded: true, Backend: c.opts.Backend, SHA256: a.SHA256}
	if a.URI == "" {
		return e, nil
	}
	backend, sha, err := artifacts.ParseURI(a.URI)
	if err != nil {
		return Entry{}, fmt.Errorf("artifact %s: %w", a.ID, err)
	}
	if sha != a.SHA256 {
		return Entry{}, fmt.Errorf("artifact %s: uri %s names content %s but the row records sha256 %s", a.ID, a.URI, sha, a.SHA256)
	}
	e.Backend = backend
	return e, nil
}

// explain turns a missing-table error into advice to migrate.
func explain(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" {
		return fmt.Errorf("%w (the database has no posttrain schema yet: run `posttrain migrate`)", err)
	}
	return err
}

// List returns the recorded artifacts matching f.
func (c *Catalog) List(ctx context.Context, f datastore.ArtifactFilter) ([]datastore.Artifact, error) {
	if c.db == nil {
		return nil, errors.New("list artifacts: no database configured (set --database-url or POSTTRAIN_DATABASE_URL)")
	}
	as, err := c.db.ListArtifacts(ctx, f)
	return as, explain(err)
}

// Details is everything `artifacts show` prints about one artifact.
type Details struct {
	Entry
	// Parents and Children are the direct lineage edges, each with its role.
	Parents  []datastore.LineageEdge `json:"parents"`
	Children []datastore.LineageEdge `json:"children"`
	// Ancestry is every edge above the artifact (parents, their parents, ...).
	Ancestry []datastore.LineageEdge `json:"ancestry"`
	// Directory is set when the content is a directory manifest; Files lists it.
	Directory bool                  `json:"directory"`
	Files     []artifacts.FileEntry `json:"files,omitempty"`
	// StoreError says why the content could not be inspected (the row is still shown).
	StoreError string `json:"store_error,omitempty"`
}

// Show resolves id and gathers its lineage and, when the content is reachable, its
// file list.
func (c *Catalog) Show(ctx context.Context, id string) (Details, error) {
	e, err := c.Resolve(ctx, id)
	if err != nil {
		return Details{}, err
	}
	d := Details{Entry: e, Parents: []datastore.LineageEdge{}, Children: []datastore.LineageEdge{}, Ancestry: []datastore.LineageEdge{}}
	if e.Recorded {
		up, err := c.db.Lineage(ctx, e.Artifact.ID)
		if err != nil {
			return Details{}, err
		}
		down, err := c.db.Descendants(ctx, e.Artifact.ID)
		if err != nil {
			return Details{}, err
		}
		d.Ancestry = up
		for _, edge := range up {
			if edge.Depth == 1 {
				d.Parents = append(d.Parents, edge)
			}
		}
		for _, edge := range down {
			if edge.Depth == 1 {
				d.Children = append(d.Children, edge)
			}
		}
	}
	s, err := c.Store(e.Backend, false)
	if err != nil {
		d.StoreError = err.Error()
		return d, nil
	}
	isDir, err := artifacts.IsManifest(ctx, s, e.SHA256)
	if err != nil {
		d.StoreError = err.Error()
		return d, nil
	}
	if isDir {
		m, err := artifacts.LoadManifest(ctx, s, e.SHA256)
		if err != nil {
			d.StoreError = err.Error()
			return d, nil
		}
		d.Directory, d.Files = true, m.Files
	}
	return d, nil
}

// GetResult says what Get wrote.
type GetResult struct {
	ID        string `json:"id"`
	SHA256    string `json:"sha256"`
	Path      string `json:"path"`
	Directory bool   `json:"directory"`
	Files     int    `json:"files"`
	Bytes     int64  `json:"bytes"`
}

// Get writes an artifact's content to out: a directory artifact becomes the
// directory out (which must not exist or be empty), a single-blob artifact the file
// out (which must not exist). Everything is verified and lands atomically.
func (c *Catalog) Get(ctx context.Context, id, out string, p Progress) (GetResult, error) {
	e, err := c.Resolve(ctx, id)
	if err != nil {
		return GetResult{}, err
	}
	s, err := c.Store(e.Backend, false)
	if err != nil {
		return GetResult{}, err
	}
	res := GetResult{ID: e.Artifact.ID, SHA256: e.SHA256, Path: out}
	isDir, err := artifacts.IsManifest(ctx, s, e.SHA256)
	if err != nil {
		return GetResult{}, fmt.Errorf("get %s: %w", id, err)
	}
	if isDir {
		m, err := artifacts.LoadManifest(ctx, s, e.SHA256)
		if err != nil {
			return GetResult{}, fmt.Errorf("get %s: %w", id, err)
		}
		p.start(m.Size())
		if _, err := artifacts.FetchDir(ctx, s, e.SHA256, out, p.dirOptions()); err != nil {
			return GetResult{}, fmt.Errorf("get %s: %w", id, err)
		}
		res.Directory, res.Files, res.Bytes = true, len(m.Files), m.Size()
		return res, nil
	}
	ref, err := s.Stat(ctx, e.SHA256)
	if err != nil {
		return GetResult{}, fmt.Errorf("get %s: %w", id, err)
	}
	p.start(ref.Size)
	if err := writeBlobFile(ctx, s, e.SHA256, out, p); err != nil {
		return GetResult{}, fmt.Errorf("get %s: %w", id, err)
	}
	res.Files, res.Bytes = 1, ref.Size
	return res, nil
}

// writeBlobFile copies a verified blob to a new file via a temp file and rename.
func writeBlobFile(ctx context.Context, s artifacts.Store, sha, out string, p Progress) (err error) {
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("write %s: %w", out, fs.ErrExist)
	}
	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rc, err := s.Open(ctx, sha)
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(out)+".partial-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	var w io.Writer = tmp
	if p.Add != nil {
		w = io.MultiWriter(tmp, addWriter(p.Add))
	}
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// Link (not rename) so a file that appeared at out meanwhile is never replaced;
	// file systems without hard links fall back to a rename.
	if err := os.Link(tmp.Name(), out); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("write %s: %w", out, err)
		}
		if err := os.Rename(tmp.Name(), out); err != nil {
			return fmt.Errorf("write %s: %w", out, err)
		}
		return nil
	}
	return os.Remove(tmp.Name())
}

type addWriter func(int64)

func (a addWriter) Write(b []byte) (int, error) { a(int64(len(b))); return len(b), nil }

// Verify statuses.
const (
	StatusOK      = "ok"
	StatusCorrupt = "corrupt"
	StatusMissing = "missing"
	StatusError   = "error"
)

// VerifyResult is the outcome for one artifact.
type VerifyResult struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	SHA256    string `json:"sha256"`
	Backend   string `json:"backend"`
	Directory bool   `json:"directory"`
	Files     int    `json:"files"`
	Status    string `json:"status"`
	Detail    string `json:"detail,omitempty"`
}

// OK reports whether the artifact verified.
func (r VerifyResult) OK() bool { return r.Status == StatusOK }

// Verify checks the content of the given artifacts (every recorded one when ids is
// empty): each blob must be present and hash to its key, and a directory's every
// file must match its manifest. A bad artifact is a result, not an error; the error
// is for failures to run the check at all (no database, unknown ID). after, when
// set, is called once per artifact as it finishes.
func (c *Catalog) Verify(ctx context.Context, ids []string, after func(VerifyResult)) ([]VerifyResult, error) {
	var entries []Entry
	if len(ids) == 0 {
		all, err := c.List(ctx, datastore.ArtifactFilter{})
		if err != nil {
			return nil, err
		}
		for _, a := range all {
			e, err := c.entryOf(a)
			if err != nil {
				return nil, err
			}
			entries = append(entries, e)
		}
	}
	for _, id := range ids {
		e, err := c.Resolve(ctx, id)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	results := make([]VerifyResult, 0, len(entries))
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		r := c.verifyOne(ctx, e)
		if after != nil {
			after(r)
		}
		results = append(results, r)
	}
	return results, nil
}

func (c *Catalog) verifyOne(ctx context.Context, e Entry) VerifyResult {
	r := VerifyResult{ID: e.Artifact.ID, Kind: e.Artifact.Kind, SHA256: e.SHA256, Backend: e.Backend, Files: 1}
	fail := func(err error) VerifyResult {
		switch {
		case errors.Is(err, artifacts.ErrCorrupt):
			r.Status = StatusCorrupt
		case errors.Is(err, artifacts.ErrNotFound):
			r.Status = StatusMissing
		default:
			r.Status = StatusError
		}
		r.Detail = err.Error()
		return r
	}
	s, err := c.Store(e.Backend, false)
	if err != nil {
		return fail(err)
	}
	isDir, err := artifacts.IsManifest(ctx, s, e.SHA256)
	if err != nil {
		return fail(err)
	}
	if isDir {
		r.Directory = true
		m, err := artifacts.VerifyDir(ctx, s, e.SHA256)
		r.Files = len(m.Files)
		if err != nil {
			return fail(err)
		}
	} else if err := s.Verify(ctx, e.SHA256); err != nil {
		return fail(err)
	}
	r.Status = StatusOK
	return r
}

// PutRequest describes a file or directory to store and record.
type PutRequest struct {
	// Path is a file (stored as one blob) or a directory (stored with a manifest).
	Path string
	// Artifact carries the row's kind, metadata, run and round; ID, URI, SHA256 and
	// Size are filled in.
	Artifact datastore.Artifact
	// Backend is where the content goes; "" means the default.
	Backend string
}

// Put stores the content at req.Path and records it as an artifact. Storing and
// recording the same content again returns the existing row.
func (c *Catalog) Put(ctx context.Context, req PutRequest, p Progress) (datastore.Artifact, error) {
	if c.db == nil {
		return datastore.Artifact{}, errors.New("put artifact: no database configured (set --database-url or POSTTRAIN_DATABASE_URL)")
	}
	fi, err := os.Stat(req.Path)
	if err != nil {
		return datastore.Artifact{}, fmt.Errorf("put artifact: %w", err)
	}
	s, err := c.Store(req.Backend, true)
	if err != nil {
		return datastore.Artifact{}, err
	}
	a := req.Artifact
	if a.Metadata == nil {
		a.Metadata = map[string]any{}
	}
	if fi.IsDir() {
		files, err := artifacts.ScanDir(req.Path)
		if err != nil {
			return datastore.Artifact{}, fmt.Errorf("put artifact: %w", err)
		}
		var total int64
		for _, f := range files {
			total += f.Size
		}
		p.start(total)
		m, err := artifacts.StoreDir(ctx, s, req.Path, p.dirOptions())
		if err != nil {
			return datastore.Artifact{}, fmt.Errorf("put artifact: %w", err)
		}
		a.SHA256, a.Size = m.ID, m.Size()
		a.Metadata["files"] = len(m.Files)
	} else {
		f, err := os.Open(req.Path)
		if err != nil {
			return datastore.Artifact{}, fmt.Errorf("put artifact: %w", err)
		}
		defer f.Close()
		p.start(fi.Size())
		var r io.Reader = f
		if p.Add != nil {
			r = io.TeeReader(f, addWriter(p.Add))
		}
		ref, err := s.Put(ctx, r)
		if err != nil {
			return datastore.Artifact{}, fmt.Errorf("put artifact %s: %w", req.Path, err)
		}
		a.SHA256, a.Size = ref.SHA256, ref.Size
	}
	if _, ok := a.Metadata["source"]; !ok {
		if abs, err := filepath.Abs(req.Path); err == nil {
			a.Metadata["source"] = abs
		}
	}
	a.URI = artifacts.URI(s.Backend(), a.SHA256)
	rec, err := c.db.RecordArtifact(ctx, a)
	if err != nil {
		return datastore.Artifact{}, explain(err)
	}
	return rec, nil
}
