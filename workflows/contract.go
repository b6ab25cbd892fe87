package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Names that clients, workers and the Web UI share.
const (
	// WorkflowType is the registered name of the run workflow (PostTraining).
	WorkflowType = "PostTraining"
	// RoundWorkflowType is the registered name of the per-round child workflow.
	RoundWorkflowType = "PostTrainingRound"
	// DefaultTaskQueue is the task queue of the workflows and, unless routed elsewhere,
	// of every activity.
	DefaultTaskQueue = "posttrain"

	// QueryStatus returns a Status.
	QueryStatus = "status"
	// SignalPause and SignalResume pause and resume a run between stages.
	SignalPause  = "pause"
	SignalResume = "resume"
	// SignalRoundProgress is sent by a round to its parent when a stage starts or ends.
	SignalRoundProgress = "round-progress"
	// UpdateApproveRound approves a finished round (ApproveRequest) when the run
	// requires approval.
	UpdateApproveRound = "approve-round"
	// UpdateSubmitAnnotations hands a run waiting for human annotations the dataset
	// they were uploaded to (SubmitAnnotationsRequest).
	UpdateSubmitAnnotations = "submit-annotations"

	// SearchAttrRound (Int) and SearchAttrStage (Keyword) are upserted as a run advances.
	SearchAttrRound = "PosttrainRound"
	SearchAttrStage = "PosttrainStage"
)

// Activity names, as registered by the worker (the methods of activities.Activities).
const (
	ActStartRun    = "StartRun"
	ActBeginRound  = "BeginRound"
	ActTrainReward = "TrainReward"
	ActTrainSFT    = "TrainSFT"
	ActTrainDPO    = "TrainDPO"
	ActAverage     = "Average"
	ActEvaluate    = "Evaluate"
	ActSampleShard = "SampleShard"
	ActAnnotate    = "Annotate"
	ActFinishRound = "FinishRound"
	ActFinishRun   = "FinishRun"
	ActCancelRun   = "CancelRun"
)

// Annotator kinds (the config's annotator.kind).
const (
	AnnotatorSimulated = "simulated"
	AnnotatorFile      = "file"
	AnnotatorHuman     = "human"
)

// Stage names used in statuses, search attributes and activity requests.
const (
	StageReward   = "reward"
	StageSampling = "sampling"
	StageSFT      = "sft"
	StageDPO      = "dpo"
	StageAnnotate = "annotate"
	StageSummary  = "summary"
)

// Model start points of a stage (config keys reward.init, sampling.policy, sft.init,
// dpo.init, dpo.reference).
const (
	FromBase     = "base"
	FromPrevious = "previous"
	FromSFT      = "sft"
)

// DatasetRefs name datastore datasets that replace the bundled task's data; empty
// fields keep the generated data (or the config's datasets section).
type DatasetRefs struct {
	Prompts         string `json:"prompts,omitempty"`
	EvalPrompts     string `json:"eval_prompts,omitempty"`
	SFT             string `json:"sft,omitempty"`
	Preferences     string `json:"preferences,omitempty"`
	EvalPreferences string `json:"eval_preferences,omitempty"`
}

// RunInput is the PostTraining workflow's input. Every field has a default: {} runs the
// default preset.
type RunInput struct {
	// Preset is a config preset ("" = default).
	Preset string `json:"preset,omitempty"`
	// Overrides are "key=value" config overrides, e.g. "dpo.beta=0.2".
	Overrides []string `json:"overrides,omitempty"`
	// Rounds overrides the config's rounds when > 0.
	Rounds int `json:"rounds,omitempty"`
	// BaseModel is an artifact ID; "" = the config's model.base.
	BaseModel string `json:"base_model,omitempty"`
	// Datasets replace the generated task data.
	Datasets DatasetRefs `json:"datasets,omitempty"`
	// Annotator is simulated, file or human; "" = the config's annotator.kind.
	Annotator string `json:"annotator,omitempty"`
	// RequireApproval makes the run wait for approve-round after every round.
	RequireApproval bool `json:"require_approval,omitempty"`
	// Series groups scheduled runs: a run of a series starts from the series' latest
	// final model.
	Series string `json:"series,omitempty"`
	// Seed overrides model.seed when non-zero.
	Seed int64 `json:"seed,omitempty"`
	// AnnotationTimeout bounds the wait for human annotations (a Go duration such as
	// "72h"); "" waits forever.
	AnnotationTimeout string `json:"annotation_timeout,omitempty"`
	// HeartbeatTimeout is the heartbeat timeout of long activities (Go duration, ""
	// = 10s): how fast a lost worker is noticed and a cancellation reaches the work.
	HeartbeatTimeout string `json:"heartbeat_timeout,omitempty"`
}

