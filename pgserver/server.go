// Package pgserver starts a private PostgreSQL cluster from the machine's own server
// binaries, for `posttrain dev` and `posttrain demo` when no database URL is
// configured: initdb under <data-dir>/postgres on first use (trust auth, UTF8),
// pg_ctl start listening on 127.0.0.1 only (plus a unix socket inside the cluster
// directory), and pg_ctl stop -m fast on Close. A cluster left in the data directory
// is reused on the next start; a stale postmaster.pid from a crash is cleaned up.
// PostgreSQL refuses to run as root, so under root the programs run as the
// `postgres` system user.
package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"

	"github.com/posttrain/posttrain/internal/filelock"
)

// DefaultDatabase is the database Start creates when Options.Database is empty.
const DefaultDatabase = "posttrain"

// superuser is the cluster's bootstrap role (initdb -U).
const superuser = "postgres"

// systemUser is the account the server runs as when posttrain runs as root.
const systemUser = "postgres"

// Options configure Start.
type Options struct {
	// DataDir is posttrain's data directory; the cluster lives in DataDir/postgres.
	DataDir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Database is created when missing; "" means DefaultDatabase.
	Database string
	// Log receives one line per step (cluster created, server listening, stopped);
	// nil discards them.
	Log io.Writer
}

// Server is a running private cluster. Close stops it when this Server started it.
type Server struct {
	bins    Binaries
	pgdata  string
	port    int
	db      string
	log     io.Writer
	runAs   *account
	owned   bool // false when Start reused a server another live process started
	mu      sync.Mutex
	stopped bool
}

// account is the system user the server programs run as (only when we are root).
type account struct {
	name     string
	uid, gid uint32
	groups   []uint32
}

// Start brings up the cluster in opts.DataDir/postgres, creating it on first use,
// and returns once it accepts connections and the database exists. When a server
// is already running on that cluster, Start connects to it: if the process that
// started it is still alive (another posttrain process) Close leaves it running,
// otherwise (that process was killed) this Server adopts it and Close stops it.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("start PostgreSQL: no data directory")
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("start PostgreSQL: port %d out of range [0, 65535]", opts.Port)
	}
	bins, err := FindBinaries()
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	s := &Server{bins: bins, pgdata: filepath.Join(dataDir, "postgres"), db: opts.Database, log: opts.Log, owned: true}
	if s.db == "" {
		s.db = DefaultDatabase
	}
	if s.log == nil {
		s.log = io.Discard
	}
	if os.Geteuid() == 0 {
		if s.runAs, err = lookupAccount(systemUser); err != nil {
			return nil, fmt.Errorf("start PostgreSQL: %w", err)
		}
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	// Serialise concurrent starts on one data directory (two processes must not
	// both run initdb or both start the postmaster).
	unlock, err := filelock.Lock(ctx, filepath.Join(dataDir, "postgres.lock"), 100*time.Millisecond)
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer unlock()
	if s.runAs != nil {
		if err := s.runAs.checkReachable(dataDir); err != nil {
			return nil, fmt.Errorf("start PostgreSQL: %w", err)
		}
	}
	if err := s.ensureCluster(ctx); err != nil {
		return nil, fmt.Errorf("start PostgreSQL in %s: %w", s.pgdata, err)
	}
	port, running, err := s.runningPort()
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL in %s: %w", s.pgdata, err)
	}
	switch {
	case running && ownerAlive(s.ownerFile()):
		s.owned = false
		s.port = port
		fmt.Fprintf(s.log, "pgserver: reusing the PostgreSQL server another posttrain process runs on %s (port %d)\n", s.pgdata, port)
	case running:
		// The process that started it is gone (killed before it could stop the
		// server): adopt the server so this process stops it on Close.
		s.port = port
		fmt.Fprintf(s.log, "pgserver: adopting the PostgreSQL server left running on %s (port %d)\n", s.pgdata, port)
	default:
		if err := s.startServer(ctx, opts.Port); err != nil {
			return nil, fmt.Errorf("start PostgreSQL in %s: %w", s.pgdata, err)
		}
	}
	if s.owned {
		if err := os.WriteFile(s.ownerFile(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("start PostgreSQL in %s: %w", s.pgdata, err)
		}
	}
	if err := s.ensureDatabase(ctx); err != nil {
		if s.owned {
			s.Close(context.WithoutCancel(ctx))
		}
		return nil, fmt.Errorf("start PostgreSQL in %s: %w", s.pgdata, err)
	}
	return s, nil
}

