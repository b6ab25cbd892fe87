package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/dpo"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/sft"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/transformer"
)

// newSFTCmd groups supervised fine-tuning: train and eval.
func newSFTCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sft",
		Short: "Supervised fine-tuning on assistant tokens only (train, eval)",
	}
	cmd.AddCommand(newSFTTrainCmd(g), newSFTEvalCmd(g))
	return cmd
}

// newDPOCmd groups DPO: train and eval.
func newDPOCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dpo",
		Short: "Direct Preference Optimization with formatting-token masking and an NLL term (train, eval)",
	}
	cmd.AddCommand(newDPOTrainCmd(g), newDPOEvalCmd(g))
	return cmd
}

const sftRowsHelp = `Rows are JSONL: {"messages": [...]} conversations (the assistant turns are the
targets), {"prompt", "completion"} pairs (strings or message lists), or the same
pre-tokenized as {"prompt_ids", "completion_ids"} (used exactly as given: no BOS, no
template). Text rows need the model directory's tokenizer.json; pre-tokenized rows do not.
The loss is the mean NLL of the target tokens: the prompt is masked and the assistant's
end-of-turn token is trained.`

func newSFTTrainCmd(g *globalOptions) *cobra.Command {
	cfg := sft.DefaultConfig()
	var model, trainPath, valPath string
	var lastTurn bool
	threads := 0
	cmd := &cobra.Command{
		Use:   "train --model DIR --train FILE.jsonl [--val FILE.jsonl] --out DIR [--steps N --batch B --lr LR]",
		Short: "Fine-tune a causal LM on SFT examples",
		Long: "Fine-tune a causal-LM checkpoint on supervised examples.\n\n" + sftRowsHelp + `

--packing puts several short examples into one row of --seq positions (positions restart
and no example attends to another). --last-turn-only trains only the final assistant turn
of multi-turn conversations. Rows are drawn in a --seed shuffled order each epoch.

--out receives the model plus trainer_state.{json,bin} every --checkpoint-every steps, at
the end and on Ctrl-C; --resume continues that run and ends with exactly the weights an
uninterrupted run would have produced. Validation loss on --val is measured before and
after training (and every --eval-every steps).` + configNote,
		Example: `  posttrain sft train --model base --train sft.jsonl --val sft_val.jsonl --out sft1 --steps 200 --batch 8 --lr 3e-4
  posttrain sft train --model base --train sft.jsonl --out sft1 --steps 200 --resume --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := applyStageConfig(g, cmd.Flags(), "sft"); err != nil {
				return fmt.Errorf("sft train: %w", err)
			}
			if cfg.OutDir == "" {
				return errors.New("sft train: --out is required")
			}
			if model == "" && cfg.Resume {
				model = cfg.OutDir
			}
			if model == "" || trainPath == "" {
				return errors.New("sft train: --model and --train are required")
			}
			pool := newStagePool(threads)
			defer pool.Close()
			m, tok, tokJSON, err := loadStageModel(ctx, model, pool)
			if err != nil {
				return fmt.Errorf("sft train: %w", err)
			}
			enc := &datasets.Encoder{Tok: tok, MaxLen: m.Config.MaxPositionEmbeddings}
			opts := datasets.SFTOptions{LastTurnOnly: lastTurn}
			train, err := loadSFTRows(trainPath, enc, opts)
			if err != nil {
				return fmt.Errorf("sft train: %w", err)
			}
			var val []datasets.EncodedSFT
			if valPath != "" {
				if val, err = loadSFTRows(valPath, enc, opts); err != nil {
					return fmt.Errorf("sft train: %w", err)
				}
			}
			cfg.TokenizerJSON = tokJSON
			bar := newStageBar(cmd.ErrOrStderr(), cfg.Steps, "sft")
			_, res, err := sft.Train(ctx, cfg, m, train, val, sft.Hooks{
				Progress: bar.train,
				Eval: func(step int, r sft.EvalResult) {
					bar.note(fmt.Sprintf("step %d: validation loss %.4f over %d tokens", step, r.Loss, r.Tokens))
				},
			})
			bar.finish()
			return finishStage(err, res.Steps > res.StartStep, func() error { return printSFTTrain(cmd.OutOrStdout(), g.jsonOut, res) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "starting causal-LM checkpoint directory (default with --resume: --out)")
	f.StringVar(&trainPath, "train", "", "training examples (JSONL)")
	f.StringVar(&valPath, "val", "", "held-out examples for the validation loss (JSONL)")
	stageRunFlags{&cfg.OutDir, &cfg.Resume, &cfg.Steps, &cfg.Accum, &cfg.CheckpointEvery}.add(f, "model", "continue the run saved in --out")
	f.IntVar(&cfg.Batch, "batch", cfg.Batch, "rows per micro-batch")
	f.IntVar(&cfg.SeqLen, "seq", 0, "packed row length in tokens (0: the model's context window)")
	f.BoolVar(&cfg.Packing, "packing", false, "pack short examples into full rows (no attention across examples)")
	f.BoolVar(&lastTurn, "last-turn-only", false, "train only the last assistant turn of multi-turn conversations")
	f.IntVar(&cfg.EvalEvery, "eval-every", 0, "validation every N steps (0: before and after training only)")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the data order")
	addStageOptimFlags(f, &cfg.Schedule, &cfg.AdamW)
	f.IntVar(&threads, "threads", 0, "kernel threads (0: all CPUs)")
	return cmd
}

func newSFTEvalCmd(g *globalOptions) *cobra.Command {
	var model, input string
	var lastTurn bool
	threads := 0
	cmd := &cobra.Command{
		Use:     "eval --model DIR --input sft.jsonl [--json]",
		Short:   "Target-token loss of a model on SFT examples, without training",
		Long:    "Compute the mean NLL per target token (and perplexity) of a causal LM on SFT examples.\n\n" + sftRowsHelp,
		Example: `  posttrain sft eval --model sft1 --input sft_val.jsonl --json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := applyStageConfig(g, cmd.Flags(), "sft"); err != nil {
				return fmt.Errorf("sft eval: %w", err)
			}
			if model == "" || input == "" {
				return errors.New("sft eval: --model and --input are required")
			}
			pool := newStagePool(threads)
			defer pool.Close()
			m, tok, _, err := loadStageModel(ctx, model, pool)
			if err != nil {
				return fmt.Errorf("sft eval: %w", err)
			}
			enc := &datasets.Encoder{Tok: tok, MaxLen: m.Config.MaxPositionEmbeddings}
			rows, err := loadSFTRows(input, enc, datasets.SFTOptions{LastTurnOnly: lastTurn})
			if err != nil {
				return fmt.Errorf("sft eval: %w", err)
			}
			bar := newStageBar(cmd.ErrOrStderr(), len(rows), "examples")
			res, err := sft.EvaluateWithProgress(ctx, m, rows, func(done, _ int) { bar.set(done) })
			bar.finish()
			if err != nil {
				return fmt.Errorf("sft eval: %s: %w", input, err)
			}
			if g.jsonOut {
				return writeStageJSON(cmd.OutOrStdout(), res)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "examples\t%d\n", res.N)
			fmt.Fprintf(tw, "target tokens\t%d\n", res.Tokens)
			fmt.Fprintf(tw, "loss\t%.6f (per token)\n", res.Loss)
			fmt.Fprintf(tw, "perplexity\t%.4f\n", res.Perplexity)
			fmt.Fprintf(tw, "mean example loss\t%.6f\n", res.MeanExampleLoss)
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "causal-LM checkpoint directory")
	f.StringVar(&input, "input", "", "SFT examples (JSONL)")
	f.BoolVar(&lastTurn, "last-turn-only", false, "score only the last assistant turn of multi-turn conversations")
	f.IntVar(&threads, "threads", 0, "kernel threads (0: all CPUs)")
	return cmd
}

