package sampling

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/inference"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/transformer"
)

// Result is what a run produced.
type Result struct {
	// Candidates are every sample of every prompt finished in this run, ordered by
	// prompt index then sample index, with rewards and selection flags.
	Candidates []Candidate `json:"candidates"`
	// Done are the ids of the prompts finished in this run, in input order.
	Done  []string `json:"done"`
	Stats Stats    `json:"stats"`
}

// Sampler runs rejection sampling from one policy, scored by one Scorer. It is not safe
// for concurrent use; it may run many times (its engine and scratch are reused).
type Sampler struct {
	eng    *inference.Engine
	cfg    transformer.Config
	pool   *kernels.Pool
	scorer Scorer
	opts   Options

	perTok int64 // KV bytes per token position

	// Parallel token drawing: per-worker samplers handed out by slot, and the rows of
	// the current draw.
	drawers  []*tokenSampler
	slot     atomic.Int32
	drawRows []drawRow
	drawFn   func(lo, hi int)
}

// drawRow is one token to draw: from logits, for a sample.
type drawRow struct {
	logits []float32
	s      *sample
	tok    int32
	err    error
}

// job is a prompt in flight.
type job struct {
	p        *Prompt
	prefixes []*inference.Prefix // one shared, or one per sample without sharing
	samples  []*sample
	left     int
	reserved int64
}

// sample is one sample being decoded.
type sample struct {
	j      *job
	index  int
	seq    *inference.Sequence
	prefix *inference.Prefix // the prefix it reads (shared or its own)
	rng    *rand.Rand
	tokens []int32
	finish string
}

// New prepares a sampler for policy (a causal LM) scored by scorer, with opts checked
// and defaulted once. A Sampler keeps its engine between runs; its engine copies the
// policy's weights, so build a new one after the policy changes.
func New(policy *transformer.Model, scorer Scorer, opts Options) (*Sampler, error) {
	if policy == nil || policy.W == nil {
		return nil, errors.New("sampling: nil policy model")
	}
	if scorer == nil {
		return nil, errors.New("sampling: nil scorer (give a reward model)")
	}
	o, err := opts.withDefaults(policy.Config.VocabSize)
	if err != nil {
		return nil, err
	}
	eng, err := inference.NewEngine(policy, inference.Options{MaxBatch: o.MaxBatch})
	if err != nil {
		return nil, fmt.Errorf("sampling: policy: %w", err)
	}
	s := &Sampler{eng: eng, cfg: policy.Config, pool: policy.Pool, scorer: scorer, opts: o,
		perTok: inference.KVBytesPerToken(policy.Config)}
	s.drawers = make([]*tokenSampler, policy.Pool.Workers())
	for i := range s.drawers {
		s.drawers[i] = newTokenSampler(policy.Config.VocabSize)
	}
	s.drawFn = s.drawWork
	return s, nil
}

// Options are the sampler's options with defaults filled in.
func (s *Sampler) Options() Options { return s.opts }

// PromptKVBytes is the KV memory admission reserves for prompt p: its prompt once plus
// K x MaxNewTokens (or K prompts without sharing).
// A scorer with a KV cache (PrefixScorer) needs its prompt plus K responses after
// generation; the larger of the two is reserved.
func (s *Sampler) PromptKVBytes(p *Prompt) int64 {
	o := &s.opts
	need := inference.RequestKVBytes(s.cfg, len(p.Tokens), o.K, o.Params.MaxNewTokens)
	if o.NoSharing {
		need = int64(o.K) * inference.RequestKVBytes(s.cfg, len(p.Tokens), 1, o.Params.MaxNewTokens)
	}
	if ks, ok := s.scorer.(kvScorer); ok {
		need = max(need, ks.KVBytesPerToken()*int64(len(p.Tokens)+o.K*o.Params.MaxNewTokens))
	}
	return need
}

// kvScorer is a Scorer that holds a KV cache of KVBytesPerToken per position scored
// (the prompt once, each response once) while it scores one prompt's samples.
type kvScorer interface {
	KVBytesPerToken() int64
}

// Run samples from the sampler's policy with opts' defaults; see (*Sampler).Run.
func Run(ctx context.Context, policy *transformer.Model, scorer Scorer, prompts []Prompt, opts Options) (*Result, error) {
	s, err := New(policy, scorer, opts)
	if err != nil {
		return nil, err
	}
	return s.Run(ctx, prompts)
}

