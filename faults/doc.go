// Package faults is the fault-injection suite of posttrain. Its tests run real pipelines
// (a tiny model, real PostgreSQL, a real Temporal server) with the worker in a child
// process, and break things on purpose while a stage runs: SIGKILL the worker during
// reward-model training, rejection sampling and DPO; restart PostgreSQL; stop and restart
// the dev Temporal server. Each test then checks that the run completed, that the
// interrupted stages resumed from their last checkpoint rather than step 0, that no row
// was written twice, that every artifact's hash verifies, and that with a fixed seed the
// final metrics equal those of an uninterrupted run.
//
// By default (`go test ./faults/`, as in `make test`) the short form runs: one worker
// kill during reward-model training, the secrets check and the bad-run checks. With
// POSTTRAIN_FAULTS_LONG=1 (`make faults`) the long form runs every fault.
package faults
