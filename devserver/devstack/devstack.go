// Package devstack starts, in one process, everything `posttrain dev` runs: the private
// PostgreSQL cluster under the data directory when no DSN is configured, the datastore
// migrations, the embedded Temporal dev server with its Web UI (or a connection to an
// existing cluster), and a worker on the configured task queues. Close stops them in
// reverse order.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/posttrain/posttrain/activities"
	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/assets"
	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/devserver"
	"github.com/posttrain/posttrain/pgserver"
	"github.com/posttrain/posttrain/worker"
)

// Worker is a startable set of Temporal workers (*worker.Workers is one).
type Worker interface {
	Start() error
	Stop()
	// Queues lists the task queues polled.
	Queues() []string
}

// WorkerEnv is what a worker needs from the stack.
type WorkerEnv struct {
	Config  *configs.Config
	Pool    *pgxpool.Pool
	Store   artifacts.Store
	DataDir string
}

// WorkerFactory builds the stack's worker on a connected client.
type WorkerFactory func(c client.Client, env WorkerEnv) (Worker, error)

// PosttrainWorker is the default WorkerFactory: the PostTraining workflows and every
// activity (package worker) on the config's task queues. When the config names no base
// model, runs start from the base model shipped with posttrain (written once under
// <data-dir>/models), so the Web UI's input {} works.
func PosttrainWorker(c client.Client, env WorkerEnv) (Worker, error) {
	cfg := env.Config
	modelsDir := filepath.Join(env.DataDir, "models")
	deps := activities.Deps{
		Pool: env.Pool, Store: env.Store, DataDir: env.DataDir, Threads: cfg.Trainer.Threads,
		DefaultBaseModel: func(context.Context) (string, error) { return assets.WriteBaseModel(modelsDir) },
	}
	ws, err := worker.New(c, deps, worker.Options{
		TaskQueue:               cfg.Temporal.TaskQueue,
		TrainingQueue:           cfg.Temporal.TrainingTaskQueue,
		SamplingQueue:           cfg.Temporal.SamplingTaskQueue,
		MaxConcurrentActivities: cfg.Temporal.MaxConcurrentActivities,
		// The server is in this process: progress bars can move every second.
		ProgressInterval: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("build worker: %w", err)
	}
	return ws, nil
}

// Options configure Start.
type Options struct {
	// Config is the loaded configuration (required). Its data_dir holds the private
	// PostgreSQL cluster, the Temporal SQLite file, artifacts and checkpoints.
	Config *configs.Config
	// TemporalAddress, when set, is an existing cluster's frontend: no embedded server
	// is started and only the worker runs.
	TemporalAddress string
	// IP, GRPCPort and UIPort place the embedded server (devserver.Options: "" =
	// 127.0.0.1, 0 = a free port, devserver.NoUI = no UI).
	IP       string
	GRPCPort int
	UIPort   int
	// PortFallback uses free ports when GRPCPort or UIPort is taken
	// (devserver.Options.PortFallback).
	PortFallback bool
	// Log receives one line per step and the Temporal server's errors; nil discards.
	Log io.Writer
	// NewWorker builds the worker (nil = PosttrainWorker).
	NewWorker WorkerFactory
}

// Stack is a running dev stack.
type Stack struct {
	// Config is the configuration the stack runs with.
	Config *configs.Config
	// DataDir is the absolute data directory.
	DataDir string
	// Postgres is the private cluster (nil when a DSN was configured).
	Postgres *pgserver.Server
	// Pool is the datastore, migrated.
	Pool *pgxpool.Pool
	// Store is the artifact store.
	Store artifacts.Store
	// Temporal is the embedded server (nil with Options.TemporalAddress).
	Temporal *devserver.Server
	// Client is connected to the frontend and the namespace.
	Client client.Client
	// Worker polls the task queues.
	Worker Worker
	// ReadyIn is how long Start took.
	ReadyIn time.Duration

	dsn     string
	address string
	closers []func(context.Context) error
}

// Start brings the stack up; on an error what was started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	began := time.Now()
	if opts.Config == nil {
		return nil, errors.New("dev stack: no config")
	}
	cfg := opts.Config
	if cfg.DataDir == "" {
		return nil, errors.New("dev stack: data_dir is empty")
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("dev stack: data_dir %s: %w", cfg.DataDir, err)
	}
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	logf := func(format string, args ...any) { fmt.Fprintf(log, format+"\n", args...) }
	s := &Stack{Config: cfg, DataDir: dataDir}
	defer func() {
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			_ = s.Close(stopCtx)
			cancel()
		}
	}()

	// The datastore: the configured server, else the private cluster.
	s.dsn = datastore.ResolveDSN(cfg.Datastore.URL)
	if s.dsn == "" {
		logf("starting PostgreSQL (private cluster in %s)", filepath.Join(dataDir, "postgres"))
		pg, err := pgserver.Start(ctx, pgserver.Options{DataDir: dataDir})
		if err != nil {
			return nil, fmt.Errorf("dev stack: %w", err)
		}
		s.Postgres = pg
		s.closers = append(s.closers, pg.Close)
		s.dsn = pg.DSN()
	}
	s.Pool, err = datastore.Open(ctx, s.dsn, datastore.WithMaxConns(cfg.Datastore.MaxConns))
	if err != nil {
		return nil, fmt.Errorf("dev stack: %w", err)
	}
	s.closers = append(s.closers, func(context.Context) error { s.Pool.Close(); return nil })
	if err := datastore.Migrate(ctx, s.Pool); err != nil {
		return nil, fmt.Errorf("dev stack: migrate %s: %w", datastore.RedactDSN(s.dsn), err)
	}
	s.Store, err = artifacts.New(artifacts.Options{Backend: cfg.Artifacts.Backend, Root: cfg.ArtifactsRoot(), Pool: s.Pool})
	if err != nil {
		return nil, fmt.Errorf("dev stack: %w", err)
	}

	// Temporal: the embedded server, or the cluster we were pointed at.
	s.address = opts.TemporalAddress
	if s.address == "" {
		logf("starting Temporal and the Web UI (SQLite in %s)", filepath.Join(dataDir, devserver.SubDir))
		ts, err := devserver.Start(ctx, devserver.Options{
			DataDir: dataDir, IP: opts.IP, GRPCPort: opts.GRPCPort, UIPort: opts.UIPort,
			Namespace: cfg.Temporal.Namespace, Log: log, PortFallback: opts.PortFallback,
		})
		if err != nil {
			return nil, fmt.Errorf("dev stack: %w", err)
		}
		s.Temporal = ts
		s.closers = append(s.closers, ts.Close)
		if ts.FellBack() {
			logf("(port %d or %d is taken, by another Temporal or `posttrain dev`?: using free ports)", opts.GRPCPort, opts.UIPort)
		}
		s.address = ts.FrontendAddress()
	}
	s.Client, err = client.DialContext(ctx, client.Options{
		HostPort: s.address, Namespace: cfg.Temporal.Namespace,
		// The SDK logs every retried poll; errors that matter surface as results.
		Logger: sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	})
	if err != nil {
		return nil, fmt.Errorf("dev stack: connect to Temporal at %s: %w", s.address, err)
	}
	s.closers = append(s.closers, func(context.Context) error { s.Client.Close(); return nil })

	newWorker := opts.NewWorker
	if newWorker == nil {
		newWorker = PosttrainWorker
	}
	w, err := newWorker(s.Client, WorkerEnv{Config: cfg, Pool: s.Pool, Store: s.Store, DataDir: dataDir})
	if err != nil {
		return nil, fmt.Errorf("dev stack: %w", err)
	}
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("dev stack: start worker: %w", err)
	}
	s.Worker = w
	s.closers = append(s.closers, func(context.Context) error { w.Stop(); return nil })
	s.ReadyIn = time.Since(began)
	return s, nil
}

// DSN is the datastore's URL with any password redacted.
func (s *Stack) DSN() string { return datastore.RedactDSN(s.dsn) }

// Address is the Temporal frontend's host:port.
func (s *Stack) Address() string { return s.address }

// Namespace is the Temporal namespace the worker polls in.
func (s *Stack) Namespace() string { return s.Config.Temporal.Namespace }

// TaskQueue is the queue the workflows run on.
func (s *Stack) TaskQueue() string { return s.Config.Temporal.TaskQueue }

// UIURL is the embedded Web UI's URL ("" with an existing cluster or no UI).
func (s *Stack) UIURL() string {
	if s.Temporal == nil {
		return ""
	}
	return s.Temporal.UIURL()
}

// StartWorkflowURL is the embedded UI's Start Workflow page ("" without one).
func (s *Stack) StartWorkflowURL() string {
	if s.Temporal == nil {
		return ""
	}
	return s.Temporal.StartWorkflowURL()
}

// Close stops the worker (running activities get the worker's stop timeout to save
// their checkpoints), the client, the Temporal server, the pool and PostgreSQL, in that
// order, and returns every error. Pass a context that is not already cancelled.
func (s *Stack) Close(ctx context.Context) error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	return errors.Join(errs...)
}
