package datasets

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/tokenizer"
)

func TestPreferenceFormats(t *testing.T) {
	cases := []struct {
		name       string
		line       string
		wantPrompt Form
		wantChosen string
		wantIDs    []int32
		wantEdited bool
	}{
		{"strings", `{"prompt":"2+2?","chosen":"4","rejected":"5"}`, FormString, "4", nil, false},
		{"explicit prompt, message responses", `{"prompt":[{"role":"user","content":"2+2?"}],"chosen":[{"role":"assistant","content":"4"}],"rejected":[{"role":"assistant","content":"5"}]}`, FormMessages, "4", nil, false},
		{"implicit prompt", `{"chosen":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}],"rejected":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"5"}]}`, FormMessages, "4", nil, false},
		{"edited and margin", `{"prompt":"q","chosen":"a","rejected":"b","edited":"c","margin":0.5,"rating":"better"}`, FormString, "a", nil, true},
		{"pre-tokenized", `{"prompt_ids":[1,2],"chosen_ids":[3,4],"rejected_ids":[5],"extra":"ignored"}`, FormIDs, "", []int32{3, 4}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePreference([]byte(tc.line))
			require.NoError(t, err)
			assert.Equal(t, tc.wantPrompt, p.Prompt.Form)
			assert.Equal(t, tc.wantChosen, p.Chosen.String)
			assert.Equal(t, tc.wantIDs, p.Chosen.IDs)
			assert.Equal(t, tc.wantEdited, !p.Edited.IsZero())
			// Export and re-parse give the same row.
			var buf bytes.Buffer
			require.NoError(t, WriteJSONL(&buf, []Preference{p}))
			back, err := ReadPreferences(&buf, "roundtrip", ReadOptions{})
			require.NoError(t, err)
			require.Len(t, back, 1)
			back[0].Line = 0
			assert.Equal(t, p, back[0])
		})
	}
}

func TestBadFilesNameTheLineAndImportNothing(t *testing.T) {
	cases := map[string]string{
		"broken_json.jsonl":      "broken_json.jsonl:2: not a JSON object",
		"wrong_type.jsonl":       "wrong_type.jsonl:3: field chosen: must be a string or a list of messages, got a number",
		"missing_rejected.jsonl": "missing_rejected.jsonl:1: field rejected: missing",
		"empty_response.jsonl":   "empty_response.jsonl:1: field chosen: empty response",
		"invalid_utf8.jsonl":     "invalid_utf8.jsonl:2: invalid UTF-8 at byte 12",
		"negative_id.jsonl":      "negative_id.jsonl:1: field chosen_ids[1]: token id must be an integer",
		"mixed_forms.jsonl":      "a pre-tokenized row must give every field as ids, but chosen is text",
		"unknown_role.jsonl":     `field prompt[0].role: unknown role "robot"`,
		"bad_margin.jsonl":       "field margin: must be a finite number, got a string",
		"not_object.jsonl":       "not_object.jsonl:1: not a JSON object",
	}
	for file, want := range cases {
		t.Run(file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", file)
			rows, err := ReadPreferencesFile(path, ReadOptions{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), want)
			assert.Nil(t, rows, "nothing of a bad file is returned")
		})
	}
}

func TestHugeLineIsRejected(t *testing.T) {
	line := `{"prompt":"` + strings.Repeat("x", 5000) + `","chosen":"a","rejected":"b"}`
	_, err := ReadPreferences(strings.NewReader("\n"+line+"\n"), "big.jsonl", ReadOptions{MaxLineBytes: 1024})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "big.jsonl:2: line is longer than 1024 bytes")
	rows, err := ReadPreferences(strings.NewReader(line), "big.jsonl", ReadOptions{MaxLineBytes: 6000})
	require.NoError(t, err)
	assert.Equal(t, 1, rows[0].Line)
}

