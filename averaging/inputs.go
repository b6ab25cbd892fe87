package averaging

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/safetensors"
	"github.com/posttrain/posttrain/transformer"
)

// input is one model directory opened for averaging.
type input struct {
	dir       string
	cfg       transformer.Config
	cfgJSON   []byte
	tokJSON   []byte // nil when the model has no tokenizer.json
	tokSHA    string
	r         *safetensors.Reader
	byName    map[string]safetensors.TensorInfo
	tensors   []safetensors.TensorInfo
	arch      string
	paramSize int64
}

// openInput reads dir's config and tokenizer and opens its weights (headers only).
func openInput(dir string) (*input, error) {
	in := &input{dir: dir}
	cfgPath := filepath.Join(dir, checkpoint.ConfigFile)
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("averaging: model %s: %w", dir, err)
	}
	if in.cfg, err = transformer.LoadConfig(cfgPath); err != nil {
		return nil, fmt.Errorf("averaging: model %s: %w", dir, err)
	}
	in.cfgJSON = raw
	in.arch = transformer.ArchCausalLM
	if in.cfg.IsSequenceClassifier() {
		in.arch = transformer.ArchSequenceClassifier
	}
	tok, err := os.ReadFile(filepath.Join(dir, checkpoint.TokenizerFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("averaging: model %s: %w", dir, err)
	default:
		in.tokJSON = tok
		sum := sha256.Sum256(tok)
		in.tokSHA = hex.EncodeToString(sum[:])
	}
	if in.r, err = safetensors.Open(filepath.Join(dir, checkpoint.WeightsFile)); err != nil {
		return nil, fmt.Errorf("averaging: model %s: %w", dir, err)
	}
	in.tensors = in.r.Tensors()
	in.byName = make(map[string]safetensors.TensorInfo, len(in.tensors))
	for _, t := range in.tensors {
		if !t.DType.Convertible() {
			in.r.Close()
			return nil, fmt.Errorf("averaging: model %s: tensor %q has dtype %s, which cannot be averaged as float32", dir, t.Name, t.DType)
		}
		in.byName[t.Name] = t
		in.paramSize += int64(t.NumElements())
	}
	return in, nil
}

// openAll opens every input and checks they can be averaged; on error nothing stays open.
func openAll(dirs []string) ([]*input, error) {
	if len(dirs) == 0 {
		return nil, errors.New("averaging: no input models")
	}
	ins := make([]*input, 0, len(dirs))
	for _, d := range dirs {
		in, err := openInput(d)
		if err != nil {
			closeAll(ins)
			return nil, err
		}
		ins = append(ins, in)
	}
	for _, in := range ins[1:] {
		if err := compatible(ins[0], in); err != nil {
			closeAll(ins)
			return nil, err
		}
	}
	return ins, nil
}

func closeAll(ins []*input) {
	for _, in := range ins {
		in.r.Close()
	}
}

// Check reports whether the model directories can be averaged together: same
// architecture, configuration, tensor names and shapes, and tokenizer. The error names
// the two directories and the first difference.
func Check(dirs []string) error {
	ins, err := openAll(dirs)
	if err != nil {
		return err
	}
	closeAll(ins)
	return nil
}

// compatible compares b against the reference a.
func compatible(a, b *input) error {
	if a.arch != b.arch {
		return fmt.Errorf("averaging: cannot mix architectures: %s is a %s, %s is a %s", a.dir, a.arch, b.dir, b.arch)
	}
	ca, cb := a.cfg, b.cfg
	keys := []struct {
		key  string
		x, y any
	}{
		{"vocab_size", ca.VocabSize, cb.VocabSize}, {"hidden_size", ca.HiddenSize, cb.HiddenSize},
		{"intermediate_size", ca.IntermediateSize, cb.IntermediateSize}, {"num_hidden_layers", ca.NumHiddenLayers, cb.NumHiddenLayers},
		{"num_attention_heads", ca.NumAttentionHeads, cb.NumAttentionHeads}, {"num_key_value_heads", ca.NumKeyValueHeads, cb.NumKeyValueHeads},
		{"head_dim", ca.HeadDimension(), cb.HeadDimension()}, {"max_position_embeddings", ca.MaxPositionEmbeddings, cb.MaxPositionEmbeddings},
		{"rms_norm_eps", ca.RMSNormEps, cb.RMSNormEps}, {"rope_theta", ca.RopeTheta, cb.RopeTheta},
		{"tie_word_embeddings", ca.TieWordEmbeddings, cb.TieWordEmbeddings}, {"hidden_act", ca.HiddenAct, cb.HiddenAct},
		{"architectures", ca.Architectures, cb.Architectures},
	}
	for _, k := range keys {
		if fmt.Sprint(k.x) != fmt.Sprint(k.y) {
			return fmt.Errorf("averaging: cannot mix architectures: config.json %s is %v in %s but %v in %s", k.key, k.x, a.dir, k.y, b.dir)
		}
	}
	for _, t := range a.tensors {
		u, ok := b.byName[t.Name]
		if !ok {
			return fmt.Errorf("averaging: tensor %q of %s is missing from %s", t.Name, a.dir, b.dir)
		}
		if !slices.Equal(t.Shape, u.Shape) {
			return fmt.Errorf("averaging: tensor %q has shape %v in %s but %v in %s", t.Name, t.Shape, a.dir, u.Shape, b.dir)
		}
	}
	for _, u := range b.tensors {
		if _, ok := a.byName[u.Name]; !ok {
			return fmt.Errorf("averaging: tensor %q of %s is missing from %s", u.Name, b.dir, a.dir)
		}
	}
	switch {
	case a.tokJSON == nil && b.tokJSON != nil:
		return fmt.Errorf("averaging: cannot mix tokenizers: %s has no %s but %s has one", a.dir, checkpoint.TokenizerFile, b.dir)
	case a.tokJSON != nil && b.tokJSON == nil:
		return fmt.Errorf("averaging: cannot mix tokenizers: %s has a %s but %s has none", a.dir, checkpoint.TokenizerFile, b.dir)
	case a.tokSHA != b.tokSHA:
		return fmt.Errorf("averaging: cannot mix tokenizers: %s of %s (sha256 %.12s) differs from that of %s (sha256 %.12s)", checkpoint.TokenizerFile, a.dir, a.tokSHA, b.dir, b.tokSHA)
	}
	return nil
}
