// Package datastore is posttrain's PostgreSQL layer: it opens pgx/v5 pools, applies the
// embedded migrations, and gives typed, parameterised, idempotent access to every table
// (runs, rounds, stages, artifacts and lineage, metrics, datasets, sampling candidates).
// Every write is keyed by a natural key with ON CONFLICT, so an activity retried after a
// crash never writes a row twice.
package datastore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// EnvDatabaseURL names the environment variable that supplies the DSN when the config
// has none.
const EnvDatabaseURL = "POSTTRAIN_DATABASE_URL"

// ErrNotFound is wrapped by every Get that finds no row.
var ErrNotFound = errors.New("not found")

// DBTX is what the Store runs its statements on: a *pgxpool.Pool, a *pgx.Conn or a
// pgx.Tx all satisfy it.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Store is the typed data access layer. It holds no state besides its connection, so
// one Store is shared freely between goroutines when built on a pool.
type Store struct {
	db DBTX
}

// New returns a Store running on db (usually the pool from Open).
func New(db DBTX) *Store { return &Store{db: db} }

// DB returns the connection the Store runs on, for callers with their own SQL.
func (s *Store) DB() DBTX { return s.db }

// InTx runs fn with a Store bound to one transaction, committing when fn returns nil and
// rolling back otherwise. Nested calls use savepoints.
func (s *Store) InTx(ctx context.Context, fn func(tx *Store) error) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error { return fn(&Store{db: tx}) })
}

// ResolveDSN picks the DSN: the configured one when set, else $POSTTRAIN_DATABASE_URL.
// It returns "" when neither is set (the caller may then start a private server).
func ResolveDSN(configured string) string {
	if configured != "" {
		return configured
	}
	return os.Getenv(EnvDatabaseURL)
}

// Option adjusts the pool Open makes.
type Option func(*pgxpool.Config)

// WithMaxConns caps the pool's connections (datastore.max_conns); n <= 0 keeps pgx's
// default.
func WithMaxConns(n int) Option {
	return func(c *pgxpool.Config) {
		if n > 0 {
			c.MaxConns = int32(min(n, 1<<20))
		}
	}
}

// Open connects a pool to dsn (URL or keyword/value form) and pings it. Errors name the
// DSN with its password redacted.
func Open(ctx context.Context, dsn string, opts ...Option) (*pgxpool.Pool, error) {
	if strings.TrimSpace(dsn) == "" {
		return nil, fmt.Errorf("open database: no DSN configured (set datastore.url or %s)", EnvDatabaseURL)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", RedactDSN(dsn), scrub(err, dsn))
	}
	// Name the connections in pg_stat_activity unless the DSN already does.
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "posttrain"
	}
	for _, o := range opts {
		o(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", RedactDSN(dsn), scrub(err, dsn))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open database %s: %w", RedactDSN(dsn), scrub(err, dsn))
	}
	return pool, nil
}

// kvPassword matches password=... in keyword/value DSNs, quoted or not; urlPassword
// matches a password= query parameter.
var (
	kvPassword  = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
	urlPassword = regexp.MustCompile(`(?i)(password=)[^&]*`)
)

// RedactDSN returns dsn with any password replaced by "xxxxx", for logs and errors. It
// handles URL DSNs (user:password@ and ?password=) and keyword/value DSNs.
func RedactDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			// An unparsable URL may still hold a password between ':' and '@'.
			return redactUnparsedURL(dsn)
		}
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			}
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

// redactUnparsedURL hides everything between the scheme's "//" and the last "@" after
// the first ':' of the userinfo, and any password= query value.
func redactUnparsedURL(dsn string) string {
	out := dsn
	if i := strings.Index(out, "://"); i >= 0 {
		rest := out[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			userinfo := rest[:at]
			if c := strings.Index(userinfo, ":"); c >= 0 {
				out = out[:i+3] + userinfo[:c] + ":xxxxx" + rest[at:]
			}
		}
	}
	return urlPassword.ReplaceAllString(out, "${1}xxxxx")
}

// dsnPassword extracts the password from dsn, or "" when it has none.
func dsnPassword(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return ""
	}
	return cfg.Password
}

// scrubbedError hides a password that a driver error might echo back.
type scrubbedError struct {
	err    error
	secret string
}

func (e *scrubbedError) Error() string {
	return strings.ReplaceAll(e.err.Error(), e.secret, "xxxxx")
}

func (e *scrubbedError) Unwrap() error { return e.err }

// scrub wraps err so its text never contains dsn's password.
func scrub(err error, dsn string) error {
	if err == nil {
		return nil
	}
	pw := dsnPassword(dsn)
	if pw == "" {
		return err
	}
	return &scrubbedError{err: err, secret: pw}
}

// isUniqueViolation reports whether err is PostgreSQL's unique_violation (23505).
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// isFKViolation reports whether err is PostgreSQL's foreign_key_violation (23503).
func isFKViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503"
}