func TestPromptsAndSFT(t *testing.T) {
	prompts, err := ReadPrompts(strings.NewReader(`{"prompt":"a"}
{"messages":[{"role":"user","content":"b"},{"role":"assistant","content":"drop me"}]}
{"prompt_ids":[7,8]}
`), "p.jsonl", ReadOptions{})
	require.NoError(t, err)
	require.Len(t, prompts, 3)
	assert.Len(t, prompts[1].Prompt.Messages, 1, "a trailing answer is not part of the prompt")
	assert.Equal(t, 3, prompts[2].Line)
	assert.Empty(t, prompts[0].Answer, "the answer is optional")

	// A prompt row may carry a reference answer; it is not part of the prompt.
	for _, good := range []struct{ name, line, answer string }{
		{"text prompt", `{"prompt":"2+2?","answer":"4"}`, "4"},
		{"empty answer", `{"prompt":"2+2?","answer":""}`, ""},
		{"messages, answer kept verbatim", `{"messages":[{"role":"user","content":"2+2?"}],"answer":" 4\n"}`, " 4\n"},
		{"pre-tokenized", `{"prompt_ids":[7],"answer":"seven","id":"q7"}`, "seven"},
	} {
		t.Run(good.name, func(t *testing.T) {
			p, err := ParsePrompt([]byte(good.line))
			require.NoError(t, err)
			assert.Equal(t, good.answer, p.Answer)
			assert.False(t, p.Prompt.IsZero())
		})
	}
	for _, bad := range []struct{ name, line, want string }{
		{"numeric answer", `{"prompt":"2+2?","answer":4}`, "p.jsonl:1: field answer: must be a string, got a number"},
		{"list answer", `{"prompt":"2+2?","answer":["4"]}`, "field answer: must be a string, got a list"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			rows, err := ReadPrompts(strings.NewReader(bad.line), "p.jsonl", ReadOptions{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), bad.want)
			assert.Nil(t, rows)
		})
	}

	sft, err := ReadSFT(strings.NewReader(`{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}
{"prompt":"q","completion":"a"}
{"prompt_ids":[1],"completion_ids":[2,3]}
`), "s.jsonl", ReadOptions{})
	require.NoError(t, err)
	require.Len(t, sft, 3)

	for _, bad := range []struct{ line, want string }{
		{`{"messages":[{"role":"user","content":"q"}]}`, "no assistant turn"},
		{`{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":""}]}`, "empty assistant response"},
		{`{"prompt":"q"}`, "field completion: missing"},
		{`{"prompt":"","completion":"a"}`, "empty prompt"},
		{`{"prompt":[{"role":"user","content":" "}],"completion":"a"}`, "every message's content is empty"},
	} {
		_, err := ReadSFT(strings.NewReader(bad.line), "s.jsonl", ReadOptions{})
		require.Error(t, err, bad.line)
		assert.Contains(t, err.Error(), bad.want)
	}
}

func trainTokenizer(t *testing.T) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Train(t.Context(), slices.Values([]string{"what is two plus two? four. five. the answer is four"}), 300, tokenizer.TrainOptions{})
	require.NoError(t, err)
	return tok
}

func TestEncodePreference(t *testing.T) {
	tok := trainTokenizer(t)
	enc := &Encoder{Tok: tok, MaxLen: 64}
	p, err := ParsePreference([]byte(`{"prompt":"what is two plus two?","chosen":"four","rejected":"five","edited":"the answer is four"}`))
	require.NoError(t, err)
	e, err := enc.EncodePreference(p)
	require.NoError(t, err)
	require.Len(t, e.Responses, 3)
	assert.True(t, e.HasEdited)
	assert.Equal(t, tok.Encode("four"), e.Chosen()[:len(e.Chosen())-1])
	assert.Equal(t, tok.EOT(), e.Rejected()[len(e.Rejected())-1], "text responses end with end-of-turn")
	last := e.Formatting[1]
	assert.True(t, last[len(last)-1], "end-of-turn is a formatting token")
	assert.False(t, last[0])
	want, err := tok.RenderPrompt([]tokenizer.Message{{Role: "user", Content: "what is two plus two?"}})
	require.NoError(t, err)
	assert.Equal(t, want, e.Prompt)

	// Pre-tokenized rows are used exactly as given and need no tokenizer.
	raw, err := ParsePreference([]byte(`{"prompt_ids":[5,6],"chosen_ids":[7,9],"rejected_ids":[8]}`))
	require.NoError(t, err)
	e2, err := (&Encoder{Formatting: []int32{9}}).EncodePreference(raw)
	require.NoError(t, err)
	assert.Equal(t, []int32{5, 6}, e2.Prompt)
	assert.Equal(t, [][]bool{{false, true}, {false}}, e2.Formatting)

	// Text without a tokenizer, and rows over the context, are clear errors.
	p.Line = 4
	_, err = (&Encoder{}).EncodePreference(p)
	require.ErrorContains(t, err, "input:4: field prompt: this row is text")
	_, err = (&Encoder{Tok: tok, MaxLen: 5}).EncodePreference(p)
	require.ErrorContains(t, err, "longer than the context window of 5")
}