// DSN returns the URL of the server's database (trust auth: it holds no password).
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, s.port, url.PathEscape(s.db))
}

// Port returns the TCP port the server listens on at 127.0.0.1.
func (s *Server) Port() int { return s.port }

// ClusterDir returns the cluster's data directory (<data-dir>/postgres).
func (s *Server) ClusterDir() string { return s.pgdata }

// Owned reports whether this Server started the postmaster (and so stops it on
// Close) rather than reusing one that was already running.
func (s *Server) Owned() bool { return s.owned }

// Close stops the server with pg_ctl stop -m fast (sessions are rolled back, data is
// flushed) when this Server started it. Calling it again is a no-op. Pass a context
// that is not already cancelled, e.g. context.WithoutCancel of a signal context.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || !s.owned {
		s.stopped = true
		return nil
	}
	if _, err := os.Stat(filepath.Join(s.pgdata, "postmaster.pid")); errors.Is(err, os.ErrNotExist) {
		s.stopped = true // already stopped (e.g. by a process that adopted it)
		os.Remove(s.ownerFile())
		return nil
	}
	if _, err := s.run(ctx, s.bins.PgCtl, "stop", "-D", s.pgdata, "-m", "fast", "-w", "-t", "60", "-s"); err != nil {
		return fmt.Errorf("stop PostgreSQL in %s: %w", s.pgdata, err)
	}
	s.stopped = true
	os.Remove(s.ownerFile())
	fmt.Fprintf(s.log, "pgserver: stopped PostgreSQL in %s\n", s.pgdata)
	return nil
}

// ensureCluster runs initdb when the cluster directory holds no cluster yet, and
// checks an existing one was made by the same major version.
func (s *Server) ensureCluster(ctx context.Context) error {
	major, err := s.bins.MajorVersion()
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join(s.pgdata, "PG_VERSION"))
	switch {
	case err == nil:
		have, perr := strconv.Atoi(strings.TrimSpace(string(raw)))
		if perr != nil || have != major {
			return fmt.Errorf("the cluster was made by PostgreSQL %s but the installed server is %d; remove %s to start afresh (its data is lost) or install PostgreSQL %s",
				strings.TrimSpace(string(raw)), major, s.pgdata, strings.TrimSpace(string(raw)))
		}
		if err := s.chownCluster(); err != nil {
			return err
		}
		return s.ensureInclude()
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if entries, err := os.ReadDir(s.pgdata); err == nil && len(entries) > 0 {
		return fmt.Errorf("directory exists, is not empty and holds no cluster (no PG_VERSION); move it away")
	}
	if err := os.MkdirAll(s.pgdata, 0o700); err != nil {
		return err
	}
	if err := s.chownCluster(); err != nil {
		return err
	}
	fmt.Fprintf(s.log, "pgserver: creating a PostgreSQL %d cluster in %s\n", major, s.pgdata)
	// --no-sync then one syncfs: initdb's own file-by-file fsync of ~1000 files
	// takes seconds, while syncfs flushes the same data in one call.
	if _, err := s.run(ctx, s.bins.InitDB, "-D", s.pgdata, "-U", superuser, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return err
	}
	if err := syncFS(s.pgdata); err != nil {
		return err
	}
	return s.ensureInclude()
}

// includeLine makes postgresql.conf read the per-start settings Start writes.
const includeLine = "include_if_exists = 'posttrain.conf'"

