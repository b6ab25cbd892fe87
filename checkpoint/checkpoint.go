// Package checkpoint saves and loads models as Hugging Face compatible directories:
// config.json (LlamaConfig keys), model.safetensors (F32, BF16 or F16 tensors under the HF
// names; loading always widens them to float32) and an
// optional tokenizer.json. Loading checks every tensor against the config and names any
// missing, unexpected or mis-shaped one; a causal LM can be loaded as a reward model, which
// keeps the backbone and gives it a fresh score head.
package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/safetensors"
	"github.com/posttrain/posttrain/transformer"
)

// File names inside a checkpoint directory.
const (
	ConfigFile    = "config.json"
	WeightsFile   = "model.safetensors"
	TokenizerFile = "tokenizer.json"
)

// SaveOptions tune Save.
type SaveOptions struct {
	// TokenizerFrom is a tokenizer.json file to copy into the checkpoint, or a checkpoint
	// directory whose tokenizer.json (if it has one) is copied. Empty means none.
	TokenizerFrom string
	// TokenizerJSON is tokenizer.json content to write; it wins over TokenizerFrom.
	TokenizerJSON []byte
	// Overwrite allows replacing a non-empty existing directory. An absent or empty
	// directory is always fine.
	Overwrite bool
	// Metadata is extra string metadata for the safetensors header ("format": "pt" is
	// always set, as Hugging Face transformers requires).
	Metadata map[string]string
	// DType is the element type of every tensor written: safetensors.F32 (the default
	// when empty), safetensors.BF16 or safetensors.F16, rounded to nearest even. The
	// narrow types halve the file; config.json's torch_dtype records the choice.
	DType safetensors.DType
}

// torchDtype maps each dtype Save writes to config.json's torch_dtype name.
func torchDtype(d safetensors.DType) (string, bool) {
	switch d {
	case "", safetensors.F32:
		return "float32", true
	case safetensors.BF16:
		return "bfloat16", true
	case safetensors.F16:
		return "float16", true
	}
	return "", false
}

// Save writes m to dir atomically: everything goes into a temporary sibling directory that
// is renamed into place only when complete, so a crash never leaves a half-written
// checkpoint at dir.
func Save(ctx context.Context, dir string, m *transformer.Model, opts SaveOptions) (err error) {
	if m == nil || m.W == nil {
		return fmt.Errorf("save checkpoint %s: nil model", dir)
	}
	dir = filepath.Clean(dir)
	if err := m.Config.Validate(); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	torchName, ok := torchDtype(opts.DType)
	if !ok {
		return fmt.Errorf("save checkpoint %s: cannot write dtype %q (valid: F32, BF16, F16)", dir, opts.DType)
	}
	tok, err := tokenizerBytes(opts)
	if err != nil {
		return fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	replace, err := checkTarget(dir, opts.Overwrite)
	if err != nil {
		return err
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err = os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	cfg := m.Config
	// torch_dtype describes the stored weights. A narrow dtype always records itself; an
	// F32 save keeps a config's own value unless it names a narrow type it no longer has.
	if opts.DType != "" && opts.DType != safetensors.F32 ||
		cfg.TorchDtype == "" || cfg.TorchDtype == "bfloat16" || cfg.TorchDtype == "float16" {
		cfg.TorchDtype = torchName
	}
	if err = cfg.SaveConfig(tmp); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	if err = syncFile(filepath.Join(tmp, ConfigFile)); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	tensors := make([]safetensors.Tensor, len(m.W.Tensors))
	for i, t := range m.W.Tensors {
		tensors[i] = safetensors.Tensor{Name: t.Name, Shape: t.Shape, Data: t.Data, DType: opts.DType}
	}
	meta := map[string]string{}
	for k, v := range opts.Metadata {
		meta[k] = v
	}
	meta["format"] = "pt"
	if err = safetensors.WriteFile(ctx, filepath.Join(tmp, WeightsFile), tensors, meta); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	if tok != nil {
		if err = WriteFileSync(filepath.Join(tmp, TokenizerFile), tok); err != nil {
			return fmt.Errorf("save checkpoint %s: %w", dir, err)
		}
	}
	if err = ctx.Err(); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	if err = syncDir(tmp); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	if err = SwapDir(tmp, dir, replace); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	return syncDir(parent)
}

// checkTarget reports whether dir exists (and so must be replaced) and refuses to replace
// a non-empty directory without overwrite.
func checkTarget(dir string, overwrite bool) (exists bool, err error) {
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	if !st.IsDir() {
		return false, fmt.Errorf("save checkpoint %s: exists and is not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("save checkpoint %s: %w", dir, err)
	}
	if len(entries) > 0 && !overwrite {
		return false, fmt.Errorf("save checkpoint %s: directory is not empty (set overwrite to replace it)", dir)
	}
	return true, nil
}

// SwapDir renames the complete directory tmp to dir; with replace, the existing dir is
// first moved aside and removed after (and put back if the rename fails), so at every
// instant dir is either the old or the new complete checkpoint.
func SwapDir(tmp, dir string, replace bool) error {
	if !replace {
		return os.Rename(tmp, dir)
	}
	old := tmp + ".old"
	if err := os.Rename(dir, old); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Put the old checkpoint back so the caller loses nothing.
		if rerr := os.Rename(old, dir); rerr != nil {
			return fmt.Errorf("%w (and restoring the previous directory from %s failed: %v)", err, old, rerr)
		}
		return err
	}
	return os.RemoveAll(old)
}

// tokenizerBytes resolves the tokenizer to store, or nil for none.
func tokenizerBytes(opts SaveOptions) ([]byte, error) {
	raw := opts.TokenizerJSON
	src := "TokenizerJSON"
	if raw == nil && opts.TokenizerFrom != "" {
		path := opts.TokenizerFrom
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("tokenizer source: %w", err)
		}
		if st.IsDir() {
			path = filepath.Join(path, TokenizerFile)
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				return nil, nil // a checkpoint without a tokenizer passes on none
			}
		}
		if raw, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("tokenizer source: %w", err)
		}
		src = path
	}
	if raw != nil && !json.Valid(raw) {
		return nil, fmt.Errorf("tokenizer source %s is not valid JSON", src)
	}
	return raw, nil
}

