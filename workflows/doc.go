// Package workflows holds the Temporal workflow definitions of the post-training pipeline.
// Workflows only decide: they order the stages, fan out variants and shards, and pass
// artifact IDs; every piece of work happens in an activity (package activities).
//
// # Starting a run
//
// Workflow type: PostTraining (WorkflowType). Task queue: posttrain (the config's
// temporal.task_queue). Input: one JSON object, RunInput, whose every field has a
// default, so all of these start a run from the Web UI's Start Workflow page or the CLI:
//
//	{}
//	{"preset": "demo"}
//	{"preset": "demo", "rounds": 2, "overrides": ["dpo.beta=0.2"], "annotator": "human", "require_approval": true}
//
// Fields: preset (default "default"), overrides ("key=value" config overrides), rounds
// (0 = the config's rounds, 6 by default), base_model (an artifact ID; "" = the config's
// base model), datasets (names of datastore datasets for prompts, eval_prompts, sft,
// preferences and eval_preferences; "" = the bundled demo task's generated data),
// annotator (simulated, file or human; "" = the config's), require_approval, series (the
// schedule series a run continues), seed (0 = the config's), annotation_timeout
// (Go duration; "" = wait for human annotations forever) and heartbeat_timeout.
//
// The config is resolved in the StartRun activity, never in workflow code: it is
// snapshotted into the runs table under the workflow ID, and the workflow works from the
// small Plan that StartRun returns.
//
// # Rounds
//
// Each round is a child workflow of type PostTrainingRound with ID
// "<workflow-id>-round-<n>": reward-model variants in parallel, their average and its
// evaluation; rejection sampling fanned out over prompt shards with the previous round's
// final model as policy; SFT variants, average, evaluation; DPO variants (from the
// round's SFT model, which is also the reference), average, evaluation; the round
// summary. Annotations for the next round are collected by the parent after the round
// (and after approval when require_approval is set), so the updates that feed them
// (approve-round, submit-annotations) go to the one workflow ID a user knows.
//
// # Control
//
// Query "status" (Status); signals "pause" and "resume" (checked between stages, the
// parent forwards them to the running round); updates "approve-round" (ApproveRequest)
// and "submit-annotations" (SubmitAnnotationsRequest), each with a validator; search
// attributes PosttrainRound (Int) and PosttrainStage (Keyword). Cancelling the run
// cancels the running activities through their heartbeats and runs a cleanup activity
// that marks the unfinished stages cancelled in PostgreSQL.
package workflows
