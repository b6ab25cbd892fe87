package trainer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/posttrain/posttrain/safetensors"
)

// File names of a saved trainer state, written next to the model weights. The moments
// file is safetensors, so any safetensors tool can inspect it.
const (
	StateJSONFile    = "trainer_state.json"
	StateMomentsFile = "trainer_state.safetensors"
)

// Tensor names in the moments file (PyTorch's AdamW state names), each a flat [n] F32
// vector in the parameter buffer's layout.
const (
	momentM = "exp_avg"
	momentV = "exp_avg_sq"
)

// momentsVersion names the moments file's layout; it changes if the layout does.
const momentsVersion = "flat-adamw-v1"

// State is everything a run needs to continue exactly where it stopped: the update count,
// the optimizer moments (same layout as the parameters), the data cursor, and what was
// consumed. The model weights are saved separately (checkpoint package).
type State struct {
	// Step counts completed optimizer updates.
	Step int `json:"step"`
	// Tokens counts the tokens the step function reported so far.
	Tokens int64 `json:"tokens"`
	// M and V are AdamW's first and second moments.
	M []float32 `json:"-"`
	V []float32 `json:"-"`
	// Data is the stage's row order, if it draws rows through a Shuffler.
	Data *Shuffler `json:"data,omitempty"`
	// Config is the trainer configuration the state was produced with (for inspection; a
	// resumed run uses the configuration it is given).
	Config Config `json:"config"`
	// Extra is free-form stage metadata saved alongside (for example a corpus fingerprint).
	Extra map[string]string `json:"extra,omitempty"`
}

// NewState returns a fresh state for n parameters with zeroed moments.
func NewState(n int) *State {
	return &State{M: make([]float32, n), V: make([]float32, n)}
}

// stateFile is the JSON document: the State plus what is needed to trust the moments file.
type stateFile struct {
	*State
	Params         int    `json:"params"`
	MomentsFile    string `json:"moments_file"`
	MomentsSHA256  string `json:"moments_sha256"`
	MomentsVersion string `json:"moments_version"`
}

// SaveState writes st into dir as trainer_state.json and trainer_state.safetensors. Each
// file is written to a temporary name and renamed, and the JSON (written last) holds the
// moments file's SHA-256, so a crash mid-save never leaves a state that loads.
func SaveState(dir string, st *State) error {
	if len(st.M) != len(st.V) {
		return fmt.Errorf("save trainer state: moments have %d and %d elements", len(st.M), len(st.V))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save trainer state: %w", err)
	}
	binPath := filepath.Join(dir, StateMomentsFile)
	sum, err := writeMoments(binPath, st.M, st.V)
	if err != nil {
		return fmt.Errorf("save trainer state: %w", err)
	}
	raw, err := json.MarshalIndent(stateFile{State: st, Params: len(st.M), MomentsFile: StateMomentsFile,
		MomentsSHA256: sum, MomentsVersion: momentsVersion}, "", "  ")
	if err != nil {
		return fmt.Errorf("save trainer state: encode: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, StateJSONFile), func(w io.Writer) error {
		_, err := w.Write(append(raw, '\n'))
		return err
	}); err != nil {
		return fmt.Errorf("save trainer state: %w", err)
	}
	return nil
}