// ScoreInit sets how LoadAsClassifier initialises a new score head: Std 0 gives zeros
// (every reward starts at 0), otherwise normal(0, Std) drawn from Seed.
type ScoreInit struct {
	Seed uint64
	Std  float64
}

// Load reads the checkpoint in dir as it is (causal LM or sequence classifier) and binds
// it to pool.
func Load(ctx context.Context, dir string, pool *kernels.Pool) (*transformer.Model, error) {
	cfg, err := loadConfig(dir)
	if err != nil {
		return nil, err
	}
	return load(ctx, dir, cfg, pool, false)
}

// loadConfig reads and validates dir's config.json, and rejects Hugging Face LlamaConfig
// options the engine does not implement (they would otherwise be silently ignored and
// the model would compute something else).
func loadConfig(dir string) (transformer.Config, error) {
	path := filepath.Join(dir, ConfigFile)
	cfg, err := transformer.LoadConfig(path)
	if err != nil {
		return transformer.Config{}, fmt.Errorf("load checkpoint %s: %w", dir, err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return transformer.Config{}, fmt.Errorf("load checkpoint %s: %w", dir, err)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return transformer.Config{}, fmt.Errorf("load checkpoint %s: parse %s: %w", dir, path, err)
	}
	unsupported := []struct{ key, why string }{
		{"rope_scaling", "RoPE scaling is not implemented"},
		{"attention_bias", "attention projections have no biases here"},
		{"mlp_bias", "MLP projections have no biases here"},
	}
	for _, u := range unsupported {
		v, ok := keys[u.key]
		if !ok {
			continue
		}
		switch s := string(bytes.TrimSpace(v)); s {
		case "null", "false", "{}":
			continue
		default:
			return transformer.Config{}, fmt.Errorf("load checkpoint %s: %s: %s = %s is not supported (%s)", dir, path, u.key, s, u.why)
		}
	}
	return cfg, nil
}

// LoadAsClassifier loads dir as a reward model (LlamaForSequenceClassification). A
// sequence-classifier checkpoint loads as is; a causal LM keeps its backbone, drops
// lm_head, and gets a new score.weight [1, hidden] initialised by init. This is how reward
// models start from a causal-LM checkpoint.
func LoadAsClassifier(ctx context.Context, dir string, pool *kernels.Pool, init ScoreInit) (*transformer.Model, error) {
	cfg, err := loadConfig(dir)
	if err != nil {
		return nil, err
	}
	if cfg.IsSequenceClassifier() {
		return load(ctx, dir, cfg, pool, false)
	}
	cfg.Architectures = []string{transformer.ArchSequenceClassifier}
	cfg.NumLabels = 1
	cfg.TieWordEmbeddings = false
	m, err := load(ctx, dir, cfg, pool, true)
	if err != nil {
		return nil, err
	}
	if init.Std < 0 || math.IsNaN(init.Std) {
		return nil, fmt.Errorf("load checkpoint %s: score init std %g must be >= 0", dir, init.Std)
	}
	if init.Std > 0 {
		rng := rand.New(rand.NewPCG(init.Seed, init.Seed^0x5c0e))
		for i := range m.W.Score {
			m.W.Score[i] = float32(rng.NormFloat64() * init.Std)
		}
	}
	return m, nil
}

// load builds a model for cfg and fills it from dir's safetensors file. With fromCausal,
// the file is a causal LM's: score.weight is not expected and lm_head.weight is dropped.
func load(ctx context.Context, dir string, cfg transformer.Config, pool *kernels.Pool, fromCausal bool) (*transformer.Model, error) {
	if cfg.IsSequenceClassifier() && cfg.NumLabels > 1 {
		return nil, fmt.Errorf("load checkpoint %s: num_labels %d is not supported (reward models have 1)", dir, cfg.NumLabels)
	}
	m, err := transformer.New(cfg, pool)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint %s: %w", dir, err)
	}
	path := filepath.Join(dir, WeightsFile)
	r, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint %s: %w", dir, err)
	}
	defer r.Close()
	if err := fill(ctx, r, m, fromCausal); err != nil {
		return nil, fmt.Errorf("load checkpoint %s: %s: %w", dir, WeightsFile, err)
	}
	return m, nil
}

