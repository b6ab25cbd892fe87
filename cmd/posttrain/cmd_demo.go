package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/posttrain/posttrain/demotask"
)

// newDemoCmd is `posttrain demo`: the six-round loop on the bundled task, plus the
// helpers that recreate the shipped base model.
func newDemoCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the six-round post-training loop on the bundled task, end to end",
	}
	cmd.AddCommand(newDemoCorpusCmd(g))
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