// Validate checks the fields the workflow itself interprets; the config fields are
// checked by the StartRun activity.
func (in RunInput) Validate() error {
	if in.Rounds < 0 {
		return fmt.Errorf("input rounds: must be >= 0, got %d", in.Rounds)
	}
	switch in.Annotator {
	case "", AnnotatorSimulated, AnnotatorFile, AnnotatorHuman:
	default:
		return fmt.Errorf("input annotator: %q is not simulated, file or human", in.Annotator)
	}
	for _, f := range [][2]string{{"annotation_timeout", in.AnnotationTimeout}, {"heartbeat_timeout", in.HeartbeatTimeout}} {
		name, s := f[0], f[1]
		if s == "" {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("input %s: %q is not a positive duration like 30s or 72h", name, s)
		}
	}
	for _, o := range in.Overrides {
		// The input is stored in the workflow history: a DSN there would leak its
		// password, and the workers use their own database anyway.
		if key, _, _ := strings.Cut(o, "="); strings.TrimSpace(key) == "datastore.url" {
			return errors.New("input overrides: datastore.url cannot be set per run (workers use their own database, and the value, password included, would be stored in the workflow history)")
		}
	}
	return nil
}

// StartRunRequest is the StartRun activity's input.
type StartRunRequest struct {
	WorkflowID    string   `json:"workflow_id"`
	TemporalRunID string   `json:"temporal_run_id"`
	Input         RunInput `json:"input"`
	// ContinueFrom is the previous scheduled run's final model (from
	// workflow.GetLastCompletionResult), "" when none.
	ContinueFrom string `json:"continue_from,omitempty"`
}

// Plan is what StartRun resolved from the config: small, and all the workflow needs.
type Plan struct {
	RunID  string `json:"run_id"`
	Rounds int    `json:"rounds"`
	// Variants per training stage and prompt shards of rejection sampling.
	RewardVariants int `json:"reward_variants"`
	SFTVariants    int `json:"sft_variants"`
	DPOVariants    int `json:"dpo_variants"`
	Shards         int `json:"shards"`
	// Annotator kind and whether each round waits for approval.
	Annotator       string `json:"annotator"`
	RequireApproval bool   `json:"require_approval"`
	// AnnotationTimeout is 0 to wait for human annotations forever.
	AnnotationTimeout time.Duration `json:"annotation_timeout"`
	HeartbeatTimeout  time.Duration `json:"heartbeat_timeout"`
	Seed              int64         `json:"seed"`
	// BaseModel is the pre-trained checkpoint (artifact ID) RM and SFT start from;
	// InitialPolicy samples round 1 (the base model, or a series' latest final model).
	BaseModel     string `json:"base_model"`
	InitialPolicy string `json:"initial_policy"`
	// Where each stage starts: base|previous (reward, sft, sampling), sft|base|previous
	// (dpo init and reference).
	RewardInit     string `json:"reward_init"`
	SamplingPolicy string `json:"sampling_policy"`
	SFTInit        string `json:"sft_init"`
	DPOInit        string `json:"dpo_init"`
	DPOReference   string `json:"dpo_reference"`
	// Datasets: prompts, held-out prompts, curated SFT data, preferences (the run's own
	// annotations go to Annotations, tagged with the round that collected them) and
	// held-out preferences.
	Prompts         string `json:"prompts"`
	EvalPrompts     string `json:"eval_prompts"`
	SFTData         string `json:"sft_data"`
	Preferences     string `json:"preferences"`
	EvalPreferences string `json:"eval_preferences"`
	Annotations     string `json:"annotations"`
	// NeedInitialAnnotations is set when no preference data exists before round 1: the
	// annotator labels pairs sampled from the initial policy first (round 0).
	NeedInitialAnnotations bool `json:"need_initial_annotations"`
	// Task queues of training and sampling activities ("" = the workflow's queue).
	TrainingQueue string `json:"training_queue,omitempty"`
	SamplingQueue string `json:"sampling_queue,omitempty"`
}

// Validate checks a plan before the workflow uses it.
func (p Plan) Validate() error {
	switch {
	case p.RunID == "":
		return fmt.Errorf("plan: empty run id")
	case p.Rounds < 1:
		return fmt.Errorf("plan: rounds must be >= 1, got %d", p.Rounds)
	case p.RewardVariants < 1 || p.SFTVariants < 1 || p.DPOVariants < 1:
		return fmt.Errorf("plan: every stage needs >= 1 variant (reward %d, sft %d, dpo %d)", p.RewardVariants, p.SFTVariants, p.DPOVariants)
	case p.Shards < 1:
		return fmt.Errorf("plan: shards must be >= 1, got %d", p.Shards)
	case p.BaseModel == "":
		return fmt.Errorf("plan: no base model")
	}
	return nil
}

