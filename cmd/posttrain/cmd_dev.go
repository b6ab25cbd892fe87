package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/devserver"
	"github.com/posttrain/posttrain/devserver/devstack"
	"github.com/posttrain/posttrain/workflows"
)

// devFlags are `posttrain dev`'s own flags.
type devFlags struct {
	dataDir         string
	temporalAddress string
	ip              string
	port            int
	uiPort          int
}

// newDevCmd is `posttrain dev`: the whole local stack in one process.
func newDevCmd(g *globalOptions) *cobra.Command {
	f := &devFlags{}
	cmd := &cobra.Command{
		Use:   "dev [--data-dir DIR] [--port 7233] [--ui-port 8233] [--temporal-address HOST:PORT]",
		Short: "Run PostgreSQL, Temporal with its Web UI, and a worker in one process (Ctrl-C stops all)",
		Long: `dev starts, in one process:

  - the private PostgreSQL cluster under <data-dir>/postgres, unless datastore.url or
    POSTTRAIN_DATABASE_URL names a server;
  - the datastore migrations;
  - a Temporal server persisted in <data-dir>/temporal/temporal.db (SQLite), gRPC on
    127.0.0.1:7233, with the Web UI on http://127.0.0.1:8233 (its log is
    <data-dir>/temporal/temporal.log; only errors are shown here);
  - a worker on temporal.task_queue with the PostTraining workflow and every activity.

It prints what to type on the Web UI's Start Workflow page. Ctrl-C stops the worker,
Temporal and PostgreSQL; the next 'posttrain dev' on the same data directory carries on
with the runs in flight. With --temporal-address only the worker (and the datastore)
run, against that cluster.`,
		Example: `  posttrain dev
  posttrain dev --data-dir /tmp/pt --port 7300            # UI on 8300
  posttrain dev --temporal-address temporal.internal:7233  # worker only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "", "data directory (default data_dir, .posttrain)")
	fl.StringVar(&f.temporalAddress, "temporal-address", "", "use this Temporal cluster (host:port) instead of starting one")
	fl.StringVar(&f.ip, "ip", devserver.DefaultIP, "address the embedded Temporal server and UI listen on")
	fl.IntVar(&f.port, "port", 0, "embedded Temporal gRPC port (default: the port of temporal.address, 7233; 0 = a free port)")
	fl.IntVar(&f.uiPort, "ui-port", 0, "Web UI port (default temporal.ui_port, 8233, or --port + 1000 when --port is given; 0 = a free port, -1 = no UI)")
	return cmd
}

// devPorts resolves the embedded server's ports from the flags and the config.
func devPorts(cmd *cobra.Command, f *devFlags, cfg *configs.Config) (grpcPort, uiPort int, err error) {
	grpcPort = devserver.DefaultGRPCPort
	if _, p, splitErr := net.SplitHostPort(cfg.Temporal.Address); splitErr == nil {
		if n, convErr := strconv.Atoi(p); convErr == nil {
			grpcPort = n
		}
	}
	uiPort = cfg.Temporal.UIPort
	if uiPort == 0 {
		uiPort = devserver.NoUI // ui_port 0 disables the UI
	}
	if cmd.Flags().Changed("port") {
		grpcPort = f.port
		uiPort = 0
		if grpcPort != 0 {
			uiPort = devserver.UIPortFor(grpcPort)
		}
	}
	if cmd.Flags().Changed("ui-port") {
		uiPort = f.uiPort
	}
	if grpcPort < 0 || grpcPort > 65535 {
		return 0, 0, fmt.Errorf("--port %d: want 0-65535", grpcPort)
	}
	if uiPort < devserver.NoUI || uiPort > 65535 {
		return 0, 0, fmt.Errorf("--ui-port %d: want 0-65535, or -1 for no UI", uiPort)
	}
	return grpcPort, uiPort, nil
}

func runDev(cmd *cobra.Command, g *globalOptions, f *devFlags) error {
	ctx := cmd.Context()
	sets := slices.Clone(g.sets)
	if f.dataDir != "" {
		abs, err := filepath.Abs(f.dataDir)
		if err != nil {
			return fmt.Errorf("--data-dir %s: %w", f.dataDir, err)
		}
		sets = append(sets, "data_dir="+abs)
	}
	cfg, err := configs.Load(configs.Sources{Preset: g.preset, File: g.configFile, Sets: sets})
	if err != nil {
		return err
	}
	grpcPort, uiPort, err := devPorts(cmd, f, cfg)
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	st, err := devstack.Start(ctx, devstack.Options{
		Config: cfg, TemporalAddress: f.temporalAddress,
		IP: f.ip, GRPCPort: grpcPort, UIPort: uiPort, Log: stderr,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "ready in %s\n", st.ReadyIn.Round(10*time.Millisecond))
	if err := printDev(cmd.OutOrStdout(), g.jsonOut, st); err != nil {
		_ = st.Close(context.WithoutCancel(ctx))
		return err
	}
	<-ctx.Done()
	fmt.Fprintln(stderr, "stopping: worker, Temporal, PostgreSQL")
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := st.Close(stopCtx); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	fmt.Fprintln(stderr, "stopped")
	return nil
}

// devInfo is what `posttrain dev --json` prints once everything is up.
type devInfo struct {
	TemporalAddress  string   `json:"temporal_address"`
	Namespace        string   `json:"namespace"`
	TaskQueue        string   `json:"task_queue"`
	Queues           []string `json:"queues"`
	WorkflowType     string   `json:"workflow_type"`
	UIURL            string   `json:"ui_url,omitempty"`
	StartWorkflowURL string   `json:"start_workflow_url,omitempty"`
	TemporalDB       string   `json:"temporal_db,omitempty"`
	TemporalLog      string   `json:"temporal_log,omitempty"`
	Database         string   `json:"database"`
	DataDir          string   `json:"data_dir"`
	ReadySeconds     float64  `json:"ready_seconds"`
}

func printDev(w io.Writer, jsonOut bool, st *devstack.Stack) error {
	info := devInfo{
		TemporalAddress: st.Address(), Namespace: st.Namespace(), TaskQueue: st.TaskQueue(),
		Queues: st.Worker.Queues(), WorkflowType: workflows.WorkflowType,
		UIURL: st.UIURL(), StartWorkflowURL: st.StartWorkflowURL(),
		Database: st.DSN(), DataDir: st.DataDir, ReadySeconds: st.ReadyIn.Seconds(),
	}
	if st.Temporal != nil {
		info.TemporalDB, info.TemporalLog = st.Temporal.DBPath(), st.Temporal.LogPath()
	}
	if jsonOut {
		return dsWriteJSON(w, info)
	}
	fmt.Fprintf(w, "posttrain dev is running; Ctrl-C stops everything.\n\n")
	fmt.Fprintf(w, "  Temporal gRPC  %s   namespace %s\n", info.TemporalAddress, info.Namespace)
	if info.TemporalDB != "" {
		fmt.Fprintf(w, "  Temporal data  %s (log %s)\n", info.TemporalDB, info.TemporalLog)
	}
	if info.UIURL != "" {
		fmt.Fprintf(w, "  Web UI         %s\n", info.UIURL)
	}
	fmt.Fprintf(w, "  Worker         task queue %s (polling %v)\n", info.TaskQueue, info.Queues)
	fmt.Fprintf(w, "  Database       %s\n\n", info.Database)
	if info.StartWorkflowURL != "" {
		fmt.Fprintf(w, "Start a run from the Web UI: open %s and fill in\n", info.StartWorkflowURL)
	} else {
		fmt.Fprintf(w, "Start a run from your cluster's Web UI (Start Workflow) with\n")
	}
	fmt.Fprintf(w, "  Workflow ID    any unique name, e.g. posttrain-1\n")
	fmt.Fprintf(w, "  Task Queue     %s\n", info.TaskQueue)
	fmt.Fprintf(w, "  Workflow Type  %s\n", info.WorkflowType)
	fmt.Fprintf(w, "  Input          {}   (JSON; e.g. {\"preset\": \"demo\", \"rounds\": 2})\n")
	fmt.Fprintf(w, "or from a shell: posttrain run start --preset demo --temporal-address %s\n", info.TemporalAddress)
	return nil
}
