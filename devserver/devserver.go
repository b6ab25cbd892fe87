// Package devserver runs a complete Temporal server and its Web UI inside the calling
// process, persisted in a SQLite file under the data directory: what `temporal server
// start-dev` does, without downloading anything. The schema is created on first use
// and reused afterwards, so workflows in flight carry on after a restart. The default
// namespace is registered with posttrain's search attributes (PosttrainRound,
// PosttrainStage). Everything binds to 127.0.0.1 by default: gRPC on 7233 and the UI on
// 8233 (gRPC + 1000). The server's chatty logs go to a file next to the database; only
// errors reach the caller.
package devserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics"
	persistencesql "go.temporal.io/server/common/persistence/sql"
	"go.temporal.io/server/common/persistence/sql/sqlplugin"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/resolver"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"golang.org/x/sys/unix"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"

	"github.com/posttrain/posttrain/workflows"
)

// Defaults of Options and of `posttrain dev`.
const (
	// DefaultIP is where the server listens unless told otherwise: loopback only.
	DefaultIP = "127.0.0.1"
	// DefaultGRPCPort is the frontend's gRPC port (Temporal's usual 7233).
	DefaultGRPCPort = 7233
	// UIPortOffset is added to the gRPC port to get the UI port by convention
	// (7233 -> 8233).
	UIPortOffset = 1000
	// DefaultNamespace is the namespace registered when Options.Namespace is empty.
	DefaultNamespace = "default"
	// SubDir is the directory under the data directory that holds the server's files.
	SubDir = "temporal"
	// DBFileName and LogFileName name the SQLite database and the server log in SubDir.
	DBFileName  = "temporal.db"
	LogFileName = "temporal.log"
)

// NoUI as Options.UIPort starts the server without the Web UI.
const NoUI = -1

// Options configure Start.
type Options struct {
	// DataDir holds SubDir (database, log, lock). Required unless Ephemeral, where it
	// is optional and only receives the log.
	DataDir string
	// IP is the address both servers bind to ("" = DefaultIP).
	IP string
	// GRPCPort is the frontend's gRPC port; 0 picks a free port.
	GRPCPort int
	// UIPort is the Web UI's HTTP port; 0 picks a free port, NoUI disables the UI.
	UIPort int
	// Namespace is registered on start when missing ("" = DefaultNamespace).
	Namespace string
	// SearchAttributes are ensured on the namespace; nil registers posttrain's
	// (PosttrainRound Int, PosttrainStage Keyword).
	SearchAttributes map[string]enumspb.IndexedValueType
	// Log receives the server's error-level log lines (everything else goes to the log
	// file); nil discards them.
	Log io.Writer
	// Ephemeral keeps everything in memory: nothing survives Close.
	Ephemeral bool
	// StartTimeout bounds the wait for the frontend and the UI to answer (0 = 60s).
	StartTimeout time.Duration
	// PortFallback uses free ports instead of failing when GRPCPort or UIPort is taken
	// (`posttrain demo`). The choice is made under a machine-wide lock held until the
	// ports are bound, so servers started at the same moment never pick the same one.
	PortFallback bool
}

// PosttrainSearchAttributes are the custom search attributes the PostTraining workflow
// upserts as a run advances.
func PosttrainSearchAttributes() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		workflows.SearchAttrRound: enumspb.INDEXED_VALUE_TYPE_INT,
		workflows.SearchAttrStage: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	}
}

// FellBack reports whether the requested ports were taken and free ones were used
// (Options.PortFallback).
func (s *Server) FellBack() bool { return s.fellBack }

// UIPortFor is the UI port that goes with a gRPC port by convention.
func UIPortFor(grpcPort int) int { return grpcPort + UIPortOffset }

// Server is a running dev server. Close stops it.
type Server struct {
	temporal  temporal.Server
	ui        *uiserver.Server
	uiDone    chan struct{}
	log       *serverLog
	unlock    func()
	frontend  string
	uiURL     string
	namespace string
	dbPath    string
	logPath   string

	fellBack bool

	closeOnce sync.Once
	closeErr  error
}

