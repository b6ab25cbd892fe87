package artifacts

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"
)

// FS is the filesystem backend: blobs live at root/blobs/sha256/ab/abcdef... (two hex
// digits of fan-out keep directories small), are written to root/tmp first, fsynced
// and renamed into place, and are read-only once stored. Every access goes through
// an os.Root, so neither a key nor a symlink planted in the tree can reach a file
// outside root.
type FS struct {
	root string
}

const (
	fsBlobDir = "blobs/sha256"
	fsTmpDir  = "tmp"
)

// NewFS opens (creating when missing) a filesystem store at root.
func NewFS(root string) (*FS, error) {
	if root == "" {
		return nil, errors.New("artifacts.root: empty path for the filesystem artifact store")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("artifact store %s: %w", root, err)
	}
	for _, d := range []string{fsBlobDir, fsTmpDir} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return nil, fmt.Errorf("create artifact store %s: %w", abs, err)
		}
	}
	return &FS{root: abs}, nil
}

// Root returns the store's absolute root directory.
func (s *FS) Root() string { return s.root }

// Backend implements Store.
func (s *FS) Backend() string { return BackendFS }

// blobPath returns the slash path of a blob relative to the root; sha must be valid.
func blobPath(sha string) string { return path.Join(fsBlobDir, sha[:2], sha) }

// openRoot opens the store root for one operation; Root keeps lookups inside it.
func (s *FS) openRoot() (*os.Root, error) {
	r, err := os.OpenRoot(s.root)
	if err != nil {
		return nil, fmt.Errorf("open artifact store %s: %w", s.root, err)
	}
	return r, nil
}

// Put implements Store.
func (s *FS) Put(ctx context.Context, r io.Reader) (ref Ref, err error) {
	root, err := s.openRoot()
	if err != nil {
		return Ref{}, err
	}
	defer root.Close()
	tmp, tmpRel, err := createTemp(root, fsTmpDir, "put-")
	if err != nil {
		return Ref{}, fmt.Errorf("artifact store %s: %w", s.root, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			root.Remove(tmpRel)
		}
	}()
	hr := newHashingReader(ctxReader{ctx: ctx, r: r})
	if _, err := io.Copy(tmp, hr); err != nil {
		return Ref{}, fmt.Errorf("artifact store %s: write blob: %w", s.root, err)
	}
	if err := tmp.Chmod(0o444); err != nil {
		return Ref{}, fmt.Errorf("artifact store %s: %w", s.root, err)
	}
	if err := tmp.Sync(); err != nil {
		return Ref{}, fmt.Errorf("artifact store %s: fsync blob: %w", s.root, err)
	}
	if err := tmp.Close(); err != nil {
		return Ref{}, fmt.Errorf("artifact store %s: close blob: %w", s.root, err)
	}
	ref = hr.ref()
	dst := blobPath(ref.SHA256)
	shard := path.Dir(dst)
	if err := root.MkdirAll(shard, 0o755); err != nil {
		return Ref{}, fmt.Errorf("artifact store %s: %w", s.root, err)
	}
	// Renaming over an existing blob is deliberate: identical content makes it a
	// no-op for readers, and it heals a copy that was damaged on disk.
	if err := root.Rename(tmpRel, dst); err != nil {
		return Ref{}, fmt.Errorf("artifact store %s: store blob %s: %w", s.root, ref.SHA256, err)
	}
	committed = true
	if err := syncDir(root, shard); err != nil {
		return Ref{}, err
	}
	if err := syncDir(root, fsBlobDir); err != nil {
		return Ref{}, err
	}
	return ref, nil
}

// createTemp creates a new file with a random name in dir, inside root.
func createTemp(root *os.Root, dir, prefix string) (*os.File, string, error) {
	for range 10 {
		name := path.Join(dir, prefix+rand.Text())
		f, err := root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("create temp file in %s: %w", dir, err)
		}
		return f, name, nil
	}
	return nil, "", fmt.Errorf("create temp file in %s: no free name after 10 tries", dir)
}

// syncDir fsyncs a directory so a rename into it survives a crash.
func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// Open implements Store.
func (s *FS) Open(ctx context.Context, sha string) (io.ReadCloser, error) {
	if err := ValidateSHA256(sha); err != nil {
		return nil, err
	}
	root, err := s.openRoot()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(blobPath(sha))
	if err != nil {
		return nil, s.wrapErr(sha, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("artifact store %s: stat blob %s: %w", s.root, sha, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: blob %s in %s is not a regular file (%s)", ErrCorrupt, sha, s.root, fi.Mode().Type())
	}
	// The file system keeps no size independent of the file itself, so the hash
	// alone catches truncation here.
	return newVerifyingReader(ctx, f, f, sha, -1), nil
}

func (s *FS) wrapErr(sha string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob %s in %s: %w", sha, s.root, ErrNotFound)
	}
	return fmt.Errorf("artifact store %s: blob %s: %w", s.root, sha, err)
}

// Stat implements Store.
func (s *FS) Stat(ctx context.Context, sha string) (Ref, error) {
	if err := ValidateSHA256(sha); err != nil {
		return Ref{}, err
	}
	if err := ctx.Err(); err != nil {
		return Ref{}, err
	}
	root, err := s.openRoot()
	if err != nil {
		return Ref{}, err
	}
	defer root.Close()
	fi, err := root.Stat(blobPath(sha))
	if err != nil {
		return Ref{}, s.wrapErr(sha, err)
	}
	if !fi.Mode().IsRegular() {
		return Ref{}, fmt.Errorf("%w: blob %s in %s is not a regular file", ErrCorrupt, sha, s.root)
	}
	return Ref{SHA256: sha, Size: fi.Size()}, nil
}

// Has implements Store.
func (s *FS) Has(ctx context.Context, sha string) (bool, error) {
	_, err := s.Stat(ctx, sha)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Verify implements Store.
func (s *FS) Verify(ctx context.Context, sha string) error { return verifyBlob(ctx, s, sha) }

// PutDir implements Store.
func (s *FS) PutDir(ctx context.Context, dir string) (Manifest, error) {
	return StoreDir(ctx, s, dir, DirOptions{})
}

// GetDir implements Store.
func (s *FS) GetDir(ctx context.Context, id, destDir string) (Manifest, error) {
	return FetchDir(ctx, s, id, destDir, DirOptions{})
}

// CleanTemp removes temporary files that puts interrupted by a crash left in
// root/tmp, when they are older than olderThan (so puts still running in other
// processes keep theirs). It returns how many it removed.
func (s *FS) CleanTemp(ctx context.Context, olderThan time.Duration) (int, error) {
	root, err := s.openRoot()
	if err != nil {
		return 0, err
	}
	defer root.Close()
	dir, err := root.Open(fsTmpDir)
	if err != nil {
		return 0, fmt.Errorf("artifact store %s: %w", s.root, err)
	}
	entries, err := dir.ReadDir(-1)
	dir.Close()
	if err != nil {
		return 0, fmt.Errorf("artifact store %s: list temp files: %w", s.root, err)
	}
	cutoff := time.Now().Add(-olderThan)
	n := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			continue // vanished meanwhile, or still fresh
		}
		if err := root.Remove(path.Join(fsTmpDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, fmt.Errorf("artifact store %s: %w", s.root, err)
		}
		n++
	}
	return n, nil
}
