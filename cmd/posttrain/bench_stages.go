package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"text/tabwriter"

	"github.com/posttrain/posttrain/dpo"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/sampling"
	"github.com/posttrain/posttrain/transformer"
)

// stageBench holds the stage-level throughput figures of `posttrain bench --stages`:
// rejection sampling with and without prompt-KV sharing at K=16 and K=30, and DPO
// training pairs/s. They live in the CLI because the engine's bench package must not
// import the stages above it.
type stageBench struct {
	RejectionSampling map[string]sampling.SharingReport `json:"rejection_sampling"`
	DPO               dpo.Throughput                    `json:"dpo_train"`
}

// runStageBench measures the stages on a randomly initialised model of the preset.
func runStageBench(ctx context.Context, preset string, threads int, seed uint64, progress func(string)) (*stageBench, error) {
	cfg, err := transformer.Preset(preset)
	if err != nil {
		return nil, err
	}
	if threads < 1 {
		threads = runtime.GOMAXPROCS(0)
	}
	pool := kernels.NewPool(threads)
	defer pool.Close()
	m, err := transformer.New(cfg, pool)
	if err != nil {
		return nil, err
	}
	m.Init(seed)
	out := &stageBench{RejectionSampling: map[string]sampling.SharingReport{}}
	for _, k := range []int{16, 30} {
		progress(fmt.Sprintf("rejection sampling K=%d with and without prompt-KV sharing", k))
		opts := sampling.DefaultBenchOptions()
		opts.K, opts.Seed = k, seed
		rep, err := sampling.CompareSharing(ctx, m, nil, opts)
		if err != nil {
			return nil, fmt.Errorf("rejection sampling benchmark at K=%d: %w", k, err)
		}
		out.RejectionSampling[fmt.Sprintf("k%d", k)] = rep
	}
	progress("DPO training")
	dopts := dpo.DefaultThroughputOptions()
	dopts.Seed = seed
	if out.DPO, err = dpo.MeasureThroughput(ctx, m, dopts); err != nil {
		return nil, fmt.Errorf("DPO benchmark: %w", err)
	}
	return out, nil
}

// printStageBench writes the stage figures as table rows.
func printStageBench(w io.Writer, s *stageBench) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, k := range []string{"k16", "k30"} {
		r := s.RejectionSampling[k]
		fmt.Fprintf(tw, "rejection sampling %s\t%.1f samples/s shared, %.1f unshared\t(x%.2f; generation alone x%.2f)\n",
			k, r.Shared.SamplesPerSec, r.Unshared.SamplesPerSec, r.Speedup, r.GenSpeedup)
	}
	fmt.Fprintf(tw, "dpo train\t%.1f pairs/s\t(%d pairs per update, %d tokens per sequence)\n", s.DPO.PairsPerSec, s.DPO.Batch, s.DPO.SeqTokens)
	return tw.Flush()
}
