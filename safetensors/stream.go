package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// TensorSpec names a tensor and its shape, for the header a StreamWriter writes first.
type TensorSpec struct {
	Name  string // the tensor's name in the header
	Shape []int  // its dimensions (empty for a scalar)
}

// StreamWriter writes an F32 safetensors file whose tensors arrive one at a time, so a
// caller that computes tensors in turn (a model average) never holds more than one. The
// header is written first from the names and shapes; WriteTensor then appends each
// tensor's data in header order. Everything goes to a temporary file in the target's
// directory that Commit fsyncs and renames over the path, so a failed or abandoned write
// never leaves a partial file at the path. A StreamWriter is not safe for concurrent use.
type StreamWriter struct {
	path  string
	f     *os.File
	bw    *bufio.Writer
	specs []TensorSpec
	next  int
	buf   []byte
	err   error // the first failure; every later call returns it
	done  bool
}

// streamChunk is how many elements WriteTensor encodes per buffered write.
const streamChunk = 1 << 14

// CreateStream checks the specs, opens a temporary file next to path and writes the
// header. Call WriteTensor for every spec in order, then Commit (or Abort to give up).
func CreateStream(path string, specs []TensorSpec, metadata map[string]string) (*StreamWriter, error) {
	hdr, err := specHeader(specs, metadata)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	w := &StreamWriter{path: path, f: f, bw: bufio.NewWriterSize(f, 1<<18), specs: specs, buf: make([]byte, 4*streamChunk)}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hdr)))
	if _, err := w.bw.Write(lenBuf[:]); err != nil {
		return nil, w.fail(fmt.Errorf("write %s: header: %w", path, err))
	}
	if _, err := w.bw.Write(hdr); err != nil {
		return nil, w.fail(fmt.Errorf("write %s: header: %w", path, err))
	}
	return w, nil
}

// fail records err, removes the temporary file and returns err.
func (w *StreamWriter) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	if !w.done {
		w.done = true
		w.f.Close()
		os.Remove(w.f.Name())
	}
	return w.err
}

// Next is the name of the tensor WriteTensor expects next ("" when all are written).
func (w *StreamWriter) Next() string {
	if w.next >= len(w.specs) {
		return ""
	}
	return w.specs[w.next].Name
}

// WriteTensor appends the data of the next tensor of the header, which must be name and
// hold exactly its shape's element count.
func (w *StreamWriter) WriteTensor(name string, data []float32) error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return fmt.Errorf("write %s: tensor %q: the writer is already committed", w.path, name)
	}
	if w.next >= len(w.specs) {
		return w.fail(fmt.Errorf("write %s: tensor %q: every tensor of the header is already written", w.path, name))
	}
	s := w.specs[w.next]
	if name != s.Name {
		return w.fail(fmt.Errorf("write %s: got tensor %q, the header wants %q next", w.path, name, s.Name))
	}
	if n := numElements(s.Shape); len(data) != n {
		return w.fail(fmt.Errorf("write %s: tensor %q: shape %v holds %d elements, data has %d", w.path, name, s.Shape, n, len(data)))
	}
	for lo := 0; lo < len(data); lo += streamChunk {
		part := data[lo:min(lo+streamChunk, len(data))]
		for i, v := range part {
			binary.LittleEndian.PutUint32(w.buf[4*i:], math.Float32bits(v))
		}
		if _, err := w.bw.Write(w.buf[:4*len(part)]); err != nil {
			return w.fail(fmt.Errorf("write %s: tensor %q: %w", w.path, name, err))
		}
	}
	w.next++
	return nil
}