// Start brings up the Temporal server (frontend, history, matching and worker services)
// on a SQLite file and, unless disabled, the Web UI, and returns once both answer. A
// taken port is reported before anything starts. Only one process at a time may serve
// a data directory.
func Start(ctx context.Context, opts Options) (_ *Server, err error) {
	ip := opts.IP
	if ip == "" {
		ip = DefaultIP
	}
	if net.ParseIP(ip) == nil {
		return nil, fmt.Errorf("dev server: IP %q is not an IP address (e.g. 127.0.0.1)", opts.IP)
	}
	if opts.GRPCPort < 0 || opts.GRPCPort > 65535 {
		return nil, fmt.Errorf("dev server: gRPC port %d out of range [0, 65535]", opts.GRPCPort)
	}
	if opts.UIPort < NoUI || opts.UIPort > 65535 {
		return nil, fmt.Errorf("dev server: UI port %d out of range [0, 65535] (or %d for no UI)", opts.UIPort, NoUI)
	}
	s, sqlCfg, err := prepare(opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			_ = s.stop(stopCtx)
			cancel()
		}
	}()
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	unlock, err := lockStart(ctx)
	if err != nil {
		return nil, fmt.Errorf("dev server: %w", err)
	}
	defer unlock() // every port is bound (or the start failed) by the time Start returns

	// Internal services: 3 gRPC ports (history, matching, worker) and 4 membership ports.
	ports, err := freePorts(ip, 9)
	if err != nil {
		return nil, fmt.Errorf("dev server: %w", err)
	}
	grpcPort, uiPort := opts.GRPCPort, opts.UIPort
	if opts.PortFallback && ((grpcPort > 0 && checkPortFree("", ip, grpcPort) != nil) ||
		(uiPort > 0 && checkPortFree("", ip, uiPort) != nil)) {
		grpcPort, uiPort = 0, min(uiPort, 0) // keep NoUI
		s.fellBack = true
	}
	if grpcPort == 0 {
		grpcPort = ports[7]
	} else if err := checkPortFree("Temporal gRPC", ip, grpcPort); err != nil {
		return nil, fmt.Errorf("dev server: %w", err)
	}
	if uiPort == 0 {
		uiPort = ports[8]
	} else if uiPort != NoUI {
		if uiPort == grpcPort {
			return nil, fmt.Errorf("dev server: UI port and gRPC port are both %d", uiPort)
		}
		if err := checkPortFree("Temporal Web UI", ip, uiPort); err != nil {
			return nil, fmt.Errorf("dev server: %w", err)
		}
	}
	host := dialHost(ip)
	s.frontend = net.JoinHostPort(host, strconv.Itoa(grpcPort))

	if err := s.setupDatabase(sqlCfg, opts); err != nil {
		return nil, err
	}
	cfg := serverConfig(ip, host, grpcPort, ports[:7], sqlCfg)
	srv, err := temporal.NewServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithLogger(s.log.logger),
		temporal.WithAuthorizer(authorization.NewNoopAuthorizer()),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return authorization.NewNoopClaimMapper() }),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			// Search attributes added at run time are usable at once (as in start-dev).
			dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): true,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("dev server: create Temporal server: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("dev server: start Temporal server (log: %s): %w", s.logPath, err)
	}
	s.temporal = srv
	if err := s.ensureSearchAttributes(ctx, opts.SearchAttributes); err != nil {
		return nil, err
	}
	if uiPort != NoUI {
		if err := s.startUI(ctx, ip, host, uiPort); err != nil {
			return nil, err
		}
	}
	s.log.ready.Store(true)
	return s, nil
}

