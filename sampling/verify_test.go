package sampling

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAnswerVerifier(t *testing.T) {
	answers := map[string]string{"p1": "42", "p2": " ROCK\n"}
	v := AnswerVerifier(func(p *Prompt) string { return answers[p.ID] })
	tests := []struct {
		prompt, text string
		ok, checked  bool
	}{
		{"p1", "42", true, true},
		{"p1", " 42\n", true, true},
		{"p1", "43", false, true},
		{"p1", "The answer is 42", false, true},
		{"p2", "ROCK", true, true},
		{"p2", "rock", false, true},
		{"p3", "anything", false, false},
	}
	for _, tc := range tests {
		ok, checked := v(&Prompt{ID: tc.prompt}, &Candidate{Text: tc.text})
		assert.Equal(t, tc.checked, checked, "%s %q checked", tc.prompt, tc.text)
		assert.Equal(t, tc.ok, ok, "%s %q", tc.prompt, tc.text)
	}
}
