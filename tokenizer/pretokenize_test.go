package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func pieces(mode splitMode, s string) []string {
	out := []string{}
	forEachPiece(mode, s, func(p string) { out = append(out, p) })
	return out
}

func TestPreTokenizeLlama3(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
	}{
		{"words", "Hello world", []string{"Hello", " world"}},
		{"contractions fold case", "I'M fine, WE'LL go", []string{"I", "'M", " fine", ",", " WE", "'LL", " go"}},
		{"digits in threes", "1234567", []string{"123", "456", "7"}},
		{"punctuation keeps newlines", " !!\n\nx", []string{" !!\n\n", "x"}},
		{"space run before word", "a   b", []string{"a", "  ", " b"}},
		{"newline run ends at last newline", "a\n \n  b", []string{"a", "\n \n", " ", " b"}},
		{"trailing spaces", "a  ", []string{"a", "  "}},
		{"punct prefix joins letters", "(hello)", []string{"(hello", ")"}},
		{"tab prefix joins letters", "\thello", []string{"\thello"}},
		{"invalid byte is other", "a\xffb", []string{"a", "\xffb"}},
		{"empty", "", []string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, pieces(splitLlama3, c.in))
		})
	}
}

func TestPreTokenizeGPT2(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
	}{
		{"words", "Hello world", []string{"Hello", " world"}},
		{"contractions case sensitive", "I'M it's", []string{"I", "'", "M", " it", "'s"}},
		{"numbers unbounded", " 1234567", []string{" 1234567"}},
		{"newlines split", "a\n\nb", []string{"a", "\n", "\n", "b"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, pieces(splitGPT2, c.in))
		})
	}
}

// TestPreTokenizeMatchesRegex compares the scanner with the real regular expressions:
// testdata/pretokenize_cases.json holds random strings (letters, digits, apostrophes,
// contraction letters, Unicode spaces, CJK, combining marks, emoji, control characters)
// split by Python's `regex` module with Llama 3's and GPT-2's patterns.
func TestPreTokenizeMatchesRegex(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "pretokenize_cases.json"))
	require.NoError(t, err)
	var cases []struct {
		Text   string   `json:"text"`
		Llama3 []string `json:"llama3"`
		GPT2   []string `json:"gpt2"`
	}
	require.NoError(t, json.Unmarshal(data, &cases))
	require.Greater(t, len(cases), 500)
	for i, c := range cases {
		assert.Equal(t, c.Llama3, pieces(splitLlama3, c.Text), "case %d %q (llama3)", i, c.Text)
		assert.Equal(t, c.GPT2, pieces(splitGPT2, c.Text), "case %d %q (gpt2)", i, c.Text)
	}
}

func TestPreTokenizeCoversInput(t *testing.T) {
	for _, mode := range []splitMode{splitLlama3, splitGPT2, splitNone} {
		for _, s := range []string{corpus(5000), "\xff\xfe\x00 \u00a0\u2003x", strings.Repeat(" ", 100)} {
			ps := pieces(mode, s)
			assert.Equal(t, s, strings.Join(ps, ""))
			for _, p := range ps {
				assert.NotEmpty(t, p)
			}
		}
	}
}