func (s *Server) ensureInclude() error {
	conf := filepath.Join(s.pgdata, "postgresql.conf")
	b, err := os.ReadFile(conf)
	if err != nil {
		return err
	}
	if bytes.Contains(b, []byte(includeLine)) {
		return nil
	}
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\n# Added by posttrain: listen address, port and socket, rewritten at every start.\n%s\n", includeLine)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// chownCluster gives the cluster directory to the server's account when we are root.
func (s *Server) chownCluster() error {
	if s.runAs == nil {
		return nil
	}
	fi, err := os.Stat(s.pgdata)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == s.runAs.uid {
		return nil
	}
	return filepath.Walk(s.pgdata, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(s.runAs.uid), int(s.runAs.gid))
	})
}

// runningPort reads postmaster.pid: a live postmaster means the cluster is in use
// and its port is returned; a pid file left by a crash is removed with the socket
// lock files it names, so the postmaster does not refuse to start.
func (s *Server) runningPort() (port int, running bool, err error) {
	pidFile := filepath.Join(s.pgdata, "postmaster.pid")
	raw, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	lines := strings.Split(string(raw), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(lines[0]))
	if pid > 0 && s.isPostgres(pid) {
		if len(lines) < 4 {
			return 0, false, fmt.Errorf("postmaster.pid of running server %d has no port yet; retry", pid)
		}
		port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
		if err != nil {
			return 0, false, fmt.Errorf("postmaster.pid of running server %d: bad port %q", pid, lines[3])
		}
		return port, true, nil
	}
	fmt.Fprintf(s.log, "pgserver: removing stale postmaster.pid (pid %d is not running)\n", pid)
	if err := os.Remove(pidFile); err != nil {
		return 0, false, err
	}
	stale, _ := filepath.Glob(filepath.Join(s.pgdata, ".s.PGSQL.*"))
	for _, f := range stale {
		if err := os.Remove(f); err != nil {
			return 0, false, err
		}
	}
	return 0, false, nil
}

// isPostgres reports whether pid is a live postgres process working in this
// cluster (a recycled pid now belonging to something else does not count).
func (s *Server) isPostgres(pid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		if _, perr := os.Stat("/proc/self/comm"); perr == nil {
			return false // /proc works and has no such process
		}
		return syscall.Kill(pid, 0) == nil
	}
	if strings.TrimSpace(string(comm)) != "postgres" {
		return false
	}
	// The postmaster works in its cluster directory; another cluster's server is
	// not ours. An unreadable cwd gives the benefit of the doubt.
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return true
	}
	want, err := filepath.EvalSymlinks(s.pgdata)
	if err != nil {
		want = s.pgdata
	}
	return cwd == want
}

// maxSocketPath is the longest unix socket path Linux accepts (sun_path less NUL).
const maxSocketPath = 107

func (s *Server) startServer(ctx context.Context, wantPort int) error {
	tries := 1
	if wantPort == 0 {
		tries = 3 // a free port can be taken between picking it and binding it
	}
	var lastErr error
	for range tries {
		port := wantPort
		if port == 0 {
			p, err := freePort()
			if err != nil {
				return err
			}
			port = p
		}
		if err := s.writeConf(port); err != nil {
			return err
		}
		logFile := filepath.Join(s.pgdata, "postgresql.log")
		_, err := s.run(ctx, s.bins.PgCtl, "start", "-D", s.pgdata, "-l", logFile, "-w", "-t", "60", "-s")
		if err == nil {
			s.port = port
			fmt.Fprintf(s.log, "pgserver: PostgreSQL listening on 127.0.0.1:%d (cluster %s, log %s)\n", port, s.pgdata, logFile)
			return nil
		}
		lastErr = fmt.Errorf("%w\n%s", err, tail(logFile, 15))
		if !strings.Contains(lastErr.Error(), "could not bind") && !strings.Contains(lastErr.Error(), "already in use") {
			break
		}
	}
	return lastErr
}

