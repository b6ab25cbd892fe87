package sampling

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/tokenizer"
)

// SFTRow returns a selected candidate of p as an SFT row that datasets.ParseSFT reads,
// in the prompt's own form, plus the fields "reward", "rank", "sample_index" and
// "prompt_id" (ignored by the parser, kept for lineage):
//   - a pre-tokenized prompt gives {"prompt_ids", "completion_ids"}, the completion being
//     exactly the sampled tokens (stop token included), as scored;
//   - a text prompt gives {"prompt", "completion"}: the prompt as its string, or as its
//     messages with the run's system prompt first when one was added, and the
//     completion's text (the SFT encoder appends the end-of-turn token again).
func SFTRow(p *Prompt, c Candidate) (map[string]any, error) {
	row := map[string]any{"id": p.ID, "prompt_id": p.ID, "sample_index": c.SampleIndex, "reward": c.Reward, "rank": c.Rank}
	src := p.Source.Prompt
	switch src.Form {
	case datasets.FormIDs:
		row["prompt_ids"] = p.Tokens
		row["completion_ids"] = c.Tokens
		return row, nil
	case datasets.FormString, datasets.FormMessages:
		if strings.TrimSpace(c.Text) == "" {
			return nil, fmt.Errorf("%s sample %d: no completion text (a text prompt needs a tokenizer, and the completion must not be empty)", p.name(), c.SampleIndex)
		}
		var msgs []tokenizer.Message
		if src.Form == datasets.FormMessages {
			msgs = append(msgs, src.Messages...)
		} else {
			msgs = []tokenizer.Message{{Role: tokenizer.UserRole, Content: src.String}}
		}
		switch {
		case p.System != "":
			row["prompt"] = append([]tokenizer.Message{{Role: tokenizer.SystemRole, Content: p.System}}, msgs...)
		case src.Form == datasets.FormString:
			row["prompt"] = src.String
		default:
			row["prompt"] = msgs
		}
		row["completion"] = c.Text
		return row, nil
	}
	return nil, fmt.Errorf("%s: the prompt has no source row to write", p.name())
}

// WriteSelected writes the selected candidates as SFT rows (see SFTRow), prompts in
// input order and best first. prompts must hold every prompt the candidates refer to.
func WriteSelected(w io.Writer, prompts []Prompt, cands []Candidate) (int, error) {
	byID := make(map[string]*Prompt, len(prompts))
	for i := range prompts {
		byID[prompts[i].ID] = &prompts[i]
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	n := 0
	for _, c := range Selected(cands) {
		p, ok := byID[c.PromptID]
		if !ok {
			return n, fmt.Errorf("write selected: candidate of unknown prompt %q", c.PromptID)
		}
		row, err := SFTRow(p, c)
		if err != nil {
			return n, fmt.Errorf("write selected: %w", err)
		}
		if err := enc.Encode(row); err != nil {
			return n, fmt.Errorf("write selected: %w", err)
		}
		n++
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("write selected: %w", err)
	}
	return n, nil
}

// WriteCandidates writes every candidate as one JSON object per line.
func WriteCandidates(w io.Writer, cands []Candidate) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for i := range cands {
		if err := enc.Encode(&cands[i]); err != nil {
			return fmt.Errorf("write candidates: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write candidates: %w", err)
	}
	return nil
}
