package pretrain

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/transformer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// storyText is a small generated corpus with enough repetition to be learnable.
func storyText(n int) []string {
	names := []string{"Ada", "Ben", "Cleo", "Dan", "Eve"}
	things := []string{"a red ball", "a small boat", "the old map", "a blue kite"}
	var docs []string
	for i := 0; i < n; i++ {
		docs = append(docs, fmt.Sprintf("%s found %s. %s was happy and showed %s to %s.",
			names[i%5], things[i%4], names[i%5], things[i%4], names[(i+1)%5]))
	}
	return docs
}

// fixture writes a tokenizer-equipped tiny model and a corpus (one .txt, one .jsonl).
func fixture(t *testing.T) (modelDir string, data []string) {
	t.Helper()
	dir := t.TempDir()
	docs := storyText(40)
	tok, err := tokenizer.Train(context.Background(), slices.Values(docs), 300, tokenizer.TrainOptions{})
	require.NoError(t, err)
	cfg, err := transformer.Preset("tiny")
	require.NoError(t, err)
	cfg.VocabSize = tok.VocabSize()
	pool := kernels.NewPool(1)
	defer pool.Close()
	m, err := transformer.New(cfg, pool)
	require.NoError(t, err)
	m.Init(3)
	raw, err := tok.MarshalJSON()
	require.NoError(t, err)
	modelDir = filepath.Join(dir, "model")
	require.NoError(t, checkpoint.Save(context.Background(), modelDir, m, checkpoint.SaveOptions{TokenizerJSON: raw}))

	txt := filepath.Join(dir, "a.txt")
	require.NoError(t, os.WriteFile(txt, []byte(strings.Join(docs[:20], "\n")), 0o644))
	var lines []string
	for _, d := range docs[20:] {
		lines = append(lines, fmt.Sprintf("{\"text\": %q, \"id\": 1}", d))
	}
	jsonl := filepath.Join(dir, "b.jsonl")
	require.NoError(t, os.WriteFile(jsonl, []byte(strings.Join(lines, "\n")+"\n\n"), 0o644))
	return modelDir, []string{txt, jsonl}
}

func TestLoadCorpus(t *testing.T) {
	modelDir, data := fixture(t)
	tok, err := tokenizer.LoadDir(modelDir)
	require.NoError(t, err)
	c, err := LoadCorpus(context.Background(), data, tok)
	require.NoError(t, err)
	assert.Equal(t, 21, c.Docs, "one .txt document and 20 JSONL rows")
	assert.Equal(t, tok.BOS(), c.Tokens[0])
	assert.Equal(t, tok.EOS(), c.Tokens[len(c.Tokens)-1])
	bos := 0
	for _, id := range c.Tokens {
		if id == tok.BOS() {
			bos++
		}
	}
	assert.Equal(t, 21, bos)
	assert.Len(t, c.SHA256, 64)

	// The text between the first BOS and EOS decodes back to the .txt file.
	end := slices.Index(c.Tokens, tok.EOS())
	want, err := os.ReadFile(data[0])
	require.NoError(t, err)
	assert.Equal(t, string(want), tok.Decode(c.Tokens[1:end]))

	// Rows: inputs are the stream, targets the stream shifted by one; positions and
	// segments restart at each document; the next document's BOS is not scored.
	T := 16
	require.Equal(t, (len(c.Tokens)-1)/T, c.Rows(T))
	tokens, targets, pos, seg := make([]int32, T), make([]int32, T), make([]int32, T), make([]int32, T)
	for r := 0; r < c.Rows(T); r++ {
		c.FillRow(r, T, tokens, targets, pos, seg)
		for i := 0; i < T; i++ {
			assert.Equal(t, c.Tokens[r*T+i], tokens[i])
			next := c.Tokens[r*T+i+1]
			if next == tok.BOS() {
				assert.Equal(t, int32(-1), targets[i])
			} else {
				assert.Equal(t, next, targets[i])
			}
			if i > 0 && tokens[i] == tok.BOS() {
				assert.Equal(t, int32(0), pos[i])
				assert.Equal(t, seg[i-1]+1, seg[i])
			} else if i > 0 {
				assert.Equal(t, pos[i-1]+1, pos[i])
				assert.Equal(t, seg[i-1], seg[i])
			}
		}
	}
}

