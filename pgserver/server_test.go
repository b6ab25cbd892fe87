package pgserver_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/pgserver"
)

// requireBinaries skips only when the server binaries are truly absent, and then
// checks that the error says what to install.
func requireBinaries(t *testing.T) {
	t.Helper()
	_, err := pgserver.FindBinaries()
	if err == nil {
		return
	}
	require.ErrorIs(t, err, pgserver.ErrNoBinaries)
	require.Contains(t, err.Error(), pgserver.InstallHint)
	found, _ := filepath.Glob(filepath.Join(pgserver.DefaultLibGlob, "initdb"))
	require.Empty(t, found, "initdb exists yet FindBinaries failed: %v", err)
	t.Skipf("PostgreSQL server binaries are not installed: %v", err)
}

// dataDir returns a fresh directory the postgres account can reach when the test
// runs as root (t.TempDir makes 0700 directories).
func dataDir(t *testing.T) string {
	d := t.TempDir()
	if os.Geteuid() == 0 {
		require.NoError(t, os.Chmod(d, 0o755))
		require.NoError(t, os.Chmod(filepath.Dir(d), 0o755))
	}
	return filepath.Join(d, "data")
}

func query(ctx context.Context, t *testing.T, dsn, sql string, args ...any) (int, error) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, sql, args...).Scan(&n)
	return n, err
}

func exec1(ctx context.Context, t *testing.T, dsn, sql string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	require.NoError(t, err)
}

// syncBuffer is a log sink safe to share with the server's command output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLifecycle(t *testing.T) {
	requireBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := dataDir(t)
	var log syncBuffer

	// First start: initdb, start, create the database.
	s, err := pgserver.Start(ctx, pgserver.Options{DataDir: dir, Log: &log})
	require.NoError(t, err, "log:\n%s", log.String())
	t.Cleanup(func() { s.Close(context.Background()) })
	assert.True(t, s.Owned())
	assert.Equal(t, filepath.Join(dir, "postgres"), s.ClusterDir())
	assert.Contains(t, s.DSN(), "@127.0.0.1:"+strconv.Itoa(s.Port())+"/posttrain")
	assert.Contains(t, log.String(), "creating a PostgreSQL")
	if os.Geteuid() == 0 {
		fi, err := os.Stat(s.ClusterDir())
		require.NoError(t, err)
		assert.NotZero(t, fi.Sys().(*syscall.Stat_t).Uid, "the cluster must belong to the postgres account, not root")
	}
	exec1(ctx, t, s.DSN(), "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
	n, err := query(ctx, t, s.DSN(), "SELECT x FROM kept")
	require.NoError(t, err)
	assert.Equal(t, 42, n)
	var listen string
	conn, err := pgx.Connect(ctx, s.DSN())
	require.NoError(t, err)
	require.NoError(t, conn.QueryRow(ctx, "SHOW listen_addresses").Scan(&listen))
	conn.Close(ctx)
	assert.Equal(t, "127.0.0.1", listen, "the private cluster must listen on loopback only")

	// A second Start on the running cluster reuses it and leaves it running on Close.
	s2, err := pgserver.Start(ctx, pgserver.Options{DataDir: dir})
	require.NoError(t, err)
	assert.False(t, s2.Owned())
	assert.Equal(t, s.Port(), s2.Port())
	require.NoError(t, s2.Close(ctx))
	n, err = query(ctx, t, s.DSN(), "SELECT x FROM kept")
	require.NoError(t, err, "closing a reusing Server must not stop the server")
	assert.Equal(t, 42, n)

	// Close stops it; a second Close is a no-op.
	require.NoError(t, s.Close(ctx))
	require.NoError(t, s.Close(ctx))
	assert.NoFileExists(t, filepath.Join(s.ClusterDir(), "postmaster.pid"))
	_, err = query(ctx, t, s.DSN(), "SELECT 1")
	assert.Error(t, err, "the server must be down after Close")

	// A pid file left by a crash (its pid no longer runs) is cleaned up, the cluster
	// is reused with its data, and an explicit port is honoured.
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	stale := strconv.Itoa(dead.Process.Pid) + "\n" + s.ClusterDir() + "\n0\n5999\n"
	require.NoError(t, os.WriteFile(filepath.Join(s.ClusterDir(), "postmaster.pid"), []byte(stale), 0o600))
	port := freePort(t)
	log = syncBuffer{}
	s3, err := pgserver.Start(ctx, pgserver.Options{DataDir: dir, Port: port, Log: &log})
	require.NoError(t, err, "log:\n%s", log.String())
	t.Cleanup(func() { s3.Close(context.Background()) })
	assert.Equal(t, port, s3.Port())
	assert.Contains(t, log.String(), "stale postmaster.pid")
	assert.NotContains(t, log.String(), "creating a PostgreSQL", "the existing cluster must be reused")
	n, err = query(ctx, t, s3.DSN(), "SELECT x FROM kept")
	require.NoError(t, err)
	assert.Equal(t, 42, n, "data must survive a restart")

	// A server whose starter died is adopted: the new Server stops it on Close.
	owner := filepath.Join(dir, "postgres.owner")
	require.FileExists(t, owner)
	require.NoError(t, os.WriteFile(owner, []byte(strconv.Itoa(dead.Process.Pid)), 0o644))
	log = syncBuffer{}
	adopted, err := pgserver.Start(ctx, pgserver.Options{DataDir: dir, Log: &log})
	require.NoError(t, err)
	t.Cleanup(func() { adopted.Close(context.Background()) })
	assert.True(t, adopted.Owned())
	assert.Contains(t, log.String(), "adopting")
	require.NoError(t, adopted.Close(ctx))
	_, err = query(ctx, t, s3.DSN(), "SELECT 1")
	assert.Error(t, err, "closing the adopting Server must stop the server")
	assert.NoFileExists(t, owner)

	require.NoError(t, s3.Close(ctx), "closing a Server whose server is already down is not an error")
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