// check validates every prompt before any work, naming the first bad one.
func (s *Sampler) check(todo []*Prompt) error {
	o := &s.opts
	seen := make(map[string]*Prompt, len(todo))
	for _, p := range todo {
		if q, dup := seen[p.ID]; dup {
			return fmt.Errorf("sampling: %s has the id of %s (ids seed the samples and must be unique)", p.name(), q.name())
		}
		seen[p.ID] = p
		if len(p.Tokens) == 0 {
			return fmt.Errorf("sampling: %s is empty", p.name())
		}
		if n := len(p.Tokens) + o.Params.MaxNewTokens; n > s.cfg.MaxPositionEmbeddings {
			return fmt.Errorf("sampling: %s has %d tokens; with max_new_tokens %d that exceeds max_position_embeddings=%d", p.name(), len(p.Tokens), o.Params.MaxNewTokens, s.cfg.MaxPositionEmbeddings)
		}
		for i, t := range p.Tokens {
			if t < 0 || int(t) >= s.cfg.VocabSize {
				return fmt.Errorf("sampling: %s: token %d at index %d is outside the vocabulary [0,%d)", p.name(), t, i, s.cfg.VocabSize)
			}
		}
		if lim, ok := s.scorer.(interface{ MaxLen() int }); ok && len(p.Tokens)+o.Params.MaxNewTokens > lim.MaxLen() {
			return fmt.Errorf("sampling: %s has %d tokens; with max_new_tokens %d its samples could exceed the reward model's limit of %d tokens", p.name(), len(p.Tokens), o.Params.MaxNewTokens, lim.MaxLen())
		}
		if need := s.PromptKVBytes(p); need > o.KVBudget {
			return fmt.Errorf("sampling: %s can never be admitted: its KV cache (%d prompt tokens + %d samples x %d new tokens) needs %d bytes, more than the budget of %d bytes", p.name(), len(p.Tokens), o.K, o.Params.MaxNewTokens, need, o.KVBudget)
		}
	}
	return nil
}

// Run samples K completions of every prompt not in Options.Done, scores them, and
// selects the kept ones. Prompts are admitted in order as KV memory frees; the samples
// of all admitted prompts decode together, MaxBatch rows per call. It stops between
// decode steps when ctx is cancelled and returns what finished so far with ctx's error.
func (s *Sampler) Run(ctx context.Context, prompts []Prompt) (*Result, error) {
	o := &s.opts
	res := &Result{}
	st := &res.Stats
	st.KVBudget = o.KVBudget
	todo := make([]*Prompt, 0, len(prompts))
	for i := range prompts {
		if o.Done[prompts[i].ID] {
			st.Skipped++
			continue
		}
		todo = append(todo, &prompts[i])
	}
	if err := s.check(todo); err != nil {
		return nil, err
	}
	start := time.Now()
	eng0 := s.eng.Stats()
	r := &run{s: s, res: res, start: start, total: len(prompts), lastProgress: start}
	err := r.loop(ctx, todo)
	r.release()
	// Prompts finish out of order when a later one's samples stop sooner.
	slices.SortStableFunc(res.Candidates, func(a, b Candidate) int {
		return cmp.Or(cmp.Compare(a.PromptIndex, b.PromptIndex), cmp.Compare(a.SampleIndex, b.SampleIndex))
	})
	index := make(map[string]int, len(prompts))
	for i := range prompts {
		index[prompts[i].ID] = prompts[i].Index
	}
	slices.SortStableFunc(res.Done, func(a, b string) int { return cmp.Compare(index[a], index[b]) })
	e := s.eng.Stats()
	st.PrefillTime = e.PrefillTime - eng0.PrefillTime
	st.DecodeTime = e.DecodeTime - eng0.DecodeTime
	st.DecodeTokens = e.DecodeTokens - eng0.DecodeTokens
	// Prefills are counted by the engine itself, not by this package's bookkeeping.
	st.Prefills = e.Prompts - eng0.Prompts
	st.PrefillTokens = e.PrefillTokens - eng0.PrefillTokens
	st.Wall = time.Since(start)
	if sec := st.Wall.Seconds(); sec > 0 {
		st.SamplesPerSec = float64(st.Samples) / sec
		st.TokensPerSec = float64(st.GeneratedTokens) / sec
	}
	if gen := (st.PrefillTime + st.DecodeTime + st.DrawTime).Seconds(); gen > 0 {
		st.GenTokensPerSec = float64(st.GeneratedTokens) / gen
	}
	return res, err
}