func TestLoadCorpusErrors(t *testing.T) {
	modelDir, _ := fixture(t)
	tok, err := tokenizer.LoadDir(modelDir)
	require.NoError(t, err)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	tests := []struct {
		name  string
		files []string
		want  string
	}{
		{"none", nil, "no data files"},
		{"missing", []string{filepath.Join(dir, "nope.txt")}, "nope.txt"},
		{"empty text", []string{write("e.txt", " \n")}, "e.txt is empty"},
		{"bad json", []string{write("bad.jsonl", "{\"text\": \"ok\"}\n{nope\n")}, "bad.jsonl:2"},
		{"no text field", []string{write("nt.jsonl", "{\"body\": \"x\"}\n")}, "nt.jsonl:1: no string field \"text\""},
		{"no documents", []string{write("blank.jsonl", "\n\n")}, "blank.jsonl has no documents"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadCorpus(context.Background(), tc.files, tok)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func testOptions(model, out string, data []string, steps int) Options {
	o := DefaultOptions()
	o.ModelDir, o.OutDir, o.Data = model, out, data
	o.Steps, o.Batch, o.Seq = steps, 4, 32
	o.Schedule.PeakLR, o.Schedule.WarmupSteps = 3e-3, 2
	o.CheckpointEvery = 3
	o.Threads = 2
	return o
}

func TestPretrainLearnsAndResumesExactly(t *testing.T) {
	model, data := fixture(t)
	dir := t.TempDir()
	const steps = 12

	// Straight through, with a metrics log.
	straight := filepath.Join(dir, "straight")
	var calls int
	o := testOptions(model, straight, data, steps)
	o.MetricsFile = filepath.Join(dir, "metrics.jsonl")
	res, err := Run(context.Background(), o, func(trainer.Progress) { calls++ })
	require.NoError(t, err)
	logged, err := os.ReadFile(o.MetricsFile)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(logged)), "\n")
	require.Len(t, lines, steps)
	var last trainer.Progress
	require.NoError(t, json.Unmarshal([]byte(lines[steps-1]), &last))
	assert.Equal(t, steps, last.Step)
	assert.Equal(t, res.FinalLoss, last.Loss)
	assert.Equal(t, steps, calls)
	assert.Equal(t, steps, res.Steps)
	assert.Less(t, res.FinalLoss, res.FirstLoss-0.5, "loss %.3f -> %.3f", res.FirstLoss, res.FinalLoss)
	assert.Equal(t, int64(steps*4*32), res.Tokens)
	for _, f := range []string{checkpoint.ConfigFile, checkpoint.WeightsFile, checkpoint.TokenizerFile, trainer.StateJSONFile, trainer.StateMomentsFile} {
		assert.FileExists(t, filepath.Join(straight, f))
	}

	// Interrupted after 5 updates (Ctrl-C): the updates are saved on the way out...
	split := filepath.Join(dir, "split")
	ctx, cancel := context.WithCancel(context.Background())
	res, err = Run(ctx, testOptions(model, split, data, steps), func(p trainer.Progress) {
		if p.Step == 5 {
			cancel()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 5, res.Steps)
	st, err := trainer.LoadState(split)
	require.NoError(t, err)
	assert.Equal(t, 5, st.Step)

	// ...and --resume continues to the same final weights, bit for bit.
	opts := testOptions("", split, data, steps)
	opts.Resume = true
	res, err = Run(context.Background(), opts, nil)
	require.NoError(t, err)
	assert.Equal(t, 5, res.StartStep)
	assert.Equal(t, steps, res.Steps)
	a, err := os.ReadFile(filepath.Join(straight, checkpoint.WeightsFile))
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(split, checkpoint.WeightsFile))
	require.NoError(t, err)
	assert.True(t, slices.Equal(a, b), "resumed weights differ from the uninterrupted run")
	a, err = os.ReadFile(filepath.Join(straight, trainer.StateMomentsFile))
	require.NoError(t, err)
	b, err = os.ReadFile(filepath.Join(split, trainer.StateMomentsFile))
	require.NoError(t, err)
	assert.True(t, slices.Equal(a, b), "resumed optimizer moments differ")
	// Resuming a finished run does nothing and still reports (JSON-safe) numbers.
	res, err = Run(context.Background(), opts, nil)
	require.NoError(t, err)
	assert.Equal(t, steps, res.StartStep)
	assert.Equal(t, steps, res.Steps)
	_, err = json.Marshal(res)
	require.NoError(t, err)

	_, err = os.Stat(split + ".staging")
	assert.True(t, os.IsNotExist(err), "no staging directory left behind")
}

func TestPretrainRejectsBadInput(t *testing.T) {
	model, data := fixture(t)
	dir := t.TempDir()
	used := filepath.Join(dir, "used")
	require.NoError(t, os.MkdirAll(used, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(used, "x"), []byte("x"), 0o644))
	small := filepath.Join(dir, "small.txt")
	require.NoError(t, os.WriteFile(small, []byte("Ada found"), 0o644))
	noTok := filepath.Join(dir, "notok")
	m, err := checkpoint.Load(context.Background(), model, kernels.NewPool(1))
	require.NoError(t, err)
	require.NoError(t, checkpoint.Save(context.Background(), noTok, m, checkpoint.SaveOptions{}))

	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no out", func(o *Options) { o.OutDir = "" }, "--out is required"},
		{"no model", func(o *Options) { o.ModelDir = "" }, "--model is required"},
		{"steps", func(o *Options) { o.Steps = 0 }, "--steps"},
		{"seq too long", func(o *Options) { o.Seq = 100000 }, "max_position_embeddings"},
		{"out not empty", func(o *Options) { o.OutDir = used }, "is not empty"},
		{"resume nothing", func(o *Options) { o.Resume = true; o.OutDir = filepath.Join(dir, "fresh") }, "holds no trainer_state.json"},
		{"no tokenizer", func(o *Options) { o.ModelDir = noTok }, "has no tokenizer.json"},
		{"corpus too small", func(o *Options) { o.Data = []string{small} }, "fewer than one row"},
		{"bad lr", func(o *Options) { o.Schedule.PeakLR = -1 }, "peak_lr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(model, filepath.Join(dir, "out-"+strings.ReplaceAll(tc.name, " ", "-")), data, 2)
			tc.edit(&o)
			_, err := Run(context.Background(), o, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}

	// A resume with a different --seq is refused: the rows would not be the same.
	out := filepath.Join(dir, "run")
	_, err = Run(context.Background(), testOptions(model, out, data, 2), nil)
	require.NoError(t, err)
	o := testOptions("", out, data, 4)
	o.Resume, o.Seq = true, 16
	_, err = Run(context.Background(), o, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "seq=32, this one 16")
}