const dpoRowsHelp = `Rows are JSONL preferences: {"prompt", "chosen", "rejected"[, "edited"]} with strings or
chat message lists (TRL's formats), or pre-tokenized {"prompt_ids", "chosen_ids",
"rejected_ids"[, "edited_ids"]} used exactly as given. Text rows need the policy
directory's tokenizer.json; pre-tokenized rows do not.

Formatting tokens (header and end-of-turn tokens) are masked out of both log-ratios
(--mask-formatting, on by default); the set is the tokenizer's, or --formatting-token-ids.
The NLL term (--nll-coef, default 0.2) covers all chosen tokens, formatting included,
normalised by --nll-norm: per-sequence-mean (default), batch-token-mean or
per-sequence-sum. A row with an edited response becomes pairs per --edited:
edited-rejected (default: the edit as chosen), chosen-rejected (ignore the edit) or
all-pairs (edited>chosen, edited>rejected, chosen>rejected).`

// dpoFlags are the options shared by dpo train and dpo eval.
type dpoFlags struct {
	policy, reference, input string
	nllNorm, edited          string
	formattingIDs            string
	threads                  int
}

func (d *dpoFlags) add(f *pflag.FlagSet, o *dpo.Options) {
	f.StringVar(&d.policy, "policy", "", "policy checkpoint directory (the SFT model)")
	f.StringVar(&d.reference, "reference", "", "frozen reference checkpoint (default: --policy's weights)")
	f.StringVar(&d.input, "input", "", "preference pairs (JSONL)")
	f.Float64Var(&o.Objective.Beta, "beta", o.Objective.Beta, "DPO beta")
	f.Float64Var(&o.Objective.NLLCoef, "nll-coef", o.Objective.NLLCoef, "weight of the NLL term on chosen responses (0: off)")
	f.StringVar(&d.nllNorm, "nll-norm", string(objectives.NLLPerSequenceMean), "NLL normalisation: per-sequence-mean, batch-token-mean or per-sequence-sum")
	f.BoolVar(&o.MaskFormatting, "mask-formatting", o.MaskFormatting, "mask formatting tokens out of the chosen and rejected log-ratios")
	f.StringVar(&d.formattingIDs, "formatting-token-ids", "", "comma-separated formatting token ids (default: the tokenizer's header and end-of-turn tokens)")
	f.StringVar(&d.edited, "edited", string(dpo.EditedOverRejected), "pairs from rows with an edited response: edited-rejected, chosen-rejected or all-pairs")
	f.IntVar(&o.Batch, "batch", o.Batch, "pairs per forward pass (micro-batch)")
	f.StringVar(&o.CacheDir, "cache-dir", defaultRefCacheDir(), "directory of cached reference log-probs (empty: keep them in memory only)")
	f.IntVar(&d.threads, "threads", 0, "kernel threads (0: all CPUs)")
}

