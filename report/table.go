// Package report turns a run's metrics, stages and sampling candidates, as stored in
// PostgreSQL, into a per-round table and a report directory: report.md, report.html and
// PNG plots (accuracy per round and per capability, DPO margins, rewards of selected
// against rejected samples) drawn with gonum/plot.
package report

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/posttrain/posttrain/datastore"
)

// Evaluation variants under the eval stage. The workflow evaluates after each stage
// (reward, sft, dpo); EvalBase is the shipped base model's evaluation, stored as round 0.
const (
	EvalBase   = "base"
	EvalReward = "reward"
	EvalSFT    = "sft"
	EvalDPO    = "dpo"
)

// Data is what a report is made from.
type Data struct {
	Run        datastore.Run
	Rounds     []datastore.Round
	Metrics    []datastore.Metric // final value of each (round, stage, variant, name)
	Stages     []datastore.Stage
	Candidates []datastore.Candidate
}

// Load reads a run's data from the store.
func Load(ctx context.Context, db *datastore.Store, runID string) (*Data, error) {
	run, err := db.GetRun(ctx, runID)
	if err != nil {
		return nil, fmt.Errorf("report: run %s: %w", runID, err)
	}
	d := &Data{Run: run}
	if d.Rounds, err = db.ListRounds(ctx, runID); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if d.Metrics, err = db.FinalMetrics(ctx, runID); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if d.Stages, err = db.ListStages(ctx, runID, 0); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if d.Candidates, err = db.ListCandidates(ctx, datastore.CandidateFilter{RunID: runID}); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return d, nil
}

// Row is one round of the table. Values a run did not record are NaN-free zero values
// with the matching Has flag unset, so JSON stays plain numbers.
type Row struct {
	Round int `json:"round"`
	// RMAccuracy is the averaged reward model's accuracy on held-out pairs.
	RMAccuracy float64 `json:"rm_accuracy"`
	// SamplesCorrect is the share of the round's rejection samples that passed the
	// ground-truth check (sampling.verify): the sampling policy's accuracy on training
	// prompts. Kept counts the samples selected for SFT.
	SamplesCorrect float64 `json:"samples_correct,omitempty"`
	Kept           int     `json:"samples_kept,omitempty"`
	// SFTLoss and DPOLoss are the final training losses (mean over variants).
	SFTLoss float64 `json:"sft_loss"`
	DPOLoss float64 `json:"dpo_loss"`
	// DPOMargin is the averaged DPO model's held-out margin (beta * log-ratio difference).
	DPOMargin float64 `json:"dpo_margin"`
	// SFTAccuracy and Accuracy are held-out exact-match accuracies after SFT and after
	// DPO (the round's final model); round 0 is the base model.
	SFTAccuracy float64 `json:"sft_accuracy"`
	Accuracy    float64 `json:"accuracy"`
	// ByFamily is the final model's held-out accuracy per capability.
	ByFamily map[string]float64 `json:"accuracy_by_family"`
	// FormatCompliance and MeanLength describe the final model's held-out answers.
	FormatCompliance float64 `json:"format_compliance"`
	MeanLength       float64 `json:"mean_length"`
	// WinRate is against the previous round's final model, by ground truth, when measured.
	WinRate float64 `json:"win_rate,omitempty"`
	// Seconds is the wall time per stage kind; excluded from Equal comparisons.
	Seconds map[string]float64 `json:"seconds,omitempty"`
	// Has records which of the metrics above the run stored.
	Has map[string]bool `json:"-"`
}

// Table is the per-round table of a run.
type Table struct {
	RunID    string   `json:"run_id"`
	Families []string `json:"families"`
	// Stages are the stage kinds with timings, in pipeline order.
	Stages []string `json:"stages"`
	Rows   []Row    `json:"rows"`
}

// stageOrder is the pipeline order of stage kinds in the timing columns.
var stageOrder = []string{datastore.StageReward, datastore.StageAverage, datastore.StageEval, datastore.StageSampling,
	datastore.StageSFT, datastore.StageDPO, datastore.StageAnnotate}