// RoundRef names a round of a run.
type RoundRef struct {
	RunID string `json:"run_id"`
	Round int    `json:"round"`
	// Policy is the model the round samples with (BeginRound records it).
	Policy string `json:"policy,omitempty"`
}

// TrainRequest asks for one training variant of a stage (TrainReward, TrainSFT,
// TrainDPO).
type TrainRequest struct {
	RunID   string `json:"run_id"`
	Round   int    `json:"round"`
	Variant int    `json:"variant"`
	// Init is the artifact the variant starts from; Reference the DPO reference.
	Init      string `json:"init"`
	Reference string `json:"reference,omitempty"`
	Seed      int64  `json:"seed"`
}

// ModelResult is a trained, averaged or imported model.
type ModelResult struct {
	ArtifactID string `json:"artifact_id"`
	// Steps trained and the step this attempt started from (> 0 after a resume).
	Steps     int                `json:"steps,omitempty"`
	StartStep int                `json:"start_step,omitempty"`
	Metrics   map[string]float64 `json:"metrics,omitempty"`
}

// AverageRequest averages the variants of a stage.
type AverageRequest struct {
	RunID  string   `json:"run_id"`
	Round  int      `json:"round"`
	Stage  string   `json:"stage"`
	Inputs []string `json:"inputs"`
	// Reference is the DPO variants' reference model, which a greedy DPO soup scores
	// against. Optional: "" (other stages, and histories from before the field) makes
	// the activity read it from the variants' lineage.
	Reference string `json:"reference,omitempty"`
}

// EvalRequest evaluates a stage's model (for DPO, against Reference).
type EvalRequest struct {
	RunID     string `json:"run_id"`
	Round     int    `json:"round"`
	Stage     string `json:"stage"`
	Model     string `json:"model"`
	Reference string `json:"reference,omitempty"`
	// Previous is the previous round's final model (win rate), "" in round 1.
	Previous string `json:"previous,omitempty"`
}

// EvalResult are a stage's held-out metrics.
type EvalResult struct {
	Metrics map[string]float64 `json:"metrics"`
}

// SampleRequest runs rejection sampling on one prompt shard.
type SampleRequest struct {
	RunID       string `json:"run_id"`
	Round       int    `json:"round"`
	Shard       int    `json:"shard"`
	Shards      int    `json:"shards"`
	Policy      string `json:"policy"`
	RewardModel string `json:"reward_model"`
	Seed        int64  `json:"seed"`
}

// SampleResult counts what a shard produced (the candidates are in PostgreSQL).
type SampleResult struct {
	Shard      int     `json:"shard"`
	Prompts    int     `json:"prompts"`
	Candidates int     `json:"candidates"`
	Selected   int     `json:"selected"`
	MeanReward float64 `json:"mean_reward"`
}

// AnnotateRequest collects the preference annotations round Round produces for the
// next one: Kind simulated labels pairs sampled from Policy, file imports File, human
// takes the Dataset submitted through the submit-annotations update.
type AnnotateRequest struct {
	RunID   string `json:"run_id"`
	Round   int    `json:"round"`
	Kind    string `json:"kind"`
	Policy  string `json:"policy,omitempty"`
	Dataset string `json:"dataset,omitempty"`
	Seed    int64  `json:"seed"`
}

// AnnotateResult says where the annotations are.
type AnnotateResult struct {
	Dataset    string `json:"dataset"`
	ArtifactID string `json:"artifact_id"`
	Pairs      int    `json:"pairs"`
	EvalPairs  int    `json:"eval_pairs"`
}

// RoundInput is the PostTrainingRound child workflow's input.
type RoundInput struct {
	Plan  Plan `json:"plan"`
	Round int  `json:"round"`
	// Policy samples this round (the previous round's final model, or the plan's
	// initial policy); PreviousRM is the previous round's reward model ("" in round 1).
	Policy     string `json:"policy"`
	PreviousRM string `json:"previous_rm,omitempty"`
}

// RoundResult is a finished round: its models and headline metrics.
type RoundResult struct {
	Round       int                `json:"round"`
	RewardModel string             `json:"reward_model"`
	SFTModel    string             `json:"sft_model"`
	FinalModel  string             `json:"final_model"`
	Metrics     map[string]float64 `json:"metrics"`
}