func TestEncodeSFTMasksThePrompt(t *testing.T) {
	tok := trainTokenizer(t)
	enc := &Encoder{Tok: tok}
	ex, err := ParseSFT([]byte(`{"prompt":"what is two plus two?","completion":"four"}`))
	require.NoError(t, err)
	e, err := enc.EncodeSFT(ex, SFTOptions{})
	require.NoError(t, err)
	prompt, err := tok.RenderPrompt([]tokenizer.Message{{Role: "user", Content: "what is two plus two?"}})
	require.NoError(t, err)
	for i := range e.IDs {
		assert.Equal(t, i >= len(prompt), e.Targets[i], "token %d", i)
	}
	assert.Equal(t, tok.EOT(), e.IDs[len(e.IDs)-1])

	conv, err := ParseSFT([]byte(`{"messages":[{"role":"user","content":"two plus two?"},{"role":"assistant","content":"four"},{"role":"user","content":"plus one?"},{"role":"assistant","content":"five"}]}`))
	require.NoError(t, err)
	all, err := enc.EncodeSFT(conv, SFTOptions{})
	require.NoError(t, err)
	last, err := enc.EncodeSFT(conv, SFTOptions{LastTurnOnly: true})
	require.NoError(t, err)
	assert.Equal(t, all.IDs, last.IDs)
	assert.Greater(t, count(all.Targets), count(last.Targets))
	assert.Positive(t, count(last.Targets))
}

func count(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

func FuzzParsePreference(f *testing.F) {
	entries, _ := os.ReadDir(filepath.Join("testdata", "bad"))
	for _, e := range entries {
		raw, _ := os.ReadFile(filepath.Join("testdata", "bad", e.Name()))
		f.Add(raw)
	}
	f.Add([]byte(`{"prompt":"q","chosen":"a","rejected":"b","edited":"c","margin":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := ReadPreferences(bytes.NewReader(data), "fuzz", ReadOptions{MaxLineBytes: 4096})
		if err != nil {
			assert.Nil(t, rows)
			return
		}
		for _, r := range rows {
			assert.False(t, r.Chosen.IsZero())
			assert.False(t, r.Rejected.IsZero())
			assert.False(t, r.Prompt.IsZero())
		}
	})
}

func TestPromptOfEmptyMessagesIsRefused(t *testing.T) {
	// Found by FuzzParseJSONL: a prompt whose messages are all empty was accepted, and
	// the datastore then held a prompt it considers empty.
	for _, line := range []string{
		`{"messages":[{"role":"user","content":""}]}`,
		`{"prompt":[{"role":"system","content":""},{"role":"user","content":"  "}]}`,
	} {
		_, err := ReadPrompts(strings.NewReader(line), "p.jsonl", ReadOptions{})
		require.Error(t, err, line)
		assert.Contains(t, err.Error(), "p.jsonl:1: field prompt: empty prompt")
	}
	ok, err := ReadPrompts(strings.NewReader(`{"messages":[{"role":"system","content":""},{"role":"user","content":"q"}]}`), "p.jsonl", ReadOptions{})
	require.NoError(t, err, "one non-empty message is a prompt")
	require.Len(t, ok, 1)
}
