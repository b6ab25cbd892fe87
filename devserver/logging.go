package devserver

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"go.temporal.io/server/common/log"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// maxLogBytes is the size above which the previous log file is rotated away (to
// <name>.1) when a server starts, so a long-lived data directory does not fill up.
const maxLogBytes = 64 << 20

// serverLog is the Temporal server's logger: everything at info and above goes to a
// JSON log file, errors also to the caller's writer (one console line each) until the
// server starts closing, when the usual shutdown noise is left to the file.
type serverLog struct {
	logger  log.Logger
	file    *os.File
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
		s.file = f
		enc := zap.NewProductionEncoderConfig()
		enc.EncodeTime = zapcore.ISO8601TimeEncoder
		cores = append(cores, zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(f), zapcore.InfoLevel))
	}
	if errs != nil {
		enc := zap.NewDevelopmentEncoderConfig()
		enc.TimeKey = ""
		enc.CallerKey = ""
		enc.StacktraceKey = ""
		enc.NameKey = ""
		level := zap.LevelEnablerFunc(func(l zapcore.Level) bool {
			return l >= zapcore.ErrorLevel && !s.closing.Load()
		})
		cores = append(cores, zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(zapcore.AddSync(&prefixWriter{w: errs, prefix: "temporal: "})), level))
	}
	s.logger = log.NewZapLogger(zap.New(zapcore.NewTee(cores...)))
	return s, nil
}

// close stops surfacing errors and closes the file.
func (s *serverLog) close() error {
	s.closing.Store(true)
	if s.file == nil {
		return nil
	}
	_ = s.file.Sync()
	return s.file.Close()
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
