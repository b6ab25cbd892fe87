package artifacts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// ManifestFormat tags a directory manifest so a plain blob is never mistaken for one.
const ManifestFormat = "posttrain.artifact-dir/v1"

// maxManifestBytes bounds how much of a blob LoadManifest will read into memory.
const maxManifestBytes = 64 << 20

// ErrNotManifest is returned (wrapped) when a directory ID names a blob that is not
// a directory manifest.
var ErrNotManifest = errors.New("not a directory manifest")

// FileEntry is one file of a stored directory.
type FileEntry struct {
	// Path is slash-separated and relative to the directory, e.g. "config.json".
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Manifest lists a stored directory's files, sorted by path. Its canonical JSON
// encoding is itself a blob, and that blob's sha256 is the directory's ID.
type Manifest struct {
	// ID is the sha256 of the canonical encoding; it is not part of the encoding.
	ID     string      `json:"-"`
	Format string      `json:"format"`
	Files  []FileEntry `json:"files"`
}

// Size returns the total size of the directory's files in bytes.
func (m Manifest) Size() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// Canonical returns the manifest's canonical encoding (files sorted by path, compact
// JSON), after checking that every entry is well formed.
func (m Manifest) Canonical() ([]byte, error) {
	files := slices.Clone(m.Files)
	slices.SortFunc(files, func(a, b FileEntry) int { return strings.Compare(a.Path, b.Path) })
	if err := validateEntries(files); err != nil {
		return nil, err
	}
	b, err := json.Marshal(Manifest{Format: ManifestFormat, Files: files})
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return b, nil
}

// validateEntries checks sorted entries: safe unique paths, no file that is also a
// directory of another, valid digests, non-negative sizes.
func validateEntries(files []FileEntry) error {
	if len(files) == 0 {
		return errors.New("manifest lists no files")
	}
	for i, f := range files {
		if err := ValidatePath(f.Path); err != nil {
			return fmt.Errorf("manifest file %d: %w", i, err)
		}
		if err := ValidateSHA256(f.SHA256); err != nil {
			return fmt.Errorf("manifest file %q: %w", f.Path, err)
		}
		if f.Size < 0 {
			return fmt.Errorf("manifest file %q: negative size %d", f.Path, f.Size)
		}
		if i > 0 && files[i-1].Path == f.Path {
			return fmt.Errorf("manifest file %q: listed twice", f.Path)
		}
	}
	// A path that is a prefix directory of another ("a" and "a/b") cannot be
	// materialised; sorting puts "a" before "a/b" but "a-x" may sit between them,
	// so check against the set of all paths.
	set := make(map[string]bool, len(files))
	for _, f := range files {
		set[f.Path] = true
	}
	for _, f := range files {
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			if set[d] {
				return fmt.Errorf("manifest file %q: its parent %q is also listed as a file", f.Path, d)
			}
		}
	}
	return nil
}

// ValidatePath returns an error unless p is a clean, relative, slash-separated path
// that stays inside its directory: no "..", no leading "/", no "." or empty
// components, no backslashes or NUL bytes.
func ValidatePath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is absolute", p)
	case strings.ContainsAny(p, "\\\x00"):
		return fmt.Errorf("path %q contains a backslash or NUL byte", p)
	case path.Clean(p) != p || p == ".":
		return fmt.Errorf("path %q is not clean (want %q)", p, path.Clean(p))
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return fmt.Errorf("path %q escapes its directory", p)
		}
	}
	if !filepath.IsLocal(filepath.FromSlash(p)) {
		return fmt.Errorf("path %q is not local", p)
	}
	return nil
}

// ParseManifest decodes a manifest blob and checks that it is canonical, so the ID
// the caller looked it up by really is the sha256 of this exact content.
func ParseManifest(data []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrNotManifest, err)
	}
	if m.Format != ManifestFormat {
		return Manifest{}, fmt.Errorf("%w: format %q, want %q", ErrNotManifest, m.Format, ManifestFormat)
	}
	canon, err := m.Canonical()
	if err != nil {
		return Manifest{}, fmt.Errorf("invalid manifest: %w", err)
	}
	if !bytes.Equal(canon, data) {
		return Manifest{}, errors.New("invalid manifest: not in canonical form")
	}
	m.ID = SumBytes(data)
	return m, nil
}

// LoadManifest reads and verifies the manifest stored under id.
func LoadManifest(ctx context.Context, s Store, id string) (Manifest, error) {
	rc, err := s.Open(ctx, id)
	if err != nil {
		return Manifest{}, fmt.Errorf("load manifest: %w", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes+1))
	if err != nil {
		return Manifest{}, fmt.Errorf("load manifest %s: %w", id, err)
	}
	if len(data) > maxManifestBytes {
		return Manifest{}, fmt.Errorf("load manifest %s: %w: larger than %d bytes", id, ErrNotManifest, maxManifestBytes)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return Manifest{}, fmt.Errorf("load manifest %s: %w", id, err)
	}
	return m, nil
}

