package pretrain

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/transformer"
)

// InitOptions describe a freshly initialised model checkpoint.
type InitOptions struct {
	// Preset names a size preset; ConfigPath is a config.json. Exactly one is set.
	Preset     string
	ConfigPath string
	// Tokenizer is a tokenizer.json file or a directory holding one; empty means none.
	Tokenizer string
	// VocabSize, when > 0, overrides the config's vocab_size (e.g. to fit a tokenizer).
	VocabSize int
	Seed      uint64
	OutDir    string
	Overwrite bool
}

// Init writes a randomly initialised model (Hugging Face's LlamaModel initialisation from
// Seed) to OutDir, with the tokenizer copied in when given. The tokenizer's vocabulary
// must have exactly vocab_size tokens, and its begin/end-of-text ids go into config.json.
func Init(ctx context.Context, o InitOptions) (*checkpoint.Summary, error) {
	var cfg transformer.Config
	var err error
	switch {
	case o.OutDir == "":
		return nil, errors.New("model init: --out is required")
	case o.Preset != "" && o.ConfigPath != "":
		return nil, errors.New("model init: give --preset or --config, not both")
	case o.Preset != "":
		cfg, err = transformer.Preset(o.Preset)
	case o.ConfigPath != "":
		cfg, err = transformer.LoadConfig(o.ConfigPath)
	default:
		return nil, fmt.Errorf("model init: give --preset (one of %v) or --config config.json", transformer.PresetNames())
	}
	if err != nil {
		return nil, fmt.Errorf("model init: %w", err)
	}
	if o.VocabSize < 0 {
		return nil, fmt.Errorf("model init: --vocab-size must be > 0, got %d", o.VocabSize)
	}
	if o.VocabSize > 0 {
		cfg.VocabSize = o.VocabSize
	}
	var tokJSON []byte
	if o.Tokenizer != "" {
		path := o.Tokenizer
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			path = filepath.Join(path, tokenizer.FileName)
		}
		tok, err := tokenizer.LoadFile(path)
		if err != nil {
			return nil, fmt.Errorf("model init: %w", err)
		}
		if tok.VocabSize() != cfg.VocabSize {
			return nil, fmt.Errorf("model init: tokenizer %s has %d tokens but vocab_size is %d; pass --vocab-size %d to size the model to it",
				path, tok.VocabSize(), cfg.VocabSize, tok.VocabSize())
		}
		if tokJSON, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("model init: %w", err)
		}
		if id := tok.BOS(); id >= 0 {
			v := int(id)
			cfg.BosTokenID = &v
		}
		if id := tok.EOS(); id >= 0 {
			v := int(id)
			cfg.EosTokenID = &v
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("model init: %w", err)
	}
	pool := kernels.NewPool(1)
	defer pool.Close()
	m, err := transformer.New(cfg, pool)
	if err != nil {
		return nil, fmt.Errorf("model init: %w", err)
	}
	m.Init(o.Seed)
	if err := checkpoint.Save(ctx, o.OutDir, m, checkpoint.SaveOptions{TokenizerJSON: tokJSON, Overwrite: o.Overwrite}); err != nil {
		return nil, fmt.Errorf("model init: %w", err)
	}
	return checkpoint.Info(o.OutDir)
}
