package averaging

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/safetensors"
)

// Method names a soup recipe.
type Method string

// The soup recipes.
const (
	MethodUniform  Method = "uniform"
	MethodWeighted Method = "weighted"
	MethodGreedy   Method = "greedy"
)

// ParseMethod validates a method name.
func ParseMethod(s string) (Method, error) {
	switch Method(s) {
	case MethodUniform, MethodWeighted, MethodGreedy:
		return Method(s), nil
	}
	return "", fmt.Errorf("averaging: method %q is not one of uniform, weighted, greedy", s)
}

// Options tune writing a soup.
type Options struct {
	// Overwrite allows replacing a non-empty output directory.
	Overwrite bool
	// Progress, when set, is called after each tensor is written with the tensors done
	// and the total.
	Progress func(done, total int)
}

// Result describes a written soup.
type Result struct {
	Out     string    `json:"out"`     // the output directory
	Method  Method    `json:"method"`  // the recipe
	Inputs  []string  `json:"inputs"`  // the averaged model directories
	Weights []float64 `json:"weights"` // normalised, one per input
	Tensors int       `json:"tensors"` // tensors written
	// Parameters is the element count of one model; Bytes the size of the written weights.
	Parameters int64 `json:"parameters"`
	Bytes      int64 `json:"bytes"` // size of model.safetensors
}

// Uniform writes the element-wise mean of the input models to out.
func Uniform(ctx context.Context, out string, inputs []string, opts Options) (*Result, error) {
	return average(ctx, out, inputs, nil, MethodUniform, opts)
}

// Weighted writes sum_i w_i x_i to out, with weights normalised to sum to 1. Weights
// must be finite and >= 0 with a positive sum; a zero weight leaves its model out.
func Weighted(ctx context.Context, out string, inputs []string, weights []float64, opts Options) (*Result, error) {
	w, err := NormaliseWeights(weights, len(inputs))
	if err != nil {
		return nil, err
	}
	return average(ctx, out, inputs, w, MethodWeighted, opts)
}

// NormaliseWeights checks one weight per input (finite, >= 0, positive sum) and returns
// them divided by their sum.
func NormaliseWeights(weights []float64, n int) ([]float64, error) {
	if len(weights) != n {
		return nil, fmt.Errorf("averaging: %d weights for %d models", len(weights), n)
	}
	var sum float64
	for i, w := range weights {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("averaging: weight %d is %v; weights must be finite", i+1, w)
		}
		if w < 0 {
			return nil, fmt.Errorf("averaging: weight %d is %v; weights must be >= 0", i+1, w)
		}
		sum += w
	}
	if sum == 0 {
		return nil, errors.New("averaging: the weights sum to 0")
	}
	out := make([]float64, n)
	for i, w := range weights {
		out[i] = w / sum
	}
	return out, nil
}

// average streams the soup of inputs into out: weights nil means the uniform mean
// (sum, then divide by N), else sum_i weights[i] * x_i with weights already normalised.
func average(ctx context.Context, out string, inputs []string, weights []float64, method Method, opts Options) (res *Result, err error) {
	if out == "" {
		return nil, errors.New("averaging: no output directory")
	}
	for _, in := range inputs {
		if filepath.Clean(in) == filepath.Clean(out) {
			return nil, fmt.Errorf("averaging: the output %s is also an input", out)
		}
	}
	replace, err := checkOut(out, opts.Overwrite)
	if err != nil {
		return nil, err
	}
	ins, err := openAll(inputs)
	if err != nil {
		return nil, err
	}
	defer closeAll(ins)

	parent := filepath.Dir(filepath.Clean(out))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("averaging: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("averaging: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err = os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("averaging: %w", err)
	}
	first := ins[0]
	if err = writeFile(filepath.Join(tmp, checkpoint.ConfigFile), first.cfgJSON); err != nil {
		return nil, err
	}
	if first.tokJSON != nil {
		if err = writeFile(filepath.Join(tmp, checkpoint.TokenizerFile), first.tokJSON); err != nil {
			return nil, err
		}
	}

	w := weights
	if w == nil {
		w = make([]float64, len(ins))
		for i := range w {
			w[i] = 1 / float64(len(ins))
		}
	}
	res = &Result{Out: out, Method: method, Inputs: inputs, Weights: w, Tensors: len(first.tensors), Parameters: first.paramSize}
	if err = streamSoup(ctx, filepath.Join(tmp, checkpoint.WeightsFile), ins, weights, res, opts.Progress); err != nil {
		return nil, err
	}
	if err = checkpoint.SwapDir(tmp, out, replace); err != nil {
		return nil, fmt.Errorf("averaging: write %s: %w", out, err)
	}
	return res, nil
}

// streamSoup computes and writes every tensor in the first input's order, holding one
// float64 accumulator and one float32 buffer the size of the largest tensor.
func streamSoup(ctx context.Context, path string, ins []*input, weights []float64, res *Result, progress func(int, int)) error {
	first := ins[0]
	specs := make([]safetensors.TensorSpec, len(first.tensors))
	largest := 0
	for i, t := range first.tensors {
		specs[i] = safetensors.TensorSpec{Name: t.Name, Shape: t.Shape}
		largest = max(largest, t.NumElements())
	}
	meta := map[string]string{"format": "pt", "soup_method": string(res.Method), "soup_models": strconv.Itoa(len(ins))}
	ws := make([]string, len(res.Weights))
	for i, w := range res.Weights {
		ws[i] = strconv.FormatFloat(w, 'g', -1, 64)
	}
	meta["soup_weights"] = strings.Join(ws, ",")
	sw, err := safetensors.CreateStream(path, specs, meta)
	if err != nil {
		return fmt.Errorf("averaging: %w", err)
	}
	defer sw.Abort()
	acc := make([]float64, largest)
	buf := make([]float32, largest)
	nIn := float64(len(ins))
	for k, t := range first.tensors {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("averaging: %w", err)
		}
		n := t.NumElements()
		a, b := acc[:n], buf[:n]
		clear(a)
		for i, in := range ins {
			if err := in.r.ReadFloat32(t.Name, b); err != nil {
				return fmt.Errorf("averaging: model %s: %w", in.dir, err)
			}
			if weights == nil {
				for j, v := range b {
					a[j] += float64(v)
				}
				continue
			}
			wi := weights[i]
			for j, v := range b {
				a[j] += wi * float64(v)
			}
		}
		for j, v := range a {
			if weights == nil {
				v /= nIn
			}
			b[j] = float32(v)
		}
		if err := sw.WriteTensor(t.Name, b); err != nil {
			return fmt.Errorf("averaging: %w", err)
		}
		if progress != nil {
			progress(k+1, len(first.tensors))
		}
	}
	if err := sw.Commit(); err != nil {
		return fmt.Errorf("averaging: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("averaging: %w", err)
	}
	res.Bytes = st.Size()
	return nil
}

// checkOut refuses a non-empty output without overwrite and reports whether out exists.
func checkOut(out string, overwrite bool) (bool, error) {
	st, err := os.Stat(out)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("averaging: %w", err)
	}
	if !st.IsDir() {
		return false, fmt.Errorf("averaging: output %s exists and is not a directory", out)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		return false, fmt.Errorf("averaging: %w", err)
	}
	if len(entries) > 0 && !overwrite {
		return false, fmt.Errorf("averaging: output %s is not empty (overwrite to replace it)", out)
	}
	return true, nil
}

// writeFile writes data to path and fsyncs it.
func writeFile(path string, data []byte) error {
	if err := checkpoint.WriteFileSync(path, data); err != nil {
		return fmt.Errorf("averaging: %w", err)
	}
	return nil
}
