package main

import (
	"bufio"
	"bytes"
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

	"github.com/posttrain/posttrain/averaging"
	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/dpo"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/reward"
	"github.com/posttrain/posttrain/sft"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/transformer"
)

const rewardRowsHelp = `Rows are JSONL preferences in TRL's forms ({"prompt","chosen","rejected"} with strings
or chat message lists, or the implicit-prompt form), optionally with "edited" (ranked
edited > chosen > rejected), "rating" and "margin"; or pre-tokenized
{"prompt_ids","chosen_ids","rejected_ids"[,"edited_ids"]}, used exactly as given, which
need no tokenizer.json in the model directory.`

// newRewardCmd groups the reward-model commands: train and eval.
func newRewardCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reward",
		Short: "Train and evaluate Bradley-Terry reward models",
		Long: `A reward model is a Llama backbone plus a score head (LlamaForSequenceClassification);
its reward for a prompt and response is read at the final token of prompt+response.
Training minimises the Bradley-Terry loss -log sigmoid(r_chosen - r_rejected - margin)
over every ordered pair of each row (3 pairs for edited > chosen > rejected).`,
	}
	cmd.AddCommand(newRewardTrainCmd(g), newRewardEvalCmd(g))
	return cmd
}

// rewardEnv is a loaded reward model with its tokenizer (nil when the directory has none).
type rewardEnv struct {
	pool    *kernels.Pool
	model   *transformer.Model
	tok     *tokenizer.Tokenizer
	tokJSON []byte
}

// loadRewardModel loads dir as a reward model (a causal LM gets a new score head drawn
// with seed and the config's initializer_range) and its tokenizer if present.
func loadRewardModel(ctx context.Context, dir string, threads int, seed uint64) (*rewardEnv, error) {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	env := &rewardEnv{pool: kernels.NewPool(threads)}
	cfg, err := transformer.LoadConfig(filepath.Join(dir, checkpoint.ConfigFile))
	if err != nil {
		env.pool.Close()
		return nil, err
	}
	std := cfg.InitializerRange
	if std <= 0 {
		std = 0.02
	}
	if env.model, err = checkpoint.LoadAsClassifier(ctx, dir, env.pool, checkpoint.ScoreInit{Seed: seed, Std: std}); err != nil {
		env.pool.Close()
		return nil, err
	}
	if path, ok := checkpoint.TokenizerPath(dir); ok {
		if env.tokJSON, err = os.ReadFile(path); err != nil {
			env.pool.Close()
			return nil, err
		}
		if env.tok, err = tokenizer.LoadFile(path); err != nil {
			env.pool.Close()
			return nil, err
		}
	}
	return env, nil
}

