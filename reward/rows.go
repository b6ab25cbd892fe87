package reward

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/transformer"
)

// responseNames are the field names of a row's responses, best first.
func responseName(r datasets.EncodedPreference, k int) string {
	names := []string{"chosen", "rejected"}
	if r.HasEdited {
		names = []string{"edited", "chosen", "rejected"}
	}
	if k < len(names) && len(r.Responses) == len(names) {
		return names[k]
	}
	return fmt.Sprintf("response %d", k)
}

// RowName names row i by its JSONL line when known, else by its index.
func RowName(rows []datasets.EncodedPreference, i int) string {
	if l := rows[i].Line; l > 0 {
		return fmt.Sprintf("row %d (line %d)", i, l)
	}
	return fmt.Sprintf("row %d", i)
}

// CheckRows rejects rows the model cannot score: fewer than two responses, an empty
// prompt+response, a sequence longer than the context window, or a token id outside the
// vocabulary. Errors name the row, its line and the field.
func CheckRows(rows []datasets.EncodedPreference, cfg transformer.Config) error {
	for i, r := range rows {
		if len(r.Responses) < 2 {
			return fmt.Errorf("%s: has %d responses; a preference needs at least chosen and rejected", RowName(rows, i), len(r.Responses))
		}
		for k, resp := range r.Responses {
			field := responseName(r, k)
			n := len(r.Prompt) + len(resp)
			switch {
			case len(resp) == 0:
				return fmt.Errorf("%s: %s: the response is empty", RowName(rows, i), field)
			case n > cfg.MaxPositionEmbeddings:
				return fmt.Errorf("%s: %s: prompt + response is %d tokens, longer than the model's context of %d", RowName(rows, i), field, n, cfg.MaxPositionEmbeddings)
			}
			for part, ids := range [][]int32{r.Prompt, resp} {
				for j, id := range ids {
					if id < 0 || int(id) >= cfg.VocabSize {
						where := field
						if part == 0 {
							where = "prompt"
						}
						return fmt.Errorf("%s: %s: token %d at position %d is outside the model's vocabulary [0,%d)", RowName(rows, i), where, id, j, cfg.VocabSize)
					}
				}
			}
		}
	}
	return nil
}

// rowMargin is the margin of every pair of row r under mode.
func rowMargin(rows []datasets.EncodedPreference, i int, mode MarginMode) (float64, error) {
	r := rows[i]
	if mode == MarginNone || mode == "" {
		return 0, nil
	}
	if r.Margin != nil {
		m := *r.Margin
		if math.IsNaN(m) || math.IsInf(m, 0) {
			return 0, fmt.Errorf("%s: margin %v must be finite", RowName(rows, i), m)
		}
		return m, nil
	}
	if mode == MarginField {
		return 0, fmt.Errorf("%s: margin mode %q needs a \"margin\" field and the row has none", RowName(rows, i), mode)
	}
	if r.Rating == "" {
		return 0, fmt.Errorf("%s: margin mode %q needs a \"rating\" (or \"margin\") field and the row has neither", RowName(rows, i), mode)
	}
	rating, err := objectives.ParseRating(r.Rating)
	if err != nil {
		return 0, fmt.Errorf("%s: rating: %w", RowName(rows, i), err)
	}
	table := objectives.Llama2Margin
	if mode == MarginLlama2Large {
		table = objectives.Llama2MarginLarge
	}
	m, err := table(rating)
	if err != nil {
		return 0, fmt.Errorf("%s: rating: %w", RowName(rows, i), err)
	}
	return m, nil
}

// prepared is one row ready for a batch: the responses it scores (indices into the row's
// Responses, best first) and its pairs, whose Better/Worse index into resp.
type prepared struct {
	row   int
	resp  []int
	pairs []objectives.Pair
}

// FilterStats counts what the similarity filter removed.
type FilterStats struct {
	// Rows is the number of input rows.
	Rows int `json:"rows"`
	// Pairs is the number of their ordered pairs before filtering.
	Pairs int `json:"pairs"`
	// FilteredPairs were dropped as too similar.
	FilteredPairs int `json:"filtered_pairs"`
	// DroppedRows lost every pair to the filter.
	DroppedRows int `json:"dropped_rows"`
	// Threshold is the similarity at or above which a pair was dropped (0: no filter).
	Threshold float64 `json:"similarity_threshold"`
}

// KeptPairs is the number of pairs left for training or evaluation.
func (f FilterStats) KeptPairs() int { return f.Pairs - f.FilteredPairs }

// prepare expands rows into ranked pairs with their margins and drops pairs whose
// responses have TokenSimilarity >= threshold (threshold 0: keep all). Responses left in
// no pair are not scored.
func prepare(rows []datasets.EncodedPreference, mode MarginMode, threshold float64) ([]prepared, FilterStats, error) {
	st := FilterStats{Rows: len(rows), Threshold: threshold}
	out := make([]prepared, 0, len(rows))
	for i, r := range rows {
		margin, err := rowMargin(rows, i, mode)
		if err != nil {
			return nil, st, err
		}
		order := make([]int, len(r.Responses))
		for k := range order {
			order[k] = k
		}
		all, err := objectives.RankedPairs(0, margin, order...)
		if err != nil {
			return nil, st, fmt.Errorf("%s: %w", RowName(rows, i), err)
		}
		st.Pairs += len(all)
		used := make([]int, len(r.Responses)) // response k -> local index + 1, 0 if unused
		var kept []objectives.Pair
		for _, p := range all {
			if threshold > 0 && TokenSimilarity(r.Responses[p.Better], r.Responses[p.Worse]) >= threshold {
				st.FilteredPairs++
				continue
			}
			kept = append(kept, p)
			used[p.Better], used[p.Worse] = 1, 1
		}
		if len(kept) == 0 {
			st.DroppedRows++
			continue
		}
		pr := prepared{row: i}
		for k, u := range used {
			if u > 0 {
				used[k] = len(pr.resp)
				pr.resp = append(pr.resp, k)
			}
		}
		for _, p := range kept {
			p.Better, p.Worse = used[p.Better], used[p.Worse]
			pr.pairs = append(pr.pairs, p)
		}
		out = append(out, pr)
	}
	return out, st, nil
}

// Fingerprint hashes the rows' token ids and margin fields, so a resumed run can check it
// continues on the same data.
func Fingerprint(rows []datasets.EncodedPreference) string {
	h := sha256.New()
	var b [8]byte
	put := func(v uint64) {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	ids := func(x []int32) {
		put(uint64(len(x)))
		for _, v := range x {
			binary.LittleEndian.PutUint32(b[:4], uint32(v))
			h.Write(b[:4])
		}
	}
	put(uint64(len(rows)))
	for _, r := range rows {
		ids(r.Prompt)
		put(uint64(len(r.Responses)))
		for _, resp := range r.Responses {
			ids(resp)
		}
		if r.Margin != nil {
			put(1)
			put(math.Float64bits(*r.Margin))
		} else {
			put(0)
		}
		put(uint64(len(r.Rating)))
		h.Write([]byte(r.Rating))
	}
	return hex.EncodeToString(h.Sum(nil))
}