// prepare validates the data directory, takes its lock and opens the log.
func prepare(opts Options) (*Server, *config.SQL, error) {
	s := &Server{namespace: opts.Namespace}
	if s.namespace == "" {
		s.namespace = DefaultNamespace
	}
	var dir string
	if opts.DataDir != "" {
		abs, err := filepath.Abs(opts.DataDir)
		if err != nil {
			return nil, nil, fmt.Errorf("dev server: data dir %s: %w", opts.DataDir, err)
		}
		dir = filepath.Join(abs, SubDir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("dev server: %w", err)
		}
		s.logPath = filepath.Join(dir, LogFileName)
	} else if !opts.Ephemeral {
		return nil, nil, errors.New("dev server: no data directory (set Options.DataDir, or Ephemeral for an in-memory server)")
	}
	sqlCfg := &config.SQL{PluginName: sqliteplugin.PluginName, ConnectAttributes: map[string]string{}}
	if opts.Ephemeral {
		// A shared-cache in-memory database, named uniquely within this process.
		sqlCfg.ConnectAttributes["mode"] = "memory"
		sqlCfg.ConnectAttributes["cache"] = "shared"
		sqlCfg.DatabaseName = fmt.Sprintf("posttrain-dev-%d-%d", os.Getpid(), time.Now().UnixNano())
	} else {
		unlock, err := lockDir(filepath.Join(dir, "server.lock"))
		if err != nil {
			return nil, nil, fmt.Errorf("dev server: %w", err)
		}
		s.unlock = unlock
		s.dbPath = filepath.Join(dir, DBFileName)
		sqlCfg.ConnectAttributes["mode"] = "rwc"
		sqlCfg.DatabaseName = s.dbPath
	}
	l, err := newServerLog(s.logPath, opts.Log)
	if err != nil {
		if s.unlock != nil {
			s.unlock()
		}
		return nil, nil, fmt.Errorf("dev server: %w", err)
	}
	s.log = l
	return s, sqlCfg, nil
}

// lockDir takes an exclusive, non-blocking lock on path: two servers on one SQLite
// file would corrupt each other's view of it.
func lockDir(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by another process (another `posttrain dev` on this data directory?)", filepath.Dir(path))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// setupDatabase creates the schema on first use and registers the namespace (a no-op
// when it exists). The schema is built in a temporary file renamed into place, so a
// start interrupted half-way never leaves a database that looks ready but is not.
func (s *Server) setupDatabase(sqlCfg *config.SQL, opts Options) error {
	if !opts.Ephemeral {
		if _, err := os.Stat(s.dbPath); errors.Is(err, os.ErrNotExist) {
			tmp := *sqlCfg
			tmp.DatabaseName = s.dbPath + ".init"
			tmp.ConnectAttributes = map[string]string{"mode": "rwc"}
			_ = os.Remove(tmp.DatabaseName) // left by an interrupted first start
			if err := sqliteschema.SetupSchema(&tmp); err != nil {
				return fmt.Errorf("dev server: create the Temporal schema in %s: %w", tmp.DatabaseName, err)
			}
			if err := os.Rename(tmp.DatabaseName, s.dbPath); err != nil {
				return fmt.Errorf("dev server: %w", err)
			}
		} else if err != nil {
			return fmt.Errorf("dev server: %w", err)
		} else if err := pruneMembership(sqlCfg); err != nil {
			return err
		}
	}
	attrs := opts.SearchAttributes
	if attrs == nil {
		attrs = PosttrainSearchAttributes()
	}
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, s.namespace, false, attrs)
	if err != nil {
		return fmt.Errorf("dev server: namespace %s: %w", s.namespace, err)
	}
	if err := sqliteschema.CreateNamespaces(sqlCfg, ns); err != nil {
		return fmt.Errorf("dev server: register namespace %s in %s: %w", s.namespace, sqlCfg.DatabaseName, err)
	}
	return nil
}

