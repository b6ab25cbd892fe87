package pretrain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/transformer"
)

// Options configure a pretraining run.
type Options struct {
	// ModelDir is the starting checkpoint (with tokenizer.json); ignored on resume, which
	// continues from OutDir.
	ModelDir string
	// Data are text and .jsonl files.
	Data []string
	// OutDir receives the checkpoints: model files plus trainer_state.{json,bin}.
	OutDir string
	// Resume continues the run saved in OutDir.
	Resume bool

	Steps int // optimizer updates in total (a resumed run continues up to it)
	Batch int // rows per micro-batch
	Seq   int // tokens per row
	// Accum is the number of micro-batches per update (gradient accumulation).
	Accum int

	Schedule trainer.Schedule // PeakLR, WarmupSteps, MinLRRatio, Decay (TotalSteps = Steps)
	AdamW    trainer.AdamWConfig

	Seed uint64
	// CheckpointEvery saves every that many updates (0: only at the end).
	CheckpointEvery int
	// Threads is the kernel pool size; 0 means the number of CPUs.
	Threads int
	// MetricsFile, when set, gets one JSON line per update (trainer.Progress), appended so
	// a resumed run continues the same log.
	MetricsFile string
}

// DefaultOptions are sensible settings for the small presets.
func DefaultOptions() Options {
	return Options{
		Steps: 200, Batch: 8, Seq: 128, Accum: 1,
		Schedule:        trainer.Schedule{PeakLR: 1e-3, WarmupSteps: 20, MinLRRatio: 0.1, Decay: trainer.DecayCosine},
		AdamW:           trainer.DefaultAdamW(),
		Seed:            1,
		CheckpointEvery: 100,
	}
}

// Result summarises a finished (or interrupted) run.
type Result struct {
	OutDir       string  `json:"out_dir"`
	Steps        int     `json:"steps"`
	StartStep    int     `json:"start_step"`
	Resumed      bool    `json:"resumed"`
	FirstLoss    float64 `json:"first_loss"`
	FinalLoss    float64 `json:"final_loss"`
	MeanLossLast float64 `json:"mean_loss_last_10"`
	Tokens       int64   `json:"tokens"`
	TokensPerSec float64 `json:"tokens_per_s"`
	ElapsedSec   float64 `json:"elapsed_s"`
	CorpusTokens int     `json:"corpus_tokens"`
	CorpusDocs   int     `json:"corpus_docs"`
	Rows         int     `json:"rows"`
	Epochs       float64 `json:"epochs"`
	Parameters   int     `json:"parameters"`
	Threads      int     `json:"threads"`
}

// Keys of the trainer state's Extra map that a resume checks.
const (
	extraCorpus = "corpus_sha256"
	extraSeq    = "seq"
	extraBatch  = "batch"
	extraAccum  = "accum"
)

func (o Options) validate() error {
	switch {
	case o.OutDir == "":
		return errors.New("pretrain: --out is required")
	case !o.Resume && o.ModelDir == "":
		return errors.New("pretrain: --model is required (or --resume to continue from --out)")
	case len(o.Data) == 0:
		return errors.New("pretrain: --data needs at least one file")
	case o.Steps < 1:
		return fmt.Errorf("pretrain: --steps must be >= 1, got %d", o.Steps)
	case o.Batch < 1:
		return fmt.Errorf("pretrain: --batch must be >= 1, got %d", o.Batch)
	case o.Seq < 1:
		return fmt.Errorf("pretrain: --seq must be >= 1, got %d", o.Seq)
	case o.Accum < 1:
		return fmt.Errorf("pretrain: --accum must be >= 1, got %d", o.Accum)
	case o.CheckpointEvery < 0:
		return fmt.Errorf("pretrain: --checkpoint-every must be >= 0, got %d", o.CheckpointEvery)
	case o.Threads < 0:
		return fmt.Errorf("pretrain: --threads must be >= 0, got %d", o.Threads)
	}
	return nil
}

