// Package configs owns posttrain's one typed configuration: the pipeline's rounds, the
// model, every stage's hyper-parameters, the annotator, the datastore, the artifact
// store and Temporal. Load layers the embedded YAML presets, a --config file, POSTTRAIN_*
// environment variables and --set flags (in that order) with viper, rejects unknown keys
// and ill-typed values naming the key and where it came from, and validates the result
// naming the field path and the reason.
package configs

// Config is the whole pipeline configuration. Keys are the json tags; presets, files,
// environment variables (POSTTRAIN_<SECTION>_<KEY>) and --set flags all use them.
type Config struct {
	// Rounds is the number of post-training rounds (Llama 3 ran six).
	Rounds int `json:"rounds" yaml:"rounds"`
	// DataDir holds local state: the artifact store root by default, the dev Temporal
	// SQLite file, a private PostgreSQL cluster.
	DataDir   string          `json:"data_dir" yaml:"data_dir"`
	Model     ModelConfig     `json:"model" yaml:"model"`
	Task      TaskConfig      `json:"task" yaml:"task"`
	Datasets  DatasetsConfig  `json:"datasets" yaml:"datasets"`
	Trainer   TrainerConfig   `json:"trainer" yaml:"trainer"`
	Reward    RewardConfig    `json:"reward" yaml:"reward"`
	Sampling  SamplingConfig  `json:"sampling" yaml:"sampling"`
	SFT       SFTConfig       `json:"sft" yaml:"sft"`
	DPO       DPOConfig       `json:"dpo" yaml:"dpo"`
	Eval      EvalConfig      `json:"eval" yaml:"eval"`
	Annotator AnnotatorConfig `json:"annotator" yaml:"annotator"`
	Datastore DatastoreConfig `json:"datastore" yaml:"datastore"`
	Artifacts ArtifactsConfig `json:"artifacts" yaml:"artifacts"`
	Temporal  TemporalConfig  `json:"temporal" yaml:"temporal"`
}

// ModelConfig names the base model every round starts from.
type ModelConfig struct {
	// Base is an artifact ID or a model directory (config.json, model.safetensors,
	// tokenizer.json); "" means the base model shipped with posttrain.
	Base string `json:"base" yaml:"base"`
	// Size is the transformer size preset (tiny, bench, small) used when a model is
	// initialised or pre-trained from scratch.
	Size string `json:"size" yaml:"size"`
	// Seed makes every stage deterministic; variant v of a stage uses Seed+v.
	Seed int64 `json:"seed" yaml:"seed"`
	// MaxSeqLen caps prompt + response tokens in training rows.
	MaxSeqLen int `json:"max_seq_len" yaml:"max_seq_len"`
}

// TaskConfig sizes the bundled, generated task (see the demo).
type TaskConfig struct {
	Seed            int64 `json:"seed" yaml:"seed"`
	TrainPrompts    int   `json:"train_prompts" yaml:"train_prompts"`
	EvalPrompts     int   `json:"eval_prompts" yaml:"eval_prompts"`
	SFTSeedExamples int   `json:"sft_seed_examples" yaml:"sft_seed_examples"`
}

// DatasetsConfig names datastore datasets (imported with `posttrain data import`) that
// replace the bundled task's generated data; "" keeps the generated data.
type DatasetsConfig struct {
	Prompts         string `json:"prompts" yaml:"prompts"`
	EvalPrompts     string `json:"eval_prompts" yaml:"eval_prompts"`
	SFT             string `json:"sft" yaml:"sft"`
	Preferences     string `json:"preferences" yaml:"preferences"`
	EvalPreferences string `json:"eval_preferences" yaml:"eval_preferences"`
}