// Commit checks that every tensor was written, then flushes, fsyncs and renames the
// temporary file over the path.
func (w *StreamWriter) Commit() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return fmt.Errorf("write %s: already committed", w.path)
	}
	if w.next < len(w.specs) {
		return w.fail(fmt.Errorf("write %s: tensor %q and %d more were never written", w.path, w.specs[w.next].Name, len(w.specs)-w.next-1))
	}
	tmp := w.f.Name()
	if err := w.bw.Flush(); err != nil {
		return w.fail(fmt.Errorf("write %s: %w", w.path, err))
	}
	if err := w.f.Sync(); err != nil {
		return w.fail(fmt.Errorf("sync %s: %w", tmp, err))
	}
	if err := w.f.Chmod(0o644); err != nil {
		return w.fail(fmt.Errorf("chmod %s: %w", tmp, err))
	}
	w.done = true
	if err := w.f.Close(); err != nil {
		os.Remove(tmp)
		w.err = fmt.Errorf("close %s: %w", tmp, err)
		return w.err
	}
	if err := os.Rename(tmp, w.path); err != nil {
		os.Remove(tmp)
		w.err = fmt.Errorf("rename %s: %w", tmp, err)
		return w.err
	}
	return syncDir(filepath.Dir(w.path))
}

// Abort abandons the write and removes the temporary file; the path is left untouched.
// It is a no-op after Commit or a failure.
func (w *StreamWriter) Abort() {
	if !w.done {
		_ = w.fail(errors.New("write " + w.path + ": aborted"))
	}
}

func numElements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// specHeader encodes the JSON header for F32 tensors of the given shapes, in order,
// exactly as Write does (metadata first, space padding to 8 bytes), so a streamed file is
// byte-identical to one written whole.
func specHeader(specs []TensorSpec, metadata map[string]string) ([]byte, error) {
	return encodeHeader(specs, nil, metadata, nil)
}

// encodeHeader is the one header encoder of Write and StreamWriter. dtypes[i] is tensor
// i's element type (nil means all F32); check, when set, vets tensor i, which holds n
// elements by its shape, once its name and shape are valid.
func encodeHeader(specs []TensorSpec, dtypes []DType, metadata map[string]string, check func(i, n int) error) ([]byte, error) {
	var sb strings.Builder
	sb.WriteByte('{')
	if len(metadata) > 0 {
		meta, err := json.Marshal(metadata)
		if err != nil {
			return nil, fmt.Errorf("safetensors: encode metadata: %w", err)
		}
		sb.WriteString(`"` + metadataKey + `":`)
		sb.Write(meta)
	}
	seen := make(map[string]bool, len(specs))
	var off int64
	for i, s := range specs {
		switch {
		case s.Name == "":
			return nil, fmt.Errorf("safetensors: tensor %d has an empty name", i)
		case s.Name == metadataKey:
			return nil, fmt.Errorf("safetensors: tensor name %q is reserved", s.Name)
		case seen[s.Name]:
			return nil, fmt.Errorf("safetensors: tensor %q: duplicate name", s.Name)
		case !utf8.ValidString(s.Name):
			return nil, fmt.Errorf("safetensors: tensor %q: name is not valid UTF-8", s.Name)
		}
		seen[s.Name] = true
		for _, d := range s.Shape {
			if d < 0 {
				return nil, fmt.Errorf("safetensors: tensor %q: negative dimension in shape %v", s.Name, s.Shape)
			}
		}
		n := numElements(s.Shape)
		if check != nil {
			if err := check(i, n); err != nil {
				return nil, err
			}
		}
		if sb.Len() > 1 {
			sb.WriteByte(',')
		}
		name, _ := json.Marshal(s.Name)
		sb.Write(name)
		dt := F32
		if dtypes != nil {
			dt = dtypes[i]
		}
		sb.WriteString(`:{"dtype":"` + string(dt) + `","shape":[`)
		for j, d := range s.Shape {
			if j > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(strconv.Itoa(d))
		}
		end := off + int64(dt.Size())*int64(n)
		fmt.Fprintf(&sb, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	sb.WriteByte('}')
	for sb.Len()%headerAlign != 0 {
		sb.WriteByte(' ')
	}
	if sb.Len() > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors: header of %d bytes exceeds the %d-byte limit", sb.Len(), MaxHeaderSize)
	}
	return []byte(sb.String()), nil
}
