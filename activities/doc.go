// Package activities holds the Temporal activities: thin wrappers that call the stage
// packages and the datastore, heartbeat progress, and return artifact IDs.
package activities
