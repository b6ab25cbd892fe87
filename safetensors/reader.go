package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"unicode/utf8"
)

// MaxHeaderSize bounds the JSON header length a reader accepts (100 MiB, as Hugging Face's
// reference implementation), so a corrupt length cannot make the reader allocate the moon.
const MaxHeaderSize = 100 << 20

// metadataKey is the reserved header entry holding free-form string metadata.
const metadataKey = "__metadata__"

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	// Begin and End are byte offsets relative to the start of the data region.
	Begin, End int64
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Reader gives validated access to the tensors of one safetensors file. Create it with Open
// or NewReader; every header field has been checked by then.
type Reader struct {
	ra        io.ReaderAt
	closer    io.Closer
	name      string
	dataStart int64
	tensors   []TensorInfo
	index     map[string]int
	metadata  map[string]string
}

// Open opens and validates the safetensors file at path. Close the reader when done.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open safetensors: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	r, err := newReader(f, st.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// NewReader validates the safetensors data of the given size read through ra.
func NewReader(ra io.ReaderAt, size int64) (*Reader, error) {
	return newReader(ra, size, "")
}

func newReader(ra io.ReaderAt, size int64, name string) (*Reader, error) {
	r := &Reader{ra: ra, name: name}
	if err := r.parse(size); err != nil {
		if name != "" {
			return nil, fmt.Errorf("safetensors %s: %w", name, err)
		}
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return r, nil
}

// Close releases the file opened by Open; it is a no-op for NewReader.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	return r.closer.Close()
}

// Tensors lists the tensors in data order (by offset).
func (r *Reader) Tensors() []TensorInfo { return r.tensors }

// Metadata is the header's "__metadata__" map (nil when absent).
func (r *Reader) Metadata() map[string]string { return r.metadata }

// Lookup returns the named tensor's description.
func (r *Reader) Lookup(name string) (TensorInfo, bool) {
	i, ok := r.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return r.tensors[i], true
}

// Float32 reads the named tensor, converted to float32.
func (r *Reader) Float32(name string) ([]float32, error) {
	t, ok := r.Lookup(name)
	if !ok {
		return nil, r.errorf("tensor %q not found", name)
	}
	dst := make([]float32, t.NumElements())
	if err := r.ReadFloat32(name, dst); err != nil {
		return nil, err
	}
	return dst, nil
}

// ReadFloat32 reads the named tensor into dst, converting F16, BF16 and F64 to float32.
// dst must have exactly the tensor's element count.
func (r *Reader) ReadFloat32(name string, dst []float32) error {
	t, ok := r.Lookup(name)
	if !ok {
		return r.errorf("tensor %q not found", name)
	}
	if !t.DType.Convertible() {
		return r.errorf("tensor %q: dtype %s cannot be converted to float32 (supported: F32, F16, BF16, F64)", name, t.DType)
	}
	if n := t.NumElements(); len(dst) != n {
		return r.errorf("tensor %q: destination holds %d elements, tensor has %d", name, len(dst), n)
	}
	const chunkElems = 1 << 16
	es := t.DType.Size()
	buf := make([]byte, min(len(dst), chunkElems)*es)
	off := r.dataStart + t.Begin
	for lo := 0; lo < len(dst); lo += chunkElems {
		hi := min(lo+chunkElems, len(dst))
		b := buf[:(hi-lo)*es]
		if _, err := r.ra.ReadAt(b, off); err != nil {
			return r.errorf("tensor %q: read data: %w", name, err)
		}
		if err := decodeFloat32(t.DType, b, dst[lo:hi]); err != nil {
			return r.errorf("tensor %q: %w", name, err)
		}
		off += int64(len(b))
	}
	return nil
}

func (r *Reader) errorf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if r.name != "" {
		return fmt.Errorf("safetensors %s: %w", r.name, err)
	}
	return fmt.Errorf("safetensors: %w", err)
}

// rawEntry is one tensor's header entry; pointers tell a missing field from a zero one.
type rawEntry struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