// RoundSummary is what FinishRound writes.
type RoundSummary struct {
	RunID  string      `json:"run_id"`
	Result RoundResult `json:"result"`
	// Stages are the wall times of the round's stages, in seconds.
	StageSeconds map[string]float64 `json:"stage_seconds"`
}

// FinishRunRequest records how a run ended.
type FinishRunRequest struct {
	RunID      string `json:"run_id"`
	Status     string `json:"status"`
	Error      string `json:"error,omitempty"`
	FinalModel string `json:"final_model,omitempty"`
}

// RunResult is the PostTraining workflow's result; a scheduled run's successor reads
// FinalModel through workflow.GetLastCompletionResult.
type RunResult struct {
	RunID      string        `json:"run_id"`
	FinalModel string        `json:"final_model"`
	Rounds     []RoundResult `json:"rounds"`
}

// ApproveRequest approves round Round (the round the run is waiting on).
type ApproveRequest struct {
	Round int `json:"round"`
}

// SubmitAnnotationsRequest hands over the dataset human annotations were uploaded to
// (never the data itself). Round 0 means the round the run is waiting on.
type SubmitAnnotationsRequest struct {
	Round   int    `json:"round"`
	Dataset string `json:"dataset"`
}

// RoundProgress is the signal a round sends its parent when a stage starts or ends.
type RoundProgress struct {
	Round   int                `json:"round"`
	Stage   string             `json:"stage"`
	State   string             `json:"state"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// Run states in Status.State.
const (
	StateStarting           = "starting"
	StateRunning            = "running"
	StatePaused             = "paused"
	StateWaitingApproval    = "waiting-approval"
	StateWaitingAnnotations = "waiting-annotations"
	StateCompleted          = "completed"
	StateFailed             = "failed"
	StateCancelled          = "cancelled"
)

// Stage states in StageStatus.State.
const (
	StageRunning   = "running"
	StageCompleted = "completed"
	StageFailed    = "failed"
)

// StageStatus is one stage of one round as the status query reports it.
type StageStatus struct {
	Round      int       `json:"round"`
	Stage      string    `json:"stage"`
	State      string    `json:"state"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitempty"`
}

// Status is the status query's answer. Step and ETA of the running activity come from
// its heartbeat details (DescribeWorkflowExecution), which `posttrain run status` merges.
type Status struct {
	RunID  string `json:"run_id"`
	State  string `json:"state"`
	Rounds int    `json:"rounds"`
	Round  int    `json:"round"`
	Stage  string `json:"stage"`
	Paused bool   `json:"paused"`
	// WaitingRound is the round awaiting approval or annotations (0: none).
	WaitingRound int           `json:"waiting_round,omitempty"`
	Stages       []StageStatus `json:"stages"`
	// Metrics so far, keyed "round-<n>/<stage>/<name>".
	Metrics    map[string]float64 `json:"metrics"`
	FinalModel string             `json:"final_model,omitempty"`
	Error      string             `json:"error,omitempty"`
}

// Progress is the heartbeat detail of long activities: how far the work got and the
// last durably saved checkpoint a retry resumes from.
type Progress struct {
	Stage string  `json:"stage"`
	Step  int     `json:"step"`
	Total int     `json:"total"`
	Loss  float64 `json:"loss,omitempty"`
	// ETASeconds is the estimated time left.
	ETASeconds float64 `json:"eta_s,omitempty"`
	// CheckpointStep is the last saved checkpoint's step and CheckpointDir where it
	// is (local to the worker; CheckpointHost names the worker's host).
	CheckpointStep int    `json:"checkpoint_step"`
	CheckpointDir  string `json:"checkpoint_dir,omitempty"`
	CheckpointHost string `json:"checkpoint_host,omitempty"`
}

// Error types of non-retryable application errors.
const (
	// ErrInvalidInput: a bad config, input or data; retrying cannot help.
	ErrInvalidInput = "InvalidInput"
	// ErrDiverged: the loss became NaN or infinite.
	ErrDiverged = "Diverged"
	// ErrAnnotationTimeout: no annotations arrived in time.
	ErrAnnotationTimeout = "AnnotationTimeout"
)

// RoundWorkflowID is the child workflow ID of round n of a run.
func RoundWorkflowID(runWorkflowID string, n int) string {
	return fmt.Sprintf("%s-round-%d", runWorkflowID, n)
}

// MetricKey is the key of a metric in Status.Metrics and RoundResult.Metrics.
func MetricKey(round int, stage, name string) string {
	return fmt.Sprintf("round-%d/%s/%s", round, stage, name)
}