// Run trains per opts, calling progress after every update. Cancelling ctx stops between
// updates with ctx.Err() after checkpointing the updates done so far, so OutDir then
// resumes the run exactly.
func Run(ctx context.Context, opts Options, progress func(trainer.Progress)) (*Result, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	threads := opts.Threads
	if threads == 0 {
		threads = runtime.NumCPU()
	}
	pool := kernels.NewPool(threads)
	defer pool.Close()

	src := opts.ModelDir
	var state *trainer.State
	if opts.Resume {
		_ = restoreSwap(filepath.Clean(opts.OutDir)) // a failed restore shows as no state below
		if !trainer.HasState(opts.OutDir) {
			return nil, fmt.Errorf("pretrain: --resume: %s holds no %s to resume from", opts.OutDir, trainer.StateJSONFile)
		}
		st, err := trainer.LoadState(opts.OutDir)
		if err != nil {
			return nil, fmt.Errorf("pretrain: --resume: %w", err)
		}
		state, src = st, opts.OutDir
	} else if entries, err := os.ReadDir(opts.OutDir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("pretrain: --out %s is not empty; pass --resume to continue the run saved there, or choose another directory", opts.OutDir)
	}

	tokPath, ok := checkpoint.TokenizerPath(src)
	if !ok {
		return nil, fmt.Errorf("pretrain: model %s has no %s; pretraining tokenizes text with it (posttrain model init --tokenizer DIR)", src, checkpoint.TokenizerFile)
	}
	tokJSON, err := os.ReadFile(tokPath)
	if err != nil {
		return nil, fmt.Errorf("pretrain: %w", err)
	}
	tok, err := tokenizer.LoadFile(tokPath)
	if err != nil {
		return nil, fmt.Errorf("pretrain: %w", err)
	}
	m, err := checkpoint.Load(ctx, src, pool)
	if err != nil {
		return nil, fmt.Errorf("pretrain: %w", err)
	}
	if m.Config.IsSequenceClassifier() {
		return nil, fmt.Errorf("pretrain: model %s is a %s; pretraining needs a causal LM", src, transformer.ArchSequenceClassifier)
	}
	if tok.VocabSize() > m.Config.VocabSize {
		return nil, fmt.Errorf("pretrain: tokenizer has %d tokens but the model's vocab_size is %d", tok.VocabSize(), m.Config.VocabSize)
	}
	if opts.Seq > m.Config.MaxPositionEmbeddings {
		return nil, fmt.Errorf("pretrain: --seq %d exceeds the model's max_position_embeddings %d", opts.Seq, m.Config.MaxPositionEmbeddings)
	}

	corpus, err := LoadCorpus(ctx, opts.Data, tok)
	if err != nil {
		return nil, fmt.Errorf("pretrain: %w", err)
	}
	rows := corpus.Rows(opts.Seq)
	if rows < 1 {
		return nil, fmt.Errorf("pretrain: the corpus has %d tokens, fewer than one row of --seq %d (+1)", len(corpus.Tokens), opts.Seq)
	}

	stage := Stage{Name: "pretrain", ResumePrefix: "pretrain: --resume", Steps: opts.Steps, Accum: opts.Accum,
		Schedule: opts.Schedule, AdamW: opts.AdamW, Seed: opts.Seed,
		Extra: map[string]string{
			extraCorpus: corpus.SHA256, extraSeq: strconv.Itoa(opts.Seq),
			extraBatch: strconv.Itoa(opts.Batch), extraAccum: strconv.Itoa(opts.Accum),
		},
		Needs: "the same data, --seq, --batch and --accum",
		Rows:  rows, RowsDesc: fmt.Sprintf("the corpus's %d rows", rows)}
	tr, grads, err := stage.NewTrainer(m, state)
	if err != nil {
		return nil, err
	}

	var metrics *json.Encoder
	if opts.MetricsFile != "" {
		f, err := os.OpenFile(opts.MetricsFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("pretrain: metrics file: %w", err)
		}
		defer f.Close()
		metrics = json.NewEncoder(f)
	}
	var metricsErr error

	step := newLMStep(m, grads, corpus, tr.State, opts.Batch, opts.Seq)
	res := &Result{OutDir: opts.OutDir, StartStep: tr.State.Step, Resumed: opts.Resume, CorpusTokens: len(corpus.Tokens),
		CorpusDocs: corpus.Docs, Rows: rows, Parameters: len(m.W.Data), Threads: threads}
	var recent []float64
	start := time.Now()
	hooks := trainer.Hooks{
		Progress: func(p trainer.Progress) {
			if len(recent) == 0 && p.Step == res.StartStep+1 {
				res.FirstLoss = p.Loss
			}
			res.FinalLoss = p.Loss
			recent = append(recent, p.Loss)
			if len(recent) > 10 {
				recent = recent[1:]
			}
			if metrics != nil && metricsErr == nil {
				metricsErr = metrics.Encode(p)
			}
			if progress != nil {
				progress(p)
			}
		},
		CheckpointEvery: opts.CheckpointEvery,
		SaveOnCancel:    true,
		Checkpoint: func(ctx context.Context, _ int) error {
			return SaveCheckpoint(ctx, opts.OutDir, m, tokJSON, tr.State)
		},
	}
	runErr := tr.Run(ctx, step.run, hooks)
	res.Steps = tr.State.Step
	res.Tokens = tr.State.Tokens
	res.ElapsedSec = time.Since(start).Seconds()
	if done := tr.State.Step - res.StartStep; done > 0 && res.ElapsedSec > 0 {
		res.TokensPerSec = float64(done*opts.Batch*opts.Seq*opts.Accum) / res.ElapsedSec
	}
	res.Epochs = float64(tr.State.Step*opts.Batch*opts.Accum) / float64(rows)
	for _, l := range recent {
		res.MeanLossLast += l / float64(len(recent))
	}
	if runErr != nil {
		return res, fmt.Errorf("pretrain: %w", runErr)
	}
	if metricsErr != nil {
		return res, fmt.Errorf("pretrain: metrics file %s: %w", opts.MetricsFile, metricsErr)
	}
	return res, nil
}

