package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/posttrain/posttrain/trainer"
)

// stageRunFlags points at a training stage's run settings that its train command sets
// from the same flags (sft, dpo and reward train).
type stageRunFlags struct {
	out             *string
	resume          *bool
	steps, accum    *int
	checkpointEvery *int
}

// add registers --out, --resume, --steps, --accum and --checkpoint-every. saved names
// what a checkpoint holds besides the trainer state ("model", "policy"); resumeHelp
// describes --resume.
func (s stageRunFlags) add(f *pflag.FlagSet, saved, resumeHelp string) {
	f.StringVar(s.out, "out", "", fmt.Sprintf("output directory for checkpoints (%s + trainer state)", saved))
	f.BoolVar(s.resume, "resume", false, resumeHelp)
	f.IntVar(s.steps, "steps", *s.steps, "total optimizer steps")
	f.IntVar(s.accum, "accum", *s.accum, "micro-batches accumulated per step")
	f.IntVar(s.checkpointEvery, "checkpoint-every", 0, "save every N steps (0: only at the end)")
}

// addStageOptimFlags registers the learning-rate schedule and AdamW flags of a training
// stage.
func addStageOptimFlags(f *pflag.FlagSet, s *trainer.Schedule, a *trainer.AdamWConfig) {
	f.Float64Var(&s.PeakLR, "lr", s.PeakLR, "peak learning rate")
	f.IntVar(&s.WarmupSteps, "warmup", s.WarmupSteps, "linear warmup steps")
	f.Float64Var(&s.MinLRRatio, "min-lr-ratio", s.MinLRRatio, "final learning rate as a fraction of --lr")
	f.StringVar(&s.Decay, "decay", s.Decay, "learning-rate decay after warmup: cosine, linear or constant")
	f.Float64Var(&a.WeightDecay, "weight-decay", a.WeightDecay, "decoupled weight decay (2-D weights only)")
	f.Float64Var(&a.ClipNorm, "clip", a.ClipNorm, "global gradient-norm clip (0 disables)")
}

// finishStage is what a train command returns once its stage stopped with runErr: the
// summary is printed (by print) when the run succeeded or made progress before failing,
// and a print failure is reported when the run itself succeeded.
func finishStage(runErr error, progressed bool, print func() error) error {
	if runErr == nil || progressed {
		if perr := print(); perr != nil && runErr == nil {
			return perr
		}
	}
	return runErr
}
