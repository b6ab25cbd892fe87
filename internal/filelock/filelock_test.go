package filelock

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLockWaitsForTheHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := Lock(context.Background(), path, time.Millisecond)
	require.NoError(t, err)

	// A second holder (flock locks are per open file, so this stands for another
	// process) gives up when its context ends...
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err = Lock(ctx, path, time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), path)

	// ...and gets the lock once the first lets go.
	got := make(chan error, 1)
	go func() {
		u, err := Lock(context.Background(), path, time.Millisecond)
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case <-got:
		t.Fatal("the lock was taken while held")
	case <-time.After(20 * time.Millisecond):
	}
	unlock()
	require.NoError(t, <-got)
}

func TestLockReportsAnUnusablePath(t *testing.T) {
	_, err := Lock(context.Background(), filepath.Join(t.TempDir(), "missing", "x.lock"), time.Millisecond)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing")
}
