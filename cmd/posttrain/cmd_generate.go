package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/inference"
	"github.com/posttrain/posttrain/inference/textio"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/transformer"
)

// genModel is a causal LM checkpoint with its tokenizer (nil when the directory has
// no tokenizer.json) and the kernel pool it runs on.
type genModel struct {
	m    *transformer.Model
	tok  *tokenizer.Tokenizer
	pool *kernels.Pool
}

func loadCausalModel(ctx context.Context, dir string, threads int) (*genModel, error) {
	if dir == "" {
		return nil, errors.New("--model is required")
	}
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	pool := kernels.NewPool(threads)
	m, err := checkpoint.Load(ctx, dir, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	if m.Config.IsSequenceClassifier() {
		pool.Close()
		return nil, fmt.Errorf("%s is a reward model (%s); this command needs a causal LM", dir, transformer.ArchSequenceClassifier)
	}
	lm := &genModel{m: m, pool: pool}
	if _, ok := checkpoint.TokenizerPath(dir); ok {
		tok, err := tokenizer.LoadDir(dir)
		if err != nil {
			pool.Close()
			return nil, err
		}
		if tok.VocabSize() > m.Config.VocabSize {
			pool.Close()
			return nil, fmt.Errorf("%s: tokenizer.json has %d tokens but vocab_size is %d", dir, tok.VocabSize(), m.Config.VocabSize)
		}
		lm.tok = tok
	}
	return lm, nil
}

// generateOptions are generate's flags.
type generateOptions struct {
	model, prompt, messages, promptIDs, stopIDs string
	raw, greedy                                 bool
	maxNew, topK, samples, threads              int
	temperature, topP                           float64
	seed                                        uint64
}

// generateResult is one sample in generate's --json output.
type generateResult struct {
	CompletionIDs []int32 `json:"completion_ids"`
	Text          *string `json:"text,omitempty"`
	FinishReason  string  `json:"finish_reason"`
}

// newGenerateCmd samples completions of one prompt from a causal LM checkpoint.
func newGenerateCmd(g *globalOptions) *cobra.Command {
	var o generateOptions
	cmd := &cobra.Command{
		Use:   "generate --model DIR (--prompt TEXT | --messages FILE | --prompt-ids 1,2,3) [flags]",
		Short: "Sample a completion from a model checkpoint",
		Long: `Sample completions of one prompt from a causal LM checkpoint with the KV-cached
engine (the prompt is prefilled once and shared by all --samples).

The prompt is one of:
  --prompt TEXT      a user message, rendered with the Llama 3 chat template and an open
                     assistant header (needs tokenizer.json); with --raw, the text is
                     encoded plainly after <|begin_of_text|>, as in pretraining
  --messages FILE    a JSON list of {"role", "content"} messages (or {"messages": [...]}),
                     rendered with the chat template and an open assistant header
  --prompt-ids IDS   token ids used exactly as given (no BOS, no template); works on a
                     directory without tokenizer.json

Sampling is greedy with --greedy (or --temperature 0), otherwise temperature, top-k and
top-p (nucleus) sampling with a seeded RNG: the same --seed gives the same output.
Generation stops at <|eot_id|>, <|eom_id|> or <|end_of_text|> (the config's
eos_token_id when there is no tokenizer, plus any --stop-ids) or after --max-new-tokens.
The prompt plus --max-new-tokens must fit in max_position_embeddings (when the flag
is not given, the default of 128 is lowered to fit).

Output is the completion text (special tokens dropped), or its ids without a tokenizer;
--json prints {"completion_ids": [...], "text": ..., "finish_reason": ...} per sample,
one JSON object per line.`,
		Example: `  posttrain generate --model sft1 --prompt "Name three primes." --max-new-tokens 64
  posttrain generate --model base0 --prompt "Once upon a time" --raw --top-p 0.9 --seed 7
  posttrain generate --model base0 --prompt-ids 1,15,27 --greedy --json
  posttrain generate --model sft1 --messages chat.json --samples 4 --temperature 0.8`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGenerate(cmd, g, &o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "model directory (config.json, model.safetensors, optional tokenizer.json)")
	f.StringVar(&o.prompt, "prompt", "", "prompt text (a user message in the chat template unless --raw)")
	f.StringVar(&o.messages, "messages", "", "JSON file of chat messages to continue as the assistant")
	f.StringVar(&o.promptIDs, "prompt-ids", "", "prompt token ids, e.g. 1,2,3 (used exactly; no tokenizer needed)")
	f.BoolVar(&o.raw, "raw", false, "with --prompt: encode plain text after BOS, without the chat template")
	f.IntVar(&o.maxNew, "max-new-tokens", 128, "most tokens to generate per sample (the default is capped to fit the context)")
	f.BoolVar(&o.greedy, "greedy", false, "always take the most likely token")
	f.Float64Var(&o.temperature, "temperature", 1, "softmax temperature (0 = greedy)")
	f.Float64Var(&o.topP, "top-p", 1, "nucleus sampling: keep the most likely tokens up to this total probability (1 = off)")
	f.IntVar(&o.topK, "top-k", 0, "keep only the K most likely tokens (0 = off)")
	f.Uint64Var(&o.seed, "seed", 1, "random seed")
	f.IntVar(&o.samples, "samples", 1, "number of completions of the prompt")
	f.StringVar(&o.stopIDs, "stop-ids", "", "extra stop token ids, e.g. 2,5")
	f.IntVar(&o.threads, "threads", 0, "worker threads (0 = GOMAXPROCS)")
	cmd.MarkFlagsMutuallyExclusive("prompt", "messages", "prompt-ids")
	cmd.MarkFlagsOneRequired("prompt", "messages", "prompt-ids")
	cmd.MarkFlagsMutuallyExclusive("greedy", "temperature")
	return cmd
}

func runGenerate(cmd *cobra.Command, g *globalOptions, o *generateOptions) error {
	ctx := cmd.Context()
	flags := cmd.Flags()
	if o.raw && !flags.Changed("prompt") {
		return errors.New("--raw applies to --prompt only")
	}
	if o.samples <= 0 {
		return fmt.Errorf("--samples must be > 0, got %d", o.samples)
	}
	in := textio.PromptInput{Text: o.prompt, HasText: flags.Changed("prompt"), Raw: o.raw}
	if flags.Changed("messages") {
		msgs, err := textio.ReadMessagesFile(o.messages)
		if err != nil {
			return err
		}
		in.Messages = msgs
	}
	if flags.Changed("prompt-ids") {
		ids, err := tokenizer.ParseIDs(o.promptIDs)
		if err != nil {
			return fmt.Errorf("--prompt-ids: %w", err)
		}
		if ids == nil {
			ids = []int32{}
		}
		in.IDs = ids
	}
	var extraStops []int32
	if o.stopIDs != "" {
		ids, err := tokenizer.ParseIDs(o.stopIDs)
		if err != nil {
			return fmt.Errorf("--stop-ids: %w", err)
		}
		extraStops = ids
	}
	lm, err := loadCausalModel(ctx, o.model, o.threads)
	if err != nil {
		return err
	}
	defer lm.pool.Close()
	prompt, err := textio.PromptIDs(lm.tok, in)
	if err != nil {
		return fmt.Errorf("prompt: %w", err)
	}
	if !flags.Changed("max-new-tokens") {
		// The default never overflows the context; an explicit value that does is an error.
		o.maxNew = max(1, min(o.maxNew, lm.m.Config.MaxPositionEmbeddings-len(prompt)))
	}
	params := inference.Params{
		MaxNewTokens: o.maxNew, Greedy: o.greedy, Temperature: o.temperature,
		TopK: o.topK, TopP: o.topP, Seed: o.seed,
		StopTokens: append(textio.StopTokens(lm.tok, lm.m.Config), extraStops...),
	}
	if params.TopP == 1 {
		params.TopP = 0
	}
	eng, err := inference.NewEngine(lm.m, inference.Options{MaxBatch: min(o.samples, 64)})
	if err != nil {
		return err
	}
	var progress func(done, total int)
	if o.samples > 1 {
		bar := newSampleBar(cmd.ErrOrStderr(), o.samples, "sampling")
		defer bar.Exit()
		progress = func(done, _ int) { _ = bar.Set(done) }
	}
	outs, err := eng.GenerateBatch(ctx, []inference.Request{{Prompt: prompt, Samples: o.samples, Params: params}}, progress)
	if err != nil {
		return err
	}
	return printGenerations(cmd.OutOrStdout(), g.jsonOut, lm.tok, outs[0])
}

func printGenerations(w io.Writer, asJSON bool, tok *tokenizer.Tokenizer, outs []inference.Completion) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i, c := range outs {
		res := generateResult{CompletionIDs: c.Tokens, FinishReason: c.FinishReason}
		if tok != nil {
			text := tok.DecodeWithoutSpecials(c.Tokens)
			res.Text = &text
		}
		if asJSON {
			if err := enc.Encode(res); err != nil {
				return err
			}
			continue
		}
		if len(outs) > 1 {
			fmt.Fprintf(w, "--- sample %d (%s, %d tokens)\n", i+1, c.FinishReason, len(c.Tokens))
		}
		if res.Text != nil {
			fmt.Fprintln(w, *res.Text)
			continue
		}
		ids := make([]string, len(c.Tokens))
		for j, t := range c.Tokens {
			ids[j] = fmt.Sprint(t)
		}
		fmt.Fprintln(w, strings.Join(ids, ","))
	}
	return nil
}

// newSampleBar is a progress bar over n items on w (stderr).
func newSampleBar(w io.Writer, n int, desc string) *progressbar.ProgressBar {
	return progressbar.NewOptions(n,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
}

// newEvalCmd groups evaluation commands.
func newEvalCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Evaluate a model checkpoint on JSONL rows",
	}
	cmd.AddCommand(newEvalLogprobsCmd(g))
	return cmd
}