// BuildTable gathers the per-round numbers from the data.
func BuildTable(d *Data) Table {
	type key struct {
		stage, variant, name string
	}
	byRound := map[int]map[key][]float64{}
	for _, m := range d.Metrics {
		if byRound[m.Round] == nil {
			byRound[m.Round] = map[key][]float64{}
		}
		k := key{m.Stage, m.Variant, m.Name}
		byRound[m.Round][k] = append(byRound[m.Round][k], m.Value)
	}
	// mean over variants of a training stage's metric.
	meanOf := func(ms map[key][]float64, stage, name string) (float64, bool) {
		var s float64
		n := 0
		for k, v := range ms {
			if k.stage == stage && k.name == name && !strings.HasPrefix(k.variant, "avg") {
				for _, x := range v {
					s += x
					n++
				}
			}
		}
		if n == 0 {
			return 0, false
		}
		return s / float64(n), true
	}
	get := func(ms map[key][]float64, stage, variant, name string) (float64, bool) {
		v, ok := ms[key{stage, variant, name}]
		if !ok || len(v) == 0 {
			return 0, false
		}
		return v[0], true
	}
	// Stage times: the round summaries' wall time per stage when the run wrote them (a
	// stage's parallel variants overlap), else the sum of the stage rows' durations.
	secs := map[int]map[string]float64{}
	for _, m := range d.Metrics {
		if m.Stage == datastore.StageSummary && m.Name == "seconds" {
			if secs[m.Round] == nil {
				secs[m.Round] = map[string]float64{}
			}
			secs[m.Round][m.Variant] = m.Value
		}
	}
	summarised := map[int]bool{}
	for r := range secs {
		summarised[r] = true
	}
	for _, s := range d.Stages {
		if summarised[s.Round] {
			continue
		}
		if dur := s.Duration(); dur > 0 {
			if secs[s.Round] == nil {
				secs[s.Round] = map[string]float64{}
			}
			secs[s.Round][s.Kind] += dur.Seconds()
		}
	}
	type verdicts struct{ checked, passed, kept int }
	byRoundSamples := map[int]*verdicts{}
	for _, c := range d.Candidates {
		v := byRoundSamples[c.Round]
		if v == nil {
			v = &verdicts{}
			byRoundSamples[c.Round] = v
		}
		if c.Verified != nil {
			v.checked++
			if *c.Verified {
				v.passed++
			}
		}
		if c.Selected {
			v.kept++
		}
	}
	fams := map[string]bool{}
	seenStages := map[string]bool{}
	t := Table{RunID: d.Run.ID}
	for _, r := range slices.Sorted(maps.Keys(byRound)) {
		ms := byRound[r]
		row := Row{Round: r, ByFamily: map[string]float64{}, Has: map[string]bool{}}
		set := func(dst *float64, name string, v float64, ok bool) {
			if ok {
				*dst, row.Has[name] = v, true
			}
		}
		final := EvalDPO
		if r == 0 {
			final = EvalBase
		}
		if v, ok := get(ms, datastore.StageEval, EvalReward, "accuracy"); ok {
			set(&row.RMAccuracy, "rm_accuracy", v, ok)
		} else {
			v, ok := get(ms, datastore.StageEval, EvalReward, "rm_accuracy")
			set(&row.RMAccuracy, "rm_accuracy", v, ok)
		}
		if sv := byRoundSamples[r]; sv != nil {
			row.Kept, row.Has["samples_kept"] = sv.kept, true
			if sv.checked > 0 {
				set(&row.SamplesCorrect, "samples_correct", float64(sv.passed)/float64(sv.checked), true)
			}
		}
		v, ok := meanOf(ms, datastore.StageSFT, "loss")
		set(&row.SFTLoss, "sft_loss", v, ok)
		v, ok = meanOf(ms, datastore.StageDPO, "loss")
		set(&row.DPOLoss, "dpo_loss", v, ok)
		v, ok = get(ms, datastore.StageEval, EvalDPO, "dpo_margin")
		set(&row.DPOMargin, "dpo_margin", v, ok)
		v, ok = get(ms, datastore.StageEval, EvalSFT, "accuracy")
		set(&row.SFTAccuracy, "sft_accuracy", v, ok)
		v, ok = get(ms, datastore.StageEval, final, "accuracy")
		set(&row.Accuracy, "accuracy", v, ok)
		v, ok = get(ms, datastore.StageEval, final, "format_compliance")
		set(&row.FormatCompliance, "format_compliance", v, ok)
		v, ok = get(ms, datastore.StageEval, final, "mean_length")
		set(&row.MeanLength, "mean_length", v, ok)
		v, ok = get(ms, datastore.StageEval, final, "win_rate")
		set(&row.WinRate, "win_rate", v, ok)
		for k, v := range ms {
			if k.stage == datastore.StageEval && k.variant == final && strings.HasPrefix(k.name, "accuracy_") {
				fam := strings.TrimPrefix(k.name, "accuracy_")
				row.ByFamily[fam] = v[0]
				fams[fam] = true
			}
		}
		if s := secs[r]; len(s) > 0 {
			row.Seconds = s
			for k := range s {
				seenStages[k] = true
			}
		}
		if len(row.Has) == 0 && len(row.ByFamily) == 0 {
			continue
		}
		t.Rows = append(t.Rows, row)
	}
	t.Families = slices.Sorted(maps.Keys(fams))
	for _, s := range stageOrder {
		if seenStages[s] {
			t.Stages = append(t.Stages, s)
			delete(seenStages, s)
		}
	}
	t.Stages = append(t.Stages, slices.Sorted(maps.Keys(seenStages))...)
	return t
}

