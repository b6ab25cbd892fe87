// Package workflows holds the Temporal workflow definitions of the post-training pipeline.
// Workflows only decide: they order the stages, fan out variants and shards, and pass
// artifact IDs; every piece of work happens in an activity.
package workflows