// writeConf writes the settings that change per start: TCP on loopback only, the
// port, and the socket directory (the cluster directory, when its path is short
// enough for a unix socket).
func (s *Server) writeConf(port int) error {
	sockDir := s.pgdata
	if len(filepath.Join(sockDir, ".s.PGSQL."+strconv.Itoa(port))) > maxSocketPath {
		sockDir = ""
	}
	conf := fmt.Sprintf("# Written by posttrain at every start; edit postgresql.conf for other settings.\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n",
		port, strings.ReplaceAll(sockDir, "'", "''"))
	p := filepath.Join(s.pgdata, "posttrain.conf")
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		return err
	}
	if s.runAs != nil {
		return os.Chown(p, int(s.runAs.uid), int(s.runAs.gid))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ensureDatabase creates the database when it does not exist yet.
func (s *Server) ensureDatabase(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	admin := fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable", superuser, s.port)
	conn, err := pgx.Connect(cctx, admin)
	if err != nil {
		return fmt.Errorf("connect to 127.0.0.1:%d: %w", s.port, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(cctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", s.db).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", s.db, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(cctx, "CREATE DATABASE "+pgx.Identifier{s.db}.Sanitize())
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P04" { // duplicate_database: created concurrently
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", s.db, err)
	}
	fmt.Fprintf(s.log, "pgserver: created database %s\n", s.db)
	return nil
}

// run executes a server program (as the postgres account when we are root) and
// returns its output; a failure's error includes the output.
func (s *Server) run(ctx context.Context, prog string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, prog, args...)
	// The programs' chatter (initdb's banner and instructions) is kept for error
	// messages rather than copied to the log.
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// "/" is readable by every account, unlike root's working directory.
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if s.runAs != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: s.runAs.uid, Gid: s.runAs.gid, Groups: s.runAs.groups}}
		cmd.Env = append(cmd.Env, "HOME=/", "USER="+s.runAs.name, "LOGNAME="+s.runAs.name)
	}
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(prog), args[0], err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return path + ":\n" + strings.Join(lines, "\n")
}

// lookupAccount resolves the system user the server runs as under root.
func lookupAccount(name string) (*account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and the %q system user to run it as does not exist (%v): install the server with `%s`, which creates it, or create it with `useradd --system --user-group --home-dir /var/lib/postgresql %s`, or run posttrain as a non-root user, or set POSTTRAIN_DATABASE_URL to use a running server",
			name, err, InstallHint, name)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %s: non-numeric uid %q or gid %q", name, u.Uid, u.Gid)
	}
	a := &account{name: name, uid: uint32(uid), gid: uint32(gid), groups: []uint32{}}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				a.groups = append(a.groups, uint32(g))
			}
		}
	}
	return a, nil
}

// checkReachable makes sure the account can search every directory down to dir;
// otherwise the postmaster, running as that account, could not open its cluster.
func (a *account) checkReachable(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !a.canSearch(fi) {
			return fmt.Errorf("the %q user that PostgreSQL runs as cannot reach %s: %s has mode %04o; put data_dir under a directory it can reach (e.g. /var/tmp or the work tree) or run `chmod o+x %s`",
				a.name, dir, p, fi.Mode().Perm(), p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func (a *account) canSearch(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	perm := fi.Mode().Perm()
	switch {
	case st.Uid == a.uid:
		return perm&0o100 != 0
	case st.Gid == a.gid || containsGID(a.groups, st.Gid):
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

func containsGID(gs []uint32, g uint32) bool {
	for _, x := range gs {
		if x == g {
			return true
		}
	}
	return false
}

// syncFS flushes the file system holding dir to stable storage.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// ownerFile records the pid of the process that started (and will stop) the
// server; it sits beside the cluster directory, which belongs to PostgreSQL.
func (s *Server) ownerFile() string { return filepath.Join(filepath.Dir(s.pgdata), "postgres.owner") }

// ownerAlive reports whether the pid in an owner file is a running process.
func ownerAlive(file string) bool {
	raw, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return false
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ClusterExists reports whether dataDir holds a cluster made by Start (so commands
// that only read can bring it up instead of asking for a database URL).
func ClusterExists(dataDir string) bool {
	if dataDir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(dataDir, "postgres", "PG_VERSION"))
	return err == nil
}