// load reads the policy, the reference and the pairs. The policy's tokenizer (if any)
// encodes text rows and supplies the default formatting set.
func (d *dpoFlags) load(ctx context.Context, o *dpo.Options, pool *kernels.Pool, stderr io.Writer) (policy, reference *transformer.Model, pairs []dpo.Pair, tokJSON []byte, err error) {
	if d.policy == "" || d.input == "" {
		return nil, nil, nil, nil, errors.New("--policy and --input are required")
	}
	norm, err := objectives.ParseNLLNorm(d.nllNorm)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("--nll-norm: %w", err)
	}
	o.Objective.NLLNorm = norm
	mode, err := dpo.ParseEditedMode(d.edited)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("--edited: %w", err)
	}
	policy, tok, tokJSON, err := loadStageModel(ctx, d.policy, pool)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	refDir := d.reference
	if refDir == "" {
		refDir = d.policy
	}
	// The reference is always a second model, even from the same directory: it stays frozen.
	reference, _, _, err = loadStageModel(ctx, refDir, pool)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	enc := &datasets.Encoder{Tok: tok, MaxLen: policy.Config.MaxPositionEmbeddings}
	if d.formattingIDs != "" {
		if enc.Formatting, err = parseFormattingIDs(d.formattingIDs, policy.Config.VocabSize); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("--formatting-token-ids: %w", err)
		}
	} else if o.MaskFormatting && tok == nil {
		fmt.Fprintf(stderr, "warning: %s has no tokenizer.json and no --formatting-token-ids was given: no token is masked\n", d.policy)
	}
	prefs, err := datasets.ReadPreferencesFile(d.input, datasets.ReadOptions{})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	rows := make([]datasets.EncodedPreference, len(prefs))
	for i, p := range prefs {
		if rows[i], err = enc.EncodePreference(p); err != nil {
			return nil, nil, nil, nil, rowErrorInFile(err, d.input)
		}
	}
	if pairs, err = dpo.Pairs(rows, mode); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("%s: %w", d.input, err)
	}
	if err := dpo.CheckPairs(pairs, policy.Config); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("%s: %w", d.input, err)
	}
	return policy, reference, pairs, tokJSON, nil
}