// lmStep is the causal-LM StepFunc: B rows from the shuffler, mean NLL over their tokens.
type lmStep struct {
	m       *transformer.Model
	grads   *transformer.Params
	corpus  *Corpus
	state   *trainer.State
	ws      *transformer.Workspace
	batch   transformer.Batch
	weights []float32
	idx     []int
}

func newLMStep(m *transformer.Model, grads *transformer.Params, c *Corpus, st *trainer.State, b, t int) *lmStep {
	n := b * t
	s := &lmStep{m: m, grads: grads, corpus: c, state: st, ws: m.NewWorkspace(b, t),
		batch: transformer.Batch{B: b, T: t, Tokens: make([]int32, n), Targets: make([]int32, n),
			Positions: make([]int32, n), Segments: make([]int32, n)},
		weights: make([]float32, n), idx: make([]int, b)}
	for i := range s.weights {
		s.weights[i] = 1
	}
	return s
}

func (s *lmStep) run(ctx context.Context, _, _ int, _ []float32) (trainer.Micro, error) {
	if err := ctx.Err(); err != nil {
		return trainer.Micro{}, err
	}
	if err := s.state.Data.Fill(s.idx); err != nil {
		return trainer.Micro{}, err
	}
	t := s.batch.T
	for b, r := range s.idx {
		lo, hi := b*t, (b+1)*t
		s.corpus.FillRow(r, t, s.batch.Tokens[lo:hi], s.batch.Targets[lo:hi], s.batch.Positions[lo:hi], s.batch.Segments[lo:hi])
	}
	loss, err := s.m.WeightedNLL(s.ws, &s.batch, s.weights, s.grads)
	return trainer.Micro{Loss: loss, Tokens: s.batch.B * t}, err
}

// SaveCheckpoint writes the model (with tokenizer.json) and the trainer state into dir as
// one unit: both go into a staging sibling that replaces dir only when complete, so dir
// always holds a matching pair of weights and optimizer state.
func SaveCheckpoint(ctx context.Context, dir string, m *transformer.Model, tokJSON []byte, st *trainer.State) error {
	clean := filepath.Clean(dir)
	staging := clean + ".staging"
	if err := os.RemoveAll(staging); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := checkpoint.Save(ctx, staging, m, checkpoint.SaveOptions{TokenizerJSON: tokJSON}); err != nil {
		return err
	}
	if err := trainer.SaveState(staging, st); err != nil {
		os.RemoveAll(staging)
		return err
	}
	old := clean + ".old"
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if _, err := os.Stat(clean); err == nil {
		if err := os.Rename(clean, old); err != nil {
			return fmt.Errorf("save checkpoint: %w", err)
		}
	}
	if err := os.Rename(staging, clean); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	return nil
}

// restoreSwap puts back dir.old (clean) if a crash happened between SaveCheckpoint's
// two renames.
func restoreSwap(clean string) error {
	if _, err := os.Stat(clean); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(clean + ".old"); err == nil {
			return os.Rename(clean+".old", clean)
		}
	}
	return nil
}
