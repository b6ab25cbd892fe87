// Package bench measures the engine end to end on a size preset, the numbers that are
// compared with the PyTorch peer (../shared/bench/torch_llama.py): training tokens/s
// (forward + backward + AdamW step through the trainer), KV-cached sampling tokens/s,
// sgemm GFLOP/s, allocations per training step and peak memory.
package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/transformer"
)

// Options choose the preset and the workload; DefaultOptions matches the PyTorch peer.
type Options struct {
	Preset  string
	Threads int // 0 means GOMAXPROCS

	Batch, Seq   int // training batch: rows x tokens
	WarmupSteps  int
	Steps        int // timed training steps
	PromptLen    int // sampling: one prompt of this many tokens...
	Samples      int // ...sampled this many times...
	NewTokens    int // ...for this many new tokens each
	SgemmTime    time.Duration
	SkipSampling bool
	Seed         uint64
}

// DefaultOptions is the peer's workload: batch 8 x 256 tokens, 2 warm-up and 10 timed
// steps; one 64-token prompt, 16 samples of 128 new tokens.
func DefaultOptions() Options {
	return Options{Preset: "bench", Batch: 8, Seq: 256, WarmupSteps: 2, Steps: 10,
		PromptLen: 64, Samples: 16, NewTokens: 128, SgemmTime: time.Second, Seed: 1}
}

// Result holds the measurements. The first four JSON keys are the contract of
// `posttrain bench --json`.
type Result struct {
	TrainTokensPerS  float64 `json:"train_tokens_per_s"`
	SampleTokensPerS float64 `json:"sample_tokens_per_s"`
	SgemmGFLOPS      float64 `json:"sgemm_gflops"`
	AllocsPerStep    float64 `json:"allocs_per_step"`

	Preset     string `json:"preset"`
	Parameters int    `json:"params"`
	Threads    int    `json:"threads"`
	Kernel     string `json:"sgemm_kernel"`
	// TrainStepMS is the mean time of one full training step.
	TrainStepMS float64 `json:"train_step_ms"`
	// TrainTokensPerCPUS and SampleTokensPerCPUS count tokens per second of process CPU
	// time (all threads): steadier than wall time on a shared machine, and on one thread
	// the throughput the engine would have with the core to itself.
	TrainTokensPerCPUS  float64 `json:"train_tokens_per_cpu_s,omitempty"`
	SampleTokensPerCPUS float64 `json:"sample_tokens_per_cpu_s,omitempty"`
	// OptimizerMS is the AdamW part of a step (gradient norm + fused update), timed alone.
	OptimizerMS float64 `json:"optimizer_ms"`
	// SgemmGFLOPSOneThread is the same shape on one thread (the per-core figure).
	SgemmGFLOPSOneThread float64 `json:"sgemm_gflops_1thread"`
	SgemmShape           [3]int  `json:"sgemm_shape_mnk"`
	// BytesPerStep is the heap bytes allocated per timed training step.
	BytesPerStep float64 `json:"bytes_per_step"`
	// PeakRSSTrainBytes is the process's peak resident memory after the training phase;
	// PeakRSSBytes after everything.
	PeakRSSTrainBytes int64 `json:"peak_rss_train_bytes"`
	PeakRSSBytes      int64 `json:"peak_rss_bytes"`
	// Missing names engine parts that could not be measured, with the reason.
	Missing []string `json:"missing,omitempty"`
}

// Run measures per opts, reporting each phase's name through stage (may be nil).
func Run(ctx context.Context, opts Options, stage func(string)) (*Result, error) {
	if stage == nil {
		stage = func(string) {}
	}
	switch {
	case opts.Batch < 1 || opts.Seq < 1:
		return nil, fmt.Errorf("bench: batch %d and seq %d must be >= 1", opts.Batch, opts.Seq)
	case opts.Steps < 1 || opts.WarmupSteps < 0:
		return nil, fmt.Errorf("bench: steps %d must be >= 1 and warm-up %d >= 0", opts.Steps, opts.WarmupSteps)
	case opts.Threads < 0:
		return nil, fmt.Errorf("bench: threads must be >= 0, got %d", opts.Threads)
	}
	cfg, err := transformer.Preset(opts.Preset)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if opts.Seq > cfg.MaxPositionEmbeddings {
		return nil, fmt.Errorf("bench: seq %d exceeds preset %s's context %d", opts.Seq, opts.Preset, cfg.MaxPositionEmbeddings)
	}
	threads := opts.Threads
	if threads == 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	pool := kernels.NewPool(threads)
	defer pool.Close()
	m, err := transformer.New(cfg, pool)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	m.Init(opts.Seed)
	res := &Result{Preset: opts.Preset, Parameters: len(m.W.Data), Threads: threads, Kernel: pool.Kernel()}

	stage("training")
	if err := measureTraining(ctx, m, opts, res); err != nil {
		return nil, err
	}
	res.PeakRSSTrainBytes = peakRSS()

	if opts.SkipSampling {
		res.Missing = append(res.Missing, "sampling: skipped")
	} else {
		stage("sampling")
		if err := measureSampling(ctx, m, opts, res); err != nil {
			return nil, err
		}
	}

	stage("sgemm")
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The shape of the MLP's gate/up projection in the training forward pass.
	res.SgemmShape = [3]int{opts.Batch * opts.Seq, cfg.IntermediateSize, cfg.HiddenSize}
	sm, sn, sk := res.SgemmShape[0], res.SgemmShape[1], res.SgemmShape[2]
	res.SgemmGFLOPS = kernels.MeasureSgemmGFLOPS(pool, sm, sn, sk, opts.SgemmTime)
	one := kernels.NewPool(1)
	res.SgemmGFLOPSOneThread = kernels.MeasureSgemmGFLOPS(one, sm, sn, sk, opts.SgemmTime)
	one.Close()
	res.PeakRSSBytes = peakRSS()
	return res, nil
}