func newDPOTrainCmd(g *globalOptions) *cobra.Command {
	cfg := dpo.DefaultConfig()
	var d dpoFlags
	var valPath string
	cmd := &cobra.Command{
		Use:   "train --policy DIR [--reference DIR] --input pairs.jsonl --out DIR [--steps N --batch B --lr LR]",
		Short: "Train a policy with DPO against a frozen reference",
		Long: "Train the policy (the SFT model) with DPO + NLL against a frozen reference.\n\n" + dpoRowsHelp + `

The reference log-probs are computed once per dataset and cached in --cache-dir as
refcache-<key>.json (key: the pairs, masking and the reference weights). --out receives
the policy plus trainer_state.{json,bin} every --checkpoint-every steps, at the end and on
Ctrl-C; --resume continues that run bit-identically. Metrics each step: loss, dpo_loss,
nll_loss, rewards, margin, accuracy and the chosen log-prob.` + configNote,
		Example: `  posttrain dpo train --policy sft1 --input prefs.jsonl --val prefs_val.jsonl --out dpo1 --steps 100 --batch 4 --lr 1e-5
  posttrain dpo train --policy sft1 --input ids.jsonl --formatting-token-ids 257,258,259 --out dpo1 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := applyStageConfig(g, cmd.Flags(), "dpo"); err != nil {
				return fmt.Errorf("dpo train: %w", err)
			}
			if cfg.OutDir == "" {
				return errors.New("dpo train: --out is required")
			}
			pool := newStagePool(d.threads)
			defer pool.Close()
			policy, reference, pairs, tokJSON, err := d.load(ctx, &cfg.Options, pool, cmd.ErrOrStderr())
			if err != nil {
				return fmt.Errorf("dpo train: %w", err)
			}
			var val []dpo.Pair
			if valPath != "" {
				vd := d
				vd.input = valPath
				if _, _, val, _, err = vd.load(ctx, &cfg.Options, pool, io.Discard); err != nil {
					return fmt.Errorf("dpo train: %w", err)
				}
			}
			cfg.TokenizerJSON = tokJSON
			bar := newStageBar(cmd.ErrOrStderr(), cfg.Steps, "dpo")
			cfg.Progress = func(phase string, done, total int) { bar.phase(phase, done, total) }
			_, res, err := dpo.Train(ctx, cfg, policy, reference, pairs, val, dpo.Hooks{
				Progress: bar.train,
				Metrics: func(_ int, m objectives.DPOMetrics) {
					bar.describe(fmt.Sprintf("loss %.4f  margin %.3f  acc %.2f  logp_c %.2f", m.Loss, m.Margin, m.Accuracy, m.LogpsChosen))
				},
				Eval: func(step int, r dpo.EvalResult) {
					bar.note(fmt.Sprintf("step %d: validation loss %.4f  margin %.4f  accuracy %.3f", step, r.Loss, r.Margin, r.Accuracy))
				},
			})
			bar.finish()
			return finishStage(err, res.Steps > res.StartStep, func() error { return printDPOTrain(cmd.OutOrStdout(), g.jsonOut, res) })
		},
	}
	f := cmd.Flags()
	d.add(f, &cfg.Options)
	f.StringVar(&valPath, "val", "", "held-out preference pairs for validation metrics (JSONL)")
	stageRunFlags{&cfg.OutDir, &cfg.Resume, &cfg.Steps, &cfg.Accum, &cfg.CheckpointEvery}.add(f, "policy", "continue the run saved in --out (give the same --policy/--reference)")
	f.IntVar(&cfg.EvalEvery, "eval-every", 0, "validation every N steps (0: before and after training only)")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the pair order")
	addStageOptimFlags(f, &cfg.Schedule, &cfg.AdamW)
	return cmd
}

func newDPOEvalCmd(g *globalOptions) *cobra.Command {
	o := dpo.DefaultOptions()
	var d dpoFlags
	cmd := &cobra.Command{
		Use:   "eval --policy DIR --reference DIR --input pairs.jsonl [--beta B] [--nll-coef C] [--nll-norm N] [--mask-formatting=true|false] [--formatting-token-ids ...] [--json]",
		Short: "DPO metrics of a policy against a reference, averaged over pairs, without training",
		Long:  "Compute loss, dpo_loss, nll_loss, rewards_chosen, rewards_rejected, margin, accuracy\nand logps_chosen averaged over the pairs, without training.\n\n" + dpoRowsHelp + configNote,
		Example: `  posttrain dpo eval --policy dpo1 --reference sft1 --input prefs_val.jsonl --json
  posttrain dpo eval --policy dpo1 --reference sft1 --input ids.jsonl --formatting-token-ids 61,62,63 --nll-norm batch-token-mean --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := applyStageConfig(g, cmd.Flags(), "dpo"); err != nil {
				return fmt.Errorf("dpo eval: %w", err)
			}
			pool := newStagePool(d.threads)
			defer pool.Close()
			policy, reference, pairs, _, err := d.load(ctx, &o, pool, cmd.ErrOrStderr())
			if err != nil {
				return fmt.Errorf("dpo eval: %w", err)
			}
			bar := newStageBar(cmd.ErrOrStderr(), len(pairs), "pairs")
			o.Progress = func(phase string, done, total int) { bar.phase(phase, done, total) }
			res, err := dpo.Evaluate(ctx, policy, reference, pairs, o)
			bar.finish()
			if err != nil {
				return fmt.Errorf("dpo eval: %s: %w", d.input, err)
			}
			if g.jsonOut {
				return writeStageJSON(cmd.OutOrStdout(), res.DPOMetrics)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			printDPOMetrics(tw, res.DPOMetrics)
			fmt.Fprintf(tw, "reference cache\t%s\n", cacheNote(res.RefCache))
			return tw.Flush()
		},
	}
	d.add(cmd.Flags(), &o)
	return cmd
}

