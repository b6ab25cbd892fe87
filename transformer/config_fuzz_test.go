package transformer_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/transformer"
)

// FuzzLoadConfig feeds arbitrary config.json bytes to LoadConfig: it must never panic,
// and a config it accepts must be internally consistent and survive a save/load round
// trip unchanged.
func FuzzLoadConfig(f *testing.F) {
	for _, name := range transformer.PresetNames() {
		c, err := transformer.Preset(name)
		require.NoError(f, err)
		dir := f.TempDir()
		require.NoError(f, c.SaveConfig(dir))
		raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
		require.NoError(f, err)
		f.Add(raw)
	}
	f.Add([]byte(`{"vocab_size": 8, "hidden_size": 4, "intermediate_size": 4, "num_hidden_layers": 1, "num_attention_heads": 3, "num_key_value_heads": 2}`))
	f.Add([]byte(`{"architectures": ["LlamaForSequenceClassification"], "tie_word_embeddings": true}`))
	f.Add([]byte(`{"hidden_size": -1}`))
	f.Add([]byte(`{"rope_scaling": {"type": "linear"}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "config.json")
		require.NoError(t, os.WriteFile(path, raw, 0o644))
		c, err := transformer.LoadConfig(path)
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		require.NoError(t, c.Validate())
		require.Positive(t, c.VocabSize)
		require.Positive(t, c.HiddenSize)
		require.Positive(t, c.NumHiddenLayers)
		require.Positive(t, c.NumAttentionHeads)
		require.Positive(t, c.NumKeyValueHeads)
		require.Zero(t, c.NumAttentionHeads%c.NumKeyValueHeads, "heads must group over kv heads")
		require.Positive(t, c.HeadDimension())
		out := t.TempDir()
		require.NoError(t, c.SaveConfig(out))
		back, err := transformer.LoadConfig(filepath.Join(out, "config.json"))
		require.NoError(t, err)
		require.Equal(t, c, back)
	})
}