// TrainerConfig is shared by the reward, SFT and DPO trainers.
type TrainerConfig struct {
	WarmupSteps int `json:"warmup_steps" yaml:"warmup_steps"`
	// Schedule is the learning-rate decay after warm-up: cosine, linear or constant.
	Schedule string `json:"schedule" yaml:"schedule"`
	// MinLRRatio is the final learning rate as a fraction of the peak.
	MinLRRatio  float64 `json:"min_lr_ratio" yaml:"min_lr_ratio"`
	WeightDecay float64 `json:"weight_decay" yaml:"weight_decay"`
	// GradClip is the global gradient-norm clip; 0 disables it.
	GradClip  float64 `json:"grad_clip" yaml:"grad_clip"`
	GradAccum int     `json:"grad_accum" yaml:"grad_accum"`
	// CheckpointEvery saves a resumable checkpoint every so many steps; 0 saves only at
	// the end.
	CheckpointEvery int `json:"checkpoint_every" yaml:"checkpoint_every"`
	// Threads caps the kernel worker pool; 0 uses every CPU.
	Threads int `json:"threads" yaml:"threads"`
}

// Averaging methods for the variants of a stage.
const (
	AverageUniform  = "uniform"
	AverageWeighted = "weighted"
	AverageGreedy   = "greedy"
)

// RewardConfig trains the Bradley-Terry reward models.
type RewardConfig struct {
	// Init is the checkpoint the reward model starts from: base or previous (the
	// previous round's reward model).
	Init string  `json:"init" yaml:"init"`
	LR   float64 `json:"lr" yaml:"lr"`
	// Steps, when > 0, bounds training; otherwise Epochs passes over the data.
	Steps     int `json:"steps" yaml:"steps"`
	Epochs    int `json:"epochs" yaml:"epochs"`
	BatchSize int `json:"batch_size" yaml:"batch_size"`
	// Margin turns on Llama 2's rating-dependent margin (off in Llama 3).
	Margin bool `json:"margin" yaml:"margin"`
	// CenteringEta weights the reward-centering term eta * (r_c + r_r)^2; 0 disables it.
	CenteringEta float64 `json:"centering_eta" yaml:"centering_eta"`
	// SimilarityThreshold drops pairs whose responses are at least this similar (1
	// drops only identical responses).
	SimilarityThreshold float64 `json:"similarity_threshold" yaml:"similarity_threshold"`
	// Variants trained with different seeds, then averaged with Averaging.
	Variants       int       `json:"variants" yaml:"variants"`
	Averaging      string    `json:"averaging" yaml:"averaging"`
	AverageWeights []float64 `json:"average_weights" yaml:"average_weights"`
}

// SamplingConfig drives rejection sampling.
type SamplingConfig struct {
	// Policy is the model that samples: previous (the previous round's final model, the
	// base model in round 1) or base.
	Policy      string  `json:"policy" yaml:"policy"`
	K           int     `json:"k" yaml:"k"`
	Temperature float64 `json:"temperature" yaml:"temperature"`
	TopP        float64 `json:"top_p" yaml:"top_p"`
	// TopK keeps the K most likely tokens; 0 disables it.
	TopK         int `json:"top_k" yaml:"top_k"`
	MaxNewTokens int `json:"max_new_tokens" yaml:"max_new_tokens"`
	// KVBudgetBytes is the admission-control budget for KV caches; 0 means unlimited.
	KVBudgetBytes int64 `json:"kv_budget_bytes" yaml:"kv_budget_bytes"`
	// Shards splits the prompts into work items that may run on different workers.
	Shards int `json:"shards" yaml:"shards"`
	// BatchSize is the reward model's scoring batch.
	BatchSize int `json:"batch_size" yaml:"batch_size"`
	// TopN samples per prompt are selected (best first).
	TopN int `json:"top_n" yaml:"top_n"`
	// MinReward, when set, drops selected samples scoring below it.
	MinReward *float64 `json:"min_reward" yaml:"min_reward"`
	// Dedup removes duplicate samples before selection.
	Dedup bool `json:"dedup" yaml:"dedup"`
	// PromptsPerRound limits the prompts sampled each round; 0 uses all.
	PromptsPerRound int `json:"prompts_per_round" yaml:"prompts_per_round"`
	// Verify is none (the reward model alone selects) or answer (samples that disagree
	// with the prompt's reference answer, metadata.answer, are dropped before the reward
	// model ranks the rest; prompts without one are not checked).
	Verify string `json:"verify" yaml:"verify"`
	// SystemPrompts: round r uses entry r-1, the last entry when there are fewer; none
	// when empty.
	SystemPrompts []string `json:"system_prompts" yaml:"system_prompts"`
}

