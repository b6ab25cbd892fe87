package devserver

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/posttrain/posttrain/internal/filelock"
)

// startLockName is the file in the system's temporary directory whose lock every dev
// server on the machine holds from choosing its ports until it has bound them.
const startLockName = "posttrain-devserver-start.lock"

// lockStart takes the machine-wide start lock, waiting for another process's start to
// finish (a few seconds at most) or ctx to end. Without it two servers started in the
// same second could both see a port free and both take it: the Temporal server exits the
// process on a taken port.
func lockStart(ctx context.Context) (unlock func(), err error) {
	return filelock.Lock(ctx, filepath.Join(os.TempDir(), startLockName), 25*time.Millisecond)
}