// fill checks the file's tensors against the model's layout, reporting every problem at
// once, then reads them in.
func fill(ctx context.Context, r *safetensors.Reader, m *transformer.Model, fromCausal bool) error {
	want := map[string]transformer.Tensor{}
	for _, t := range m.W.Tensors {
		if fromCausal && t.Name == "score.weight" {
			continue
		}
		want[t.Name] = t
	}
	var missing, unexpected, misshaped, badType []string
	var tiedHead *safetensors.TensorInfo
	seen := map[string]bool{}
	for _, info := range r.Tensors() {
		seen[info.Name] = true
		t, ok := want[info.Name]
		switch {
		case !ok && info.Name == "lm_head.weight" && fromCausal:
			continue // the causal head is dropped when converting to a reward model
		case !ok && info.Name == "lm_head.weight" && m.Config.TieWordEmbeddings:
			tiedHead = &info // allowed if it equals the embedding, checked below
			continue
		case !ok && strings.HasSuffix(info.Name, ".rotary_emb.inv_freq"):
			continue // a derived buffer some older exports include
		case !ok:
			unexpected = append(unexpected, info.Name)
			continue
		}
		if !equalShape(info.Shape, t.Shape) {
			misshaped = append(misshaped, fmt.Sprintf("%s has shape %v, config wants %v", info.Name, info.Shape, t.Shape))
		}
		if !info.DType.Convertible() {
			badType = append(badType, fmt.Sprintf("%s has dtype %s", info.Name, info.DType))
		}
	}
	for name := range want {
		if !seen[name] {
			missing = append(missing, name)
		}
	}
	var problems []string
	add := func(what string, names []string) {
		if len(names) == 0 {
			return
		}
		sort.Strings(names)
		const show = 8
		list := strings.Join(names[:min(len(names), show)], ", ")
		if len(names) > show {
			list += fmt.Sprintf(", ... (%d more)", len(names)-show)
		}
		problems = append(problems, fmt.Sprintf("%s: %s", what, list))
	}
	add("missing tensors", missing)
	add("unexpected tensors", unexpected)
	add("wrong shapes", misshaped)
	add("unsupported dtypes", badType)
	if len(problems) > 0 {
		return fmt.Errorf("does not match config.json (%s, %d layers): %s", m.Config.Architectures, m.Config.NumHiddenLayers, strings.Join(problems, "; "))
	}
	for _, t := range m.W.Tensors {
		if _, ok := want[t.Name]; !ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.ReadFloat32(t.Name, t.Data); err != nil {
			return err
		}
	}
	if tiedHead != nil {
		head, err := r.Float32(tiedHead.Name)
		if err != nil {
			return err
		}
		if !equalShape(tiedHead.Shape, []int{m.Config.VocabSize, m.Config.HiddenSize}) || !equalBits(head, m.W.Embed) {
			return errors.New("lm_head.weight differs from model.embed_tokens.weight but tie_word_embeddings is true")
		}
	}
	if name := m.W.HasNonFinite(); name != "" {
		return fmt.Errorf("tensor %q holds NaN or Inf values", name)
	}
	return nil
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// WriteFileSync writes data to path (created or truncated, mode 0644) and fsyncs it.
func WriteFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