// WithoutTimings is the table with the wall times removed: the part that a rerun with the
// same seed must reproduce exactly.
func (t Table) WithoutTimings() Table {
	out := t
	out.Stages = nil
	out.Rows = make([]Row, len(t.Rows))
	for i, r := range t.Rows {
		r.Seconds = nil
		out.Rows[i] = r
	}
	return out
}

// TotalSeconds is the summed stage time of a row.
func (r Row) TotalSeconds() float64 {
	var s float64
	for _, v := range r.Seconds {
		s += v
	}
	return s
}

// num formats a metric the row has, or "-".
func (r Row) num(name string, v float64, format string) string {
	if !r.Has[name] {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// Markdown renders the table as GitHub-flavoured Markdown: one table of the metrics and
// one of the stage times.
func (t Table) Markdown() string {
	var b strings.Builder
	head := []string{"round", "RM acc", "samples correct", "kept", "SFT loss", "DPO loss", "DPO margin", "acc after SFT", "acc", "format", "mean len", "win rate"}
	for _, f := range t.Families {
		head = append(head, f)
	}
	writeRow(&b, head)
	writeRow(&b, slices.Repeat([]string{"---:"}, len(head)))
	for _, r := range t.Rows {
		label := fmt.Sprint(r.Round)
		if r.Round == 0 {
			label = "0 (base)"
		}
		cells := []string{label, r.num("rm_accuracy", r.RMAccuracy, "%.3f"), r.num("samples_correct", r.SamplesCorrect, "%.3f"),
			r.num("samples_kept", float64(r.Kept), "%.0f"), r.num("sft_loss", r.SFTLoss, "%.4f"),
			r.num("dpo_loss", r.DPOLoss, "%.4f"), r.num("dpo_margin", r.DPOMargin, "%.3f"), r.num("sft_accuracy", r.SFTAccuracy, "%.3f"),
			r.num("accuracy", r.Accuracy, "%.3f"), r.num("format_compliance", r.FormatCompliance, "%.3f"),
			r.num("mean_length", r.MeanLength, "%.1f"), r.num("win_rate", r.WinRate, "%.3f")}
		for _, f := range t.Families {
			if v, ok := r.ByFamily[f]; ok {
				cells = append(cells, fmt.Sprintf("%.2f", v))
			} else {
				cells = append(cells, "-")
			}
		}
		writeRow(&b, cells)
	}
	if len(t.Stages) > 0 {
		b.WriteString("\n")
		head := append(append([]string{"round"}, t.Stages...), "total")
		for i := 1; i < len(head); i++ {
			head[i] += " (s)"
		}
		writeRow(&b, head)
		writeRow(&b, slices.Repeat([]string{"---:"}, len(head)))
		var total float64
		for _, r := range t.Rows {
			if len(r.Seconds) == 0 {
				continue
			}
			cells := []string{fmt.Sprint(r.Round)}
			for _, s := range t.Stages {
				cells = append(cells, fmt.Sprintf("%.1f", r.Seconds[s]))
			}
			cells = append(cells, fmt.Sprintf("%.1f", r.TotalSeconds()))
			total += r.TotalSeconds()
			writeRow(&b, cells)
		}
		fmt.Fprintf(&b, "\nTotal stage time: %s.\n", time.Duration(total*float64(time.Second)).Round(time.Second))
	}
	return b.String()
}

func writeRow(b *strings.Builder, cells []string) {
	b.WriteString("| ")
	b.WriteString(strings.Join(cells, " | "))
	b.WriteString(" |\n")
}