// manifestPrefix is how every canonical manifest starts.
const manifestPrefix = `{"format":"` + ManifestFormat + `","files":[`

// IsManifest reports whether the blob sha looks like a directory manifest, reading
// only its first few bytes (so a multi-gigabyte weights blob costs one small read).
// It does not verify the blob; LoadManifest does.
func IsManifest(ctx context.Context, s Store, sha string) (bool, error) {
	rc, err := s.Open(ctx, sha)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	head := make([]byte, len(manifestPrefix))
	n, err := io.ReadFull(rc, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) && !errors.Is(err, ErrCorrupt) {
		return false, fmt.Errorf("sniff blob %s: %w", sha, err)
	}
	return n == len(head) && string(head) == manifestPrefix, nil
}

// DirOptions tunes StoreDir and FetchDir; the zero value is ready to use.
type DirOptions struct {
	// Progress, when set, is called with the number of bytes of file content
	// handled since its last call (for a progress bar).
	Progress func(n int64)
}

func (o DirOptions) progress(n int64) {
	if o.Progress != nil && n > 0 {
		o.Progress(n)
	}
}

// progressWriter forwards byte counts to DirOptions.Progress.
type progressWriter struct{ o DirOptions }

func (p progressWriter) Write(b []byte) (int, error) {
	p.o.progress(int64(len(b)))
	return len(b), nil
}

// ScanDir lists the regular files under dir (following symlinks to regular files)
// as slash-separated relative paths, sorted, with their sizes.
func ScanDir(dir string) ([]FileEntry, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("scan %s: not a directory", dir)
	}
	var files []FileEntry
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			return nil
		}
		info, err := os.Stat(p) // follows symlinks, e.g. a Hugging Face snapshot
		if err != nil {
			return err
		}
		switch {
		case info.Mode().IsRegular():
		case info.IsDir():
			return fmt.Errorf("%s: symlink to a directory is not supported; copy it in", p)
		default:
			return fmt.Errorf("%s: not a regular file (%s)", p, info.Mode().Type())
		}
		if err := ValidatePath(rel); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		files = append(files, FileEntry{Path: rel, Size: info.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("scan %s: directory holds no files", dir)
	}
	slices.SortFunc(files, func(a, b FileEntry) int { return strings.Compare(a.Path, b.Path) })
	return files, nil
}

// StoreDir stores every regular file under dir as a blob, then the manifest, and
// returns the manifest with its ID. A file whose content is already stored is
// hashed but not sent again, so re-storing a large unchanged model is cheap.
func StoreDir(ctx context.Context, s Store, dir string, o DirOptions) (Manifest, error) {
	files, err := ScanDir(dir)
	if err != nil {
		return Manifest{}, err
	}
	for i := range files {
		full := filepath.Join(dir, filepath.FromSlash(files[i].Path))
		ref, err := storeFile(ctx, s, full, o)
		if err != nil {
			return Manifest{}, err
		}
		files[i].SHA256, files[i].Size = ref.SHA256, ref.Size
	}
	m := Manifest{Format: ManifestFormat, Files: files}
	canon, err := m.Canonical()
	if err != nil {
		return Manifest{}, fmt.Errorf("store %s: %w", dir, err)
	}
	ref, err := s.Put(ctx, bytes.NewReader(canon))
	if err != nil {
		return Manifest{}, fmt.Errorf("store %s: manifest: %w", dir, err)
	}
	m.ID = ref.SHA256
	return m, nil
}

// storeFile hashes one file, and puts it only when the store lacks its content.
func storeFile(ctx context.Context, s Store, full string, o DirOptions) (Ref, error) {
	pre, err := hashFile(ctx, full)
	if err != nil {
		return Ref{}, err
	}
	has, err := s.Has(ctx, pre.SHA256)
	if err != nil {
		return Ref{}, fmt.Errorf("store %s: %w", full, err)
	}
	if has {
		o.progress(pre.Size)
		return pre, nil
	}
	f, err := os.Open(full)
	if err != nil {
		return Ref{}, fmt.Errorf("store %s: %w", full, err)
	}
	defer f.Close()
	ref, err := s.Put(ctx, io.TeeReader(f, progressWriter{o}))
	if err != nil {
		return Ref{}, fmt.Errorf("store %s: %w", full, err)
	}
	if ref != pre {
		return Ref{}, fmt.Errorf("store %s: file changed while being stored (sha256 %s then %s)", full, pre.SHA256, ref.SHA256)
	}
	return ref, nil
}

