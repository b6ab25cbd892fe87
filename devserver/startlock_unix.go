//go:build unix

package devserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// startLockName is the file in the system's temporary directory whose lock every dev
// server on the machine holds from choosing its ports until it has bound them.
const startLockName = "posttrain-devserver-start.lock"

// lockStart takes the machine-wide start lock, waiting for another process's start to
// finish (a few seconds at most) or ctx to end. Without it two servers started in the
// same second could both see a port free and both take it: the Temporal server exits the
// process on a taken port.
func lockStart(ctx context.Context) (unlock func(), err error) {
	path := filepath.Join(os.TempDir(), startLockName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("start lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("start lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("start lock %s: another dev server is still starting: %w", path, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}
