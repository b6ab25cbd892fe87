package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/evaluation"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/report"
	"github.com/posttrain/posttrain/tokenizer"
)

// newDemoCmd is `posttrain demo`: the six-round loop on the bundled task, plus the
// helpers that recreate the shipped base model.
func newDemoCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the six-round post-training loop on the bundled task, end to end",
	}
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