// loadPreferenceRows reads and encodes a preference JSONL file; errors name file:line.
func loadPreferenceRows(path string, tok *tokenizer.Tokenizer, maxLen int) ([]datasets.EncodedPreference, error) {
	rows, err := datasets.ReadPreferencesFile(path, datasets.ReadOptions{})
	if err != nil {
		return nil, err
	}
	enc := &datasets.Encoder{Tok: tok, MaxLen: maxLen}
	out := make([]datasets.EncodedPreference, len(rows))
	for i, r := range rows {
		if out[i], err = enc.EncodePreference(r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return out, nil
}

func newRewardTrainCmd(g *globalOptions) *cobra.Command {
	cfg := reward.DefaultConfig()
	var model, trainPath, valPath, margin, weighting string
	var threads int
	cmd := &cobra.Command{
		Use:   "train --model DIR --train pairs.jsonl [--val pairs.jsonl] --out DIR [--steps N --batch B --lr LR]",
		Short: "Train a Bradley-Terry reward model on preference pairs",
		Long: `Train a reward model on preference rows. --model is a causal LM (its backbone is kept,
lm_head dropped, and a score head initialised with normal(0, initializer_range) from
--seed) or an existing reward model.

` + rewardRowsHelp + `

Each step draws --batch rows in a seeded shuffled order; every response of those rows is
scored once and the loss is the mean over their ordered pairs. Options:
  --margin none|llama2|llama2-large|field   none (Llama 3, default); Llama 2's tables map
                        the row's "rating" (an explicit "margin" wins); field uses "margin"
  --centering ETA       adds ETA * mean((r_better + r_worse)^2) (reward centering)
  --similarity-threshold X   drops pairs whose responses' token similarity
                        (1 - Levenshtein distance / longer length) is >= X; 0 keeps all

--out receives the model plus trainer_state.{json,bin} every --checkpoint-every steps, at
the end and on Ctrl-C; --resume continues that run bit-exactly.`,
		Example: `  posttrain reward train --model base --train prefs.jsonl --val heldout.jsonl --out rm1 --steps 200 --batch 8
  posttrain reward train --model base --train prefs.jsonl --out rm1 --steps 200 --margin llama2 --centering 0.01
  posttrain reward train --train prefs.jsonl --out rm1 --steps 200 --resume`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if cfg.OutDir == "" {
				return errors.New("reward train: --out is required")
			}
			if trainPath == "" {
				return errors.New("reward train: --train is required")
			}
			src := model
			if cfg.Resume {
				src = cfg.OutDir
			} else if src == "" {
				return errors.New("reward train: --model is required (or --resume to continue from --out)")
			}
			var err error
			if cfg.Margin, err = reward.ParseMarginMode(margin); err != nil {
				return err
			}
			cfg.Weighting = objectives.PairWeighting(weighting)
			env, err := loadRewardModel(ctx, src, threads, cfg.Seed)
			if err != nil {
				return fmt.Errorf("reward train: %w", err)
			}
			defer env.pool.Close()
			maxLen := env.model.Config.MaxPositionEmbeddings
			train, err := loadPreferenceRows(trainPath, env.tok, maxLen)
			if err != nil {
				return fmt.Errorf("reward train: %w", err)
			}
			var val []datasets.EncodedPreference
			if valPath != "" {
				if val, err = loadPreferenceRows(valPath, env.tok, maxLen); err != nil {
					return fmt.Errorf("reward train: %w", err)
				}
			}
			cfg.TokenizerJSON = env.tokJSON
			bar := newTrainBar(cmd.ErrOrStderr(), cfg.Steps)
			_, res, err := reward.Train(ctx, cfg, env.model, train, val, reward.Hooks{Progress: bar.update})
			bar.finish()
			return finishStage(err, res.Steps > res.StartStep, func() error { return printRewardTrainResult(cmd.OutOrStdout(), g.jsonOut, res) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "starting model directory: causal LM or reward model (ignored with --resume)")
	f.StringVar(&trainPath, "train", "", "training preference rows (JSONL)")
	f.StringVar(&valPath, "val", "", "held-out preference rows evaluated before, during and after training (JSONL)")
	stageRunFlags{&cfg.OutDir, &cfg.Resume, &cfg.Steps, &cfg.Accum, &cfg.CheckpointEvery}.add(f, "model", "continue the run saved in --out")
	f.IntVar(&cfg.Batch, "batch", cfg.Batch, "preference rows per micro-batch (each response is one sequence)")
	addStageOptimFlags(f, &cfg.Schedule, &cfg.AdamW)
	f.StringVar(&margin, "margin", string(reward.MarginNone), "pair margin: none, llama2, llama2-large or field")
	f.Float64Var(&cfg.Centering, "centering", 0, "reward-centering coefficient eta (0: off)")
	f.StringVar(&weighting, "weighting", "per-pair", "loss weighting: per-pair (mean over pairs) or per-row (each row weight 1)")
	f.Float64Var(&cfg.SimilarityThreshold, "similarity-threshold", cfg.SimilarityThreshold, "drop pairs whose token similarity is >= this (0: keep all)")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the data order and the new score head")
	f.IntVar(&cfg.EvalEvery, "eval-every", 0, "evaluate --val every N steps (0: before and after only)")
	f.IntVar(&threads, "threads", 0, "kernel threads (0: all CPUs)")
	return cmd
}

func printRewardTrainResult(w io.Writer, asJSON bool, r reward.Result) error {
	if asJSON {
		return writeModelJSON(w, r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "out\t%s\n", r.OutDir)
	fmt.Fprintf(tw, "steps\t%d (this run %d..%d)\n", r.Steps, r.StartStep, r.Steps)
	fmt.Fprintf(tw, "data\t%d rows, %d pairs (%d of %d pairs dropped as too similar at %g, %d rows emptied)\n",
		r.Rows, r.Pairs, r.Filter.FilteredPairs, r.Filter.Pairs, r.Filter.Threshold, r.Filter.DroppedRows)
	fmt.Fprintf(tw, "loss\tfirst %.4f, final %.4f; train accuracy %.3f\n", r.FirstLoss, r.FinalLoss, r.TrainAccuracy)
	if r.Val != nil && r.ValBefore != nil {
		fmt.Fprintf(tw, "validation\tloss %.4f -> %.4f, accuracy %.3f -> %.3f, mean margin %.3f -> %.3f (%d pairs)\n",
			r.ValBefore.Loss, r.Val.Loss, r.ValBefore.Accuracy, r.Val.Accuracy, r.ValBefore.MeanMargin, r.Val.MeanMargin, r.Val.N)
	}
	fmt.Fprintf(tw, "throughput\t%.1f pairs/s, %.0f tokens/s (%.1fs)\n", r.PairsPerSec, r.TokensPerSec, r.ElapsedSec)
	return tw.Flush()
}

func newRewardEvalCmd(g *globalOptions) *cobra.Command {
	var model, input, output, margin string
	opts := reward.DefaultEvalOptions()
	var threads int
	cmd := &cobra.Command{
		Use:   "eval --model DIR --input pairs.jsonl [--output rewards.jsonl] [--json]",
		Short: "Score held-out preference pairs: loss, accuracy, mean margin",
		Long: `Score every response of the rows with a reward model and report, over their ordered
pairs, the mean Bradley-Terry loss, the accuracy (fraction with r_better > r_worse) and
the mean margin (mean r_better - r_worse). --json prints {"n", "loss", "accuracy",
"mean_margin", ...} with n the number of pairs. Pairs whose two responses are at least
--similarity-threshold alike (token similarity, as in training) are left out.

` + rewardRowsHelp + `

--output writes every input row unchanged plus "rewards": {"chosen": r, "rejected": r
[, "edited": r]}.`,
		Example: `  posttrain reward eval --model rm1 --input heldout.jsonl --json
  posttrain reward eval --model rm1 --input heldout.jsonl --output scored.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if model == "" || input == "" {
				return errors.New("reward eval: --model and --input are required")
			}
			var err error
			if opts.Margin, err = reward.ParseMarginMode(margin); err != nil {
				return err
			}
			cfg, err := transformer.LoadConfig(filepath.Join(model, checkpoint.ConfigFile))
			if err != nil {
				return fmt.Errorf("reward eval: %w", err)
			}
			if !cfg.IsSequenceClassifier() {
				return fmt.Errorf("reward eval: %s is a %v, not a reward model (%s); train one with posttrain reward train", model, cfg.Architectures, transformer.ArchSequenceClassifier)
			}
			env, err := loadRewardModel(ctx, model, threads, 0)
			if err != nil {
				return fmt.Errorf("reward eval: %w", err)
			}
			defer env.pool.Close()
			rows, err := loadPreferenceRows(input, env.tok, env.model.Config.MaxPositionEmbeddings)
			if err != nil {
				return fmt.Errorf("reward eval: %w", err)
			}
			bar := newRewardCountBar(cmd.ErrOrStderr(), "scoring")
			opts.Progress = bar.set
			res, rewards, err := reward.Evaluate(ctx, env.model, rows, opts)
			bar.finish()
			if err != nil {
				return fmt.Errorf("reward eval: %w", err)
			}
			if output != "" {
				if err := writeRewardRows(input, output, rows, rewards); err != nil {
					return fmt.Errorf("reward eval: %w", err)
				}
			}
			if g.jsonOut {
				return writeModelJSON(cmd.OutOrStdout(), res)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "pairs\t%d (from %d rows; %d dropped as too similar)\n", res.N, res.Rows, res.Filter.FilteredPairs)
			fmt.Fprintf(tw, "loss\t%.4f\n", res.Loss)
			fmt.Fprintf(tw, "accuracy\t%.4f\n", res.Accuracy)
			fmt.Fprintf(tw, "mean_margin\t%.4f\n", res.MeanMargin)
			if output != "" {
				fmt.Fprintf(tw, "rewards\t%s\n", output)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "reward model directory")
	f.StringVar(&input, "input", "", "preference rows (JSONL)")
	f.StringVar(&output, "output", "", "write each row with its rewards here (JSONL)")
	f.IntVar(&opts.Batch, "batch", opts.Batch, "sequences per forward pass")
	f.StringVar(&margin, "margin", string(reward.MarginNone), "margin inside the reported loss: none, llama2, llama2-large or field")
	f.Float64Var(&opts.SimilarityThreshold, "similarity-threshold", opts.SimilarityThreshold, "leave out pairs whose token similarity is >= this, as training does (0: evaluate all)")
	f.IntVar(&threads, "threads", 0, "kernel threads (0: all CPUs)")
	return cmd
}

// writeRewardRows copies each input line that holds a row, adding its rewards, into
// output atomically (temporary file, then rename).
func writeRewardRows(input, output string, rows []datasets.EncodedPreference, rewards [][]float64) error {
	raw, err := os.ReadFile(input)
	if err != nil {
		return err
	}
	lines := bytes.Split(raw, []byte("\n"))
	tmp, err := os.CreateTemp(filepath.Dir(output), "."+filepath.Base(output)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	for i, r := range rows {
		if r.Line < 1 || r.Line > len(lines) {
			tmp.Close()
			return fmt.Errorf("%s: row %d has no line %d", input, i, r.Line)
		}
		obj := bytes.TrimRight(bytes.TrimSpace(lines[r.Line-1]), "}")
		if len(bytes.TrimSpace(obj)) <= 1 || !bytes.HasPrefix(obj, []byte("{")) {
			tmp.Close()
			return fmt.Errorf("%s:%d: not a JSON object", input, r.Line)
		}
		names := []string{"chosen", "rejected"}
		if r.HasEdited {
			names = []string{"edited", "chosen", "rejected"}
		}
		parts := make([]string, len(rewards[i]))
		for k, v := range rewards[i] {
			name := "response_" + strconv.Itoa(k)
			if len(rewards[i]) == len(names) {
				name = names[k]
			}
			val, _ := json.Marshal(v)
			parts[k] = strconv.Quote(name) + ":" + string(val)
		}
		bw.Write(obj)
		fmt.Fprintf(bw, `,"rewards":{%s}}`+"\n", strings.Join(parts, ","))
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), output)
}

// rewardCountBar is a count progress bar on stderr, created at the first update when the
// total is known (a bar of unknown length runs a spinner goroutine we do not need).
type rewardCountBar struct {
	bar  *progressbar.ProgressBar
	w    io.Writer
	desc string
}

func newRewardCountBar(w io.Writer, desc string) *rewardCountBar {
	return &rewardCountBar{w: w, desc: desc}
}

func (b *rewardCountBar) set(done, total int) {
	if b.bar == nil || b.bar.GetMax() != total {
		if b.bar != nil {
			_ = b.bar.Finish()
			fmt.Fprintln(b.w)
		}
		b.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetDescription(b.desc),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(24),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
	}
	_ = b.bar.Set(done)
}

func (b *rewardCountBar) finish() {
	if b.bar == nil {
		return
	}
	_ = b.bar.Finish()
	fmt.Fprintln(b.w)
	b.bar = nil
}

// newAverageCmd is model averaging (soups).
func newAverageCmd(g *globalOptions) *cobra.Command {
	var method, weights, scoreData, stage, reference, out string
	var overwrite bool
	var threads int
	cmd := &cobra.Command{
		Use:   "average --method uniform|weighted|greedy [--weights 0.5,0.3,0.2] [--score-data FILE --stage reward|sft|dpo] --out DIR IN_DIR...",
		Short: "Average models with the same architecture and tokenizer (model soups)",
		Long: `Average the weights of models that share architecture, configuration, tensor names and
shapes, and tokenizer.json (a model without one mixes only with others without one):
  uniform    the element-wise mean
  weighted   sum of w_i * model_i with --weights normalised to sum to 1 (>= 0)
  greedy     score every model on --score-data with the --stage metric, sort best first,
             and add each to the running uniform soup only if the soup's score does not
             get worse:
               reward  reward-model pair accuracy on preference rows (higher is better)
               sft     validation loss on SFT rows (lower is better)
               dpo     DPO reward accuracy on preference rows against --reference (the
                       SFT model; higher is better)

The average streams tensor by tensor (memory about one model whatever the number of
inputs). --out gets config.json and tokenizer.json from the first input and an F32
model.safetensors, and appears atomically.`,
		Example: `  posttrain average --method uniform --out rm-soup rm1 rm2 rm3
  posttrain average --method weighted --weights 0.5,0.3,0.2 --out soup run1 run2 run3
  posttrain average --method greedy --stage reward --score-data heldout.jsonl --out rm-soup rm1 rm2 rm3
  posttrain average --method greedy --stage sft --score-data val.jsonl --out sft-soup sft1 sft2`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if out == "" {
				return errors.New("average: --out is required")
			}
			m, err := averaging.ParseMethod(method)
			if err != nil {
				return err
			}
			bar := newRewardCountBar(cmd.ErrOrStderr(), "averaging tensors")
			opts := averaging.Options{Overwrite: overwrite, Progress: bar.set}
			var res any
			switch m {
			case averaging.MethodUniform, averaging.MethodWeighted:
				if m == averaging.MethodWeighted {
					if weights == "" {
						return errors.New("average: --method weighted needs --weights")
					}
					w, err := parseWeights(weights)
					if err != nil {
						return err
					}
					res, err = averaging.Weighted(ctx, out, args, w, opts)
					if err != nil {
						bar.finish()
						return err
					}
				} else {
					if weights != "" {
						return errors.New("average: --weights is only for --method weighted")
					}
					if res, err = averaging.Uniform(ctx, out, args, opts); err != nil {
						bar.finish()
						return err
					}
				}
			case averaging.MethodGreedy:
				if scoreData == "" || stage == "" {
					return errors.New("average: --method greedy needs --score-data and --stage")
				}
				score, dir, cleanup, err := stageScore(ctx, stage, scoreData, reference, args[0], threads)
				if err != nil {
					return err
				}
				defer cleanup()
				errw := cmd.ErrOrStderr()
				res, err = averaging.Greedy(ctx, out, args, averaging.GreedyOptions{Options: opts, Score: score, Direction: dir,
					OnStep: func(s averaging.GreedyStep) {
						fmt.Fprintf(errw, "greedy: %s scored %.4f alone, soup %.4f: kept=%v\n", s.Candidate, s.Score, s.SoupScore, s.Kept)
					}})
				if err != nil {
					bar.finish()
					return err
				}
			}
			bar.finish()
			if g.jsonOut {
				return writeModelJSON(cmd.OutOrStdout(), res)
			}
			return printAverageResult(cmd.OutOrStdout(), res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&method, "method", "uniform", "uniform, weighted or greedy")
	f.StringVar(&weights, "weights", "", "comma-separated weights, one per input (weighted)")
	f.StringVar(&scoreData, "score-data", "", "held-out rows for the greedy score (JSONL)")
	f.StringVar(&stage, "stage", "", "greedy score metric: reward, sft or dpo")
	f.StringVar(&reference, "reference", "", "DPO reference model for --stage dpo (the SFT model the runs started from)")
	f.StringVar(&out, "out", "", "output model directory")
	f.BoolVar(&overwrite, "overwrite", false, "replace a non-empty --out")
	f.IntVar(&threads, "threads", 0, "kernel threads for greedy scoring (0: all CPUs)")
	return cmd
}

func parseWeights(s string) ([]float64, error) {
	parts := strings.Split(s, ",")
	out := make([]float64, len(parts))
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return nil, fmt.Errorf("average: --weights item %d %q is not a number", i+1, p)
		}
		out[i] = v
	}
	return out, nil
}

// stageScore builds the greedy score of a stage on data, encoded once with the first
// input's tokenizer (all inputs share it, which averaging checks). Call cleanup when done.
func stageScore(ctx context.Context, stage, data, reference, first string, threads int) (score averaging.ScoreFunc, dir averaging.Direction, cleanup func(), err error) {
	cleanup = func() {}
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	var tok *tokenizer.Tokenizer
	if path, ok := checkpoint.TokenizerPath(first); ok {
		if tok, err = tokenizer.LoadFile(path); err != nil {
			return nil, 0, cleanup, fmt.Errorf("average: %w", err)
		}
	}
	cfg, err := transformer.LoadConfig(filepath.Join(first, checkpoint.ConfigFile))
	if err != nil {
		return nil, 0, cleanup, fmt.Errorf("average: %w", err)
	}
	maxLen := cfg.MaxPositionEmbeddings
	withPool := func(fn func(pool *kernels.Pool) (float64, error)) (float64, error) {
		pool := kernels.NewPool(threads)
		defer pool.Close()
		return fn(pool)
	}
	switch stage {
	case "reward":
		rows, err := loadPreferenceRows(data, tok, maxLen)
		if err != nil {
			return nil, 0, cleanup, fmt.Errorf("average: %w", err)
		}
		return func(ctx context.Context, dir string) (float64, error) {
			return withPool(func(pool *kernels.Pool) (float64, error) {
				m, err := checkpoint.Load(ctx, dir, pool)
				if err != nil {
					return 0, err
				}
				if !m.Config.IsSequenceClassifier() {
					return 0, fmt.Errorf("--stage reward needs reward models, and %s is a %v", dir, m.Config.Architectures)
				}
				r, _, err := reward.Evaluate(ctx, m, rows, reward.DefaultEvalOptions())
				return r.Accuracy, err
			})
		}, averaging.HigherIsBetter, cleanup, nil
	case "sft":
		rows, err := averageSFTRows(data, tok, maxLen)
		if err != nil {
			return nil, 0, cleanup, fmt.Errorf("average: %w", err)
		}
		return func(ctx context.Context, dir string) (float64, error) {
			return withPool(func(pool *kernels.Pool) (float64, error) {
				m, err := checkpoint.Load(ctx, dir, pool)
				if err != nil {
					return 0, err
				}
				r, err := sft.Evaluate(ctx, m, rows)
				return r.Loss, err
			})
		}, averaging.LowerIsBetter, cleanup, nil
	case "dpo":
		rows, err := loadPreferenceRows(data, tok, maxLen)
		if err != nil {
			return nil, 0, cleanup, fmt.Errorf("average: %w", err)
		}
		pairs, err := dpo.Pairs(rows, "")
		if err != nil {
			return nil, 0, cleanup, fmt.Errorf("average: %w", err)
		}
		if reference == "" {
			return nil, 0, cleanup, errors.New("average: --stage dpo needs --reference (the SFT model the DPO runs started from)")
		}
		// The reference is frozen: its log-probs are computed once and cached for every
		// candidate and trial soup.
		cacheDir, err := os.MkdirTemp("", "posttrain-average-refcache-")
		if err != nil {
			return nil, 0, cleanup, fmt.Errorf("average: %w", err)
		}
		cleanup = func() { os.RemoveAll(cacheDir) }
		opts := dpo.DefaultOptions()
		opts.CacheDir = cacheDir
		return func(ctx context.Context, dir string) (float64, error) {
			return withPool(func(pool *kernels.Pool) (float64, error) {
				policy, err := checkpoint.Load(ctx, dir, pool)
				if err != nil {
					return 0, err
				}
				ref, err := checkpoint.Load(ctx, reference, pool)
				if err != nil {
					return 0, err
				}
				r, err := dpo.Evaluate(ctx, policy, ref, pairs, opts)
				return r.Accuracy, err
			})
		}, averaging.HigherIsBetter, cleanup, nil
	}
	return nil, 0, cleanup, fmt.Errorf("average: --stage %q is not one of reward, sft, dpo", stage)
}

// averageSFTRows reads and encodes SFT rows for the greedy sft score (all assistant turns).
func averageSFTRows(path string, tok *tokenizer.Tokenizer, maxLen int) ([]datasets.EncodedSFT, error) {
	exs, err := datasets.ReadSFTFile(path, datasets.ReadOptions{})
	if err != nil {
		return nil, err
	}
	enc := &datasets.Encoder{Tok: tok, MaxLen: maxLen}
	out := make([]datasets.EncodedSFT, len(exs))
	for i, ex := range exs {
		if out[i], err = enc.EncodeSFT(ex, datasets.SFTOptions{}); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return out, nil
}

func printAverageResult(w io.Writer, res any) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var r averaging.Result
	switch v := res.(type) {
	case *averaging.Result:
		r = *v
	case *averaging.GreedyResult:
		r = v.Result
		fmt.Fprintf(tw, "greedy\tkept %d of %d candidates, soup score %.4f (%s)\n", len(v.Ingredients), len(v.Steps), v.Score, v.Direction)
		for _, s := range v.Steps {
			fmt.Fprintf(tw, "  %s\talone %.4f, soup %.4f, kept %v\n", s.Candidate, s.Score, s.SoupScore, s.Kept)
		}
	}
	fmt.Fprintf(tw, "out\t%s\n", r.Out)
	fmt.Fprintf(tw, "method\t%s\n", r.Method)
	for i, in := range r.Inputs {
		fmt.Fprintf(tw, "  %s\tweight %.4g\n", in, r.Weights[i])
	}
	fmt.Fprintf(tw, "tensors\t%d (%d parameters, %s)\n", r.Tensors, r.Parameters, humanBytes(r.Bytes))
	return tw.Flush()
}