// parse reads and validates the header of a file of the given size.
func (r *Reader) parse(size int64) error {
	if size < 8 {
		return fmt.Errorf("file is %d bytes, too short for the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if _, err := r.ra.ReadAt(lenBuf[:], 0); err != nil {
		return fmt.Errorf("read header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return fmt.Errorf("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		return fmt.Errorf("header length %d exceeds the file size %d (file truncated?)", n, size)
	}
	hdr := make([]byte, n)
	if _, err := r.ra.ReadAt(hdr, 8); err != nil {
		return fmt.Errorf("read header: %w", err)
	}
	r.dataStart = 8 + int64(n)
	if err := r.parseHeader(hdr); err != nil {
		return err
	}
	return r.checkLayout(size - r.dataStart)
}

// parseHeader decodes the JSON header token by token, so that duplicate tensor names (which
// a map decode would silently merge) are caught.
func (r *Reader) parseHeader(hdr []byte) error {
	if !utf8.Valid(hdr) {
		return errors.New("header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("bad header JSON: want an object, got %s", describeToken(tok, err))
	}
	r.index = map[string]int{}
	seenMeta := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("bad header JSON: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return fmt.Errorf("bad header JSON: want a tensor name, got %v", tok)
		}
		if name == metadataKey {
			if seenMeta {
				return fmt.Errorf("duplicate %s entry", metadataKey)
			}
			seenMeta = true
			if err := dec.Decode(&r.metadata); err != nil {
				return fmt.Errorf("bad header JSON: %s must map strings to strings: %w", metadataKey, err)
			}
			continue
		}
		if _, dup := r.index[name]; dup {
			return fmt.Errorf("tensor %q: duplicate name in header", name)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("bad header JSON at tensor %q: %w", name, err)
		}
		t, err := parseEntry(name, raw)
		if err != nil {
			return err
		}
		r.index[name] = len(r.tensors)
		r.tensors = append(r.tensors, t)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return fmt.Errorf("bad header JSON: unterminated object: %s", describeToken(tok, err))
	}
	// Only padding may follow the object (Hugging Face pads with spaces).
	if rest := bytes.TrimRight(hdr[dec.InputOffset():], " \t\r\n\x00"); len(rest) > 0 {
		return fmt.Errorf("bad header JSON: %d unexpected bytes after the header object", len(rest))
	}
	return nil
}

func describeToken(tok json.Token, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%v", tok)
}

// parseEntry validates one tensor entry on its own (dtype, shape, offsets vs byte length).
func parseEntry(name string, raw json.RawMessage) (TensorInfo, error) {
	fail := func(format string, args ...any) (TensorInfo, error) {
		return TensorInfo{}, fmt.Errorf("tensor %q: %s", name, fmt.Sprintf(format, args...))
	}
	var e rawEntry
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return fail("bad header entry: %v", err)
	}
	switch {
	case e.DType == nil:
		return fail("missing dtype")
	case e.Shape == nil:
		return fail("missing shape")
	case e.DataOffsets == nil:
		return fail("missing data_offsets")
	}
	dt := DType(*e.DType)
	if dt.Size() == 0 {
		return fail("unknown dtype %q", *e.DType)
	}
	shape := make([]int, len(*e.Shape))
	elems := uint64(1)
	overflow := false
	for i, d := range *e.Shape {
		if d < 0 {
			return fail("negative dimension %d in shape %v", d, *e.Shape)
		}
		shape[i] = int(d)
		hi, lo := bits.Mul64(elems, uint64(d))
		if hi != 0 || lo > math.MaxInt64/8 {
			overflow = true
		}
		elems = lo
	}
	if overflow {
		return fail("shape %v is too large", *e.Shape)
	}
	offs := *e.DataOffsets
	if len(offs) != 2 {
		return fail("data_offsets must be [begin, end], got %v", offs)
	}
	begin, end := offs[0], offs[1]
	if begin < 0 || end < begin {
		return fail("bad data_offsets [%d, %d]", begin, end)
	}
	if want := elems * uint64(dt.Size()); uint64(end-begin) != want {
		return fail("shape %v of dtype %s needs %d bytes but data_offsets [%d, %d] span %d", *e.Shape, dt, want, begin, end, end-begin)
	}
	return TensorInfo{Name: name, DType: dt, Shape: shape, Begin: begin, End: end}, nil
}

// checkLayout requires the tensors to tile the data region exactly: in range, no overlap,
// no gap, nothing left over. Tensors end up sorted by offset.
func (r *Reader) checkLayout(dataLen int64) error {
	for _, t := range r.tensors {
		if t.End > dataLen {
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] run past the %d-byte data region (file truncated?)", t.Name, t.Begin, t.End, dataLen)
		}
	}
	sort.SliceStable(r.tensors, func(i, j int) bool {
		a, b := r.tensors[i], r.tensors[j]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return a.End < b.End
	})
	var pos int64
	prev := ""
	for _, t := range r.tensors {
		switch {
		case t.Begin < pos:
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] overlap tensor %q", t.Name, t.Begin, t.End, prev)
		case t.Begin > pos:
			return fmt.Errorf("tensor %q: gap of %d bytes before its data_offsets [%d, %d]", t.Name, t.Begin-pos, t.Begin, t.End)
		}
		pos, prev = t.End, t.Name
	}
	if pos != dataLen {
		if prev == "" {
			return fmt.Errorf("%d bytes of data but no tensors in the header", dataLen)
		}
		return fmt.Errorf("%d trailing bytes in the data region after tensor %q", dataLen-pos, prev)
	}
	for i, t := range r.tensors {
		r.index[t.Name] = i
	}
	return nil
}
