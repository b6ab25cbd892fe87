package report

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Plot file names in the report directory.
const (
	AccuracyPNG = "accuracy.png"
	FamilyPNG   = "accuracy_by_family.png"
	MarginPNG   = "dpo_margin.png"
	RewardsPNG  = "rewards.png"
)

const (
	plotW = 6 * vg.Inch
	plotH = 4 * vg.Inch
)

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

// roundTicks labels the x axis with whole rounds, "base" for round 0.
type roundTicks struct{}

func (roundTicks) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for r := math.Ceil(min); r <= max; r++ {
		label := fmt.Sprint(int(r))
		if r == 0 {
			label = "base"
		}
		ts = append(ts, plot.Tick{Value: r, Label: label})
	}
	return ts
}

// line adds a line with points; empty series are skipped.
func line(p *plot.Plot, name string, i int, pts plotter.XYs) error {
	if len(pts) == 0 {
		return nil
	}
	l, s, err := plotter.NewLinePoints(pts)
	if err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	l.Color = plotutil.Color(i)
	l.Width = vg.Points(2)
	l.Dashes = plotutil.Dashes(i / 7)
	s.Color = plotutil.Color(i)
	s.Shape = plotutil.Shape(i)
	p.Add(l, s)
	p.Legend.Add(name, l, s)
	return nil
}

func series(t Table, has string, v func(Row) float64) plotter.XYs {
	var pts plotter.XYs
	for _, r := range t.Rows {
		if r.Has[has] {
			pts = append(pts, plotter.XY{X: float64(r.Round), Y: v(r)})
		}
	}
	return pts
}

// accuracyPlot is held-out accuracy and format compliance per round.
func accuracyPlot(t Table) (*plot.Plot, error) {
	p := newPlot("Held-out accuracy per round", "round", "fraction of held-out prompts")
	p.X.Tick.Marker = roundTicks{}
	p.Y.Min, p.Y.Max = 0, 1.05
	for i, s := range []struct {
		name, has string
		v         func(Row) float64
	}{
		{"exact match (final model)", "accuracy", func(r Row) float64 { return r.Accuracy }},
		{"exact match after SFT", "sft_accuracy", func(r Row) float64 { return r.SFTAccuracy }},
		{"format compliance", "format_compliance", func(r Row) float64 { return r.FormatCompliance }},
		{"reward model accuracy", "rm_accuracy", func(r Row) float64 { return r.RMAccuracy }},
	} {
		if err := line(p, s.name, i, series(t, s.has, s.v)); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// familyPlot is the final model's held-out accuracy per capability per round.
func familyPlot(t Table) (*plot.Plot, error) {
	p := newPlot("Held-out accuracy per capability", "round", "exact-match accuracy")
	p.X.Tick.Marker = roundTicks{}
	p.Y.Min, p.Y.Max = 0, 1.05
	for i, f := range t.Families {
		var pts plotter.XYs
		for _, r := range t.Rows {
			if v, ok := r.ByFamily[f]; ok {
				pts = append(pts, plotter.XY{X: float64(r.Round), Y: v})
			}
		}
		if err := line(p, f, i, pts); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// marginPlot is the DPO model's held-out margin and the DPO training loss per round.
func marginPlot(t Table) (*plot.Plot, error) {
	p := newPlot("DPO per round", "round", "value")
	p.X.Tick.Marker = roundTicks{}
	if err := line(p, "held-out margin (beta * log-ratio, chosen - rejected)", 0, series(t, "dpo_margin", func(r Row) float64 { return r.DPOMargin })); err != nil {
		return nil, err
	}
	if err := line(p, "final training loss", 1, series(t, "dpo_loss", func(r Row) float64 { return r.DPOLoss })); err != nil {
		return nil, err
	}
	return p, nil
}

// rewardsPlot shows the reward model's scores of the selected samples (the best of each
// prompt's K) against the rejected ones, over all rounds, as normalised histograms.
func rewardsPlot(d *Data) (*plot.Plot, error) {
	p := newPlot("Rejection sampling: rewards of selected vs rejected samples", "reward", "density")
	var sel, rej plotter.Values
	for _, c := range d.Candidates {
		if math.IsNaN(c.Reward) || math.IsInf(c.Reward, 0) {
			continue
		}
		if c.Selected {
			sel = append(sel, c.Reward)
		} else {
			rej = append(rej, c.Reward)
		}
	}
	if len(sel)+len(rej) == 0 {
		p.Title.Text += " (no candidates recorded)"
		return p, nil
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range append(append(plotter.Values{}, sel...), rej...) {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if hi == lo {
		hi = lo + 1
	}
	const bins = 30
	for _, s := range []struct {
		name string
		v    plotter.Values
		c    color.Color
	}{
		{fmt.Sprintf("rejected (%d)", len(rej)), rej, color.NRGBA{R: 200, G: 60, B: 60, A: 150}},
		{fmt.Sprintf("selected (%d)", len(sel)), sel, color.NRGBA{R: 40, G: 110, B: 200, A: 150}},
	} {
		if len(s.v) == 0 {
			continue
		}
		// Pad with the range ends at zero weight so both histograms share bins.
		xy := make(plotter.XYs, 0, len(s.v)+2)
		for _, v := range s.v {
			xy = append(xy, plotter.XY{X: v, Y: 1})
		}
		xy = append(xy, plotter.XY{X: lo, Y: 0}, plotter.XY{X: hi, Y: 0})
		h, err := plotter.NewHistogram(xy, bins)
		if err != nil {
			return nil, fmt.Errorf("plot rewards: %w", err)
		}
		h.Normalize(1)
		h.FillColor = s.c
		h.LineStyle.Width = vg.Points(0.5)
		h.LineStyle.Color = color.Gray{Y: 60}
		p.Add(h)
		p.Legend.Add(s.name, h)
	}
	p.Legend.Left = false
	return p, nil
}

// savePlots writes the four PNGs into dir and returns their file names.
func savePlots(d *Data, t Table, dir string) ([]string, error) {
	type job struct {
		name string
		make func() (*plot.Plot, error)
	}
	jobs := []job{
		{AccuracyPNG, func() (*plot.Plot, error) { return accuracyPlot(t) }},
		{FamilyPNG, func() (*plot.Plot, error) { return familyPlot(t) }},
		{MarginPNG, func() (*plot.Plot, error) { return marginPlot(t) }},
		{RewardsPNG, func() (*plot.Plot, error) { return rewardsPlot(d) }},
	}
	var names []string
	for _, j := range jobs {
		p, err := j.make()
		if err != nil {
			return nil, err
		}
		p.Legend.ThumbnailWidth = vg.Points(20)
		p.Legend.Padding = vg.Points(2)
		p.Legend.TextStyle.Font.Size = vg.Points(9)
		p.Legend.YOffs = -vg.Points(2)
		if err := p.Save(plotW, plotH, filepath.Join(dir, j.name)); err != nil {
			return nil, fmt.Errorf("report: save %s: %w", j.name, err)
		}
		names = append(names, j.name)
	}
	return names, nil
}