// writeMoments writes M and V as a safetensors file and returns its hex SHA-256.
func writeMoments(path string, m, v []float32) (string, error) {
	h := sha256.New()
	tensors := []safetensors.Tensor{
		{Name: momentM, Shape: []int{len(m)}, Data: m},
		{Name: momentV, Shape: []int{len(v)}, Data: v},
	}
	err := writeAtomic(path, func(w io.Writer) error {
		bw := bufio.NewWriterSize(io.MultiWriter(w, h), 1<<20)
		if err := safetensors.Write(context.Background(), bw, tensors, map[string]string{"format": "pt", "layout": momentsVersion}); err != nil {
			return err
		}
		return bw.Flush()
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// writeAtomic writes a file through fill into a temporary sibling and renames it in place.
func writeAtomic(path string, fill func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// HasState reports whether dir holds a saved trainer state.
func HasState(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, StateJSONFile))
	return err == nil
}

// LoadStateInfo reads only trainer_state.json (step, tokens, data cursor, config), without
// the moments, for a quick look at a saved run. M and V are nil.
func LoadStateInfo(dir string) (*State, error) {
	sf, err := readStateJSON(dir)
	if err != nil {
		return nil, err
	}
	return sf.State, nil
}

// readStateJSON parses and checks trainer_state.json.
func readStateJSON(dir string) (*stateFile, error) {
	jsonPath := filepath.Join(dir, StateJSONFile)
	raw, err := os.ReadFile(jsonPath)
	if err != nil {
		return nil, fmt.Errorf("load trainer state: %w", err)
	}
	sf := &stateFile{State: &State{}}
	if err := json.Unmarshal(raw, sf); err != nil {
		return nil, fmt.Errorf("load trainer state: parse %s: %w", jsonPath, err)
	}
	switch {
	case sf.MomentsVersion != momentsVersion:
		return nil, fmt.Errorf("load trainer state: %s: moments_version %q is not %q", jsonPath, sf.MomentsVersion, momentsVersion)
	case sf.Params < 0:
		return nil, fmt.Errorf("load trainer state: %s: params %d is negative", jsonPath, sf.Params)
	case sf.Step < 0:
		return nil, fmt.Errorf("load trainer state: %s: step %d is negative", jsonPath, sf.Step)
	case sf.MomentsFile != StateMomentsFile:
		// Never follow a path from the file: only the fixed sibling name is read.
		return nil, fmt.Errorf("load trainer state: %s: moments_file %q is not %q", jsonPath, sf.MomentsFile, StateMomentsFile)
	}
	if d := sf.Data; d != nil && (d.N < 0 || d.Epoch < 0 || d.Pos < 0 || d.Pos > d.N) {
		return nil, fmt.Errorf("load trainer state: %s: data cursor n=%d epoch=%d pos=%d is out of range", jsonPath, d.N, d.Epoch, d.Pos)
	}
	return sf, nil
}

// LoadState reads a state saved by SaveState, checking the moments file's checksum,
// header and sizes.
func LoadState(dir string) (*State, error) {
	sf, err := readStateJSON(dir)
	if err != nil {
		return nil, err
	}
	binPath := filepath.Join(dir, StateMomentsFile)
	body, err := os.ReadFile(binPath)
	if err != nil {
		return nil, fmt.Errorf("load trainer state: %w", err)
	}
	sum := sha256.Sum256(body)
	if got := hex.EncodeToString(sum[:]); got != sf.MomentsSHA256 {
		return nil, fmt.Errorf("load trainer state: %s: checksum %s does not match %s recorded in %s", binPath, got, sf.MomentsSHA256, StateJSONFile)
	}
	r, err := safetensors.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		return nil, fmt.Errorf("load trainer state: %s: %w", binPath, err)
	}
	st := sf.State
	st.M, st.V = make([]float32, sf.Params), make([]float32, sf.Params)
	for _, mom := range []struct {
		name string
		dst  []float32
	}{{momentM, st.M}, {momentV, st.V}} {
		info, ok := r.Lookup(mom.name)
		if !ok {
			return nil, fmt.Errorf("load trainer state: %s: no tensor %q", binPath, mom.name)
		}
		if info.DType != safetensors.F32 || len(info.Shape) != 1 || info.Shape[0] != sf.Params {
			return nil, fmt.Errorf("load trainer state: %s: tensor %q is %s %v, want F32 [%d]", binPath, mom.name, info.DType, info.Shape, sf.Params)
		}
		if err := r.ReadFloat32(mom.name, mom.dst); err != nil {
			return nil, fmt.Errorf("load trainer state: %s: %w", binPath, err)
		}
	}
	return st, nil
}
