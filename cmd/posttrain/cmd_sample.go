package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/inference/textio"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/reward"
	"github.com/posttrain/posttrain/sampling"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/transformer"
)

// sampleOptions are `posttrain sample`'s flags.
type sampleOptions struct {
	policy, rewardModel, prompts, out, candidates string
	kvBudget, verify                              string
	systems                                       []string
	k, topK, maxNew, topN, shards, shard, threads int
	maxBatch, scoreBatch, round                   int
	temperature, topP, minReward                  float64
	dedup, keepTruncated, noSharing, rmCache      bool
	minRewardSet                                  bool
	seed                                          uint64
}

// sampleSummary is `posttrain sample --json`'s output.
type sampleSummary struct {
	Prompts    int    `json:"prompts"`
	Shard      int    `json:"shard"`
	Shards     int    `json:"shards"`
	Selected   int    `json:"selected"`
	Out        string `json:"out"`
	Candidates string `json:"candidates,omitempty"`
	// Verify is the --verify mode; Stats counts the verified and rejected samples.
	Verify string         `json:"verify"`
	Stats  sampling.Stats `json:"stats"`
}

// newSampleCmd runs rejection sampling: K samples per prompt from a policy, scored by a
// reward model, best kept for SFT.
func newSampleCmd(g *globalOptions) *cobra.Command {
	var o sampleOptions
	cmd := &cobra.Command{
		Use:   "sample --policy DIR --reward-model DIR --prompts FILE --out FILE [flags]",
		Short: "Rejection sampling: K samples per prompt, scored by a reward model, best kept for SFT",
		Long: `Rejection sampling as in Llama 3: for every prompt, draw --k samples from the policy,
score each with the reward model, and keep the best (--top-n, --min-reward, --dedup).

Each prompt is prefilled once and its KV cache is shared by all K samples. A prompt is
admitted only when its KV cache (prompt + K x --max-new-tokens positions) fits the
--kv-budget next to the prompts already in flight, so nothing is evicted or recomputed;
the samples of all admitted prompts decode together in one batch. Scoring shares the
prompt too (--rm-kv-cache): the reward model runs each prompt once, then the K
responses, inside the same budget.

Prompts (--prompts) are JSONL rows: {"prompt": "text"}, {"prompt": [messages]},
{"messages": [...]} or {"prompt_ids": [...]}, with an optional "id". Text prompts are
rendered with the policy's chat template (tokenizer.json in --policy); --system adds a
system prompt to those that have none (repeat --system to spread several over the
prompts, chosen by prompt id). Pre-tokenized prompts are used exactly as given.

--out gets the selected samples as SFT rows that 'posttrain sft train' reads:
{"prompt", "completion", "reward", ...} for text prompts (the prompt as messages when a
system prompt was added), {"prompt_ids", "completion_ids", ...} for pre-tokenized ones.
--candidates gets every sample: prompt id, sample index, token ids, text, reward, finish
reason (stop or length), the --verify verdict ("verified", when checked) and whether it
was selected.

--verify answer checks samples against the rows' optional reference answer ({"prompt":
"2+2?", "answer": "4"}): a sample whose text, white space trimmed, differs from the
trimmed answer is never selected, so a prompt with no correct sample contributes
nothing; the reward model ranks the correct ones. Rows without an answer are not
checked, but at least one row of the file must have one, and the policy needs its
tokenizer.json (samples are compared as text). --verify none (the default) lets the
reward model alone select.

Flags not given take their values from the pipeline config's sampling section (the
--preset, the --config file, POSTTRAIN_* variables and --set, e.g. --set
sampling.k=30): k, temperature, top_p, top_k, max_new_tokens, kv_budget_bytes (0: no
limit), batch_size (--score-batch), top_n, min_reward, dedup, verify, and with --round
the round's system prompt. A flag given on the command line wins.

Samples are reproducible: each sample's RNG derives from (--seed, prompt id, sample
index), so --shards N --shard I (contiguous blocks of the prompt list, for separate
workers) together produce exactly the samples of one unsharded run.`,
		Example: `  posttrain sample --policy dpo1 --reward-model rm2 --prompts prompts.jsonl --k 16 --out selected.jsonl
  posttrain sample --policy dpo1 --reward-model rm2 --prompts prompts.jsonl --k 30 --top-p 0.9 \
      --temperature 0.8 --kv-budget 64MiB --system "Answer concisely." --dedup --top-n 2 \
      --out selected.jsonl --candidates all.jsonl --json
  posttrain sample ... --shards 4 --shard 2 --out selected-2.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSample(cmd, g, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.policy, "policy", "", "policy checkpoint directory (causal LM; tokenizer.json for text prompts)")
	f.StringVar(&o.rewardModel, "reward-model", "", "reward model checkpoint directory (LlamaForSequenceClassification)")
	f.StringVar(&o.prompts, "prompts", "", "prompts JSONL file")
	f.StringVar(&o.out, "out", "", "output JSONL of the selected samples as SFT rows")
	f.StringVar(&o.candidates, "candidates", "", "optional output JSONL of every sample with its reward")
	f.IntVar(&o.k, "k", sampling.DefaultK, "samples per prompt (the recipe uses 10-30)")
	f.Float64Var(&o.temperature, "temperature", 1, "softmax temperature (0 = greedy)")
	f.Float64Var(&o.topP, "top-p", 1, "nucleus sampling: keep the most likely tokens up to this probability (1 = off)")
	f.IntVar(&o.topK, "top-k", 0, "keep only the K most likely tokens (0 = off)")
	f.IntVar(&o.maxNew, "max-new-tokens", 128, "most tokens per sample")
	f.StringVar(&o.kvBudget, "kv-budget", fmt.Sprintf("%dMiB", sampling.DefaultKVBudget>>20), "KV cache budget for the prompts in flight: bytes, or with a unit (64MiB, 1GiB); 0 or unlimited for none")
	f.IntVar(&o.maxBatch, "max-batch", sampling.DefaultMaxBatch, "most sequences per decode call")
	f.IntVar(&o.scoreBatch, "score-batch", reward.DefaultScoreBatch, "sequences per reward-model forward pass (with --rm-kv-cache=false)")
	f.StringArrayVar(&o.systems, "system", nil, "system prompt for text prompts without one (repeatable: spread over prompts by id)")
	f.IntVar(&o.round, "round", 0, "pipeline round (1-based): without --system, use the config's sampling.system_prompts entry for it")
	f.IntVar(&o.topN, "top-n", 1, "keep the N best samples per prompt")
	f.Float64Var(&o.minReward, "min-reward", 0, "drop samples whose reward is below this (unset = keep all)")
	f.BoolVar(&o.dedup, "dedup", false, "identical completions count once when selecting")
	f.StringVar(&o.verify, "verify", configs.VerifyNone, "check samples before selection: none, or answer (drop samples whose text is not the row's \"answer\")")
	f.BoolVar(&o.keepTruncated, "keep-truncated", false, "allow samples cut at --max-new-tokens to be selected")
	f.BoolVar(&o.noSharing, "no-sharing", false, "prefill the prompt once per sample and score with a full forward pass (the baseline: same samples, slower)")
	f.BoolVar(&o.rmCache, "rm-kv-cache", true, "score through the reward model's KV cache, running each prompt once (false: a full forward pass per sample)")
	f.Uint64Var(&o.seed, "seed", 1, "run seed")
	f.IntVar(&o.shards, "shards", 1, "split the prompts into this many shards")
	f.IntVar(&o.shard, "shard", 0, "the shard to run, in [0, --shards)")
	f.IntVar(&o.threads, "threads", 0, "worker threads (0 = GOMAXPROCS)")
	for _, name := range []string{"policy", "reward-model", "prompts", "out"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func runSample(cmd *cobra.Command, g *globalOptions, o *sampleOptions) error {
	ctx := cmd.Context()
	if err := rsApplyConfig(g, cmd.Flags(), o); err != nil {
		return err
	}
	budget := int64(-1) // no limit
	if o.kvBudget != "0" && !strings.EqualFold(o.kvBudget, "unlimited") {
		b, err := sampling.ParseByteSize(o.kvBudget)
		if err != nil {
			return fmt.Errorf("--kv-budget: %w", err)
		}
		budget = b
	}
	if o.k < 1 {
		return fmt.Errorf("--k must be >= 1, got %d", o.k)
	}
	if o.topN < 1 {
		return fmt.Errorf("--top-n must be >= 1, got %d", o.topN)
	}
	if o.verify != configs.VerifyNone && o.verify != configs.VerifyAnswer {
		return fmt.Errorf("--verify must be %s or %s, got %q", configs.VerifyNone, configs.VerifyAnswer, o.verify)
	}
	rows, err := datasets.ReadPromptsFile(o.prompts, datasets.ReadOptions{})
	if err != nil {
		return err
	}
	verifier, err := rsVerifier(o.verify, o.prompts, rows)
	if err != nil {
		return err
	}
	if _, err := sampling.Shard(rows, o.shards, o.shard); err != nil {
		return fmt.Errorf("--shards/--shard: %w", err)
	}
	threads := o.threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	pool := kernels.NewPool(threads)
	defer pool.Close()
	policy, tok, err := rsLoadPolicy(ctx, o.policy, pool)
	if err != nil {
		return err
	}
	if verifier != nil && tok == nil {
		// Without a tokenizer samples have no text, so every checked sample would fail.
		return fmt.Errorf("--verify answer compares sample text, but --policy %s has no %s", o.policy, checkpoint.TokenizerFile)
	}
	rm, err := checkpoint.Load(ctx, o.rewardModel, pool)
	if err != nil {
		return err
	}
	if !rm.Config.IsSequenceClassifier() {
		return fmt.Errorf("--reward-model %s is a %v, not a reward model (%s)", o.rewardModel, rm.Config.Architectures, transformer.ArchSequenceClassifier)
	}
	if rm.Config.VocabSize < policy.Config.VocabSize {
		return fmt.Errorf("--reward-model %s has vocab_size %d, smaller than the policy's %d: they must share a tokenizer", o.rewardModel, rm.Config.VocabSize, policy.Config.VocabSize)
	}
	// Encode the whole file before sharding, so prompt ids and indices (and with them
	// seeds and output rows) are the same whichever shard a prompt lands in.
	all, err := sampling.EncodePrompts(rows, datasets.Encoder{Tok: tok}, o.systems)
	if err != nil {
		return fmt.Errorf("%s: %w", o.prompts, err)
	}
	prompts, err := sampling.Shard(all, o.shards, o.shard)
	if err != nil {
		return fmt.Errorf("--shards/--shard: %w", err)
	}
	var scorer sampling.Scorer
	if o.rmCache && !o.noSharing {
		scorer, err = sampling.NewPrefixScorer(rm, o.maxBatch)
	} else {
		scorer, err = reward.NewScorer(rm, max(o.scoreBatch, 1), 0)
	}
	if err != nil {
		return err
	}
	topP := o.topP
	if topP == 1 {
		topP = 0
	}
	opts := sampling.Options{
		K: o.k, Seed: o.seed, KVBudget: budget, MaxBatch: o.maxBatch, NoSharing: o.noSharing, Tokenizer: tok,
		Params: sampling.Params{Temperature: o.temperature, TopP: topP, TopK: o.topK, MaxNewTokens: o.maxNew,
			StopTokens: textio.StopTokens(tok, policy.Config)},
		Select:   sampling.Selection{TopN: o.topN, Dedup: o.dedup, KeepTruncated: o.keepTruncated},
		Verifier: verifier,
	}
	if o.minRewardSet || cmd.Flags().Changed("min-reward") {
		opts.Select.MinReward = &o.minReward
	}
	bar := progressbar.NewOptions(len(prompts),
		progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSetDescription(fmt.Sprintf("sampling K=%d", o.k)),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(cmd.ErrOrStderr()) }),
	)
	opts.Progress = func(p sampling.Progress) {
		bar.Describe(fmt.Sprintf("sampling K=%d, %.1f samples/s", o.k, p.SamplesPerSec))
		_ = bar.Set(p.PromptsDone)
	}
	res, err := sampling.Run(ctx, policy, scorer, prompts, opts)
	_ = bar.Exit()
	if err != nil {
		return err
	}
	var selected int
	if err := rsWriteAtomic(o.out, func(w io.Writer) error {
		selected, err = sampling.WriteSelected(w, prompts, res.Candidates)
		return err
	}); err != nil {
		return err
	}
	if o.candidates != "" {
		if err := rsWriteAtomic(o.candidates, func(w io.Writer) error { return sampling.WriteCandidates(w, res.Candidates) }); err != nil {
			return err
		}
	}
	sum := sampleSummary{Prompts: len(prompts), Shard: o.shard, Shards: o.shards, Selected: selected,
		Out: o.out, Candidates: o.candidates, Verify: o.verify, Stats: res.Stats}
	if g.jsonOut {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	rsPrintSummary(cmd.OutOrStdout(), sum)
	return nil
}

// rsApplyConfig fills the flags the command line left unset from the pipeline config's
// sampling section (preset < --config file < POSTTRAIN_* env < --set), as the other
// stage commands do.
func rsApplyConfig(g *globalOptions, f *pflag.FlagSet, o *sampleOptions) error {
	c, err := configs.Load(configs.Sources{Preset: g.preset, File: g.configFile, Sets: g.sets})
	if err != nil {
		return err
	}
	sc := c.Sampling
	unset := func(name string) bool { return !f.Changed(name) }
	if unset("k") && sc.K > 0 {
		o.k = sc.K
	}
	if unset("temperature") {
		o.temperature = sc.Temperature
	}
	if unset("top-p") && sc.TopP > 0 {
		o.topP = sc.TopP
	}
	if unset("top-k") {
		o.topK = sc.TopK
	}
	if unset("max-new-tokens") && sc.MaxNewTokens > 0 {
		o.maxNew = sc.MaxNewTokens
	}
	if unset("kv-budget") {
		o.kvBudget = strconv.FormatInt(sc.KVBudgetBytes, 10) // 0: no limit, as in the config
	}
	if unset("score-batch") && sc.BatchSize > 0 {
		o.scoreBatch = sc.BatchSize
	}
	if unset("top-n") && sc.TopN > 0 {
		o.topN = sc.TopN
	}
	if unset("min-reward") && sc.MinReward != nil {
		o.minReward = *sc.MinReward
		o.minRewardSet = true
	}
	if unset("dedup") {
		o.dedup = sc.Dedup
	}
	if unset("verify") && sc.Verify != "" {
		o.verify = sc.Verify
	}
	if unset("system") && o.round > 0 {
		if sys := sc.SystemPrompt(o.round); sys != "" {
			o.systems = []string{sys}
		}
	}
	if unset("threads") && c.Trainer.Threads > 0 {
		o.threads = c.Trainer.Threads
	}
	return nil
}

// rsVerifier returns the --verify check (nil for none). With answer, a candidate of a
// row with a reference answer passes when its trimmed text is the trimmed answer; rows
// without one are not checked. A file with no answer at all is an error, since every
// sample would go unchecked and the flag would silently do nothing.
func rsVerifier(mode, file string, rows []datasets.Prompt) (sampling.Verifier, error) {
	if mode != configs.VerifyAnswer {
		return nil, nil
	}
	if !slices.ContainsFunc(rows, func(r datasets.Prompt) bool { return r.Answer != "" }) {
		return nil, fmt.Errorf("%s: --verify answer needs rows with an \"answer\" field; none has one", file)
	}
	return sampling.AnswerVerifier(func(p *sampling.Prompt) string { return p.Source.Answer }), nil
}

// rsLoadPolicy loads a causal LM and its tokenizer (nil without tokenizer.json).
func rsLoadPolicy(ctx context.Context, dir string, pool *kernels.Pool) (*transformer.Model, *tokenizer.Tokenizer, error) {
	m, err := checkpoint.Load(ctx, dir, pool)
	if err != nil {
		return nil, nil, err
	}
	if m.Config.IsSequenceClassifier() {
		return nil, nil, fmt.Errorf("--policy %s is a reward model (%s); sampling needs a causal LM", dir, transformer.ArchSequenceClassifier)
	}
	if _, ok := checkpoint.TokenizerPath(dir); !ok {
		return m, nil, nil
	}
	tok, err := tokenizer.LoadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	if tok.VocabSize() > m.Config.VocabSize {
		return nil, nil, fmt.Errorf("--policy %s: tokenizer.json has %d tokens but vocab_size is %d", dir, tok.VocabSize(), m.Config.VocabSize)
	}
	return m, tok, nil
}

// rsWriteAtomic writes path through a temporary file renamed into place, so a failed or
// interrupted run never leaves a half-written output.
func rsWriteAtomic(path string, write func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return errors.Join(fmt.Errorf("write %s: %w", path, err), os.Remove(tmp.Name()))
	}
	return nil
}

func rsPrintSummary(w io.Writer, s sampleSummary) {
	st := s.Stats
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	row("prompts", "%d (shard %d of %d, %d skipped)", s.Prompts, s.Shard, s.Shards, st.Skipped)
	row("samples", "%d (%d stopped, %d truncated)", st.Samples, st.StoppedSamples, st.TruncatedSamples)
	row("selected", "%d -> %s", s.Selected, s.Out)
	if s.Verify == configs.VerifyAnswer {
		row("verified", "%d right, %d wrong (never selected), %d unchecked", st.VerifiedSamples, st.RejectedSamples,
			st.Samples-st.VerifiedSamples-st.RejectedSamples)
	}
	if s.Candidates != "" {
		row("candidates", "%d -> %s", st.Samples, s.Candidates)
	}
	row("throughput", "%.1f samples/s, %.0f tokens/s", st.SamplesPerSec, st.TokensPerSec)
	row("prefill tokens", "%d computed, %d saved by sharing", st.PrefillTokens, st.PrefillTokensSaved)
	row("peak KV cache", "%s of %s budget (%d prompts in flight at most)", sampling.FormatBytes(st.PeakKVBytes), sampling.FormatBytes(st.KVBudget), st.PeakPromptsInFlight)
	row("time", "prefill %s, decode %s, draw %s, score %s, total %s",
		st.PrefillTime.Round(time.Millisecond), st.DecodeTime.Round(time.Millisecond), st.DrawTime.Round(time.Millisecond),
		st.ScoreTime.Round(time.Millisecond), st.Wall.Round(time.Millisecond))
	_ = tw.Flush()
}
