package safetensors

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Tensor is a named float32 tensor to write; Data is row-major with len == product(Shape).
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// headerAlign is the alignment of the data region: Hugging Face pads the JSON header with
// spaces so that tensor data starts on an 8-byte boundary.
const headerAlign = 8

// Write streams the tensors as F32 in the given order, with optional string metadata.
// It checks names and shapes before writing anything.
func Write(ctx context.Context, w io.Writer, tensors []Tensor, metadata map[string]string) error {
	hdr, err := buildHeader(tensors, metadata)
	if err != nil {
		return err
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hdr)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return fmt.Errorf("safetensors: write header: %w", err)
	}
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("safetensors: write header: %w", err)
	}
	// Encode through a fixed chunk so memory stays bounded whatever the tensor size.
	const chunkElems = 1 << 14
	buf := make([]byte, 4*chunkElems)
	for _, t := range tensors {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("safetensors: write: %w", err)
		}
		for lo := 0; lo < len(t.Data); lo += chunkElems {
			part := t.Data[lo:min(lo+chunkElems, len(t.Data))]
			for i, v := range part {
				binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
			}
			if _, err := w.Write(buf[:4*len(part)]); err != nil {
				return fmt.Errorf("safetensors: write tensor %q: %w", t.Name, err)
			}
		}
	}
	return nil
}

// buildHeader encodes the JSON header with tensors in the given order, padded with spaces.
func buildHeader(tensors []Tensor, metadata map[string]string) ([]byte, error) {
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
	seen := make(map[string]bool, len(tensors))
	var off int64
	for i, t := range tensors {
		switch {
		case t.Name == "":
			return nil, fmt.Errorf("safetensors: tensor %d has an empty name", i)
		case t.Name == metadataKey:
			return nil, fmt.Errorf("safetensors: tensor name %q is reserved", t.Name)
		case seen[t.Name]:
			return nil, fmt.Errorf("safetensors: tensor %q: duplicate name", t.Name)
		case !utf8.ValidString(t.Name):
			return nil, fmt.Errorf("safetensors: tensor %q: name is not valid UTF-8", t.Name)
		}
		seen[t.Name] = true
		n := 1
		for _, d := range t.Shape {
			if d < 0 {
				return nil, fmt.Errorf("safetensors: tensor %q: negative dimension in shape %v", t.Name, t.Shape)
			}
			n *= d
		}
		if n != len(t.Data) {
			return nil, fmt.Errorf("safetensors: tensor %q: shape %v holds %d elements, data has %d", t.Name, t.Shape, n, len(t.Data))
		}
		if sb.Len() > 1 {
			sb.WriteByte(',')
		}
		name, _ := json.Marshal(t.Name)
		sb.Write(name)
		sb.WriteString(`:{"dtype":"F32","shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(strconv.Itoa(d))
		}
		end := off + 4*int64(n)
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

// WriteFile writes the tensors to path atomically: into a temporary file in the same
// directory, fsynced, then renamed over path, so a crash never leaves a half-written file.
func WriteFile(ctx context.Context, path string, tensors []Tensor, metadata map[string]string) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = Write(ctx, tmp, tensors, metadata); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err = os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp.Name(), err)
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
