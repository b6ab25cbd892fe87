package textio

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/inference"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/transformer"
)

func testTokenizer(t *testing.T) *tokenizer.Tokenizer {
	t.Helper()
	texts := []string{"the cat sat on the mat", "a dog ran to the park", "hello world, hello cat"}
	tok, err := tokenizer.Train(context.Background(), slices.Values(texts), 300, tokenizer.TrainOptions{})
	require.NoError(t, err)
	return tok
}

func testModel(t *testing.T, vocab int) *transformer.Model {
	t.Helper()
	pool := kernels.NewPool(1)
	t.Cleanup(pool.Close)
	m, err := transformer.New(transformer.Config{
		Architectures: []string{transformer.ArchCausalLM}, ModelType: "llama",
		VocabSize: vocab, HiddenSize: 16, IntermediateSize: 32, NumHiddenLayers: 1,
		NumAttentionHeads: 2, NumKeyValueHeads: 1, MaxPositionEmbeddings: 96,
		RMSNormEps: 1e-5, RopeTheta: 500000, HiddenAct: "silu", InitializerRange: 0.2,
	}, pool)
	require.NoError(t, err)
	m.Init(1)
	return m
}

func TestPromptIDs(t *testing.T) {
	tok := testTokenizer(t)
	msgs := []tokenizer.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hello cat"}}
	chat, err := tok.RenderPrompt(msgs)
	require.NoError(t, err)
	userOnly, err := tok.RenderPrompt([]tokenizer.Message{{Role: "user", Content: "hello cat"}})
	require.NoError(t, err)
	cases := []struct {
		name string
		tok  *tokenizer.Tokenizer
		in   PromptInput
		want []int32
		err  string
	}{
		{"text uses the chat template", tok, PromptInput{Text: "hello cat", HasText: true}, userOnly, ""},
		{"raw text is BOS + plain encoding", tok, PromptInput{Text: "hello cat", HasText: true, Raw: true}, append([]int32{tok.BOS()}, tok.Encode("hello cat")...), ""},
		{"messages", tok, PromptInput{Messages: msgs}, chat, ""},
		{"ids exactly", nil, PromptInput{IDs: []int32{5, 1, 2}}, []int32{5, 1, 2}, ""},
		{"ids ignore the tokenizer", tok, PromptInput{IDs: []int32{7}}, []int32{7}, ""},
		{"text without tokenizer", nil, PromptInput{Text: "x", HasText: true}, nil, "no tokenizer.json"},
		{"two forms", tok, PromptInput{Text: "x", HasText: true, IDs: []int32{1}}, nil, "exactly one"},
		{"none", tok, PromptInput{}, nil, "exactly one"},
		{"empty ids", nil, PromptInput{IDs: []int32{}}, nil, "empty"},
		{"bad role", tok, PromptInput{Messages: []tokenizer.Message{{Role: "robot", Content: "x"}}}, nil, "unknown role"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := PromptIDs(c.tok, c.in)
			if c.err != "" {
				require.ErrorContains(t, err, c.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
	assert.Equal(t, tok.StopIDs(), StopTokens(tok, transformer.Config{}))
	eos := 3
	assert.Equal(t, []int32{3}, StopTokens(nil, transformer.Config{EosTokenID: &eos}))
	assert.Nil(t, StopTokens(nil, transformer.Config{}))
}

func TestReadMessagesFile(t *testing.T) {
	dir := t.TempDir()
	want := []tokenizer.Message{{Role: "user", Content: "hi"}}
	cases := []struct {
		name, body, err string
	}{
		{"list", `[{"role":"user","content":"hi"}]`, ""},
		{"object", `{"messages":[{"role":"user","content":"hi"}], "id": 3}`, ""},
		{"empty", `[]`, "the list is empty"},
		{"object without messages", `{"id": 3}`, `"messages"`},
		{"bad json", `[{"role":`, "messages"},
		{"unknown field", `[{"role":"user","text":"hi"}]`, "unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".json")
			require.NoError(t, os.WriteFile(p, []byte(c.body), 0o644))
			got, err := ReadMessagesFile(p)
			if c.err != "" {
				require.ErrorContains(t, err, c.err)
				require.ErrorContains(t, err, p)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, want, got)
		})
	}
}

func TestParseRows(t *testing.T) {
	tok := testTokenizer(t)
	eot := tok.EOT()
	chat, err := tok.RenderChat([]tokenizer.Message{{Role: "user", Content: "the cat"}, {Role: "assistant", Content: "sat"}}, tokenizer.RenderOptions{})
	require.NoError(t, err)
	last := chat.Turns[1]
	input := strings.Join([]string{
		`{"prompt_ids": [1, 2], "completion_ids": [3], "id": "a"}`,
		``,
		`{"prompt": "the cat", "completion": "sat"}`,
		`{"messages": [{"role": "user", "content": "the cat"}, {"role": "assistant", "content": "sat"}]}`,
	}, "\n")
	rows, err := ParseRows(strings.NewReader(input), "in.jsonl", RowOptions{Tokenizer: tok})
	require.NoError(t, err)
	require.Len(t, rows, 3)
	assert.Equal(t, []int{1, 3, 4}, []int{rows[0].Line, rows[1].Line, rows[2].Line})
	assert.Equal(t, inference.ScoreItem{Prompt: []int32{1, 2}, Completion: []int32{3}}, rows[0].Item)
	wantChat := inference.ScoreItem{Prompt: chat.IDs[:last.ContentStart], Completion: chat.IDs[last.ContentStart:last.End]}
	assert.Equal(t, wantChat, rows[1].Item)
	assert.Equal(t, wantChat, rows[2].Item)
	assert.Equal(t, eot, wantChat.Completion[len(wantChat.Completion)-1], "the answer's <|eot_id|> is scored")
	assert.JSONEq(t, `"a"`, string(rows[0].Fields["id"]))

	raw, err := ParseRows(strings.NewReader(`{"prompt": "the cat", "completion": " sat"}`), "in.jsonl", RowOptions{Tokenizer: tok, Raw: true})
	require.NoError(t, err)
	assert.Equal(t, inference.ScoreItem{Prompt: append([]int32{tok.BOS()}, tok.Encode("the cat")...), Completion: tok.Encode(" sat")}, raw[0].Item)

	bad := []struct {
		name, line string
		tok        *tokenizer.Tokenizer
		err        string
	}{
		{"json", `{"prompt_ids": [1,`, tok, "in.jsonl:2: invalid JSON"},
		{"missing completion ids", `{"prompt_ids": [1]}`, tok, `in.jsonl:2: field "completion_ids" is missing`},
		{"ids not ints", `{"prompt_ids": [1.5], "completion_ids": [1]}`, tok, `in.jsonl:2: field "prompt_ids": want a list of integer token ids`},
		{"negative id", `{"prompt_ids": [1], "completion_ids": [-4]}`, tok, `completion_ids[0] = -4 is not a token id`},
		{"no form", `{"text": "x"}`, tok, `in.jsonl:2: want "prompt_ids"`},
		{"text without tokenizer", `{"prompt": "a", "completion": "b"}`, nil, "in.jsonl:2: a prompt/completion row needs a tokenizer"},
		{"messages without tokenizer", `{"messages": []}`, nil, "in.jsonl:2: a messages row needs a tokenizer"},
		{"last not assistant", `{"messages": [{"role": "user", "content": "x"}]}`, tok, "in.jsonl:2: field \"messages\": the last message must be the assistant's"},
		{"completion not string", `{"prompt": "a", "completion": 3}`, tok, `in.jsonl:2: field "completion": want a string`},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRows(strings.NewReader("{\"prompt_ids\": [1], \"completion_ids\": [2]}\n"+c.line), "in.jsonl", RowOptions{Tokenizer: c.tok})
			require.ErrorContains(t, err, c.err)
		})
	}
}

func TestScoreFile(t *testing.T) {
	tok := testTokenizer(t)
	m := testModel(t, tok.VocabSize())
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	out := filepath.Join(dir, "out.jsonl")
	chat, err := tok.RenderChat([]tokenizer.Message{{Role: "user", Content: "hello <|eot_id|> cat"}, {Role: "assistant", Content: "the mat"}}, tokenizer.RenderOptions{})
	require.NoError(t, err)
	last := chat.Turns[1]
	idsRow, err := json.Marshal(map[string]any{"prompt_ids": chat.IDs[:last.ContentStart], "completion_ids": chat.IDs[last.ContentStart:last.End], "id": 1})
	require.NoError(t, err)
	body := string(idsRow) + "\n" +
		`{"prompt": "hello <|eot_id|> cat", "completion": "the mat", "id": 2}` + "\n" +
		`{"prompt_ids": [5, 6, 7], "completion_ids": [8, 9], "id": 3}` + "\n"
	require.NoError(t, os.WriteFile(in, []byte(body), 0o644))
	var calls [][2]int
	sum, err := ScoreFile(context.Background(), m, in, out, ScoreOptions{
		RowOptions: RowOptions{Tokenizer: tok}, BatchSize: 2,
		Progress: func(done, total int) { calls = append(calls, [2]int{done, total}) },
	})
	require.NoError(t, err)
	assert.Equal(t, [][2]int{{2, 3}, {3, 3}}, calls)
	assert.Equal(t, 3, sum.Rows)

	raw, err := os.ReadFile(out)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	require.Len(t, lines, 3)
	assert.Contains(t, lines[1], `"hello <|eot_id|> cat"`, "special-token text is not HTML-escaped")
	type outRow struct {
		ID            int       `json:"id"`
		LogProb       float64   `json:"logprob"`
		TokenLogProbs []float32 `json:"token_logprobs"`
		CompletionIDs []int32   `json:"completion_ids"`
		Completion    string    `json:"completion"`
	}
	var rows []outRow
	for _, l := range lines {
		var r outRow
		require.NoError(t, json.Unmarshal([]byte(l), &r))
		rows = append(rows, r)
	}
	assert.Equal(t, []int{1, 2, 3}, []int{rows[0].ID, rows[1].ID, rows[2].ID}, "input fields and order are kept")
	assert.Equal(t, "the mat", rows[1].Completion)
	assert.Equal(t, rows[0].TokenLogProbs, rows[1].TokenLogProbs, "text and pre-tokenized forms of one chat agree")
	assert.Len(t, rows[2].TokenLogProbs, 2)
	sc, err := inference.NewScorer(m, 1)
	require.NoError(t, err)
	want, err := sc.Score(context.Background(), []inference.ScoreItem{{Prompt: []int32{5, 6, 7}, Completion: []int32{8, 9}}}, nil)
	require.NoError(t, err)
	assert.InDelta(t, want[0].LogProb, rows[2].LogProb, 1e-5)
	var total float64
	for _, r := range rows {
		total += r.LogProb
	}
	assert.InDelta(t, total/3, sum.MeanLogProb, 1e-9)

	// A bad row anywhere stops the run before anything is written, naming file:line.
	require.NoError(t, os.WriteFile(in, []byte(body+`{"prompt_ids": [1], "completion_ids": [99999]}`+"\n"), 0o644))
	before, err := os.ReadFile(out)
	require.NoError(t, err)
	_, err = ScoreFile(context.Background(), m, in, out, ScoreOptions{RowOptions: RowOptions{Tokenizer: tok}})
	require.ErrorContains(t, err, in+":4: completion token 99999 at index 0 is outside the vocabulary")
	after, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, before, after)

	require.NoError(t, os.WriteFile(in, []byte("\n\n"), 0o644))
	_, err = ScoreFile(context.Background(), m, in, out, ScoreOptions{})
	require.ErrorContains(t, err, "no rows")
}