// run is the state of one Run.
type run struct {
	s     *Sampler
	res   *Result
	start time.Time
	total int

	lastProgress time.Time

	live []*sample // in admission order, so a prompt's samples are adjacent
	jobs []*job    // prompts decoding
	// pending are prompts whose samples all finished, waiting to be scored together.
	pending        []*job
	pendingSamples int
	reserved       int64 // bytes reserved by admitted prompts
	inUse          int64 // bytes of KV cache held
	seqs           []*inference.Sequence
	feed           []int32
}

func (r *run) loop(ctx context.Context, todo []*Prompt) error {
	s, o := r.s, &r.s.opts
	next := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Admit prompts in order while their worst-case KV memory fits the budget.
		for next < len(todo) && r.reserved+s.PromptKVBytes(todo[next]) <= o.KVBudget {
			if err := r.admit(ctx, todo[next]); err != nil {
				return err
			}
			next++
			if err := r.retire(ctx); err != nil {
				return err
			}
		}
		var upcoming *Prompt
		if next < len(todo) {
			upcoming = todo[next]
		}
		if len(r.live) == 0 {
			if err := r.maybeScore(ctx, upcoming); err != nil {
				return err
			}
			if next == len(todo) {
				return nil
			}
			continue // every admitted prompt finished on its first token; admit more
		}
		if err := r.step(); err != nil {
			return err
		}
		if err := r.retire(ctx); err != nil {
			return err
		}
		if err := r.maybeScore(ctx, upcoming); err != nil {
			return err
		}
		if o.Progress != nil && o.ProgressInterval > 0 && time.Since(r.lastProgress) >= o.ProgressInterval {
			r.progress("")
		}
	}
}

// progress reports a snapshot; last is the prompt that just finished ("" for none).
func (r *run) progress(last string) {
	st := &r.res.Stats
	el := time.Since(r.start)
	r.lastProgress = time.Now()
	r.s.opts.Progress(Progress{PromptsDone: st.Prompts + st.Skipped, PromptsTotal: r.total, Samples: st.Samples,
		SamplesPerSec: float64(st.Samples) / max(el.Seconds(), 1e-9), Elapsed: el, DecodeSteps: st.DecodeSteps, LastPromptID: last})
}

// admit prefills p (once, or once per sample without sharing), starts its K samples,
// and draws their first tokens from the prompt's logits.
func (r *run) admit(ctx context.Context, p *Prompt) error {
	s, o := r.s, &r.s.opts
	st := &r.res.Stats
	j := &job{p: p, left: o.K, reserved: s.PromptKVBytes(p), samples: make([]*sample, o.K)}
	r.jobs = append(r.jobs, j)
	r.reserved += j.reserved
	st.PeakReservedBytes = max(st.PeakReservedBytes, r.reserved)
	st.PeakPromptsInFlight = max(st.PeakPromptsInFlight, len(r.jobs))
	n := len(p.Tokens)
	seed := sampleSeed(o.Seed, p.ID)
	for k := range o.K {
		if k == 0 || o.NoSharing {
			pre, err := s.eng.Prefill(ctx, p.Tokens)
			if err != nil {
				return fmt.Errorf("sampling: %s: %w", p.name(), err)
			}
			j.prefixes = append(j.prefixes, pre)
			r.hold(int64(n) * s.perTok)
		} else {
			st.PrefillTokensSaved += int64(n)
		}
		pre := j.prefixes[len(j.prefixes)-1]
		capacity := o.Params.MaxNewTokens - 1 // the last token drawn is never fed
		seq, err := s.eng.NewSequence(pre, capacity)
		if err != nil {
			return fmt.Errorf("sampling: %s: %w", p.name(), err)
		}
		r.hold(int64(capacity) * s.perTok)
		sm := &sample{j: j, index: k, seq: seq, prefix: pre, tokens: make([]int32, 0, o.Params.MaxNewTokens),
			rng: rand.New(rand.NewPCG(seed, uint64(k)))}
		j.samples[k] = sm
		r.live = append(r.live, sm)
	}
	s.drawRows = s.drawRows[:0]
	for _, sm := range j.samples {
		s.drawRows = append(s.drawRows, drawRow{logits: sm.prefix.Logits(), s: sm})
	}
	return r.draw()
}

// hold adds bytes of KV cache in use and tracks the peak.
func (r *run) hold(b int64) {
	r.inUse += b
	r.res.Stats.PeakKVBytes = max(r.res.Stats.PeakKVBytes, r.inUse)
}

