package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/posttrain/posttrain/activities"
	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/assets"
	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/datastore/jsonl"
	"github.com/posttrain/posttrain/worker"
	"github.com/posttrain/posttrain/workflows"
)

// temporalFlags locate the cluster; empty values come from the config.
type temporalFlags struct{ address, namespace string }

func (f *temporalFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.address, "temporal-address", "", "Temporal frontend host:port (default: temporal.address, 127.0.0.1:7233)")
	cmd.PersistentFlags().StringVar(&f.namespace, "namespace", "", "Temporal namespace (default: temporal.namespace)")
}

// dial connects to Temporal with the config's address and namespace.
func (f *temporalFlags) dial(g *globalOptions) (client.Client, *configs.Config, error) {
	cfg, err := configFromFlags(g)
	if err != nil {
		return nil, nil, err
	}
	if f.address != "" {
		cfg.Temporal.Address = f.address
	}
	if f.namespace != "" {
		cfg.Temporal.Namespace = f.namespace
	}
	c, err := client.Dial(client.Options{HostPort: cfg.Temporal.Address, Namespace: cfg.Temporal.Namespace})
	if err != nil {
		return nil, nil, fmt.Errorf("connect to Temporal at %s (start one with posttrain dev, or pass --temporal-address): %w", cfg.Temporal.Address, err)
	}
	return c, cfg, nil
}

// uiLink is the Web UI page of a workflow.
func uiLink(cfg *configs.Config, id string) string {
	host, _, ok := strings.Cut(cfg.Temporal.Address, ":")
	if !ok || host == "" {
		host = "127.0.0.1"
	}
	port := cfg.Temporal.UIPort
	if port == 0 {
		port = 8233
	}
	return fmt.Sprintf("http://%s:%d/namespaces/%s/workflows/%s", host, port, cfg.Temporal.Namespace, id)
}

// newRunCmd is `posttrain run`: start and control PostTraining workflows.
func newRunCmd(g *globalOptions) *cobra.Command {
	tf := &temporalFlags{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Start, watch and control post-training runs (Temporal workflows)",
		Long: `Start and control PostTraining workflows on a Temporal cluster. The same run can be
started from the Web UI: workflow type PostTraining, task queue posttrain, input {} or
{"preset": "demo"}.`,
	}
	tf.register(cmd)
	cmd.AddCommand(newRunStartCmd(g, tf), newRunStatusCmd(g, tf), newRunListCmd(g, tf),
		newRunSignalCmd(g, tf, "cancel", "Cancel a run (running activities stop within seconds; stages are marked cancelled)"),
		newRunSignalCmd(g, tf, workflows.SignalPause, "Pause a run between stages"),
		newRunSignalCmd(g, tf, workflows.SignalResume, "Resume a paused run"),
		newRunApproveCmd(g, tf))
	return cmd
}

