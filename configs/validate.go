package configs

import (
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/posttrain/posttrain/datastore"
)

// FieldError is one invalid field: its dotted path, why it is invalid, and which source
// set it last.
type FieldError struct {
	Path   string
	Reason string
	Source string
}

func (e FieldError) Error() string {
	if e.Source == "" {
		return e.Path + ": " + e.Reason
	}
	return fmt.Sprintf("%s: %s (set by %s)", e.Path, e.Reason, e.Source)
}

// ValidationError lists every invalid field of a config.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	if len(e.Fields) == 1 {
		return "invalid config: " + e.Fields[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid config (%d errors):", len(e.Fields))
	for _, f := range e.Fields {
		b.WriteString("\n  " + f.Error())
	}
	return b.String()
}

// SizePresets returns the transformer size presets model.size accepts (a copy of the
// transformer package's names, kept here so configs does not import the engine).
func SizePresets() []string { return []string{"bench", "small", "tiny"} }

// checker collects field errors.
type checker struct {
	origins map[string]string
	errs    []FieldError
}

func (c *checker) fail(path, format string, args ...any) {
	src := c.origins[path] // "" for a Config built in code
	c.errs = append(c.errs, FieldError{Path: path, Reason: fmt.Sprintf(format, args...), Source: src})
}

func (c *checker) atLeast(path string, v, lo int64) {
	if v < lo {
		c.fail(path, "must be >= %d, got %d", lo, v)
	}
}

func (c *checker) positive(path string, v float64) {
	if !(v > 0) {
		c.fail(path, "must be > 0, got %g", v)
	}
}

func (c *checker) inRange(path string, v, lo, hi float64) {
	if !(v >= lo && v <= hi) {
		c.fail(path, "must be in [%g, %g], got %g", lo, hi, v)
	}
}

func (c *checker) oneOf(path, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		c.fail(path, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
	}
}

func (c *checker) nonEmpty(path, v string) {
	if strings.TrimSpace(v) == "" {
		c.fail(path, "must not be empty")
	}
}

// stepsOrEpochs checks a stage's training length.
func (c *checker) stepsOrEpochs(stage string, steps, epochs int) {
	c.atLeast(stage+".steps", int64(steps), 0)
	c.atLeast(stage+".epochs", int64(epochs), 0)
	if steps == 0 && epochs == 0 {
		c.fail(stage+".steps", "one of %s.steps or %s.epochs must be > 0", stage, stage)
	}
}

// averaging checks a stage's variants and how they are averaged.
func (c *checker) averaging(stage string, variants int, method string, weights []float64) {
	c.atLeast(stage+".variants", int64(variants), 1)
	c.oneOf(stage+".averaging", method, AverageUniform, AverageWeighted, AverageGreedy)
	wpath := stage + ".average_weights"
	if method == AverageWeighted && len(weights) == 0 {
		c.fail(wpath, "must list one weight per variant when %s.averaging is weighted", stage)
		return
	}
	if len(weights) == 0 {
		return
	}
	if len(weights) != variants {
		c.fail(wpath, "has %d weights but %s.variants is %d", len(weights), stage, variants)
	}
	sum := 0.0
	for i, w := range weights {
		if w < 0 {
			c.fail(wpath, "weight %d is %g; weights must be >= 0", i, w)
		}
		sum += w
	}
	if !(sum > 0) {
		c.fail(wpath, "weights must sum to > 0")
	}
}

