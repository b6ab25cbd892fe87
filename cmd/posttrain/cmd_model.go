package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/safetensors"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/trainer/bench"
	"github.com/posttrain/posttrain/trainer/pretrain"
	"github.com/posttrain/posttrain/transformer"
)

// newModelCmd groups the model-directory commands: init, info and convert.
func newModelCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Create and inspect model checkpoints (Hugging Face Llama directories)",
		Long: `A model is a directory in Hugging Face's layout: config.json (LlamaConfig keys),
model.safetensors (tensors under the HF names: F32 as training writes them, or BF16/F16
after "model convert") and, usually, tokenizer.json. Training commands may add
trainer_state.json and trainer_state.bin next to them.`,
	}
	cmd.AddCommand(newModelInitCmd(g), newModelInfoCmd(g), newModelConvertCmd(g))
	return cmd
}

func newModelInitCmd(g *globalOptions) *cobra.Command {
	var o pretrain.InitOptions
	cmd := &cobra.Command{
		Use:   "init --preset NAME|--config config.json --out DIR [--tokenizer DIR] [--seed N]",
		Short: "Write a randomly initialised model directory",
		Long: `Write a new model directory with weights drawn the way Hugging Face initialises a
LlamaModel (normal(0, initializer_range) for linear and embedding weights, ones for the
RMSNorm gains). The same --seed always gives the same weights.

Sizes come from a preset (` + strings.Join(transformer.PresetNames(), ", ") + `) or a config.json with
LlamaConfig keys. With --tokenizer, its tokenizer.json is copied in, its vocabulary must
have exactly vocab_size tokens (--vocab-size sets vocab_size), and its begin/end-of-text
ids are written to config.json.`,
		Example: `  posttrain tokenizer train --vocab 512 --out tok corpus.txt
  posttrain model init --preset tiny --tokenizer tok --seed 1 --out base0
  posttrain model init --config my_config.json --out big --seed 7`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := pretrain.Init(cmd.Context(), o)
			if err != nil {
				return err
			}
			return printModelSummary(cmd.OutOrStdout(), g.jsonOut, s)
		},
	}
	f := cmd.Flags()
	// --preset and --config shadow the root's config-file flags on purpose: here they name
	// the model's size.
	f.StringVar(&o.Preset, "preset", "", "model size preset: "+strings.Join(transformer.PresetNames(), ", "))
	f.StringVar(&o.ConfigPath, "config", "", "config.json with Hugging Face LlamaConfig keys (instead of --preset)")
	f.StringVar(&o.OutDir, "out", "", "directory to write (must be absent or empty unless --overwrite)")
	f.StringVar(&o.Tokenizer, "tokenizer", "", "tokenizer directory (or tokenizer.json) to copy into the model")
	f.IntVar(&o.VocabSize, "vocab-size", 0, "override vocab_size (e.g. to match the tokenizer)")
	f.Uint64Var(&o.Seed, "seed", 1, "random seed of the initialisation")
	f.BoolVar(&o.Overwrite, "overwrite", false, "replace a non-empty --out directory")
	return cmd
}

func newModelInfoCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "info DIR",
		Short: "Describe a model directory without loading its weights",
		Long: `Print a model directory's architecture, sizes, parameter count, tensor dtypes and
files, read from config.json and the safetensors header (both validated). When the
directory holds a trainer state, its step and token count are shown too.`,
		Example: `  posttrain model info base0
  posttrain model info base0 --json | jq .parameters`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := checkpoint.Info(args[0])
			if err != nil {
				return err
			}
			return printModelSummary(cmd.OutOrStdout(), g.jsonOut, s)
		},
	}
}

// convertDType maps model convert's --dtype values to safetensors dtypes.
func convertDType(name string) (safetensors.DType, error) {
	switch strings.ToLower(name) {
	case "":
		return "", errors.New("model convert: --dtype is required (bf16, f16 or f32)")
	case "bf16":
		return safetensors.BF16, nil
	case "f16":
		return safetensors.F16, nil
	case "f32":
		return safetensors.F32, nil
	}
	return "", fmt.Errorf("model convert: unknown --dtype %q (valid: bf16, f16, f32)", name)
}

