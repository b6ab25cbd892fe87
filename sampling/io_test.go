package sampling

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/internal/testmodel"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const promptsFile = `{"id": "a", "prompt": "Name a prime."}
{"prompt": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Add 2 and 3."}]}
{"prompt": "Name a prime."}
{"prompt": "Name a prime."}
{"prompt_ids": [1, 2, 3]}
`

func readPrompts(t *testing.T) []datasets.Prompt {
	t.Helper()
	rows, err := datasets.ReadPrompts(strings.NewReader(promptsFile), "prompts.jsonl", datasets.ReadOptions{})
	require.NoError(t, err)
	return rows
}

func TestEncodePrompts(t *testing.T) {
	tok := testmodel.Tokenizer(t)
	rows := readPrompts(t)
	enc := datasets.Encoder{Tok: tok}
	plain, err := EncodePrompts(rows, enc, nil)
	require.NoError(t, err)
	require.Len(t, plain, 5)
	assert.Equal(t, "a", plain[0].ID)
	assert.Equal(t, ContentID(rows[2]), plain[2].ID, "no id: content hash")
	assert.Equal(t, plain[2].ID+"-2", plain[3].ID, "repeated content gets a suffix")
	assert.Equal(t, []int32{1, 2, 3}, plain[4].Tokens, "ids used as given")
	assert.Equal(t, 5, plain[4].Line)

	withSys, err := EncodePrompts(rows, enc, []string{"Answer in French."})
	require.NoError(t, err)
	want, err := tok.RenderPrompt([]tokenizer.Message{{Role: tokenizer.SystemRole, Content: "Answer in French."}, {Role: tokenizer.UserRole, Content: "Name a prime."}})
	require.NoError(t, err)
	assert.Equal(t, want, withSys[0].Tokens)
	assert.Equal(t, "Answer in French.", withSys[0].System)
	assert.Equal(t, plain[1].Tokens, withSys[1].Tokens, "a prompt with its own system message keeps it")
	assert.Empty(t, withSys[1].System)
	assert.Equal(t, plain[4].Tokens, withSys[4].Tokens, "pre-tokenized prompts are untouched")
	assert.Equal(t, plain[0].ID, withSys[0].ID, "ids do not depend on the system prompt")

	// Several system prompts: the choice depends on the prompt only.
	systems := []string{"S0", "S1", "S2"}
	all, err := EncodePrompts(rows, enc, systems)
	require.NoError(t, err)
	again, err := EncodePrompts(rows[2:], enc, systems)
	require.NoError(t, err)
	assert.Equal(t, systems[pick(all[0].ID, 3)], all[0].System)
	assert.Equal(t, all[2].System, again[0].System)

	_, err = EncodePrompts(rows, datasets.Encoder{}, nil)
	assert.ErrorContains(t, err, "prompt row at line 1")
	dup := append(readPrompts(t), datasets.Prompt{ID: "a", Prompt: datasets.Text{IDs: []int32{4}, Form: datasets.FormIDs}, Line: 6})
	_, err = EncodePrompts(dup, enc, nil)
	assert.ErrorContains(t, err, `line 6: id "a" repeats the id of prompt row at line 1`)
}

func TestSelectedRowsAreSFTRows(t *testing.T) {
	e := newEnv(t)
	tok := testmodel.Tokenizer(t)
	prompts, err := EncodePrompts(readPrompts(t), datasets.Encoder{Tok: tok}, []string{"Be kind."})
	require.NoError(t, err)
	o := baseOpts()
	o.Tokenizer = tok
	o.Params.StopTokens = []int32{tok.EOT()}
	o.Select = Selection{TopN: 2, KeepTruncated: true}
	res, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.NoError(t, err)
	var buf bytes.Buffer
	n, err := WriteSelected(&buf, prompts, res.Candidates)
	require.NoError(t, err)
	assert.Equal(t, res.Stats.Selected, n)
	require.Positive(t, n)

	rows, err := datasets.ReadSFT(bytes.NewReader(buf.Bytes()), "selected.jsonl", datasets.ReadOptions{})
	require.NoError(t, err, buf.String())
	require.Len(t, rows, n)
	enc := datasets.Encoder{Tok: tok}
	sel := Selected(res.Candidates)
	for i, row := range rows {
		c := sel[i]
		p := prompts[c.PromptIndex]
		ex, err := enc.EncodeSFT(row, datasets.SFTOptions{})
		require.NoError(t, err, "row %d", i)
		if p.Source.Prompt.Form == datasets.FormIDs {
			assert.Equal(t, append(append([]int32{}, p.Tokens...), c.Tokens...), ex.IDs, "ids rows are the sampled tokens exactly")
		} else {
			assert.Equal(t, p.Tokens, ex.IDs[:len(p.Tokens)], "row %d: the SFT prompt is the prompt that was sampled (system included)", i)
		}
	}

	var all bytes.Buffer
	require.NoError(t, WriteCandidates(&all, res.Candidates))
	lines := strings.Split(strings.TrimSpace(all.String()), "\n")
	require.Len(t, lines, len(res.Candidates))
	var back Candidate
	require.NoError(t, json.Unmarshal([]byte(lines[3]), &back))
	assert.Equal(t, res.Candidates[3], back)
}
