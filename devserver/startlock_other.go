//go:build !unix

package devserver

import "context"

// lockStart is a no-op where flock is unavailable: concurrent starts may then race for
// a port, as they would without posttrain.
func lockStart(context.Context) (func(), error) { return func() {}, nil }