// pruneMembership forgets the hosts of the previous server on this file. They are dead
// (we hold the data directory's lock), but their membership rows outlive them by a
// heartbeat TTL, and until they expire the new ring routes some task queue partitions
// to them: a restarted server took ~45 s to hand a task to a poller without this.
func pruneMembership(sqlCfg *config.SQL) error {
	db, err := persistencesql.NewSQLDB(sqlplugin.DbKindMain, sqlCfg, resolver.NewNoopResolver(), log.NewNoopLogger(), metrics.NoopMetricsHandler)
	if err != nil {
		return fmt.Errorf("dev server: open %s: %w", sqlCfg.DatabaseName, err)
	}
	defer db.Close()
	// Every row expires before a date far in the future.
	before := time.Now().AddDate(100, 0, 0)
	if _, err := db.PruneClusterMembership(context.Background(), &sqlplugin.PruneClusterMembershipFilter{PruneRecordsBefore: before}); err != nil {
		return fmt.Errorf("dev server: clear stale cluster membership in %s: %w", sqlCfg.DatabaseName, err)
	}
	return nil
}

// clusterName is the single cluster's name.
const clusterName = "active"

// serverConfig is a single-node cluster config: frontend on ip:grpcPort, the other
// services on loopback ports from internal (3 gRPC then 4 membership ports).
func serverConfig(ip, host string, grpcPort int, internal []int, sqlCfg *config.SQL) *config.Config {
	frontendAddr := net.JoinHostPort(host, strconv.Itoa(grpcPort))
	svc := func(grpc, membership int) config.Service {
		return config.Service{RPC: config.RPC{GRPCPort: grpc, MembershipPort: membership, BindOnLocalHost: true}}
	}
	frontend := svc(grpcPort, internal[3])
	frontend.RPC.BindOnLocalHost = false
	frontend.RPC.BindOnIP = ip
	cfg := &config.Config{}
	cfg.Global.Membership = config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: "127.0.0.1"}
	cfg.Persistence = config.Persistence{
		DefaultStore:     sqliteplugin.PluginName,
		VisibilityStore:  sqliteplugin.PluginName,
		NumHistoryShards: 1,
		DataStores:       map[string]config.DataStore{sqliteplugin.PluginName: {SQL: sqlCfg}},
	}
	cfg.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {Enabled: true, InitialFailoverVersion: 1, RPCAddress: frontendAddr},
		},
	}
	cfg.DCRedirectionPolicy = config.DCRedirectionPolicy{Policy: "noop"}
	cfg.Services = map[string]config.Service{
		"frontend": frontend,
		"history":  svc(internal[0], internal[4]),
		"matching": svc(internal[1], internal[5]),
		"worker":   svc(internal[2], internal[6]),
	}
	cfg.Archival = config.Archival{
		History:    config.HistoryArchival{State: "disabled"},
		Visibility: config.VisibilityArchival{State: "disabled"},
	}
	cfg.NamespaceDefaults = config.NamespaceDefaults{Archival: config.ArchivalNamespaceDefaults{
		History:    config.HistoryArchivalNamespaceDefaults{State: "disabled"},
		Visibility: config.VisibilityArchivalNamespaceDefaults{State: "disabled"},
	}}
	// The server's own system workers dial the frontend through this.
	cfg.PublicClient = config.PublicClient{HostPort: frontendAddr}
	return cfg
}

// ensureSearchAttributes waits for the frontend to answer and adds the search
// attributes the namespace lacks (a database made before they existed, or a namespace
// registered by something else).
func (s *Server) ensureSearchAttributes(ctx context.Context, attrs map[string]enumspb.IndexedValueType) error {
	if attrs == nil {
		attrs = PosttrainSearchAttributes()
	}
	c, err := s.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var resp *operatorservice.ListSearchAttributesResponse
	for {
		resp, err = c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: s.namespace})
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dev server: the frontend on %s did not answer (log: %s): %w", s.frontend, s.logPath, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range attrs {
		have, ok := resp.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing[name] = typ
		case have != typ:
			return fmt.Errorf("dev server: search attribute %s on namespace %s is %s, want %s", name, s.namespace, have, typ)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if _, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: s.namespace, SearchAttributes: missing,
	}); err != nil {
		return fmt.Errorf("dev server: add search attributes to namespace %s: %w", s.namespace, err)
	}
	return nil
}