// --- shared helpers ---

func newStagePool(threads int) *kernels.Pool {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	return kernels.NewPool(threads)
}

// defaultRefCacheDir is the user's cache directory for reference log-probs, or "" (memory
// only) when there is none.
func defaultRefCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "posttrain", "refcache")
}

// loadStageModel loads a causal-LM checkpoint and its tokenizer when it has one (nil
// otherwise: pre-tokenized rows need none).
func loadStageModel(ctx context.Context, dir string, pool *kernels.Pool) (*transformer.Model, *tokenizer.Tokenizer, []byte, error) {
	m, err := checkpoint.Load(ctx, dir, pool)
	if err != nil {
		return nil, nil, nil, err
	}
	if m.Config.IsSequenceClassifier() {
		return nil, nil, nil, fmt.Errorf("model %s is a %s; this stage needs a causal LM", dir, transformer.ArchSequenceClassifier)
	}
	path, ok := checkpoint.TokenizerPath(dir)
	if !ok {
		return m, nil, nil, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, err
	}
	tok, err := tokenizer.Parse(raw)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if tok.VocabSize() > m.Config.VocabSize {
		return nil, nil, nil, fmt.Errorf("%s has %d tokens but the model's vocab_size is %d", path, tok.VocabSize(), m.Config.VocabSize)
	}
	return m, tok, raw, nil
}

// loadSFTRows reads and encodes an SFT file; errors name the file and line.
func loadSFTRows(path string, enc *datasets.Encoder, opts datasets.SFTOptions) ([]datasets.EncodedSFT, error) {
	exs, err := datasets.ReadSFTFile(path, datasets.ReadOptions{})
	if err != nil {
		return nil, err
	}
	rows := make([]datasets.EncodedSFT, len(exs))
	for i, ex := range exs {
		if rows[i], err = enc.EncodeSFT(ex, opts); err != nil {
			return nil, rowErrorInFile(err, path)
		}
	}
	return rows, nil
}

// rowErrorInFile stamps the file name on a row error that lacks it.
func rowErrorInFile(err error, path string) error {
	var fe *datasets.FieldError
	if errors.As(err, &fe) && fe.File == "" {
		fe.File = path
		return err
	}
	return fmt.Errorf("%s: %w", path, err)
}

