package safetensors

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Tensor is a named float32 tensor to write; Data is row-major with len == product(Shape).
type Tensor struct {
	Name  string    // the tensor's name in the header
	Shape []int     // its dimensions (empty for a scalar)
	Data  []float32 // its elements, row-major
	// DType is the element type stored in the file: F32 (the default when empty), BF16
	// or F16. The narrower types round Data to nearest even on the way out.
	DType DType
}

// dtype is the element type t is stored as.
func (t Tensor) dtype() DType {
	if t.DType == "" {
		return F32
	}
	return t.DType
}

// headerAlign is the alignment of the data region: Hugging Face pads the JSON header with
// spaces so that tensor data starts on an 8-byte boundary.
const headerAlign = 8

// Write streams the tensors in the given order, each in its DType (F32 by default), with
// optional string metadata. It checks names, shapes and dtypes before writing anything.
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
	buf := make([]byte, 4*chunkElems) // F32 is the widest writable dtype
	for _, t := range tensors {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("safetensors: write: %w", err)
		}
		dt := t.dtype()
		for lo := 0; lo < len(t.Data); lo += chunkElems {
			part := t.Data[lo:min(lo+chunkElems, len(t.Data))]
			out := buf[:dt.Size()*len(part)]
			if err := encodeFloat32(dt, part, out); err != nil {
				return fmt.Errorf("safetensors: write tensor %q: %w", t.Name, err)
			}
			if _, err := w.Write(out); err != nil {
				return fmt.Errorf("safetensors: write tensor %q: %w", t.Name, err)
			}
		}
	}
	return nil
}

// buildHeader encodes the JSON header with tensors in the given order, padded with spaces,
// checking that each tensor's data fits its shape and its dtype can be written.
func buildHeader(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	specs := make([]TensorSpec, len(tensors))
	dtypes := make([]DType, len(tensors))
	for i, t := range tensors {
		specs[i] = TensorSpec{Name: t.Name, Shape: t.Shape}
		dtypes[i] = t.dtype()
	}
	return encodeHeader(specs, dtypes, metadata, func(i, n int) error {
		t := tensors[i]
		if !dtypes[i].Writable() {
			return fmt.Errorf("safetensors: tensor %q: cannot write dtype %q (writable: %s)", t.Name, dtypes[i], writableList)
		}
		if n != len(t.Data) {
			return fmt.Errorf("safetensors: tensor %q: shape %v holds %d elements, data has %d", t.Name, t.Shape, n, len(t.Data))
		}
		return nil
	})
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