// dial connects an SDK client to the frontend, retrying until ctx ends.
func (s *Server) dial(ctx context.Context) (client.Client, error) {
	for {
		c, err := client.DialContext(ctx, client.Options{
			HostPort: s.frontend, Namespace: s.namespace, Logger: sdklog.NewStructuredLogger(nopSlog()),
		})
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dev server: connect to the frontend on %s (log: %s): %w", s.frontend, s.logPath, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startUI serves the Web UI (assets embedded in the ui-server module) and waits for
// it to answer.
func (s *Server) startUI(ctx context.Context, ip, host string, port int) error {
	cfg := &uiconfig.Config{
		TemporalGRPCAddress: s.frontend,
		Host:                ip,
		Port:                port,
		EnableUI:            true,
		DefaultNamespace:    s.namespace,
		// Plain HTTP on loopback: the CSRF cookie must not require HTTPS.
		CORS:             uiconfig.CORS{CookieInsecure: true},
		HideLogs:         true,
		DisableNewsFetch: true,
		// The Start Workflow page is how users start runs from the UI.
		StartWorkflowDisabled: false,
	}
	s.ui = uiserver.NewServer(uioptions.WithConfigProvider(cfg))
	s.uiDone = make(chan struct{})
	go func() {
		defer close(s.uiDone)
		_ = s.ui.Start() // returns when Stop closes it
	}()
	s.uiURL = "http://" + net.JoinHostPort(host, strconv.Itoa(port))
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.uiURL+"/", nil)
		if err != nil {
			return fmt.Errorf("dev server: %w", err)
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %s", resp.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dev server: the Web UI on %s did not answer: %w", s.uiURL, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FrontendAddress is the gRPC host:port clients and workers dial.
func (s *Server) FrontendAddress() string { return s.frontend }

// UIURL is the Web UI's base URL ("" when the UI is disabled).
func (s *Server) UIURL() string { return s.uiURL }

// Namespace is the registered namespace.
func (s *Server) Namespace() string { return s.namespace }

// DBPath is the SQLite file ("" when ephemeral).
func (s *Server) DBPath() string { return s.dbPath }

// LogPath is the server log file ("" when there is none).
func (s *Server) LogPath() string { return s.logPath }

// StartWorkflowURL is the UI page that starts a workflow in the namespace.
func (s *Server) StartWorkflowURL() string {
	if s.uiURL == "" {
		return ""
	}
	return fmt.Sprintf("%s/namespaces/%s/workflows/start-workflow", s.uiURL, s.namespace)
}

// Close stops the UI and the server (workers connected to it should be stopped first)
// and releases the data directory. It waits at most until ctx ends; the server may
// then still be stopping in the background. Calling it again returns the first result.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.stop(ctx) })
	return s.closeErr
}

func (s *Server) stop(ctx context.Context) error {
	s.log.closing.Store(true)
	if s.ui != nil {
		s.ui.Stop()
		select {
		case <-s.uiDone:
		case <-ctx.Done():
		}
	}
	var err error
	if s.temporal != nil {
		done := make(chan error, 1)
		go func() { done <- s.temporal.Stop() }()
		select {
		case err = <-done:
			if err != nil {
				err = fmt.Errorf("dev server: stop: %w", err)
			}
		case <-ctx.Done():
			return fmt.Errorf("dev server: stop: %w (still stopping in the background)", ctx.Err())
		}
	}
	s.release()
	return err
}

// release closes the log and drops the data directory lock.
func (s *Server) release() {
	if s.log != nil {
		_ = s.log.close()
	}
	if s.unlock != nil {
		s.unlock()
		s.unlock = nil
	}
}

// nopSlog discards the SDK client's logs (Start's client only checks the frontend).
func nopSlog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
