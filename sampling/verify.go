package sampling

import "strings"

// Verifier is the type of Options.Verifier.
type Verifier = func(p *Prompt, c *Candidate) (ok, checked bool)

// AnswerVerifier checks each candidate against its prompt's reference answer, given by
// answer ("" when the prompt has none, which leaves its candidates unchecked): a
// candidate passes when its text, white space trimmed, is the trimmed answer. Runs and
// `posttrain sample --verify answer` share this one rule.
func AnswerVerifier(answer func(p *Prompt) string) Verifier {
	return func(p *Prompt, c *Candidate) (bool, bool) {
		ref := answer(p)
		if ref == "" {
			return false, false
		}
		return strings.TrimSpace(c.Text) == strings.TrimSpace(ref), true
	}
}