func newEvalLogprobsCmd(g *globalOptions) *cobra.Command {
	var (
		model, input, output string
		raw                  bool
		batch, threads       int
	)
	cmd := &cobra.Command{
		Use:   "logprobs --model DIR --input IN.jsonl --output OUT.jsonl",
		Short: "Score completions: add their log-probabilities to JSONL rows",
		Long: `Compute each row's completion log-probability under a causal LM checkpoint, with the
training forward pass, and write the rows back with two fields added:
"logprob" (the sum over completion tokens) and "token_logprobs" (one per token).

Input rows (JSONL, one object per line; other fields are kept):
  {"prompt_ids": [...], "completion_ids": [...]}
      ids used exactly as given (no BOS, no template); needs no tokenizer.json
  {"prompt": "...", "completion": "..."}
      a user turn and the assistant's answer in the Llama 3 chat template; the
      completion is the answer's tokens plus its closing <|eot_id|>. With --raw:
      <|begin_of_text|> + prompt as plain text, then the completion as plain text
  {"messages": [{"role": ..., "content": ...}, ...]}
      the last message must be the assistant's: its tokens plus <|eot_id|> are scored

Every row is checked before scoring starts; a bad row stops the command with an error
naming IN.jsonl:line. The output file is written atomically.`,
		Example: `  posttrain eval logprobs --model sft1 --input pairs.jsonl --output scored.jsonl
  posttrain eval logprobs --model base0 --input ids.jsonl --output out.jsonl --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if input == "" || output == "" {
				return errors.New("--input and --output are required")
			}
			lm, err := loadCausalModel(cmd.Context(), model, threads)
			if err != nil {
				return err
			}
			defer lm.pool.Close()
			var bar *progressbar.ProgressBar
			opts := textio.ScoreOptions{
				RowOptions: textio.RowOptions{Tokenizer: lm.tok, Raw: raw},
				BatchSize:  batch,
				Progress: func(done, total int) {
					if bar == nil {
						bar = newSampleBar(cmd.ErrOrStderr(), total, "scoring")
					}
					_ = bar.Set(done)
				},
			}
			sum, err := textio.ScoreFile(cmd.Context(), lm.m, input, output, opts)
			if bar != nil {
				_ = bar.Exit()
			}
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if g.jsonOut {
				enc := json.NewEncoder(w)
				return enc.Encode(struct {
					textio.ScoreSummary
					Output string `json:"output"`
				}{sum, output})
			}
			_, err = fmt.Fprintf(w, "scored %d rows (%d completion tokens) -> %s\nmean logprob %.4f per row, %.4f per token\n",
				sum.Rows, sum.CompletionTokens, output, sum.MeanLogProb, sum.MeanTokenLogProb)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "causal LM directory (config.json, model.safetensors, optional tokenizer.json)")
	f.StringVar(&input, "input", "", "input JSONL file")
	f.StringVar(&output, "output", "", "output JSONL file (written atomically)")
	f.BoolVar(&raw, "raw", false, "encode prompt/completion rows as plain text instead of the chat template")
	f.IntVar(&batch, "batch", 8, "rows per forward pass")
	f.IntVar(&threads, "threads", 0, "worker threads (0 = GOMAXPROCS)")
	return cmd
}
