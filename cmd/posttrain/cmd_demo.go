package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/posttrain/posttrain/assets"
	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/devserver"
	"github.com/posttrain/posttrain/devserver/devstack"
	"github.com/posttrain/posttrain/evaluation"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/report"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/workflows"
)

// demoOptions are the flags of `posttrain demo`.
type demoOptions struct {
	rounds   int
	seed     int64
	dataDir  string
	keep     bool
	grpcPort int
	uiPort   int
	out      string
}

// newDemoCmd is `posttrain demo`: the six-round loop on the bundled task, plus the
// helpers that recreate and evaluate the shipped base model.
func newDemoCmd(g *globalOptions) *cobra.Command {
	o := demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo [--rounds N] [--seed N] [--data-dir DIR] [--keep] [--json]",
		Short: "Run the six-round post-training loop on the bundled task, end to end",
		Long: `Run the whole Llama 3 post-training loop on the bundled task in one process, on
embedded defaults:

  - the datastore: POSTTRAIN_DATABASE_URL or datastore.url when set, else a private
    PostgreSQL cluster under --data-dir (the PostgreSQL server binaries must be
    installed; the error names the package);
  - the Temporal server with its Web UI (SQLite under --data-dir; gRPC 127.0.0.1:7233 and
    the UI on :8233, or free ports when those are taken);
  - a worker, and the PostTraining workflow on the demo preset, starting from the base
    model shipped in the binary (assets/basemodel).

Each round trains the reward model, samples K=8 answers per prompt with the previous
round's model, drops those that disagree with the prompt's ground truth
(sampling.verify=answer, as the paper filters math by final answers) and keeps the
reward model's best of the rest, then runs SFT on every round's kept samples and DPO
with model averaging, evaluating after every stage on held-out prompts; the simulated
annotator labels the next round's preferences. It takes about 5 minutes on 2 cores.
Progress goes to stderr; at the end the per-round table (RM accuracy, share of samples
correct and kept, SFT and DPO losses, held-out accuracy per capability, format
compliance, time per stage) is printed
(--json: as JSON), the report (Markdown, HTML, PNG plots) is written under
<data-dir>/reports/<run>, and the Web UI link is shown. --keep leaves the UI up until
Ctrl-C. The same --seed gives the same table (timings aside).`,
		Example: `  posttrain demo
  posttrain demo --rounds 2 --seed 7 --keep
  posttrain demo --json > table.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.rounds, "rounds", 0, "rounds (0: the preset's, 6)")
	f.Int64Var(&o.seed, "seed", 1, "training seed (model.seed): the same seed gives the same table")
	f.StringVar(&o.dataDir, "data-dir", "", "local state: PostgreSQL cluster, Temporal database, artifacts, reports (default data_dir, .posttrain)")
	f.BoolVar(&o.keep, "keep", false, "leave the Temporal server and Web UI up after the run until Ctrl-C")
	f.IntVar(&o.grpcPort, "temporal-port", devserver.DefaultGRPCPort, "Temporal gRPC port (taken: a free one)")
	f.IntVar(&o.uiPort, "ui-port", devserver.UIPortFor(devserver.DefaultGRPCPort), "Web UI port (taken: a free one)")
	f.StringVar(&o.out, "report-dir", "", "where to write the report (default <data-dir>/reports/<run>)")
	cmd.AddCommand(newDemoCorpusCmd(g), newDemoEvalCmd(g))
	return cmd
}

func newDemoCorpusCmd(g *globalOptions) *cobra.Command {
	var (
		out     string
		seed    uint64
		docs    int
		mistake float64
	)
	cmd := &cobra.Command{
		Use:   "corpus --out DIR [--seed N] [--docs N] [--mistake-rate P]",
		Short: "Write the generated pre-training corpus of the shipped base model",
		Long: `Write the corpus the shipped base model (assets/basemodel) was trained on, generated
deterministically from --seed by the bundled task:

  ` + demotask.TextFile + `   free text about the task domain (sums, differences, comparisons,
               spellings, reversals, sorted letters, capitals), one {"text"} per line:
               the input of posttrain pretrain
  ` + demotask.ChatFile + `  chat transcripts of training-split instructions, --mistake-rate of
               them with a wrong or badly formatted answer, one {"messages"} per line:
               the chat-format stage (posttrain sft train)

No held-out evaluation prompt, nor its answer, appears in either file.`,
		Example: `  posttrain demo corpus --out corpus
  posttrain tokenizer train --vocab 512 --out tok corpus/text.jsonl corpus/chats.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out is required: the directory to write the corpus to")
			}
			if docs < 1 {
				return fmt.Errorf("--docs must be >= 1, got %d", docs)
			}
			if mistake < 0 || mistake > 1 {
				return fmt.Errorf("--mistake-rate must be in [0, 1], got %g", mistake)
			}
			c := demotask.BuildCorpus(seed, docs, mistake)
			paths, err := demotask.WriteCorpus(out, c)
			if err != nil {
				return err
			}
			if g.jsonOut {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{
					"files": paths, "texts": len(c.Texts), "transcripts": len(c.Transcripts)})
			}
			for _, p := range paths {
				fmt.Fprintln(cmd.OutOrStdout(), "wrote", p)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "directory to write the corpus files to (required)")
	f.Uint64Var(&seed, "seed", 1, "seed of the generated corpus")
	f.IntVar(&docs, "docs", 3000, "free-text documents, and as many chat transcripts")
	f.Float64Var(&mistake, "mistake-rate", 0.5, "share of transcripts with a wrong or badly formatted answer")
	return cmd
}