// validate checks every field; origins says which source set each key.
func (c *Config) validate(origins map[string]string) error {
	k := &checker{origins: origins}
	k.atLeast("rounds", int64(c.Rounds), 1)
	k.nonEmpty("data_dir", c.DataDir)

	k.oneOf("model.size", c.Model.Size, SizePresets()...)
	k.atLeast("model.max_seq_len", int64(c.Model.MaxSeqLen), 8)

	k.atLeast("task.train_prompts", int64(c.Task.TrainPrompts), 1)
	k.atLeast("task.eval_prompts", int64(c.Task.EvalPrompts), 1)
	k.atLeast("task.sft_seed_examples", int64(c.Task.SFTSeedExamples), 0)

	t := c.Trainer
	k.atLeast("trainer.warmup_steps", int64(t.WarmupSteps), 0)
	k.oneOf("trainer.schedule", t.Schedule, "cosine", "linear", "constant")
	k.inRange("trainer.min_lr_ratio", t.MinLRRatio, 0, 1)
	k.inRange("trainer.weight_decay", t.WeightDecay, 0, math.MaxFloat64)
	k.inRange("trainer.grad_clip", t.GradClip, 0, math.MaxFloat64)
	k.atLeast("trainer.grad_accum", int64(t.GradAccum), 1)
	k.atLeast("trainer.checkpoint_every", int64(t.CheckpointEvery), 0)
	k.atLeast("trainer.threads", int64(t.Threads), 0)

	r := c.Reward
	k.oneOf("reward.init", r.Init, "base", "previous")
	k.positive("reward.lr", r.LR)
	k.stepsOrEpochs("reward", r.Steps, r.Epochs)
	k.atLeast("reward.batch_size", int64(r.BatchSize), 1)
	k.inRange("reward.centering_eta", r.CenteringEta, 0, math.MaxFloat64)
	if !(r.SimilarityThreshold > 0 && r.SimilarityThreshold <= 1) {
		k.fail("reward.similarity_threshold", "must be in (0, 1], got %g", r.SimilarityThreshold)
	}
	k.averaging("reward", r.Variants, r.Averaging, r.AverageWeights)

	s := c.Sampling
	k.oneOf("sampling.policy", s.Policy, "previous", "base")
	k.atLeast("sampling.k", int64(s.K), 1)
	k.positive("sampling.temperature", s.Temperature)
	if !(s.TopP > 0 && s.TopP <= 1) {
		k.fail("sampling.top_p", "must be in (0, 1], got %g", s.TopP)
	}
	k.atLeast("sampling.top_k", int64(s.TopK), 0)
	k.atLeast("sampling.max_new_tokens", int64(s.MaxNewTokens), 1)
	k.atLeast("sampling.kv_budget_bytes", s.KVBudgetBytes, 0)
	k.atLeast("sampling.shards", int64(s.Shards), 1)
	k.atLeast("sampling.batch_size", int64(s.BatchSize), 1)
	k.atLeast("sampling.top_n", int64(s.TopN), 1)
	if s.K >= 1 && s.TopN > s.K {
		k.fail("sampling.top_n", "must be <= sampling.k (%d), got %d", s.K, s.TopN)
	}
	k.atLeast("sampling.prompts_per_round", int64(s.PromptsPerRound), 0)
	k.oneOf("sampling.verify", s.Verify, VerifyNone, VerifyAnswer)

	f := c.SFT
	k.oneOf("sft.init", f.Init, "base", "previous")
	k.positive("sft.lr", f.LR)
	k.stepsOrEpochs("sft", f.Steps, f.Epochs)
	k.atLeast("sft.batch_size", int64(f.BatchSize), 1)
	k.oneOf("sft.train_on", f.TrainOn, TrainOnAll, TrainOnLast)
	k.oneOf("sft.data", f.Data, SFTDataRound, SFTDataAllRounds)
	k.averaging("sft", f.Variants, f.Averaging, f.AverageWeights)

	d := c.DPO
	k.oneOf("dpo.init", d.Init, "sft", "base", "previous")
	k.oneOf("dpo.reference", d.Reference, "sft", "base", "previous")
	k.positive("dpo.lr", d.LR)
	k.stepsOrEpochs("dpo", d.Steps, d.Epochs)
	k.atLeast("dpo.batch_size", int64(d.BatchSize), 1)
	k.positive("dpo.beta", d.Beta)
	k.inRange("dpo.nll_coef", d.NLLCoef, 0, math.MaxFloat64)
	k.oneOf("dpo.nll_norm", d.NLLNorm, NLLPerSequenceMean, NLLBatchTokenMean, NLLPerSequenceSum)
	for i, id := range d.FormattingTokenIDs {
		if id < 0 {
			k.fail("dpo.formatting_token_ids", "item %d is %d; token ids are >= 0", i, id)
		}
	}
	k.averaging("dpo", d.Variants, d.Averaging, d.AverageWeights)

	k.atLeast("eval.prompts", int64(c.Eval.Prompts), 0)
	k.atLeast("eval.max_new_tokens", int64(c.Eval.MaxNewTokens), 1)

	a := c.Annotator
	k.oneOf("annotator.kind", a.Kind, AnnotatorSimulated, AnnotatorFile, AnnotatorHuman)
	k.inRange("annotator.noise", a.Noise, 0, 1)
	k.inRange("annotator.bias", a.Bias, -1, 1)
	if a.Kind == AnnotatorFile && strings.TrimSpace(a.File) == "" {
		k.fail("annotator.file", "must name a JSONL file when annotator.kind is file")
	}
	k.atLeast("annotator.prompts_per_round", int64(a.PromptsPerRound), 0)

	if c.Datastore.URL != "" {
		if _, err := pgconn.ParseConfig(c.Datastore.URL); err != nil {
			k.fail("datastore.url", "is not a PostgreSQL DSN (%s)", datastore.RedactDSN(c.Datastore.URL))
		}
	}
	k.atLeast("datastore.max_conns", int64(c.Datastore.MaxConns), 1)

	k.oneOf("artifacts.backend", c.Artifacts.Backend, BackendFS, BackendPostgres)

	tc := c.Temporal
	if host, port, err := net.SplitHostPort(tc.Address); err != nil || host == "" {
		k.fail("temporal.address", "must be host:port, got %q", tc.Address)
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		k.fail("temporal.address", "port must be 1-65535, got %q", port)
	}
	k.nonEmpty("temporal.namespace", tc.Namespace)
	k.nonEmpty("temporal.task_queue", tc.TaskQueue)
	if tc.UIPort < 0 || tc.UIPort > 65535 {
		k.fail("temporal.ui_port", "must be 0 (no UI) or 1-65535, got %d", tc.UIPort)
	}
	k.atLeast("temporal.max_concurrent_activities", int64(tc.MaxConcurrentActivities), 1)

	if len(k.errs) > 0 {
		return &ValidationError{Fields: k.errs}
	}
	return nil
}

// Validate checks a Config built in code (not through Load), naming each invalid field.
func (c *Config) Validate() error { return c.validate(nil) }