// parseFormattingIDs reads "257,258,259".
func parseFormattingIDs(s string, vocab int) ([]int32, error) {
	var out []int32
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		v, err := strconv.ParseInt(part, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%q is not a token id", part)
		}
		if v < 0 || int(v) >= vocab {
			return nil, fmt.Errorf("token id %d is outside the vocabulary [0,%d)", v, vocab)
		}
		out = append(out, int32(v))
	}
	if len(out) == 0 {
		return nil, errors.New("no token ids given")
	}
	return out, nil
}

func writeStageJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printSFTTrain(w io.Writer, asJSON bool, r sft.Result) error {
	if asJSON {
		return writeStageJSON(w, r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "out\t%s\n", r.OutDir)
	fmt.Fprintf(tw, "steps\t%d (this run %d..%d)\n", r.Steps, r.StartStep, r.Steps)
	fmt.Fprintf(tw, "loss\tfirst %.4f, final %.4f\n", r.FirstLoss, r.FinalLoss)
	if r.ValLoss != nil && r.ValLossBefore != nil {
		fmt.Fprintf(tw, "validation loss\t%.4f -> %.4f\n", *r.ValLossBefore, *r.ValLoss)
	}
	fmt.Fprintf(tw, "data\t%d examples in %d rows, %d target tokens\n", r.Examples, r.Rows, r.TargetTokens)
	fmt.Fprintf(tw, "throughput\t%.0f tokens/s (%.1fs)\n", r.TokensPerSec, r.ElapsedSec)
	return tw.Flush()
}

func printDPOTrain(w io.Writer, asJSON bool, r dpo.Result) error {
	if asJSON {
		return writeStageJSON(w, r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "out\t%s\n", r.OutDir)
	fmt.Fprintf(tw, "steps\t%d (this run %d..%d)\n", r.Steps, r.StartStep, r.Steps)
	if r.Final != nil {
		fmt.Fprintf(tw, "last step\t\n")
		printDPOMetrics(tw, *r.Final)
	}
	if r.Val != nil && r.ValBefore != nil {
		fmt.Fprintf(tw, "validation\tloss %.4f -> %.4f, margin %.4f -> %.4f, accuracy %.3f -> %.3f\n",
			r.ValBefore.Loss, r.Val.Loss, r.ValBefore.Margin, r.Val.Margin, r.ValBefore.Accuracy, r.Val.Accuracy)
	}
	fmt.Fprintf(tw, "reference cache\t%s\n", cacheNote(r.RefCache))
	fmt.Fprintf(tw, "throughput\t%.2f pairs/s (%d pairs, %.1fs)\n", r.PairsPerSec, r.Pairs, r.ElapsedSec)
	return tw.Flush()
}

func printDPOMetrics(tw io.Writer, m objectives.DPOMetrics) {
	fmt.Fprintf(tw, "pairs\t%d\n", m.N)
	fmt.Fprintf(tw, "loss\t%.6f (dpo %.6f + nll %.6f x coef)\n", m.Loss, m.DPOLoss, m.NLLLoss)
	fmt.Fprintf(tw, "rewards\tchosen %.6f, rejected %.6f, margin %.6f\n", m.RewardsChosen, m.RewardsRejected, m.Margin)
	fmt.Fprintf(tw, "accuracy\t%.4f\n", m.Accuracy)
	fmt.Fprintf(tw, "logps\tchosen %.4f, rejected %.4f\n", m.LogpsChosen, m.LogpsRejected)
}

func cacheNote(c dpo.CacheInfo) string {
	switch {
	case c.Hit:
		return "hit " + c.Path
	case c.Path != "":
		return fmt.Sprintf("computed (%d forward passes), saved to %s", c.Forwards, c.Path)
	default:
		return fmt.Sprintf("computed (%d forward passes), in memory", c.Forwards)
	}
}

// stageBar renders training steps or evaluation batches as a progress bar on stderr.
type stageBar struct {
	w     io.Writer
	bar   *progressbar.ProgressBar
	total int
	desc  string
	cur   string // current phase of a pre-pass, if any
}

func newStageBar(w io.Writer, total int, what string) *stageBar {
	return &stageBar{w: w, total: total, bar: progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowDescriptionAtLineEnd(),
	)}
}

func (b *stageBar) train(p trainer.Progress) {
	if b.cur != "" { // back from a pre-pass to counting steps
		b.cur = ""
		b.bar.ChangeMax(b.total)
		b.bar.Reset()
	}
	d := b.desc
	if d == "" {
		d = fmt.Sprintf("loss %.4f", p.Loss)
	}
	b.bar.Describe(fmt.Sprintf("%s  lr %.2e  %.0f tok/s  ETA %s", d, p.LR, p.TokensPerSec, p.ETA.Round(time.Second)))
	_ = b.bar.Set(p.Step)
}

func (b *stageBar) describe(s string) { b.desc = s }

func (b *stageBar) set(done int) { _ = b.bar.Set(done) }

// phase shows a pass over the data (the reference pre-pass, the policy pass of an eval).
func (b *stageBar) phase(name string, done, total int) {
	if b.cur != name {
		b.cur = name
		b.bar.ChangeMax(total)
		b.bar.Reset()
		b.bar.Describe(name + " log-probs")
	}
	_ = b.bar.Set(done)
}

// note prints a line above the bar.
func (b *stageBar) note(s string) {
	_ = b.bar.Clear()
	fmt.Fprintln(b.w, s)
}

func (b *stageBar) finish() {
	_ = b.bar.Exit()
	fmt.Fprintln(b.w)
}

// configNote tells --help readers where unset flags come from.
const configNote = `

Flags that are not given take their values from the pipeline config (the --preset, the
--config file, POSTTRAIN_* variables and --set key=value, e.g. --set dpo.beta=0.2):
sections sft/dpo (lr, steps, batch_size, packing, train_on, beta, nll_coef, nll_norm,
mask_formatting, formatting_token_ids) and trainer (warmup_steps, schedule,
min_lr_ratio, weight_decay, grad_clip, grad_accum, checkpoint_every, threads), and
model.seed. A flag given on the command line wins.`

// flagFiller sets flags the user did not give from the pipeline config.
type flagFiller struct {
	f   *pflag.FlagSet
	err error
}

func (d *flagFiller) set(name string, value any) {
	fl := d.f.Lookup(name)
	if d.err != nil || fl == nil || fl.Changed {
		return
	}
	var s string
	switch v := value.(type) {
	case []int:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = strconv.Itoa(x)
		}
		s = strings.Join(parts, ",")
	default:
		s = fmt.Sprint(v)
	}
	if err := d.f.Set(name, s); err != nil {
		d.err = fmt.Errorf("config value %q for --%s: %w", s, name, err)
	}
}

