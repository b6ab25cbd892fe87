// Package transformer owns the Llama-3-style decoder: its configuration (Hugging Face
// LlamaConfig keys), its parameters as named views into one flat float32 buffer, and the
// training forward and backward passes built on the kernels package.
package transformer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Architecture names as written in config.json's "architectures" list.
const (
	ArchCausalLM           = "LlamaForCausalLM"
	ArchSequenceClassifier = "LlamaForSequenceClassification"
)

// Config holds the model hyper-parameters under the JSON keys of Hugging Face's LlamaConfig,
// so a config.json written here loads in transformers and vice versa.
type Config struct {
	Architectures         []string `json:"architectures"`
	ModelType             string   `json:"model_type"`
	VocabSize             int      `json:"vocab_size"`
	HiddenSize            int      `json:"hidden_size"`
	IntermediateSize      int      `json:"intermediate_size"`
	NumHiddenLayers       int      `json:"num_hidden_layers"`
	NumAttentionHeads     int      `json:"num_attention_heads"`
	NumKeyValueHeads      int      `json:"num_key_value_heads"`
	HeadDim               int      `json:"head_dim,omitempty"`
	MaxPositionEmbeddings int      `json:"max_position_embeddings"`
	RMSNormEps            float64  `json:"rms_norm_eps"`
	RopeTheta             float64  `json:"rope_theta"`
	TieWordEmbeddings     bool     `json:"tie_word_embeddings"`
	HiddenAct             string   `json:"hidden_act"`
	TorchDtype            string   `json:"torch_dtype"`
	BosTokenID            *int     `json:"bos_token_id,omitempty"`
	EosTokenID            *int     `json:"eos_token_id,omitempty"`
	PadTokenID            *int     `json:"pad_token_id,omitempty"`
	NumLabels             int      `json:"num_labels,omitempty"`
	InitializerRange      float64  `json:"initializer_range"`
}

// presets are the named sizes; see Preset.
func presets() map[string]Config {
	base := func(vocab, hidden, inter, layers, heads, kv, ctx int) Config {
		return Config{
			Architectures: []string{ArchCausalLM}, ModelType: "llama",
			VocabSize: vocab, HiddenSize: hidden, IntermediateSize: inter,
			NumHiddenLayers: layers, NumAttentionHeads: heads, NumKeyValueHeads: kv,
			MaxPositionEmbeddings: ctx, RMSNormEps: 1e-5, RopeTheta: 500000,
			HiddenAct: "silu", TorchDtype: "float32", InitializerRange: 0.02,
		}
	}
	return map[string]Config{
		// tiny is for tests and the demo: small enough to train in seconds.
		"tiny": base(512, 64, 176, 2, 4, 2, 256),
		// bench matches ../shared/bench/torch_llama.py, the PyTorch peer.
		"bench": base(4096, 256, 688, 4, 8, 4, 256),
		// small is about the size of llama2.c's stories15M.
		"small": base(32000, 288, 768, 6, 6, 6, 256),
	}
}

// PresetNames lists the built-in size presets in sorted order.
func PresetNames() []string {
	p := presets()
	names := make([]string, 0, len(p))
	for n := range p {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Preset returns the named size preset.
func Preset(name string) (Config, error) {
	c, ok := presets()[name]
	if !ok {
		return Config{}, fmt.Errorf("unknown model preset %q (known: %v)", name, PresetNames())
	}
	return c, nil
}

// HeadDimension is the per-head width: head_dim when set, else hidden_size / num_attention_heads.
func (c Config) HeadDimension() int {
	if c.HeadDim > 0 {
		return c.HeadDim
	}
	if c.NumAttentionHeads == 0 {
		return 0
	}
	return c.HiddenSize / c.NumAttentionHeads
}

// IsSequenceClassifier reports whether the config describes a reward model (score head).
func (c Config) IsSequenceClassifier() bool {
	for _, a := range c.Architectures {
		if a == ArchSequenceClassifier {
			return true
		}
	}
	return false
}

// Validate checks the config for values the engine cannot run, naming the offending key.
func (c Config) Validate() error {
	positive := []struct {
		key string
		v   int
	}{
		{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize},
		{"intermediate_size", c.IntermediateSize}, {"num_hidden_layers", c.NumHiddenLayers},
		{"num_attention_heads", c.NumAttentionHeads}, {"num_key_value_heads", c.NumKeyValueHeads},
		{"max_position_embeddings", c.MaxPositionEmbeddings},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("config: %s must be > 0, got %d", p.key, p.v)
		}
	}
	if c.HeadDim == 0 && c.HiddenSize%c.NumAttentionHeads != 0 {
		return fmt.Errorf("config: hidden_size %d is not divisible by num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return fmt.Errorf("config: num_attention_heads %d is not divisible by num_key_value_heads %d", c.NumAttentionHeads, c.NumKeyValueHeads)
	}
	if c.HeadDimension()%2 != 0 {
		return fmt.Errorf("config: head dimension %d must be even for rotary embeddings", c.HeadDimension())
	}
	if c.RMSNormEps <= 0 {
		return fmt.Errorf("config: rms_norm_eps must be > 0, got %g", c.RMSNormEps)
	}
	if c.RopeTheta <= 0 {
		return fmt.Errorf("config: rope_theta must be > 0, got %g", c.RopeTheta)
	}
	if c.HiddenAct != "" && c.HiddenAct != "silu" {
		return fmt.Errorf("config: hidden_act %q is not supported (only silu)", c.HiddenAct)
	}
	if c.ModelType != "" && c.ModelType != "llama" {
		return fmt.Errorf("config: model_type %q is not supported (only llama)", c.ModelType)
	}
	if c.TieWordEmbeddings && c.IsSequenceClassifier() {
		return fmt.Errorf("config: tie_word_embeddings cannot be set on a %s", ArchSequenceClassifier)
	}
	return nil
}

// LoadConfig reads and validates a config.json.
func LoadConfig(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read model config: %w", err)
	}
	c := Config{RMSNormEps: 1e-5, RopeTheta: 500000, HiddenAct: "silu", ModelType: "llama"}
	if err := json.Unmarshal(raw, &c); err != nil {
		return Config{}, fmt.Errorf("parse %s: %w", path, err)
	}
	if c.NumKeyValueHeads == 0 {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// SaveConfig writes config.json into dir.
func (c Config) SaveConfig(dir string) error {
	raw, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode model config: %w", err)
	}
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