// step runs one decode step for every live sample, MaxBatch rows per call, drawing
// each chunk's tokens before the next call reuses the logits buffer.
func (r *run) step() error {
	s := r.s
	r.res.Stats.DecodeSteps++
	mb := s.eng.MaxBatch()
	// Samples that finished on their first token were retired by admit's caller; the
	// rest all have a last token to feed.
	for lo := 0; lo < len(r.live); lo += mb {
		chunk := r.live[lo:min(lo+mb, len(r.live))]
		r.seqs, r.feed = r.seqs[:0], r.feed[:0]
		for _, sm := range chunk {
			r.seqs = append(r.seqs, sm.seq)
			r.feed = append(r.feed, sm.tokens[len(sm.tokens)-1])
		}
		logits, err := s.eng.Decode(r.seqs, r.feed)
		if err != nil {
			return fmt.Errorf("sampling: decode: %w", err)
		}
		v := s.cfg.VocabSize
		s.drawRows = s.drawRows[:0]
		for i, sm := range chunk {
			s.drawRows = append(s.drawRows, drawRow{logits: logits[i*v : (i+1)*v], s: sm})
		}
		if err := r.draw(); err != nil {
			return err
		}
	}
	return nil
}

// draw draws the tokens of s.drawRows in parallel and appends them to their samples,
// marking samples that finished.
func (r *run) draw() error {
	s, o := r.s, &r.s.opts
	t0 := time.Now()
	s.slot.Store(0)
	if len(s.drawRows) == 1 {
		s.drawWork(0, 1)
	} else {
		s.pool.Parallel(len(s.drawRows), s.drawFn)
	}
	r.res.Stats.DrawTime += time.Since(t0)
	for i := range s.drawRows {
		d := &s.drawRows[i]
		sm := d.s
		if d.err != nil {
			return fmt.Errorf("sampling: %s sample %d token %d: %w", sm.j.p.name(), sm.index, len(sm.tokens), d.err)
		}
		sm.tokens = append(sm.tokens, d.tok)
		switch {
		case o.Params.isStop(d.tok):
			sm.finish = FinishStop
		case len(sm.tokens) >= o.Params.MaxNewTokens:
			sm.finish = FinishLength
		}
	}
	return nil
}

// drawWork draws rows [lo,hi) with one worker's sampler (run on the pool).
func (s *Sampler) drawWork(lo, hi int) {
	ts := s.drawers[s.slot.Add(1)-1]
	for i := lo; i < hi; i++ {
		d := &s.drawRows[i]
		d.tok, d.err = ts.draw(d.logits, &s.opts.Params, d.s.rng.Float64())
	}
}

// retire releases finished samples' caches and finishes prompts whose samples are all
// done: scoring, selection, callbacks.
func (r *run) retire(ctx context.Context) error {
	o := &r.s.opts
	kept := r.live[:0]
	for _, sm := range r.live {
		if sm.finish == "" {
			kept = append(kept, sm)
			continue
		}
		r.releaseSample(sm)
		sm.j.left--
	}
	clear(r.live[len(kept):])
	r.live = kept
	jobs := r.jobs[:0]
	for _, j := range r.jobs {
		if j.left > 0 {
			jobs = append(jobs, j)
			continue
		}
		if !o.NoSharing {
			r.releasePrefix(&j.prefixes[0])
		}
		// The job keeps its reservation until it is scored: a scorer with its own KV
		// cache (PrefixScorer) uses it once the policy's caches are freed.
		r.pending = append(r.pending, j)
		r.pendingSamples += len(j.samples)
	}
	clear(r.jobs[len(jobs):])
	r.jobs = jobs
	return nil
}

// maybeScore scores the pending prompts when that is due: once they fill a decode
// batch, when nothing else is decoding, or when their reservations are what keeps the
// next prompt out. Scoring several prompts at once fills the scorer's batches.
func (r *run) maybeScore(ctx context.Context, next *Prompt) error {
	if len(r.pending) == 0 {
		return nil
	}
	s := r.s
	due := len(r.live) == 0 || r.pendingSamples >= s.opts.MaxBatch
	if !due && next != nil {
		need := s.PromptKVBytes(next)
		var held int64
		for _, j := range r.pending {
			held += j.reserved
		}
		due = r.reserved+need > s.opts.KVBudget && r.reserved-held+need <= s.opts.KVBudget
	}
	if !due {
		return nil
	}
	return r.score(ctx)
}

