package dpo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/trainer/pretrain"
	"github.com/posttrain/posttrain/transformer"
)

// ThroughputOptions shape a DPO training-speed measurement on synthetic pairs.
type ThroughputOptions struct {
	Batch       int // pairs per update
	PromptLen   int // tokens per prompt
	ResponseLen int // tokens per chosen and per rejected response
	Steps       int // timed updates
	Warmup      int // untimed updates first
	Seed        uint64
}

// DefaultThroughputOptions: 4 pairs of a 64-token prompt with 64-token responses.
func DefaultThroughputOptions() ThroughputOptions {
	return ThroughputOptions{Batch: 4, PromptLen: 64, ResponseLen: 64, Steps: 5, Warmup: 1, Seed: 1}
}

// Throughput is the measured DPO training speed (forward, objective, backward, AdamW;
// the reference log-probs are precomputed as in training).
type Throughput struct {
	Batch        int     `json:"batch"`
	SeqTokens    int     `json:"seq_tokens"`
	Steps        int     `json:"steps"`
	Seconds      float64 `json:"seconds"`
	PairsPerSec  float64 `json:"pairs_per_s"`
	TokensPerSec float64 `json:"tokens_per_s"`
}

// benchRun is one DPO trainer over synthetic pairs, shared by MeasureThroughput and the
// package benchmark.
type benchRun struct {
	tr   *trainer.Trainer
	step *trainStep
}

func newBenchRun(ctx context.Context, m *transformer.Model, o ThroughputOptions) (*benchRun, error) {
	if o.Batch < 1 || o.PromptLen < 1 || o.ResponseLen < 1 || o.Steps < 1 || o.Warmup < 0 {
		return nil, fmt.Errorf("dpo throughput: batch, prompt and response lengths and steps must be >= 1 (got %+v)", o)
	}
	if n := o.PromptLen + o.ResponseLen; n > m.Config.MaxPositionEmbeddings {
		return nil, fmt.Errorf("dpo throughput: prompt + response is %d tokens, longer than the context window of %d", n, m.Config.MaxPositionEmbeddings)
	}
	policy := pretrain.CloneModel(m)
	rng := rand.New(rand.NewPCG(o.Seed, 0xd90))
	ids := func(n int) []int32 {
		out := make([]int32, n)
		for i := range out {
			out[i] = int32(rng.IntN(m.Config.VocabSize))
		}
		return out
	}
	pairs := make([]Pair, 4*o.Batch)
	for i := range pairs {
		mask := make([]bool, o.ResponseLen)
		mask[o.ResponseLen-1] = true // the end-of-turn
		pairs[i] = Pair{Prompt: ids(o.PromptLen), Chosen: ids(o.ResponseLen), Rejected: ids(o.ResponseLen), ChosenFmt: mask, RejectedFmt: mask}
	}
	ref, _, err := ReferenceLogProbs(ctx, m, pairs, true, o.Batch, "")
	if err != nil {
		return nil, err
	}
	obj, err := objectives.NewDPO(objectives.DefaultDPOOptions())
	if err != nil {
		return nil, err
	}
	segs, err := trainer.ParamSegments(policy.W)
	if err != nil {
		return nil, err
	}
	grads := policy.NewGrads()
	cfg := DefaultConfig()
	cfg.Batch = o.Batch
	tr, err := trainer.New(trainer.Config{Schedule: trainer.Schedule{PeakLR: 1e-5, TotalSteps: 1 << 30}, AdamW: cfg.AdamW, MicroBatches: 1},
		policy.W.Data, grads.Data, segs, policy.Pool)
	if err != nil {
		return nil, err
	}
	tr.State.Data = trainer.NewShuffler(len(pairs), o.Seed)
	return &benchRun{tr: tr, step: newTrainStep(policy, grads, obj, pairs, ref, tr.State, cfg)}, nil
}

func (r *benchRun) update(ctx context.Context) error {
	_, err := r.tr.Step(ctx, r.step.run)
	r.step.parts = r.step.parts[:0]
	return err
}

// MeasureThroughput times DPO training updates of a copy of m on synthetic pairs (m is
// left unchanged), for `posttrain bench` and the package benchmark.
func MeasureThroughput(ctx context.Context, m *transformer.Model, o ThroughputOptions) (Throughput, error) {
	if err := checkModel(m, "policy"); err != nil {
		return Throughput{}, err
	}
	r, err := newBenchRun(ctx, m, o)
	if err != nil {
		return Throughput{}, err
	}
	for i := 0; i < o.Warmup; i++ {
		if err := r.update(ctx); err != nil {
			return Throughput{}, err
		}
	}
	start := time.Now()
	for i := 0; i < o.Steps; i++ {
		if err := r.update(ctx); err != nil {
			return Throughput{}, err
		}
	}
	sec := time.Since(start).Seconds()
	seq := o.PromptLen + o.ResponseLen - 1
	return Throughput{Batch: o.Batch, SeqTokens: seq, Steps: o.Steps, Seconds: sec,
		PairsPerSec: float64(o.Steps*o.Batch) / sec, TokensPerSec: float64(o.Steps*o.Batch*2*seq) / sec}, nil
}
