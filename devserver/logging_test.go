package devserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/server/common/log/tag"
)

// TestServerLogSurfacesOnlyErrorsWhileRunning checks which entries reach the caller's
// writer and that the file gets every entry at info and above.
func TestServerLogSurfacesOnlyErrorsWhileRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "server.log")
	var out bytes.Buffer
	l, err := newServerLog(path, &out)
	require.NoError(t, err)

	steps := []struct {
		name    string
		phase   func()
		log     func(msg string)
		surface bool
	}{
		{"error while starting", func() {}, func(m string) { l.logger.Error(m) }, false},
		{"info when ready", func() { l.ready.Store(true) }, func(m string) { l.logger.Info(m) }, false},
		{"error when ready", func() {}, func(m string) { l.logger.Error(m, tag.Error(errors.New("disk full"))) }, true},
		{"cancelled request", func() {}, func(m string) { l.logger.Error(m, tag.Error(context.Canceled)) }, false},
		{"cancelled via gRPC", func() {}, func(m string) {
			l.logger.Error(m, tag.Error(fmt.Errorf("rpc error: code = Canceled desc = context canceled")))
		}, false},
		{"error while closing", func() { l.closing.Store(true) }, func(m string) { l.logger.Error(m) }, false},
	}
	for i, st := range steps {
		st.phase()
		msg := fmt.Sprintf("entry-%d", i)
		st.log(msg)
		assert.Equal(t, st.surface, strings.Contains(out.String(), msg), st.name)
	}
	assert.True(t, strings.HasPrefix(out.String(), "temporal: "), out.String())
	require.NoError(t, l.close())
	l.logger.Error("after-close") // dropped, not a write error
	file, err := os.ReadFile(path)
	require.NoError(t, err)
	for i := range steps {
		assert.Contains(t, string(file), fmt.Sprintf("entry-%d", i))
	}
	assert.NotContains(t, string(file), "after-close")
}
