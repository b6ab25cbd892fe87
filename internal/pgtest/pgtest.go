// Package pgtest gives tests a private PostgreSQL database on the real server: a fresh,
// uniquely named database (migrated or empty) that is dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/posttrain/posttrain/datastore"
)

// EnvURL names the variable holding the admin DSN of the test server.
const EnvURL = "POSTTRAIN_TEST_DATABASE_URL"

// DefaultURL is used when EnvURL is unset: the project's CI server.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// AdminURL returns the DSN of the database tests connect to in order to create their own.
func AdminURL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return DefaultURL
}

// NewDB creates a fresh database, applies every migration, and returns a pool on it.
// The pool is closed and the database dropped when t ends.
func NewDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	dsn := NewEmptyDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := Open(t, dsn)
	if err := datastore.Migrate(ctx, pool); err != nil {
		t.Fatalf("pgtest: migrate %s: %v", datastore.RedactDSN(dsn), err)
	}
	return pool
}

// Open connects a pool to dsn and closes it when t ends.
func Open(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := datastore.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// NewEmptyDatabase creates a fresh, unmigrated database and returns its DSN. The database
// is dropped (connections terminated) when t ends; pools opened on it must be closed by
// then, which Open's cleanup (registered later, so run earlier) does.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := AdminURL()
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		t.Fatalf("pgtest: parse %s %s: %v", EnvURL, datastore.RedactDSN(admin), err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: connect to %s (set %s, or run .ci/run to start PostgreSQL): %v", datastore.RedactDSN(admin), EnvURL, err)
	}
	defer conn.Close(context.Background())
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("pgtest: random name: %v", err)
	}
	name := "pt_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return withDatabase(cfg, name)
}

// withDatabase returns the admin DSN pointed at database name, as a keyword/value DSN
// (which needs no URL escaping of the other parts).
func withDatabase(cfg *pgx.ConnConfig, name string) string {
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s", quote(cfg.Host), cfg.Port, quote(cfg.User), quote(name))
	if cfg.Password != "" {
		dsn += " password=" + quote(cfg.Password)
	}
	if cfg.TLSConfig == nil {
		dsn += " sslmode=disable"
	}
	return dsn
}

// quote writes v as a single-quoted keyword/value DSN value.
func quote(v string) string {
	out := []byte{'\''}
	for _, r := range []byte(v) {
		if r == '\'' || r == '\\' {
			out = append(out, '\\')
		}
		out = append(out, r)
	}
	return string(append(out, '\''))
}
