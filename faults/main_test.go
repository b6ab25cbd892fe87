package faults

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.temporal.io/server/temporaltest"
)

// testEnv is what every test of the package shares: one in-memory Temporal server and
// the posttrain binary, built on first use.
type testEnv struct {
	server *temporaltest.TestServer
	bin    binaryOnce
	binDir string
}

// longFormEnv selects the long form of the suite (`make faults`): every fault. Without
// it (`make test`, .ci/run) the short form runs: one worker kill plus the cheap checks.
const longFormEnv = "POSTTRAIN_FAULTS_LONG"

// longForm reports whether the long form was asked for (and -short was not given).
func longForm() bool { return os.Getenv(longFormEnv) == "1" && !testing.Short() }

// env is set once by TestMain before any test runs and only read afterwards.
var env *testEnv

func TestMain(m *testing.M) {
	if spec := os.Getenv(devServerEnv); spec != "" {
		// Re-executed as the dev Temporal server child of TestDevServerRestart.
		os.Exit(serveDevServer(spec))
	}
	dir, err := os.MkdirTemp("", "posttrain-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := temporaltest.NewServer()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = registerSearchAttributes(ctx, srv.GetDefaultClient(), srv.GetDefaultNamespace())
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "register search attributes:", err)
		os.Exit(1)
	}
	env = &testEnv{server: srv, binDir: dir}
	code := m.Run()
	srv.Stop()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