func newRunStartCmd(g *globalOptions, tf *temporalFlags) *cobra.Command {
	var in workflows.RunInput
	var id string
	var wait bool
	cmd := &cobra.Command{
		Use:     "start [--preset demo] [--set k=v]... [--rounds N] [--wait]",
		Short:   "Start a PostTraining run and print its workflow ID and Web UI link",
		Example: "  posttrain run start --preset demo --rounds 2 --wait\n  posttrain run start --preset demo --set dpo.beta=0.2 --annotator human --require-approval",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in.Preset, in.Overrides = g.preset, g.sets
			if err := in.Validate(); err != nil {
				return err
			}
			c, cfg, err := tf.dial(g)
			if err != nil {
				return err
			}
			defer c.Close()
			if id == "" {
				id = fmt.Sprintf("posttrain-%s", time.Now().UTC().Format("20060102-150405"))
			}
			run, err := c.ExecuteWorkflow(cmd.Context(), client.StartWorkflowOptions{ID: id, TaskQueue: cfg.Temporal.TaskQueue}, workflows.WorkflowType, in)
			if err != nil {
				return fmt.Errorf("start run: %w", err)
			}
			if g.jsonOut {
				if err := dsWriteJSON(cmd.OutOrStdout(), map[string]string{"workflow_id": run.GetID(), "run_id": run.GetRunID(), "ui": uiLink(cfg, run.GetID())}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "started %s\n%s\n", run.GetID(), uiLink(cfg, run.GetID()))
			}
			if !wait {
				return nil
			}
			return watchRun(cmd.Context(), c, run, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "workflow ID (default posttrain-<UTC time>)")
	f.IntVar(&in.Rounds, "rounds", 0, "rounds (0: the config's)")
	f.StringVar(&in.BaseModel, "base-model", "", "base model artifact ID (default: model.base)")
	f.StringVar(&in.Annotator, "annotator", "", "simulated, file or human (default: annotator.kind)")
	f.BoolVar(&in.RequireApproval, "require-approval", false, "wait for `posttrain run approve` after each round")
	f.StringVar(&in.Series, "series", "", "series to continue from (its latest final model)")
	f.Int64Var(&in.Seed, "seed", 0, "seed (0: model.seed)")
	f.StringVar(&in.AnnotationTimeout, "annotation-timeout", "", "bound on the wait for human annotations, e.g. 72h")
	f.BoolVar(&wait, "wait", false, "show stage progress bars until the run ends")
	return cmd
}

// watchRun polls the status query and the running activities' heartbeats, drawing a
// progress bar per stage, until the run ends.
func watchRun(ctx context.Context, c client.Client, run client.WorkflowRun, stderr io.Writer) error {
	done := make(chan error, 1)
	var res workflows.RunResult
	go func() { done <- run.Get(ctx, &res) }()
	var bar *progressbar.ProgressBar
	barKey := ""
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "completed: final model %s\n", res.FinalModel)
			return nil
		case <-tick.C:
			st, progress, err := runStatus(ctx, c, run.GetID())
			if err != nil {
				continue
			}
			key := fmt.Sprintf("round %d %s", st.Round, st.Stage)
			total := 100
			if progress != nil && progress.Total > 0 {
				total = progress.Total
			}
			if key != barKey || bar == nil {
				if bar != nil {
					_ = bar.Finish()
				}
				bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription(key),
					progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
				barKey = key
			}
			if progress != nil {
				bar.ChangeMax(total)
				_ = bar.Set(progress.Step)
				if progress.Loss != 0 {
					bar.Describe(fmt.Sprintf("%s loss %.4f", key, progress.Loss))
				}
			}
		}
	}
}

// runStatus queries a run's status and the heartbeat of its newest running activity
// (of the run or its running round).
func runStatus(ctx context.Context, c client.Client, id string) (workflows.Status, *workflows.Progress, error) {
	var st workflows.Status
	v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
	if err != nil {
		return st, nil, fmt.Errorf("query %s: %w", id, err)
	}
	if err := v.Get(&st); err != nil {
		return st, nil, err
	}
	var best *workflows.Progress
	for _, wid := range []string{id, workflows.RoundWorkflowID(id, st.Round)} {
		d, err := c.DescribeWorkflowExecution(ctx, wid, "")
		if err != nil {
			continue
		}
		for _, pa := range d.GetPendingActivities() {
			if pa.GetHeartbeatDetails() == nil || len(pa.GetHeartbeatDetails().GetPayloads()) == 0 {
				continue
			}
			var p workflows.Progress
			if err := json.Unmarshal(pa.GetHeartbeatDetails().GetPayloads()[0].GetData(), &p); err == nil {
				best = &p
			}
		}
	}
	return st, best, nil
}

func newRunStatusCmd(g *globalOptions, tf *temporalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status ID [--json]",
		Short: "Show a run's round, stage, step/ETA and metrics so far",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := tf.dial(g)
			if err != nil {
				return err
			}
			defer c.Close()
			st, p, err := runStatus(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if g.jsonOut {
				return dsWriteJSON(cmd.OutOrStdout(), map[string]any{"status": st, "activity": p})
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintf(w, "run\t%s\nstate\t%s\nround\t%d of %d\nstage\t%s\n", st.RunID, st.State, st.Round, st.Rounds, st.Stage)
			if p != nil {
				fmt.Fprintf(w, "step\t%d of %d (loss %.4f, ETA %s, checkpoint at step %d)\n", p.Step, p.Total, p.Loss, time.Duration(p.ETASeconds*float64(time.Second)).Round(time.Second), p.CheckpointStep)
			}
			if st.WaitingRound > 0 {
				fmt.Fprintf(w, "waiting on round\t%d\n", st.WaitingRound)
			}
			for _, k := range sortedMetricKeys(st.Metrics) {
				fmt.Fprintf(w, "%s\t%.4f\n", k, st.Metrics[k])
			}
			if st.Error != "" {
				fmt.Fprintf(w, "error\t%s\n", st.Error)
			}
			return w.Flush()
		},
	}
}

func sortedMetricKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func newRunListCmd(g *globalOptions, tf *temporalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list [--json]",
		Short: "List PostTraining runs with their round and stage",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cfg, err := tf.dial(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.ListWorkflow(cmd.Context(), &workflowservice.ListWorkflowExecutionsRequest{
				Namespace: cfg.Temporal.Namespace, Query: fmt.Sprintf("WorkflowType = %q", workflows.WorkflowType)})
			if err != nil {
				return fmt.Errorf("list runs: %w", err)
			}
			type row struct {
				ID     string    `json:"workflow_id"`
				Status string    `json:"status"`
				Round  int64     `json:"round"`
				Stage  string    `json:"stage"`
				Start  time.Time `json:"start_time"`
			}
			var rows []row
			for _, e := range resp.GetExecutions() {
				r := row{ID: e.GetExecution().GetWorkflowId(), Status: e.GetStatus().String(),
					Start: e.GetStartTime().AsTime()}
				// The round and stage are the search attributes the run upserts.
				fields := e.GetSearchAttributes().GetIndexedFields()
				if p, ok := fields[workflows.SearchAttrRound]; ok {
					_ = converter.GetDefaultDataConverter().FromPayload(p, &r.Round)
				}
				if p, ok := fields[workflows.SearchAttrStage]; ok {
					_ = converter.GetDefaultDataConverter().FromPayload(p, &r.Stage)
				}
				rows = append(rows, r)
			}
			if g.jsonOut {
				return dsWriteJSON(cmd.OutOrStdout(), dsNonNil(rows))
			}
			t := newDSTable(cmd.OutOrStdout(), "WORKFLOW ID", "STATUS", "ROUND", "STAGE", "STARTED")
			for _, r := range rows {
				t.row(r.ID, r.Status, fmt.Sprint(r.Round), dsDash(r.Stage), r.Start.Format(time.RFC3339))
			}
			return t.flush()
		},
	}
}

// newRunSignalCmd is run cancel|pause|resume.
func newRunSignalCmd(g *globalOptions, tf *temporalFlags, name, short string) *cobra.Command {
	return &cobra.Command{
		Use:   name + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := tf.dial(g)
			if err != nil {
				return err
			}
			defer c.Close()
			if name == "cancel" {
				err = c.CancelWorkflow(cmd.Context(), args[0], "")
			} else {
				err = c.SignalWorkflow(cmd.Context(), args[0], "", name, nil)
			}
			if err != nil {
				return fmt.Errorf("%s %s: %w", name, args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: sent to %s\n", name, args[0])
			return nil
		},
	}
}

func newRunApproveCmd(g *globalOptions, tf *temporalFlags) *cobra.Command {
	var round int
	cmd := &cobra.Command{
		Use:   "approve ID --round N",
		Short: "Approve the round a run (started with --require-approval) waits on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := tf.dial(g)
			if err != nil {
				return err
			}
			defer c.Close()
			h, err := c.UpdateWorkflow(cmd.Context(), client.UpdateWorkflowOptions{WorkflowID: args[0], UpdateName: workflows.UpdateApproveRound,
				Args: []any{workflows.ApproveRequest{Round: round}}, WaitForStage: client.WorkflowUpdateStageCompleted})
			if err != nil {
				return fmt.Errorf("approve round %d of %s: %w", round, args[0], err)
			}
			var msg string
			if err := h.Get(cmd.Context(), &msg); err != nil {
				return fmt.Errorf("approve round %d of %s: %w", round, args[0], err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), msg)
			return nil
		},
	}
	cmd.Flags().IntVar(&round, "round", 0, "the round to approve")
	_ = cmd.MarkFlagRequired("round")
	return cmd
}