// SystemPrompt returns the system prompt for round r (1-based), or "".
func (s SamplingConfig) SystemPrompt(round int) string {
	if len(s.SystemPrompts) == 0 || round < 1 {
		return ""
	}
	return s.SystemPrompts[min(round, len(s.SystemPrompts))-1]
}

// Rejection-sampling verifiers (sampling.verify).
const (
	VerifyNone   = "none"
	VerifyAnswer = "answer"
)

// SFT multi-turn training targets.
const (
	TrainOnAll  = "all"
	TrainOnLast = "last"
)

// SFT rejection-sampled data: the current round's selected samples only, or those of
// every round so far (Llama 3 accumulates its SFT data across rounds).
const (
	SFTDataRound     = "round"
	SFTDataAllRounds = "all-rounds"
)

// SFTConfig fine-tunes on the curated and rejection-sampled data.
type SFTConfig struct {
	// Init is base (as in Llama 3) or previous (the previous round's final model).
	Init      string  `json:"init" yaml:"init"`
	LR        float64 `json:"lr" yaml:"lr"`
	Steps     int     `json:"steps" yaml:"steps"`
	Epochs    int     `json:"epochs" yaml:"epochs"`
	BatchSize int     `json:"batch_size" yaml:"batch_size"`
	// Packing packs short examples into full rows (positions restart, no attention
	// across examples).
	Packing bool `json:"packing" yaml:"packing"`
	// TrainOn is all (every assistant turn) or last (the final one only).
	TrainOn string `json:"train_on" yaml:"train_on"`
	// Data is round (this round's selected samples) or all-rounds (those of rounds 1..r),
	// always plus the curated SFT data.
	Data           string    `json:"data" yaml:"data"`
	Variants       int       `json:"variants" yaml:"variants"`
	Averaging      string    `json:"averaging" yaml:"averaging"`
	AverageWeights []float64 `json:"average_weights" yaml:"average_weights"`
}

// NLL normalisations for the DPO NLL term.
const (
	NLLPerSequenceMean = "per-sequence-mean"
	NLLBatchTokenMean  = "batch-token-mean"
	NLLPerSequenceSum  = "per-sequence-sum"
)

// DPOConfig trains the policy on preference pairs.
type DPOConfig struct {
	// Init is the policy's start: sft (the round's SFT model), base or previous.
	Init string `json:"init" yaml:"init"`
	// Reference is the frozen reference model: sft, base or previous.
	Reference string  `json:"reference" yaml:"reference"`
	LR        float64 `json:"lr" yaml:"lr"`
	Steps     int     `json:"steps" yaml:"steps"`
	Epochs    int     `json:"epochs" yaml:"epochs"`
	BatchSize int     `json:"batch_size" yaml:"batch_size"`
	Beta      float64 `json:"beta" yaml:"beta"`
	// NLLCoef weights the NLL term on chosen responses; 0 disables it.
	NLLCoef float64 `json:"nll_coef" yaml:"nll_coef"`
	// NLLNorm is per-sequence-mean, batch-token-mean or per-sequence-sum.
	NLLNorm string `json:"nll_norm" yaml:"nll_norm"`
	// MaskFormatting drops formatting tokens from the DPO log-ratios.
	MaskFormatting bool `json:"mask_formatting" yaml:"mask_formatting"`
	// FormattingTokenIDs overrides the tokenizer's formatting tokens when non-empty.
	FormattingTokenIDs []int     `json:"formatting_token_ids" yaml:"formatting_token_ids"`
	Variants           int       `json:"variants" yaml:"variants"`
	Averaging          string    `json:"averaging" yaml:"averaging"`
	AverageWeights     []float64 `json:"average_weights" yaml:"average_weights"`
}

