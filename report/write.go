package report

import (
	"bytes"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Report file names in the report directory.
const (
	MarkdownFile = "report.md"
	HTMLFile     = "report.html"
)

// Files lists what Write produced, as paths.
type Files struct {
	Dir      string   `json:"dir"`
	Markdown string   `json:"markdown"`
	HTML     string   `json:"html"`
	Plots    []string `json:"plots"`
}

// Write renders the run's report into dir (created if missing): report.md, report.html
// and the PNG plots. now stamps the report.
func Write(d *Data, dir string, now time.Time) (Files, error) {
	if d == nil {
		return Files{}, fmt.Errorf("report: no data")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Files{}, fmt.Errorf("report: %w", err)
	}
	t := BuildTable(d)
	plots, err := savePlots(d, t, dir)
	if err != nil {
		return Files{}, err
	}
	md := markdown(d, t, plots, now)
	f := Files{Dir: dir, Markdown: filepath.Join(dir, MarkdownFile), HTML: filepath.Join(dir, HTMLFile)}
	for _, p := range plots {
		f.Plots = append(f.Plots, filepath.Join(dir, p))
	}
	if err := os.WriteFile(f.Markdown, []byte(md), 0o644); err != nil {
		return Files{}, fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(f.HTML, []byte(htmlPage(d, t, plots, now)), 0o644); err != nil {
		return Files{}, fmt.Errorf("report: %w", err)
	}
	return f, nil
}

var plotCaptions = map[string]string{
	AccuracyPNG: "Held-out exact-match accuracy of each round's final (DPO) model and of its SFT model, format compliance and reward-model accuracy; round 0 is the shipped base model.",
	FamilyPNG:   "Held-out accuracy of each round's final model, per capability.",
	MarginPNG:   "DPO: held-out margin of the averaged model against its reference (the round's SFT model), and the final training loss.",
	RewardsPNG:  "Reward-model scores of the rejection-sampling candidates: the selected best-of-K against the rest, all rounds.",
}

// summary is the one-paragraph headline: base, first and last round accuracy.
func summary(t Table) string {
	var base, first, last *Row
	for i := range t.Rows {
		r := &t.Rows[i]
		if !r.Has["accuracy"] {
			continue
		}
		switch {
		case r.Round == 0:
			base = r
		case first == nil:
			first = r
		}
		if r.Round > 0 {
			last = r
		}
	}
	var parts []string
	if base != nil {
		parts = append(parts, fmt.Sprintf("base model %.1f%%", 100*base.Accuracy))
	}
	if first != nil {
		parts = append(parts, fmt.Sprintf("round %d %.1f%%", first.Round, 100*first.Accuracy))
	}
	if last != nil && last != first {
		parts = append(parts, fmt.Sprintf("round %d %.1f%%", last.Round, 100*last.Accuracy))
	}
	if len(parts) == 0 {
		return "No held-out accuracy was recorded."
	}
	return "Held-out exact-match accuracy: " + strings.Join(parts, ", ") + "."
}

func markdown(d *Data, t Table, plots []string, now time.Time) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# posttrain report: run %s\n\n", d.Run.ID)
	fmt.Fprintf(&b, "Preset `%s`, status `%s`, %d rounds; written %s.\n\n", d.Run.Preset, d.Run.Status, len(d.Rounds), now.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "%s\n\n", summary(t))
	b.WriteString("## Per round\n\n")
	b.WriteString("RM acc: the averaged reward model's accuracy on held-out preference pairs. SFT/DPO loss: final training loss (mean over variants). DPO margin: held-out. acc: held-out exact match of the round's final model (round 0: base model); per-capability columns likewise. format: share of answers that end with end-of-turn, are not empty and do not repeat at the tail.\n\n")
	b.WriteString(t.Markdown())
	b.WriteString("\n## Plots\n\n")
	for _, p := range plots {
		fmt.Fprintf(&b, "![%s](%s)\n\n%s\n\n", p, p, plotCaptions[p])
	}
	return b.String()
}

func htmlPage(d *Data, t Table, plots []string, now time.Time) string {
	var b bytes.Buffer
	esc := html.EscapeString
	fmt.Fprintf(&b, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>posttrain report %s</title>\n", esc(d.Run.ID))
	b.WriteString("<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}</style></head><body>\n")
	fmt.Fprintf(&b, "<h1>posttrain report: run %s</h1>\n<p>Preset <code>%s</code>, status <code>%s</code>, %d rounds; written %s.</p>\n<p>%s</p>\n",
		esc(d.Run.ID), esc(d.Run.Preset), esc(d.Run.Status), len(d.Rounds), now.UTC().Format(time.RFC3339), esc(summary(t)))
	b.WriteString("<h2>Per round</h2>\n")
	for _, block := range strings.Split(strings.TrimSpace(t.Markdown()), "\n\n") {
		lines := strings.Split(block, "\n")
		if !strings.HasPrefix(lines[0], "|") {
			fmt.Fprintf(&b, "<p>%s</p>\n", esc(block))
			continue
		}
		b.WriteString("<table>\n")
		for i, l := range lines {
			if i == 1 {
				continue // the Markdown alignment row
			}
			tag := "td"
			if i == 0 {
				tag = "th"
			}
			b.WriteString("<tr>")
			for _, c := range strings.Split(strings.Trim(l, "| "), " | ") {
				fmt.Fprintf(&b, "<%s>%s</%s>", tag, esc(c), tag)
			}
			b.WriteString("</tr>\n")
		}
		b.WriteString("</table>\n")
	}
	b.WriteString("<h2>Plots</h2>\n")
	for _, p := range plots {
		fmt.Fprintf(&b, "<figure><img src=\"%s\" alt=\"%s\"><figcaption>%s</figcaption></figure>\n", esc(p), esc(p), esc(plotCaptions[p]))
	}
	b.WriteString("</body></html>\n")
	return b.String()
}