// measureTraining runs full trainer steps (weighted NLL forward + backward, gradient
// norm, clipping, AdamW) on a fixed random batch, as the peer does.
func measureTraining(ctx context.Context, m *transformer.Model, opts Options, res *Result) error {
	B, T := opts.Batch, opts.Seq
	rng := rand.New(rand.NewPCG(opts.Seed, 99))
	batch := &transformer.Batch{B: B, T: T, Tokens: make([]int32, B*T), Targets: make([]int32, B*T)}
	row := make([]int32, T+1)
	for b := 0; b < B; b++ {
		for i := range row {
			row[i] = int32(rng.IntN(m.Config.VocabSize))
		}
		copy(batch.Tokens[b*T:], row[:T])
		copy(batch.Targets[b*T:], row[1:])
	}
	weights := make([]float32, B*T)
	for i := range weights {
		weights[i] = 1
	}
	ws := m.NewWorkspace(B, T)
	grads := m.NewGrads()
	segs, err := trainer.ParamSegments(m.W)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	total := opts.WarmupSteps + opts.Steps
	// The peer's optimizer: AdamW lr 3e-4, betas (0.9, 0.999), weight decay 0.01; we also
	// clip to norm 1 as every real run here does (one extra pass over the gradients).
	tcfg := trainer.Config{
		Schedule:     trainer.Schedule{PeakLR: 3e-4, TotalSteps: total, MinLRRatio: 1, Decay: trainer.DecayConstant},
		AdamW:        trainer.AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, ClipNorm: 1},
		MicroBatches: 1,
	}
	tr, err := trainer.New(tcfg, m.W.Data, grads.Data, segs, m.Pool)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	step := func(_ context.Context, _, _ int, _ []float32) (trainer.Micro, error) {
		loss, err := m.WeightedNLL(ws, batch, weights, grads)
		return trainer.Micro{Loss: loss, Tokens: B * T}, err
	}
	for i := 0; i < opts.WarmupSteps; i++ {
		if _, err := tr.Step(ctx, step); err != nil {
			return fmt.Errorf("bench: warm-up: %w", err)
		}
	}
	// No runtime.GC() here: it would empty sync.Pools and count their refills as ours.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0, start := cpuTime(), time.Now()
	for i := 0; i < opts.Steps; i++ {
		if _, err := tr.Step(ctx, step); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	runtime.ReadMemStats(&after)
	if cpu > 0 {
		res.TrainTokensPerCPUS = float64(opts.Steps*B*T) / cpu.Seconds()
	}
	res.TrainTokensPerS = float64(opts.Steps*B*T) / el.Seconds()
	res.TrainStepMS = el.Seconds() * 1000 / float64(opts.Steps)
	res.AllocsPerStep = float64(after.Mallocs-before.Mallocs) / float64(opts.Steps)
	res.BytesPerStep = float64(after.TotalAlloc-before.TotalAlloc) / float64(opts.Steps)

	// The optimizer alone, on the same buffers (the gradients are zero after a step, which
	// costs the same as any other values).
	opt := tr.Optimizer()
	st := tr.State
	const optSteps = 5
	start = time.Now()
	for i := 0; i < optSteps; i++ {
		norm := opt.GradNorm(grads.Data)
		if err := opt.Update(m.W.Data, grads.Data, st.M, st.V, st.Step+1, 3e-4, 1/(1+norm)); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	res.OptimizerMS = time.Since(start).Seconds() * 1000 / optSteps
	return nil
}