func hashFile(ctx context.Context, full string) (Ref, error) {
	f, err := os.Open(full)
	if err != nil {
		return Ref{}, fmt.Errorf("hash %s: %w", full, err)
	}
	defer f.Close()
	hr := newHashingReader(ctxReader{ctx: ctx, r: f})
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return Ref{}, fmt.Errorf("hash %s: %w", full, err)
	}
	return hr.ref(), nil
}

// FetchDir materialises the directory stored under id at destDir. Files are written
// into a hidden sibling directory, verified against the manifest (content hash and
// size), fsynced, and the directory is renamed into place only when all are good, so
// destDir either holds the complete, verified directory or is left untouched.
// destDir must not exist or be an empty directory.
func FetchDir(ctx context.Context, s Store, id, destDir string, o DirOptions) (m Manifest, err error) {
	m, err = LoadManifest(ctx, s, id)
	if err != nil {
		return Manifest{}, err
	}
	dest, err := filepath.Abs(destDir)
	if err != nil {
		return Manifest{}, fmt.Errorf("materialise %s: %w", destDir, err)
	}
	if err := checkDestFree(dest); err != nil {
		return Manifest{}, err
	}
	parent := filepath.Dir(dest)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return Manifest{}, fmt.Errorf("materialise %s: %w", dest, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dest)+".partial-")
	if err != nil {
		return Manifest{}, fmt.Errorf("materialise %s: %w", dest, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := writeFiles(ctx, s, m, tmp, o); err != nil {
		return Manifest{}, fmt.Errorf("materialise %s into %s: %w", id, dest, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Manifest{}, fmt.Errorf("materialise %s: %w", dest, err)
	}
	// os.Rename never replaces a directory, so an empty destination is removed first
	// (os.Remove fails, harmlessly for us, if something appeared in it meanwhile).
	if err := os.Remove(dest); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("materialise %s: %w", dest, err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return Manifest{}, fmt.Errorf("materialise %s: move into place: %w", dest, err)
	}
	if err := syncPath(parent); err != nil {
		return m, fmt.Errorf("materialise %s: %w", dest, err)
	}
	return m, nil
}

// checkDestFree accepts a missing path or an empty directory.
func checkDestFree(dest string) error {
	fi, err := os.Lstat(dest)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("materialise %s: %w", dest, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("materialise %s: %w: it is a file", dest, fs.ErrExist)
	}
	entries, err := os.ReadDir(dest)
	if err != nil {
		return fmt.Errorf("materialise %s: %w", dest, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("materialise %s: %w: directory is not empty", dest, fs.ErrExist)
	}
	return nil
}

// writeFiles writes and verifies every manifest file under dir through an os.Root,
// which refuses any path (or symlink) leading outside dir.
func writeFiles(ctx context.Context, s Store, m Manifest, dir string, o DirOptions) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	dirs := map[string]bool{".": true}
	for _, e := range m.Files {
		if err := ValidatePath(e.Path); err != nil {
			return err
		}
		d := path.Dir(e.Path)
		if !dirs[d] {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("%s: %w", e.Path, err)
			}
			for x := d; x != "."; x = path.Dir(x) {
				dirs[x] = true
			}
		}
		if err := writeFile(ctx, s, root, e, o); err != nil {
			return err
		}
	}
	for d := range dirs {
		if err := syncDir(root, d); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(ctx context.Context, s Store, root *os.Root, e FileEntry, o DirOptions) error {
	rc, err := s.Open(ctx, e.SHA256)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	defer rc.Close()
	f, err := root.OpenFile(e.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	defer f.Close()
	n, err := io.Copy(f, io.TeeReader(rc, progressWriter{o}))
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	if n != e.Size {
		return fmt.Errorf("%s: %w: blob %s has %d bytes, manifest says %d", e.Path, ErrCorrupt, e.SHA256, n, e.Size)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: fsync: %w", e.Path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", e.Path, err)
	}
	return nil
}

func syncPath(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// VerifyDir checks the manifest stored under id and every file it lists: each blob
// must be present, have the listed size, and hash to its key. It reports every
// bad file, not only the first.
func VerifyDir(ctx context.Context, s Store, id string) (Manifest, error) {
	m, err := LoadManifest(ctx, s, id)
	if err != nil {
		return Manifest{}, err
	}
	var errs []error
	for _, e := range m.Files {
		if err := ctx.Err(); err != nil {
			return m, err
		}
		ref, err := s.Stat(ctx, e.SHA256)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Path, err))
			continue
		}
		if ref.Size != e.Size {
			errs = append(errs, fmt.Errorf("%s: %w: blob %s has %d bytes, manifest says %d", e.Path, ErrCorrupt, e.SHA256, ref.Size, e.Size))
			continue
		}
		if err := s.Verify(ctx, e.SHA256); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Path, err))
		}
	}
	if len(errs) > 0 {
		return m, fmt.Errorf("directory %s: %w", id, errors.Join(errs...))
	}
	return m, nil
}