// modelConvertJSON is model convert's --json document.
type modelConvertJSON struct {
	Model       string `json:"model"`
	Out         string `json:"out"`
	DType       string `json:"dtype"`
	Parameters  int64  `json:"parameters"`
	BytesBefore int64  `json:"bytes_before"` // the source's model.safetensors
	BytesAfter  int64  `json:"bytes_after"`  // the written model.safetensors
}

func newModelConvertCmd(g *globalOptions) *cobra.Command {
	var model, out, dtypeName string
	var overwrite bool
	cmd := &cobra.Command{
		Use:   "convert --model DIR --out DIR --dtype bf16|f16|f32 [--overwrite]",
		Short: "Rewrite a model directory's weights as BF16, F16 or F32",
		Long: `Load a model directory and write it to --out with every tensor stored as --dtype:
bf16 or f16 halve model.safetensors (values rounded to nearest even; f16 keeps more
mantissa but tops out at 65504, and a model with larger weights is refused), f32 widens
a narrow checkpoint back. config.json's torch_dtype records the dtype and tokenizer.json
is copied along; a trainer state is not (convert is for shipping, not resuming).
Loading widens narrow weights to float32, so every command reads the result.`,
		Example: `  posttrain model convert --model base/ --out base-bf16/ --dtype bf16
  posttrain model convert --model base/ --out base-bf16/ --dtype bf16 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dtype, err := convertDType(dtypeName)
			if err != nil {
				return err
			}
			if model == "" || out == "" {
				return errors.New("model convert: --model and --out are required")
			}
			res, err := convertModel(cmd.Context(), model, out, dtype, overwrite)
			if err != nil {
				return err
			}
			if g.jsonOut {
				return writeModelJSON(cmd.OutOrStdout(), res)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "out\t%s\n", res.Out)
			fmt.Fprintf(tw, "dtype\t%s (%d parameters)\n", res.DType, res.Parameters)
			fmt.Fprintf(tw, "%s\t%d bytes -> %d bytes (%.0f%%)\n", checkpoint.WeightsFile, res.BytesBefore, res.BytesAfter,
				100*float64(res.BytesAfter)/float64(max(res.BytesBefore, 1)))
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "model directory to convert")
	f.StringVar(&out, "out", "", "directory to write (must be absent or empty unless --overwrite)")
	f.StringVar(&dtypeName, "dtype", "", "stored element type: bf16, f16 or f32")
	f.BoolVar(&overwrite, "overwrite", false, "replace a non-empty --out directory")
	return cmd
}

// convertModel loads dir and saves it to out with every tensor stored as dtype.
func convertModel(ctx context.Context, dir, out string, dtype safetensors.DType, overwrite bool) (*modelConvertJSON, error) {
	before, err := os.Stat(filepath.Join(dir, checkpoint.WeightsFile))
	if err != nil {
		return nil, fmt.Errorf("model convert: %w", err)
	}
	pool := kernels.NewPool(1) // loading and saving do no arithmetic
	defer pool.Close()
	m, err := checkpoint.Load(ctx, dir, pool)
	if err != nil {
		return nil, fmt.Errorf("model convert: %w", err)
	}
	if dtype == safetensors.F16 {
		// An infinity would make the written checkpoint unloadable; say so now.
		for _, t := range m.W.Tensors {
			for _, v := range t.Data {
				if h := safetensors.Float32ToHalf(v); h&0x7fff == 0x7c00 {
					return nil, fmt.Errorf("model convert: tensor %q holds %g, beyond f16's range (use --dtype bf16)", t.Name, v)
				}
			}
		}
	}
	opts := checkpoint.SaveOptions{TokenizerFrom: dir, Overwrite: overwrite, DType: dtype}
	if err := checkpoint.Save(ctx, out, m, opts); err != nil {
		return nil, fmt.Errorf("model convert: %w", err)
	}
	after, err := os.Stat(filepath.Join(out, checkpoint.WeightsFile))
	if err != nil {
		return nil, fmt.Errorf("model convert: %w", err)
	}
	return &modelConvertJSON{
		Model: dir, Out: out, DType: string(dtype), Parameters: int64(len(m.W.Data)),
		BytesBefore: before.Size(), BytesAfter: after.Size(),
	}, nil
}

// modelInfoJSON is model info's --json document: the checkpoint summary plus the
// trainer state's progress when present.
type modelInfoJSON struct {
	*checkpoint.Summary
	TrainerStep   *int   `json:"trainer_step,omitempty"`
	TrainerTokens *int64 `json:"trainer_tokens,omitempty"`
}

func printModelSummary(w io.Writer, asJSON bool, s *checkpoint.Summary) error {
	out := modelInfoJSON{Summary: s}
	if trainer.HasState(s.Dir) {
		st, err := trainer.LoadStateInfo(s.Dir)
		if err != nil {
			return fmt.Errorf("model info %s: %w", s.Dir, err)
		}
		out.TrainerStep, out.TrainerTokens = &st.Step, &st.Tokens
	}
	if asJSON {
		return writeModelJSON(w, out)
	}
	c := s.Config
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("dir", s.Dir)
	row("architecture", s.Architecture)
	row("parameters", fmt.Sprintf("%d (%.2fM)", s.Parameters, float64(s.Parameters)/1e6))
	row("vocab_size", c.VocabSize)
	row("hidden_size", c.HiddenSize)
	row("intermediate_size", c.IntermediateSize)
	row("layers", c.NumHiddenLayers)
	row("heads / kv heads", fmt.Sprintf("%d / %d (head_dim %d)", c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDimension()))
	row("context", c.MaxPositionEmbeddings)
	row("rope_theta", c.RopeTheta)
	row("tied embeddings", s.TiedEmbeddings)
	dtypes := make([]string, 0, len(s.DTypes))
	for d, n := range s.DTypes {
		dtypes = append(dtypes, fmt.Sprintf("%s x%d", d, n))
	}
	sort.Strings(dtypes)
	row("tensors", fmt.Sprintf("%d (%s)", s.Tensors, strings.Join(dtypes, ", ")))
	row("tokenizer", s.HasTokenizer)
	if out.TrainerStep != nil {
		row("trainer step", fmt.Sprintf("%d (%d tokens)", *out.TrainerStep, *out.TrainerTokens))
	}
	for _, f := range s.Files {
		row("  "+f.Name, fmt.Sprintf("%d bytes", f.Bytes))
	}
	return tw.Flush()
}

func writeModelJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newPretrainCmd is causal-LM pretraining on a text corpus.
func newPretrainCmd(g *globalOptions) *cobra.Command {
	o := pretrain.DefaultOptions()
	var seed uint64
	cmd := &cobra.Command{
		Use:   "pretrain --model DIR --out DIR [--data FILE]... [FILE...] [--steps N --batch B --seq T --lr LR]",
		Short: "Train a causal language model on a text corpus (to make base checkpoints)",
		Long: `Train a causal LM on text: .jsonl files (one {"text": ...} object per line) and plain
text files (one document each). Documents are tokenized with the model directory's
tokenizer.json as <|begin_of_text|> text <|end_of_text|>, concatenated and packed into rows
of --seq tokens; packed documents do not attend to each other. Rows are drawn in a seeded
shuffled order each epoch.

The optimizer is AdamW with decoupled weight decay (not on RMSNorm gains), global-norm
gradient clipping, and a linear warmup then cosine (or linear) decay to --min-lr-ratio.

--out receives the model plus trainer_state.{json,bin} every --checkpoint-every steps, at
the end, and on Ctrl-C; --resume continues that run from --out and ends with exactly the
weights an uninterrupted run would have produced.`,
		Example: `  posttrain pretrain --model base0 --data stories.jsonl --out base1 --steps 500 --batch 8 --seq 128
  posttrain pretrain --model base0 --out base1 stories.jsonl more.txt
  posttrain pretrain --data stories.jsonl --out base1 --steps 500 --batch 8 --seq 128 --resume`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Data = append(o.Data, args...)
			o.Seed = seed
			bar := newTrainBar(cmd.ErrOrStderr(), o.Steps)
			res, err := pretrain.Run(cmd.Context(), o, bar.update)
			bar.finish()
			if res != nil && (err == nil || res.Steps > res.StartStep) {
				if perr := printPretrainResult(cmd.OutOrStdout(), g.jsonOut, res); perr != nil && err == nil {
					err = perr
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.ModelDir, "model", "", "starting model directory (with tokenizer.json)")
	f.StringArrayVar(&o.Data, "data", nil, "corpus file: .jsonl with \"text\" fields, or plain text (repeatable; files may also be given as arguments)")
	f.StringVar(&o.OutDir, "out", "", "output directory for checkpoints (model + trainer state)")
	f.BoolVar(&o.Resume, "resume", false, "continue the run saved in --out")
	f.IntVar(&o.Steps, "steps", o.Steps, "total optimizer steps")
	f.IntVar(&o.Batch, "batch", o.Batch, "rows per micro-batch")
	f.IntVar(&o.Seq, "seq", o.Seq, "tokens per row")
	f.IntVar(&o.Accum, "accum", o.Accum, "micro-batches accumulated per step")
	f.Float64Var(&o.Schedule.PeakLR, "lr", o.Schedule.PeakLR, "peak learning rate")
	f.IntVar(&o.Schedule.WarmupSteps, "warmup", o.Schedule.WarmupSteps, "linear warmup steps")
	f.Float64Var(&o.Schedule.MinLRRatio, "min-lr-ratio", o.Schedule.MinLRRatio, "final learning rate as a fraction of --lr")
	f.StringVar(&o.Schedule.Decay, "decay", o.Schedule.Decay, "learning-rate decay after warmup: cosine, linear or constant")
	f.Float64Var(&o.AdamW.WeightDecay, "weight-decay", o.AdamW.WeightDecay, "decoupled weight decay (2-D weights only)")
	f.Float64Var(&o.AdamW.Beta1, "beta1", o.AdamW.Beta1, "AdamW beta1")
	f.Float64Var(&o.AdamW.Beta2, "beta2", o.AdamW.Beta2, "AdamW beta2")
	f.Float64Var(&o.AdamW.ClipNorm, "clip", o.AdamW.ClipNorm, "global gradient-norm clip (0 disables)")
	f.Uint64Var(&seed, "seed", o.Seed, "seed of the data order")
	f.IntVar(&o.CheckpointEvery, "checkpoint-every", o.CheckpointEvery, "save every N steps (0: only at the end)")
	f.IntVar(&o.Threads, "threads", 0, "kernel threads (0: all CPUs)")
	f.StringVar(&o.MetricsFile, "metrics-file", "", "append one JSON line of step metrics (loss, lr, grad norm, tokens/s) per step to this file")
	return cmd
}

func printPretrainResult(w io.Writer, asJSON bool, r *pretrain.Result) error {
	if asJSON {
		return writeModelJSON(w, r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "out\t%s\n", r.OutDir)
	fmt.Fprintf(tw, "steps\t%d (this run %d..%d)\n", r.Steps, r.StartStep, r.Steps)
	fmt.Fprintf(tw, "loss\tfirst %.4f, final %.4f, mean of last 10 %.4f\n", r.FirstLoss, r.FinalLoss, r.MeanLossLast)
	fmt.Fprintf(tw, "tokens\t%d (%.2f epochs of %d rows, corpus %d tokens in %d documents)\n", r.Tokens, r.Epochs, r.Rows, r.CorpusTokens, r.CorpusDocs)
	fmt.Fprintf(tw, "throughput\t%.0f tokens/s on %d threads (%.1fs)\n", r.TokensPerSec, r.Threads, r.ElapsedSec)
	return tw.Flush()
}

// trainBar renders trainer progress as a progress bar on stderr.
type trainBar struct {
	bar *progressbar.ProgressBar
	w   io.Writer
}

func newTrainBar(w io.Writer, total int) *trainBar {
	return &trainBar{w: w, bar: progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("starting"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowDescriptionAtLineEnd(),
	)}
}

func (b *trainBar) update(p trainer.Progress) {
	b.bar.Describe(fmt.Sprintf("loss %.4f  lr %.2e  %.0f tok/s  ETA %s", p.Loss, p.LR, p.TokensPerSec, p.ETA.Round(time.Second)))
	_ = b.bar.Set(p.Step)
}

func (b *trainBar) finish() {
	_ = b.bar.Exit()
	fmt.Fprintln(b.w)
}

// newBenchCmd measures the engine on a size preset, for comparison with the PyTorch peer.
func newBenchCmd(g *globalOptions) *cobra.Command {
	o := bench.DefaultOptions()
	withStages := false
	cmd := &cobra.Command{
		Use:   "bench [--preset bench] [--threads N] [--json]",
		Short: "Measure training and sampling throughput, sgemm speed and allocations",
		Long: `Measure the native engine on a model size preset with the workload of the PyTorch
peer (../shared/bench/torch_llama.py):

  training   batch 8 x 256 tokens: forward, backward, gradient clipping and an AdamW step
             through the trainer; 2 warm-up steps, then 10 timed steps
  sampling   one 64-token prompt, 16 samples of 128 new tokens with the KV cache
  sgemm      GFLOP/s of the kernel on the MLP projection's shape, on all threads and on one
  memory     heap allocations per timed training step, peak resident memory
  --stages   rejection sampling (4 prompts x K=16 and K=30, with and without prompt-KV
             sharing) and DPO training pairs/s

Run it next to the peer, in the same minute, and compare ratios: absolute numbers move
with the machine's load.`,
		Example: `  posttrain bench
  posttrain bench --threads 1 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			errw := cmd.ErrOrStderr()
			progress := func(stage string) { fmt.Fprintf(errw, "bench: measuring %s...\n", stage) }
			res, err := bench.Run(cmd.Context(), o, progress)
			if err != nil {
				return err
			}
			var stages *stageBench
			if withStages {
				if stages, err = runStageBench(cmd.Context(), o.Preset, o.Threads, 1, progress); err != nil {
					return err
				}
			}
			if g.jsonOut {
				if stages == nil {
					return writeModelJSON(cmd.OutOrStdout(), res)
				}
				return writeModelJSON(cmd.OutOrStdout(), struct {
					*bench.Result
					Stages *stageBench `json:"stages"`
				}{res, stages})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "preset\t%s (%.2fM parameters), %d threads, %s sgemm kernel\n", res.Preset, float64(res.Parameters)/1e6, res.Threads, res.Kernel)
			fmt.Fprintf(tw, "train\t%.0f tokens/s\t(%.0f per CPU-second; %.1f ms/step, of which AdamW %.1f ms)\n", res.TrainTokensPerS, res.TrainTokensPerCPUS, res.TrainStepMS, res.OptimizerMS)
			fmt.Fprintf(tw, "sample\t%.0f tokens/s\t(%.0f per CPU-second; %d x %d new tokens after a %d-token prompt)\n", res.SampleTokensPerS, res.SampleTokensPerCPUS, o.Samples, o.NewTokens, o.PromptLen)
			fmt.Fprintf(tw, "sgemm\t%.1f GFLOP/s\t(%.1f on one thread; m,n,k = %d,%d,%d)\n", res.SgemmGFLOPS, res.SgemmGFLOPSOneThread, res.SgemmShape[0], res.SgemmShape[1], res.SgemmShape[2])
			fmt.Fprintf(tw, "allocs/step\t%.1f\t(%.0f bytes)\n", res.AllocsPerStep, res.BytesPerStep)
			fmt.Fprintf(tw, "peak RSS\t%.0f MiB\t(%.0f MiB after training)\n", float64(res.PeakRSSBytes)/(1<<20), float64(res.PeakRSSTrainBytes)/(1<<20))
			for _, m := range res.Missing {
				fmt.Fprintf(tw, "not measured\t%s\n", m)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if stages != nil {
				return printStageBench(cmd.OutOrStdout(), stages)
			}
			return nil
		},
	}
	f := cmd.Flags()
	// --preset shadows the root's config preset on purpose: here it names the model size.
	f.StringVar(&o.Preset, "preset", o.Preset, "model size preset: "+strings.Join(transformer.PresetNames(), ", "))
	f.IntVar(&o.Threads, "threads", 0, "kernel threads (0: GOMAXPROCS)")
	f.IntVar(&o.Batch, "batch", o.Batch, "training rows per step")
	f.IntVar(&o.Seq, "seq", o.Seq, "training tokens per row")
	f.IntVar(&o.Steps, "steps", o.Steps, "timed training steps")
	f.IntVar(&o.WarmupSteps, "warmup", o.WarmupSteps, "untimed warm-up training steps")
	f.IntVar(&o.Samples, "samples", o.Samples, "samples of the prompt")
	f.IntVar(&o.NewTokens, "new-tokens", o.NewTokens, "new tokens per sample")
	f.IntVar(&o.PromptLen, "prompt", o.PromptLen, "prompt tokens")
	f.BoolVar(&o.SkipSampling, "skip-sampling", false, "measure training and sgemm only")
	f.BoolVar(&withStages, "stages", false, "also measure rejection sampling at K=16 and K=30 with and without prompt-KV sharing, and DPO training pairs/s (under \"stages\" in --json)")
	f.DurationVar(&o.SgemmTime, "sgemm-time", o.SgemmTime, "how long to time sgemm (per thread setting)")
	return cmd
}