// EvalConfig sizes the evaluation run after each stage.
type EvalConfig struct {
	// Prompts limits the held-out prompts evaluated; 0 uses all.
	Prompts      int `json:"prompts" yaml:"prompts"`
	MaxNewTokens int `json:"max_new_tokens" yaml:"max_new_tokens"`
}

// Annotator kinds.
const (
	AnnotatorSimulated = "simulated"
	AnnotatorFile      = "file"
	AnnotatorHuman     = "human"
)

// AnnotatorConfig chooses who labels the next round's preference pairs.
type AnnotatorConfig struct {
	// Kind is simulated, file (import File) or human (wait for submitted annotations).
	Kind string `json:"kind" yaml:"kind"`
	// Noise is the simulated annotator's probability of flipping a preference.
	Noise float64 `json:"noise" yaml:"noise"`
	// Bias in [-1, 1] tilts the simulated annotator toward longer (>0) or shorter (<0)
	// responses when correctness ties.
	Bias float64 `json:"bias" yaml:"bias"`
	// File is the JSONL file of preference rows for kind file.
	File string `json:"file" yaml:"file"`
	// PromptsPerRound limits the prompts annotated each round; 0 uses all.
	PromptsPerRound int `json:"prompts_per_round" yaml:"prompts_per_round"`
}

// DatastoreConfig locates PostgreSQL.
type DatastoreConfig struct {
	// URL is the DSN; POSTTRAIN_DATABASE_URL also sets it. "" lets `posttrain dev` and
	// `posttrain demo` start a private cluster under data_dir.
	URL      string `json:"url" yaml:"url"`
	MaxConns int    `json:"max_conns" yaml:"max_conns"`
}

// Artifact store backends.
const (
	BackendFS       = "fs"
	BackendPostgres = "postgres"
)

// ArtifactsConfig chooses the artifact store.
type ArtifactsConfig struct {
	// Backend is fs (a directory, local or shared) or postgres (blobs in the datastore).
	Backend string `json:"backend" yaml:"backend"`
	// Root is the fs backend's directory; "" means <data_dir>/artifacts.
	Root string `json:"root" yaml:"root"`
}

// TemporalConfig locates the Temporal cluster and names the task queues.
type TemporalConfig struct {
	Address   string `json:"address" yaml:"address"`
	Namespace string `json:"namespace" yaml:"namespace"`
	TaskQueue string `json:"task_queue" yaml:"task_queue"`
	// TrainingTaskQueue and SamplingTaskQueue, when set, route those activities to
	// their own workers; "" uses TaskQueue.
	TrainingTaskQueue string `json:"training_task_queue" yaml:"training_task_queue"`
	SamplingTaskQueue string `json:"sampling_task_queue" yaml:"sampling_task_queue"`
	// UIPort is the dev server's Web UI port; 0 disables the UI.
	UIPort int `json:"ui_port" yaml:"ui_port"`
	// MaxConcurrentActivities caps activities per worker.
	MaxConcurrentActivities int `json:"max_concurrent_activities" yaml:"max_concurrent_activities"`
}

// TrainingQueue is the task queue of training activities.
func (t TemporalConfig) TrainingQueue() string {
	if t.TrainingTaskQueue != "" {
		return t.TrainingTaskQueue
	}
	return t.TaskQueue
}

// SamplingQueue is the task queue of sampling activities.
func (t TemporalConfig) SamplingQueue() string {
	if t.SamplingTaskQueue != "" {
		return t.SamplingTaskQueue
	}
	return t.TaskQueue
}