// newAnnotationsCmd is `posttrain annotations submit ID FILE.jsonl`.
func newAnnotationsCmd(g *globalOptions) *cobra.Command {
	tf := &temporalFlags{}
	db := &dbFlags{}
	cmd := &cobra.Command{Use: "annotations", Short: "Hand human preference annotations to a waiting run"}
	tf.register(cmd)
	db.register(cmd)
	submit := &cobra.Command{
		Use:   "submit ID FILE.jsonl",
		Short: "Upload preference annotations and send them to the run waiting for them",
		Long: `Import FILE.jsonl (preference rows: prompt, chosen, rejected[, edited]) into the datastore
as dataset <ID>-human-r<round>, then send the run the dataset's name (never the data)
through the submit-annotations update, which checks the run is waiting for them.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, _, err := tf.dial(g)
			if err != nil {
				return err
			}
			defer c.Close()
			st, _, err := runStatus(ctx, c, args[0])
			if err != nil {
				return err
			}
			if st.State != workflows.StateWaitingAnnotations {
				return fmt.Errorf("run %s is %s, not waiting for annotations", args[0], st.State)
			}
			pool, release, err := openDatastore(ctx, g, db)
			if err != nil {
				return err
			}
			defer release()
			name := fmt.Sprintf("%s-human-r%d", args[0], st.WaitingRound)
			res, err := jsonl.ImportFile(ctx, datastore.New(pool), args[1], jsonl.ImportOptions{Kind: datastore.KindPreferences, Dataset: name, Source: "human"})
			if err != nil {
				return err
			}
			h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: args[0], UpdateName: workflows.UpdateSubmitAnnotations,
				Args: []any{workflows.SubmitAnnotationsRequest{Round: st.WaitingRound, Dataset: name}}, WaitForStage: client.WorkflowUpdateStageCompleted})
			if err != nil {
				return fmt.Errorf("submit annotations to %s: %w", args[0], err)
			}
			var msg string
			if err := h.Get(ctx, &msg); err != nil {
				return fmt.Errorf("submit annotations to %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d rows uploaded to %s; %s\n", res.Rows, name, msg)
			return nil
		},
	}
	cmd.AddCommand(submit)
	return cmd
}

// newScheduleCmd is `posttrain schedule create|list|pause|trigger|delete`.
func newScheduleCmd(g *globalOptions) *cobra.Command {
	tf := &temporalFlags{}
	cmd := &cobra.Command{Use: "schedule", Short: "Run post-training on a schedule; each run continues its series' latest final model"}
	tf.register(cmd)
	var every time.Duration
	var cron, id string
	var in workflows.RunInput
	create := &cobra.Command{
		Use:     "create (--every 24h | --cron EXPR) [--preset P] [--set k=v]... [--id ID]",
		Short:   "Create a schedule of PostTraining runs",
		Example: "  posttrain schedule create --every 24h --preset demo --rounds 1 --id nightly",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (every > 0) == (cron != "") {
				return errors.New("schedule create: give exactly one of --every and --cron")
			}
			c, cfg, err := tf.dial(g)
			if err != nil {
				return err
			}
			defer c.Close()
			if id == "" {
				id = "posttrain-schedule"
			}
			in.Preset, in.Overrides = g.preset, g.sets
			if in.Series == "" {
				in.Series = id
			}
			spec := client.ScheduleSpec{}
			if every > 0 {
				spec.Intervals = []client.ScheduleIntervalSpec{{Every: every}}
			} else {
				spec.CronExpressions = []string{cron}
			}
			_, err = c.ScheduleClient().Create(cmd.Context(), client.ScheduleOptions{
				ID: id, Spec: spec, Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, PauseOnFailure: true,
				Action: &client.ScheduleWorkflowAction{ID: id + "-run", Workflow: workflows.WorkflowType, Args: []any{in}, TaskQueue: cfg.Temporal.TaskQueue},
			})
			if err != nil {
				return fmt.Errorf("create schedule %s: %w", id, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "schedule %s created (series %s)\n", id, in.Series)
			return nil
		},
	}
	f := create.Flags()
	f.DurationVar(&every, "every", 0, "interval between runs, e.g. 24h")
	f.StringVar(&cron, "cron", "", "cron expression, e.g. '0 2 * * *'")
	f.StringVar(&id, "id", "", "schedule ID (default posttrain-schedule; also the series name)")
	f.IntVar(&in.Rounds, "rounds", 0, "rounds per run (0: the config's)")
	f.StringVar(&in.Series, "series", "", "series name (default: the schedule ID)")
	list := &cobra.Command{
		Use: "list", Short: "List schedules", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := tf.dial(g)
			if err != nil {
				return err
			}
			defer c.Close()
			it, err := c.ScheduleClient().List(cmd.Context(), client.ScheduleListOptions{})
			if err != nil {
				return err
			}
			var ids []string
			for it.HasNext() {
				e, err := it.Next()
				if err != nil {
					return err
				}
				ids = append(ids, e.ID)
			}
			if g.jsonOut {
				return dsWriteJSON(cmd.OutOrStdout(), dsNonNil(ids))
			}
			for _, s := range ids {
				fmt.Fprintln(cmd.OutOrStdout(), s)
			}
			return nil
		},
	}
	action := func(name, short string, do func(ctx context.Context, h client.ScheduleHandle) error) *cobra.Command {
		return &cobra.Command{Use: name + " ID", Short: short, Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := tf.dial(g)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := do(cmd.Context(), c.ScheduleClient().GetHandle(cmd.Context(), args[0])); err != nil {
				return fmt.Errorf("%s schedule %s: %w", name, args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "schedule %s: %s done\n", args[0], name)
			return nil
		}}
	}
	cmd.AddCommand(create, list,
		action("pause", "Pause a schedule", func(ctx context.Context, h client.ScheduleHandle) error {
			return h.Pause(ctx, client.SchedulePauseOptions{Note: "paused with posttrain"})
		}),
		action("trigger", "Start a run of a schedule now", func(ctx context.Context, h client.ScheduleHandle) error {
			return h.Trigger(ctx, client.ScheduleTriggerOptions{})
		}),
		action("delete", "Delete a schedule", func(ctx context.Context, h client.ScheduleHandle) error { return h.Delete(ctx) }))
	return cmd
}

// newWorkerCmd is `posttrain worker`: poll the task queues and run the pipeline.
func newWorkerCmd(g *globalOptions) *cobra.Command {
	tf := &temporalFlags{}
	db := &dbFlags{}
	var maxActs int
	var only []string
	cmd := &cobra.Command{
		Use:   "worker [--temporal-address H:P] [--max-activities N] [--queues q1,q2]",
		Short: "Run a worker: the workflows and every activity (or only some queues)",
		Long: `Run a Temporal worker for the pipeline. It polls temporal.task_queue (workflows and
activities) and, when set, temporal.training_task_queue and temporal.sampling_task_queue,
so training and sampling can run on other machines (--queues limits this process to
some of them). Migrations are applied on start. Ctrl-C stops it after the running
activities save their checkpoints.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, cfg, err := tf.dial(g)
			if err != nil {
				return err
			}
			defer c.Close()
			pool, release, err := openDatastore(ctx, g, db)
			if err != nil {
				return err
			}
			defer release()
			if err := datastore.Migrate(ctx, pool); err != nil {
				return err
			}
			store, err := artifacts.New(artifacts.Options{Backend: cfg.Artifacts.Backend, Root: cfg.ArtifactsRoot(), Pool: pool})
			if err != nil {
				return err
			}
			dataDir, err := filepath.Abs(cfg.DataDir)
			if err != nil {
				return err
			}
			if maxActs == 0 {
				maxActs = cfg.Temporal.MaxConcurrentActivities
			}
			ws, err := worker.New(c, activitiesDeps(pool, store, dataDir, cfg), worker.Options{
				TaskQueue: cfg.Temporal.TaskQueue, TrainingQueue: cfg.Temporal.TrainingTaskQueue, SamplingQueue: cfg.Temporal.SamplingTaskQueue,
				MaxConcurrentActivities: maxActs, OnlyQueues: only})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "worker polling %s on %s (namespace %s)\n", strings.Join(ws.Queues(), ", "), cfg.Temporal.Address, cfg.Temporal.Namespace)
			stop := make(chan any)
			go func() {
				select {
				case <-ctx.Done():
				case <-sdkworker.InterruptCh():
				}
				close(stop)
			}()
			return ws.Run(stop)
		},
	}
	tf.register(cmd)
	db.register(cmd)
	cmd.Flags().IntVar(&maxActs, "max-activities", 0, "concurrent activities per queue (default temporal.max_concurrent_activities)")
	cmd.Flags().StringSliceVar(&only, "queues", nil, "poll only these task queues")
	return cmd
}

// activitiesDeps are the worker's activity dependencies from the config. A run whose
// config names no base model uses the shipped one, written under <data_dir>/models.
func activitiesDeps(pool *pgxpool.Pool, store artifacts.Store, dataDir string, cfg *configs.Config) activities.Deps {
	models := filepath.Join(dataDir, "models")
	return activities.Deps{Pool: pool, Store: store, DataDir: dataDir, Threads: cfg.Trainer.Threads,
		DefaultBaseModel: func(context.Context) (string, error) { return assets.WriteBaseModel(models) }}
}
