// Package faults is the fault-injection suite of posttrain. Its tests run real pipelines
// (a tiny model, real PostgreSQL, a real Temporal server) with the worker in a child
// process, and break things on purpose while a stage runs: SIGKILL the worker during
// reward-model training, rejection sampling and DPO; restart PostgreSQL; stop and restart
// the dev Temporal server. Each test then checks that the run completed, that the
// interrupted stages resumed from their last checkpoint rather than step 0, that no row
// was written twice, that every artifact's hash verifies, and that with a fixed seed the
// final metrics equal those of an uninterrupted run.
//
// `go test -short ./faults/` runs the short form (one kill during reward-model
// training); without -short the long form runs every fault.
package faults