// applyStageConfig loads the pipeline config (preset < file < env < --set) and fills the
// flags of stage ("sft" or "dpo") that the command line left unset.
func applyStageConfig(g *globalOptions, f *pflag.FlagSet, stage string) error {
	c, err := configs.Load(configs.Sources{Preset: g.preset, File: g.configFile, Sets: g.sets})
	if err != nil {
		return err
	}
	d := &flagFiller{f: f}
	t := c.Trainer
	d.set("warmup", t.WarmupSteps)
	d.set("decay", t.Schedule)
	d.set("min-lr-ratio", t.MinLRRatio)
	d.set("weight-decay", t.WeightDecay)
	d.set("clip", t.GradClip)
	if t.GradAccum > 0 {
		d.set("accum", t.GradAccum)
	}
	d.set("checkpoint-every", t.CheckpointEvery)
	d.set("threads", t.Threads)
	if c.Model.Seed >= 0 {
		d.set("seed", c.Model.Seed)
	}
	switch stage {
	case "sft":
		s := c.SFT
		d.set("lr", s.LR)
		if s.Steps > 0 {
			d.set("steps", s.Steps)
		}
		if s.BatchSize > 0 {
			d.set("batch", s.BatchSize)
		}
		d.set("packing", s.Packing)
		d.set("last-turn-only", s.TrainOn == configs.TrainOnLast)
	case "dpo":
		s := c.DPO
		d.set("lr", s.LR)
		if s.Steps > 0 {
			d.set("steps", s.Steps)
		}
		if s.BatchSize > 0 {
			d.set("batch", s.BatchSize)
		}
		d.set("beta", s.Beta)
		d.set("nll-coef", s.NLLCoef)
		if s.NLLNorm != "" {
			d.set("nll-norm", s.NLLNorm)
		}
		d.set("mask-formatting", s.MaskFormatting)
		if len(s.FormattingTokenIDs) > 0 {
			d.set("formatting-token-ids", s.FormattingTokenIDs)
		}
	}
	return d.err
}