func newDemoEvalCmd(g *globalOptions) *cobra.Command {
	var (
		model   string
		seed    uint64
		n       int
		maxNew  int
		threads int
		show    int
	)
	cmd := &cobra.Command{
		Use:   "eval --model DIR [--seed N] [--prompts N] [--max-new-tokens N]",
		Short: "Evaluate a causal LM on the bundled task's held-out prompts",
		Long: `Answer the bundled task's held-out prompts greedily (the Llama 3 chat template; decoding
stops at end-of-turn) and report exact-match accuracy overall and per capability, format
compliance (ends with end-of-turn, not empty, no tail repetition, no stop at the length
limit), mean length, and the shares of answers cut at the limit or repeating themselves.
The prompts are the demo's: the first --prompts of the held-out split drawn from --seed.`,
		Example: `  posttrain demo eval --model assets/basemodel
  posttrain demo eval --model out/dpo --prompts 128 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if model == "" {
				return fmt.Errorf("--model is required: a causal-LM directory with tokenizer.json")
			}
			if n < 1 {
				return fmt.Errorf("--prompts must be >= 1, got %d", n)
			}
			if threads <= 0 {
				threads = runtime.NumCPU()
			}
			pool := kernels.NewPool(threads)
			defer pool.Close()
			m, err := checkpoint.Load(cmd.Context(), model, pool)
			if err != nil {
				return err
			}
			tok, err := tokenizer.LoadDir(model)
			if err != nil {
				return fmt.Errorf("model %s: %w", model, err)
			}
			items := demotask.Generate(seed, demotask.Eval, n)
			rep, err := evaluation.Run(cmd.Context(), m, tok, items, evaluation.Options{MaxNewTokens: maxNew})
			if err != nil {
				return err
			}
			if g.jsonOut {
				return dsWriteJSON(cmd.OutOrStdout(), rep)
			}
			return printEvalReport(cmd.OutOrStdout(), items, rep, show)
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "causal-LM directory with tokenizer.json (required)")
	f.Uint64Var(&seed, "seed", 1, "task seed (task.seed of the run)")
	f.IntVar(&n, "prompts", 64, "held-out prompts to answer")
	f.IntVar(&maxNew, "max-new-tokens", evaluation.DefaultMaxNewTokens, "answer length limit in tokens")
	f.IntVar(&threads, "threads", 0, "kernel threads (0: all CPUs)")
	f.IntVar(&show, "show", 8, "example answers to print")
	return cmd
}

func printEvalReport(w io.Writer, items []demotask.Item, rep evaluation.Report, show int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	keys := make([]string, 0, len(rep.Metrics))
	for k := range rep.Metrics {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%.4g\n", k, rep.Metrics[k])
	}
	for i := 0; i < min(show, len(items)); i++ {
		mark := "wrong"
		if items[i].Correct(rep.Responses[i].Text) {
			mark = "right"
		}
		fmt.Fprintf(tw, "example\t%q -> %q (%s, %s; want %q)\n", items[i].UserText(), rep.Responses[i].Text, mark, rep.Responses[i].Stop, items[i].Answer)
	}
	return tw.Flush()
}

// newReportCmd is `posttrain report`: the report directory of a run from PostgreSQL.
func newReportCmd(g *globalOptions) *cobra.Command {
	db := &dbFlags{}
	var runID, out string
	cmd := &cobra.Command{
		Use:   "report --run ID --out DIR",
		Short: "Write a run's report (Markdown, HTML and PNG plots) from its stored metrics",
		Long: `Read a run's metrics, stages and rejection-sampling candidates from PostgreSQL and write
into --out: report.md and report.html with the per-round table (reward-model accuracy,
SFT and DPO losses, DPO margin, held-out accuracy overall and per capability, format
compliance, time per stage) and the plots accuracy.png, accuracy_by_family.png,
dpo_margin.png and rewards.png. The per-round table is also printed (--json: as JSON).`,
		Example: `  posttrain report --run posttrain-20260101-120000 --out report/`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runID == "" || out == "" {
				return fmt.Errorf("--run and --out are required")
			}
			pool, release, err := openDatastore(cmd.Context(), g, db)
			if err != nil {
				return err
			}
			defer release()
			d, err := report.Load(cmd.Context(), datastore.New(pool), runID)
			if err != nil {
				return schemaHint(err)
			}
			files, err := report.Write(d, out, time.Now())
			if err != nil {
				return err
			}
			t := report.BuildTable(d)
			if g.jsonOut {
				return dsWriteJSON(cmd.OutOrStdout(), map[string]any{"table": t, "files": files})
			}
			fmt.Fprint(cmd.OutOrStdout(), t.Markdown())
			fmt.Fprintf(cmd.OutOrStdout(), "\nwrote %s (and %s, %d plots)\n", files.Markdown, files.HTML, len(files.Plots))
			return nil
		},
	}
	db.register(cmd)
	cmd.Flags().StringVar(&runID, "run", "", "run ID (the workflow ID)")
	cmd.Flags().StringVar(&out, "out", "", "directory to write the report into")
	return cmd
}

// runDemo brings up the datastore, Temporal and a worker, runs the PostTraining workflow
// on the demo preset, watches it, and reports.
func runDemo(cmd *cobra.Command, g *globalOptions, o demoOptions) error {
	ctx := cmd.Context()
	stderr, stdout := cmd.ErrOrStderr(), cmd.OutOrStdout()
	if o.rounds < 0 {
		return fmt.Errorf("--rounds must be >= 0, got %d", o.rounds)
	}
	if g.configFile != "" {
		// The run resolves its config in the StartRun activity from the preset and the
		// overrides only; a file read here would silently not apply to it.
		return fmt.Errorf("--config is not supported by posttrain demo: the run resolves its config from the preset and overrides; pass keys with --set section.key=value or POSTTRAIN_<SECTION>_<KEY> environment variables")
	}
	preset := g.preset
	if preset == "" {
		preset = "demo"
	}
	sets := slices.Clone(g.sets)
	if o.dataDir != "" {
		abs, err := filepath.Abs(o.dataDir)
		if err != nil {
			return fmt.Errorf("--data-dir: %w", err)
		}
		sets = append(sets, "data_dir="+abs)
	}
	cfg, err := configs.Load(configs.Sources{Preset: preset, File: g.configFile, Sets: sets})
	if err != nil {
		return err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if !slices.Contains(sets, "data_dir="+dataDir) {
		// The workflow's activities resolve the config again: keep them on this directory.
		sets = append(sets, "data_dir="+dataDir)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }

	// What `posttrain dev` runs (devstack): the datastore (a configured server, else the
	// private cluster), Temporal with its Web UI on the usual ports unless they are
	// taken, and a worker whose default base model is the shipped one.
	// The port check and the binding happen under a machine-wide lock (PortFallback), so
	// demos started in the same second never pick the same port.
	st, err := devstack.Start(ctx, devstack.Options{Config: cfg, GRPCPort: o.grpcPort, UIPort: o.uiPort, PortFallback: true, Log: stderr})
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		_ = st.Close(stopCtx)
	}()
	c, pool := st.Client, st.Pool
	modelsDir := filepath.Join(dataDir, "models")
	logf("ready in %s: Temporal %s, Web UI %s", st.ReadyIn.Round(100*time.Millisecond), st.Address(), st.UIURL())

	// The run.
	id := fmt.Sprintf("demo-seed%d-%s", o.seed, time.Now().UTC().Format("20060102-150405"))
	in := workflows.RunInput{Preset: preset, Overrides: sets, Rounds: o.rounds, Seed: o.seed}
	if err := in.Validate(); err != nil {
		return err
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: st.TaskQueue()}, workflows.WorkflowType, in)
	if err != nil {
		return fmt.Errorf("start the run: %w", err)
	}
	runURL := fmt.Sprintf("%s/namespaces/%s/workflows/%s", st.UIURL(), st.Namespace(), id)
	logf("run %s started: %s", id, runURL)
	runStart := time.Now()
	if err := watchDemo(ctx, c, run, stderr); err != nil {
		return fmt.Errorf("run %s: %w (see %s)", id, err, runURL)
	}
	runTime := time.Since(runStart)

	// The base model's held-out numbers, as round 0, for the comparison.
	db := datastore.New(pool)
	if err := evalBase(ctx, db, cfg, id, modelsDir); err != nil {
		return err
	}
	d, err := report.Load(ctx, db, id)
	if err != nil {
		return err
	}
	out := o.out
	if out == "" {
		out = filepath.Join(dataDir, "reports", id)
	}
	files, err := report.Write(d, out, time.Now())
	if err != nil {
		return err
	}
	t := report.BuildTable(d)
	if g.jsonOut {
		if err := dsWriteJSON(stdout, map[string]any{"run_id": id, "seed": o.seed, "run_seconds": runTime.Seconds(),
			"table": t, "report": files, "ui": runURL}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "run %s (seed %d): %d rounds in %s\n\n", id, o.seed, len(d.Rounds), runTime.Round(time.Second))
		fmt.Fprint(stdout, t.Markdown())
		fmt.Fprintf(stdout, "\nreport: %s (and %s)\nWeb UI: %s\n", files.Markdown, files.HTML, runURL)
	}
	if !o.keep {
		return nil
	}
	logf("the Web UI stays up at %s; Ctrl-C stops everything", st.UIURL())
	<-ctx.Done()
	return nil
}

// watchDemo shows the run's progress on stderr: a line per finished stage and a bar for
// the running one (from the status query and the running activity's heartbeats).
func watchDemo(ctx context.Context, c client.Client, run client.WorkflowRun, w io.Writer) error {
	done := make(chan error, 1)
	go func() {
		var res workflows.RunResult
		done <- run.Get(ctx, &res)
	}()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var bar *progressbar.ProgressBar
	barKey := ""
	printed := map[string]bool{}
	finish := func() {
		if bar != nil {
			// Finish with OptionClearOnFinish erases the bar, so the next line starts clean.
			_ = bar.Finish()
			bar = nil
		}
	}
	report := func(st workflows.Status) {
		for _, s := range st.Stages {
			key := fmt.Sprintf("%d/%s", s.Round, s.Stage)
			if s.State == workflows.StageRunning || printed[key] {
				continue
			}
			printed[key] = true
			finish()
			dur := s.FinishedAt.Sub(s.StartedAt).Round(100 * time.Millisecond)
			line := fmt.Sprintf("round %d  %-9s %-9s %6s", s.Round, s.Stage, s.State, dur)
			for _, name := range []string{"accuracy", "format_compliance", "loss"} {
				if v, ok := st.Metrics[workflows.MetricKey(s.Round, s.Stage, name)]; ok {
					line += fmt.Sprintf("  %s %.3f", name, v)
				}
			}
			fmt.Fprintln(w, line)
		}
	}
	for {
		select {
		case err := <-done:
			if st, _, qerr := runStatus(context.WithoutCancel(ctx), c, run.GetID()); qerr == nil {
				report(st)
			}
			finish()
			return err
		case <-tick.C:
			st, p, err := runStatus(ctx, c, run.GetID())
			if err != nil {
				continue
			}
			report(st)
			if st.Stage == "" {
				continue
			}
			key := fmt.Sprintf("round %d/%d %s", st.Round, st.Rounds, st.Stage)
			if p != nil && p.Stage != "" && p.Stage != st.Stage {
				// The stage's evaluation or averaging: its own bar, not the training one's.
				key += " " + p.Stage
			}
			total := 1
			if p != nil && p.Total > 0 {
				total = p.Total
			}
			if key != barKey || bar == nil {
				finish()
				bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(key),
					progressbar.OptionShowCount(), progressbar.OptionSetWidth(24), progressbar.OptionClearOnFinish(),
					progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetElapsedTime(true))
				barKey = key
			}
			if p != nil && p.Total > 0 {
				bar.ChangeMax(p.Total)
				_ = bar.Set(p.Step)
				if p.Loss != 0 {
					bar.Describe(fmt.Sprintf("%s loss %.4f", key, p.Loss))
				}
			}
		}
	}
}

// evalBase evaluates the base model (the shipped one, or model.base when it is a
// directory) on the run's held-out prompts and stores the metrics as round 0 (stage eval,
// variant base), the baseline of the report.
func evalBase(ctx context.Context, db *datastore.Store, cfg *configs.Config, runID, modelsDir string) error {
	dir := cfg.Model.Base
	if dir == "" {
		var err error
		if dir, err = assets.WriteBaseModel(modelsDir); err != nil {
			return err
		}
	} else if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil // an artifact ID: the run registered it; no local baseline to measure
	}
	pool := kernels.NewPool(runtime.NumCPU())
	defer pool.Close()
	m, err := checkpoint.Load(ctx, dir, pool)
	if err != nil {
		return err
	}
	tok, err := tokenizer.LoadDir(dir)
	if err != nil {
		return fmt.Errorf("base model: %w", err)
	}
	items := demotask.Generate(uint64(cfg.Task.Seed), demotask.Eval, cfg.Task.EvalPrompts)
	if cfg.Eval.Prompts > 0 && len(items) > cfg.Eval.Prompts {
		items = items[:cfg.Eval.Prompts]
	}
	rep, err := evaluation.Run(ctx, m, tok, items, evaluation.Options{MaxNewTokens: cfg.Eval.MaxNewTokens})
	if err != nil {
		return fmt.Errorf("evaluate the base model: %w", err)
	}
	ms := make([]datastore.Metric, 0, len(rep.Metrics))
	for _, k := range slices.Sorted(maps.Keys(rep.Metrics)) {
		ms = append(ms, datastore.Metric{RunID: runID, Round: 0, Stage: datastore.StageEval, Variant: report.EvalBase, Name: k, Value: rep.Metrics[k]})
	}
	return db.RecordMetrics(ctx, ms)
}
