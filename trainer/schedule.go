package trainer

import (
	"fmt"
	"math"
)

// Decay kinds for Schedule.Decay.
const (
	DecayCosine   = "cosine"
	DecayLinear   = "linear"
	DecayConstant = "constant"
)

// Schedule is the learning-rate schedule: a linear warmup from PeakLR/WarmupSteps up to
// PeakLR over the first WarmupSteps updates, then a cosine or linear decay to the floor
// PeakLR*MinLRRatio at TotalSteps (and the floor after it).
type Schedule struct {
	PeakLR      float64 `json:"peak_lr"`
	WarmupSteps int     `json:"warmup_steps"`
	TotalSteps  int     `json:"total_steps"`
	// MinLRRatio is the floor as a fraction of PeakLR, in [0,1].
	MinLRRatio float64 `json:"min_lr_ratio"`
	// Decay is "cosine" (the default when empty), "linear" or "constant".
	Decay string `json:"decay"`
}

// Validate rejects a schedule the trainer cannot follow, naming the field.
func (s Schedule) Validate() error {
	switch {
	case !(s.PeakLR > 0) || math.IsInf(s.PeakLR, 0):
		return fmt.Errorf("schedule: peak_lr must be a positive number, got %g", s.PeakLR)
	case s.WarmupSteps < 0:
		return fmt.Errorf("schedule: warmup_steps must be >= 0, got %d", s.WarmupSteps)
	case s.TotalSteps < 1:
		return fmt.Errorf("schedule: total_steps must be >= 1, got %d", s.TotalSteps)
	case !(s.MinLRRatio >= 0 && s.MinLRRatio <= 1):
		return fmt.Errorf("schedule: min_lr_ratio must be in [0,1], got %g", s.MinLRRatio)
	}
	switch s.Decay {
	case "", DecayCosine, DecayLinear, DecayConstant:
	default:
		return fmt.Errorf("schedule: decay %q is not one of %s, %s, %s", s.Decay, DecayCosine, DecayLinear, DecayConstant)
	}
	return nil
}

// LR is the learning rate of the update with 0-based index step (the update that takes
// the optimizer from step to step+1). Warmup counts from 1 so the first update is not
// wasted at learning rate 0: update i < WarmupSteps uses PeakLR*(i+1)/WarmupSteps.
func (s Schedule) LR(step int) float64 {
	if step < s.WarmupSteps {
		return s.PeakLR * float64(step+1) / float64(s.WarmupSteps)
	}
	floor := s.PeakLR * s.MinLRRatio
	span := s.TotalSteps - s.WarmupSteps
	if s.Decay == DecayConstant || span <= 0 {
		return s.PeakLR
	}
	progress := math.Min(1, float64(step-s.WarmupSteps)/float64(span))
	if s.Decay == DecayLinear {
		return s.PeakLR - (s.PeakLR-floor)*progress
	}
	return floor + (s.PeakLR-floor)*0.5*(1+math.Cos(math.Pi*progress))
}
