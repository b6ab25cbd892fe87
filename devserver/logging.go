package devserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"go.temporal.io/server/common/log"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// maxLogBytes is the size above which the previous log file is rotated away (to
// <name>.1) when a server starts, so a long-lived data directory does not fill up.
const maxLogBytes = 64 << 20

// serverLog is the Temporal server's logger: everything at info and above goes to a
// JSON log file, errors also to the caller's writer (one console line each) once the
// server is up and until it starts closing: start-up ("frontend is not healthy yet")
// and shutdown noise, and requests cancelled by their callers (a stopping worker's
// polls), stay in the file.
type serverLog struct {
	logger  log.Logger
	file    *closableFile
	ready   atomic.Bool
	closing atomic.Bool
}

// newServerLog opens path (rotating a large previous file) or, with path "", logs to
// no file. errs may be nil.
func newServerLog(path string, errs io.Writer) (*serverLog, error) {
	s := &serverLog{}
	var cores []zapcore.Core
	if path != "" {
		if fi, err := os.Stat(path); err == nil && fi.Size() > maxLogBytes {
			_ = os.Rename(path, path+".1") // best effort; appending to the big file is fine too
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("server log %s: %w", path, err)
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("server log %s: %w", path, err)
		}
		s.file = &closableFile{f: f}
		enc := zap.NewProductionEncoderConfig()
		enc.EncodeTime = zapcore.ISO8601TimeEncoder
		cores = append(cores, zapcore.NewCore(zapcore.NewJSONEncoder(enc), s.file, zapcore.InfoLevel))
	}
	if errs != nil {
		enc := zap.NewDevelopmentEncoderConfig()
		enc.TimeKey = ""
		enc.CallerKey = ""
		enc.StacktraceKey = ""
		enc.NameKey = ""
		level := zap.LevelEnablerFunc(func(l zapcore.Level) bool {
			return l >= zapcore.ErrorLevel && s.ready.Load() && !s.closing.Load()
		})
		core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(zapcore.AddSync(&prefixWriter{w: errs, prefix: "temporal: "})), level)
		cores = append(cores, skipCancelled{core})
	}
	// zap reports its own write failures on stderr by default: keep them off the terminal.
	s.logger = log.NewZapLogger(zap.New(zapcore.NewTee(cores...), zap.ErrorOutput(zapcore.AddSync(io.Discard))))
	return s, nil
}

// close stops surfacing errors and closes the file.
func (s *serverLog) close() error {
	s.closing.Store(true)
	if s.file == nil {
		return nil
	}
	return s.file.close()
}

// closableFile is the log file; writes after close are dropped, since goroutines of a
// stopped server may still log for a moment.
type closableFile struct {
	mu     sync.Mutex
	f      *os.File
	closed bool
}

func (c *closableFile) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return len(b), nil
	}
	return c.f.Write(b)
}

func (c *closableFile) Sync() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	return c.f.Sync()
}

func (c *closableFile) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	_ = c.f.Sync()
	return c.f.Close()
}

// prefixWriter prefixes each write (one log entry) so server errors are told apart from
// posttrain's own output.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix); err != nil {
		return 0, err
	}
	return p.w.Write(b)
}

// skipCancelled drops entries whose error is a cancelled context: the caller went away
// (a worker stopping, a CLI interrupted), which is not the server's problem.
type skipCancelled struct{ zapcore.Core }

func (c skipCancelled) With(fields []zapcore.Field) zapcore.Core {
	return skipCancelled{c.Core.With(fields)}
}

func (c skipCancelled) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c skipCancelled) Write(e zapcore.Entry, fields []zapcore.Field) error {
	for _, f := range fields {
		if err, ok := f.Interface.(error); ok && f.Type == zapcore.ErrorType && isCancelled(err) {
			return nil
		}
	}
	return c.Core.Write(e, fields)
}

// isCancelled matches context cancellation also after a trip through gRPC, which keeps
// only the message.
func isCancelled(err error) bool {
	return errors.Is(err, context.Canceled) || strings.Contains(err.Error(), context.Canceled.Error())
}