func (r *run) releaseSample(sm *sample) {
	s := r.s
	if sm.seq == nil {
		return
	}
	s.eng.ReleaseSequence(sm.seq)
	sm.seq = nil
	r.inUse -= int64(s.opts.Params.MaxNewTokens-1) * s.perTok
	if s.opts.NoSharing {
		r.releasePrefix(&sm.prefix)
	}
}

// releasePrefix returns *pp's cache to the engine once and clears *pp, so no path can
// release a prefix twice.
func (r *run) releasePrefix(pp **inference.Prefix) {
	p := *pp
	if p == nil {
		return
	}
	if err := r.s.eng.ReleasePrefix(p); err == nil {
		r.inUse -= int64(p.Len()) * r.s.perTok
		*pp = nil
	}
}

// release frees every cache still held (after an error or cancellation).
func (r *run) release() {
	for _, sm := range r.live {
		r.releaseSample(sm)
	}
	r.live = r.live[:0]
	if !r.s.opts.NoSharing {
		for _, j := range r.jobs {
			r.releasePrefix(&j.prefixes[0])
		}
	}
	r.jobs = r.jobs[:0]
}

// score scores every pending prompt's samples in one Score call, then selects and
// reports each prompt and releases its reservation.
func (r *run) score(ctx context.Context) error {
	s := r.s
	st := &r.res.Stats
	var seqs []datasets.Sequence
	for _, j := range r.pending {
		for _, sm := range j.samples {
			seqs = append(seqs, datasets.Sequence{Prompt: j.p.Tokens, Response: sm.tokens})
		}
	}
	var scoreKV int64
	if ks, ok := s.scorer.(kvScorer); ok {
		for _, j := range r.pending {
			scoreKV += int64(len(j.p.Tokens))
		}
		for _, q := range seqs {
			scoreKV += int64(len(q.Response))
		}
		scoreKV *= ks.KVBytesPerToken()
	}
	r.hold(scoreKV)
	t0 := time.Now()
	rewards, err := s.scorer.Score(ctx, seqs)
	st.ScoreTime += time.Since(t0)
	r.inUse -= scoreKV
	if err == nil && len(rewards) != len(seqs) {
		err = fmt.Errorf("the scorer returned %d rewards for %d samples", len(rewards), len(seqs))
	}
	if err != nil {
		return fmt.Errorf("sampling: score %d samples of %s...: %w", len(seqs), r.pending[0].p.name(), err)
	}
	jobs := r.pending
	r.pending, r.pendingSamples = nil, 0
	off := 0
	for _, j := range jobs {
		r.reserved -= j.reserved
		if err := r.finish(j, rewards[off:off+len(j.samples)]); err != nil {
			return err
		}
		off += len(j.samples)
	}
	return nil
}

// finish selects a scored prompt's candidates and reports them.
func (r *run) finish(j *job, rewards []float64) error {
	o := &r.s.opts
	st := &r.res.Stats
	cands := make([]Candidate, len(j.samples))
	for k, sm := range j.samples {
		c := Candidate{PromptID: j.p.ID, PromptIndex: j.p.Index, SampleIndex: k, Tokens: sm.tokens,
			Reward: rewards[k], FinishReason: sm.finish}
		if o.Tokenizer != nil {
			body := sm.tokens
			if c.FinishReason == FinishStop {
				body = body[:len(body)-1]
			}
			c.Text = o.Tokenizer.Decode(body)
		}
		if o.Verifier != nil {
			if ok, checked := o.Verifier(j.p, &c); checked {
				c.Verified = &ok
				if ok {
					st.VerifiedSamples++
				} else {
					st.RejectedSamples++
				}
			}
		}
		cands[k] = c
		st.Samples++
		st.GeneratedTokens += int64(len(sm.tokens))
		if sm.finish == FinishStop {
			st.StoppedSamples++
		} else {
			st.TruncatedSamples++
		}
	}
	st.Selected += Select(cands, o.Select)
	st.Prompts++
	r.res.Candidates = append(r.res.Candidates, cands...)
	r.res.Done = append(r.res.Done, j.p.ID)
	if o.OnPrompt != nil {
		if err := o.OnPrompt(j.p, cands); err != nil {
			return fmt.Errorf("sampling: %s: %w", j.p.name(), err)
		}
	}
	if o.Progress != nil {
		r.progress(j.p.ID)
	}
	return nil
}
