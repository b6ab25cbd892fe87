package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"golang.org/x/term"

	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/datastore/jsonl"
	"github.com/posttrain/posttrain/migrations"
	"github.com/posttrain/posttrain/pgserver"
)

// configFromFlags loads the effective config from the global flags and the environment.
func configFromFlags(g *globalOptions) (*configs.Config, error) {
	return configs.Load(configs.Sources{Preset: g.preset, File: g.configFile, Sets: g.sets})
}

// newConfigCmd is `posttrain config`: show the effective config, list presets and keys.
func newConfigCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show the effective configuration, the presets and every key",
		Long: `The configuration is layered, later sources winning:

  1. the embedded preset "default" (every key, documented)
  2. --preset NAME (e.g. demo)
  3. --config FILE.yaml
  4. environment: POSTTRAIN_<SECTION>_<KEY>, e.g. POSTTRAIN_DPO_BETA=0.2;
     POSTTRAIN_DATABASE_URL sets datastore.url
  5. --set section.key=value (repeatable), e.g. --set sampling.k=30

Unknown keys, ill-typed values and out-of-range values are errors naming the key, the
reason and the source that set it.`,
	}
	cmd.AddCommand(newConfigShowCmd(g), newConfigPresetsCmd(g), newConfigKeysCmd(g))
	return cmd
}

func newConfigShowCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Print the effective config (YAML, or JSON with --json); the DB password is redacted",
		Example: `  posttrain config show
  posttrain config show --preset demo --set dpo.beta=0.2
  posttrain config show --json | jq .dpo`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := configFromFlags(g)
			if err != nil {
				return err
			}
			r := c.Redacted()
			if g.jsonOut {
				return dsWriteJSON(cmd.OutOrStdout(), r)
			}
			var buf bytes.Buffer
			enc := yaml.NewEncoder(&buf)
			enc.SetIndent(2)
			if err := enc.Encode(r); err != nil {
				return fmt.Errorf("print config: %w", err)
			}
			_, err = cmd.OutOrStdout().Write(buf.Bytes())
			return err
		},
	}
}

// presetInfo is one line of `config presets`.
type presetInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

func newConfigPresetsCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "presets",
		Short: "List the embedded presets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out []presetInfo
			for _, name := range configs.PresetNames() {
				b, err := configs.PresetYAML(name)
				if err != nil {
					return err
				}
				out = append(out, presetInfo{Name: name, Description: presetDescription(name, b)})
			}
			if g.jsonOut {
				return dsWriteJSON(cmd.OutOrStdout(), out)
			}
			tw := newDSTable(cmd.OutOrStdout(), "PRESET", "DESCRIPTION")
			for _, p := range out {
				tw.row(p.Name, p.Description)
			}
			return tw.flush()
		},
	}
}

// presetDescription is the preset's leading comment ("# name: what it is").
func presetDescription(name string, b []byte) string {
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "#") {
			break
		}
		lines = append(lines, strings.TrimSpace(strings.TrimPrefix(l, "#")))
	}
	d := strings.Join(lines, " ")
	return strings.TrimSpace(strings.TrimPrefix(d, name+":"))
}

func newConfigKeysCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "keys",
		Short: "List every config key with its type and environment variable",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys := configs.Keys()
			if g.jsonOut {
				return dsWriteJSON(cmd.OutOrStdout(), keys)
			}
			tw := newDSTable(cmd.OutOrStdout(), "KEY", "TYPE", "ENV")
			for _, k := range keys {
				tw.row(k.Path, k.Type, k.Env)
			}
			return tw.flush()
		},
	}
}

// dbFlags is the --database-url override shared by the database commands.
type dbFlags struct {
	url string
}

func (f *dbFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.url, "database-url", "", "PostgreSQL DSN (overrides datastore.url and POSTTRAIN_DATABASE_URL)")
}

// openDatastore connects to the configured database: --database-url, else datastore.url
// (or POSTTRAIN_DATABASE_URL), else the private cluster under data_dir when one exists.
// The returned func releases everything.
func openDatastore(ctx context.Context, g *globalOptions, f *dbFlags) (*pgxpool.Pool, func(), error) {
	cfg, err := configFromFlags(g)
	if err != nil {
		return nil, nil, err
	}
	dsn := f.url
	if dsn == "" {
		dsn = cfg.Datastore.URL
	}
	var closers []func()
	release := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if dsn == "" && pgserver.ClusterExists(cfg.DataDir) {
		srv, err := pgserver.Start(ctx, pgserver.Options{DataDir: cfg.DataDir})
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, func() { _ = srv.Close(context.WithoutCancel(ctx)) })
		dsn = srv.DSN()
	}
	if dsn == "" {
		return nil, nil, fmt.Errorf("no database configured: set --database-url, %s or datastore.url (or run `posttrain dev` once to create the private cluster under %s)", datastore.EnvDatabaseURL, cfg.DataDir)
	}
	pool, err := datastore.Open(ctx, dsn, datastore.WithMaxConns(cfg.Datastore.MaxConns))
	if err != nil {
		release()
		return nil, nil, err
	}
	closers = append(closers, pool.Close)
	return pool, release, nil
}

// schemaHint turns "relation does not exist" into advice to migrate.
func schemaHint(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" {
		return fmt.Errorf("%w (the database has no posttrain schema yet: run `posttrain migrate`)", err)
	}
	return err
}

// newMigrateCmd is `posttrain migrate`.
func newMigrateCmd(g *globalOptions) *cobra.Command {
	f := &dbFlags{}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the embedded schema migrations to the database (safe to re-run and to run concurrently)",
		Long: `migrate applies the SQL migrations embedded in this binary that the database has not
seen, each in its own transaction, under an advisory lock so that several processes may
migrate at once. Re-running it is a no-op. Workers and 'posttrain dev' migrate on start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pool, release, err := openDatastore(ctx, g, f)
			if err != nil {
				return err
			}
			defer release()
			applied, err := datastore.MigrateFS(ctx, pool, migrations.FS)
			if err != nil {
				return err
			}
			versions, err := datastore.AppliedVersions(ctx, pool)
			if err != nil {
				return err
			}
			names := make([]string, len(applied))
			for i, m := range applied {
				names[i] = m.Name
			}
			if g.jsonOut {
				return dsWriteJSON(cmd.OutOrStdout(), map[string]any{"applied": names, "versions": versions})
			}
			w := cmd.OutOrStdout()
			for _, n := range names {
				fmt.Fprintf(w, "applied %s\n", n)
			}
			latest := 0
			if len(versions) > 0 {
				latest = versions[len(versions)-1]
			}
			if len(names) == 0 {
				fmt.Fprintf(w, "schema is current (version %04d, %d migrations)\n", latest, len(versions))
			} else {
				fmt.Fprintf(w, "schema now at version %04d (%d migrations)\n", latest, len(versions))
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

// newDataCmd is `posttrain data import|export|list`.
func newDataCmd(g *globalOptions) *cobra.Command {
	f := &dbFlags{}
	cmd := &cobra.Command{
		Use:   "data",
		Short: "Import, export and list datasets (prompts, preference pairs, SFT examples) as JSONL",
		Long: `Datasets live in the datastore. JSONL rows use the formats TRL users already have:

  preferences  {"prompt": ..., "chosen": ..., "rejected": ...} with strings or chat message
               lists ([{"role": "user", "content": "..."}]); optional "edited" (a third
               response ranked above chosen), "margin" (number), "rating" (string or
               number); without "prompt", chosen and rejected may be whole conversations
               sharing their opening turns (TRL's implicit prompt)
  sft          {"messages": [...]} or {"prompt": ..., "completion": ...}
  prompts      {"prompt": ...} or {"messages": [...]}
  pre-tokenized: prompt_ids, chosen_ids, rejected_ids, edited_ids, completion_ids
               (lists of token ids, used exactly as given)

Any row may carry "split": "train" or "eval"; other keys are kept as metadata. An import
is one transaction: a bad line is an error naming file:line and the reason, and nothing
of that file is imported. Importing the same rows twice adds nothing.`,
	}
	f.register(cmd)
	cmd.AddCommand(newDataImportCmd(g, f), newDataExportCmd(g, f), newDataListCmd(g, f))
	return cmd
}

func checkKind(kind string) error {
	switch kind {
	case datastore.KindPrompts, datastore.KindPreferences, datastore.KindSFT:
		return nil
	case "":
		return errors.New("--kind is required: prompts, preferences or sft")
	}
	return fmt.Errorf("--kind %q: want prompts, preferences or sft", kind)
}

func newDataImportCmd(g *globalOptions, f *dbFlags) *cobra.Command {
	var opt jsonl.ImportOptions
	cmd := &cobra.Command{
		Use:   "import --kind prompts|preferences|sft FILE.jsonl",
		Short: "Import a JSONL file into a dataset, all or nothing",
		Example: `  posttrain data import --kind preferences pairs.jsonl              # dataset "pairs"
  posttrain data import --kind prompts heldout.jsonl --split eval --dataset task-eval`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkKind(opt.Kind); err != nil {
				return err
			}
			path := args[0]
			file, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("import: %w", err)
			}
			defer file.Close()
			var r io.Reader = file
			if st, err := file.Stat(); err == nil && dsIsTerminal(os.Stderr) {
				bar := progressbar.NewOptions64(st.Size(), progressbar.OptionSetWriter(cmd.ErrOrStderr()),
					progressbar.OptionSetDescription("reading "+filepath.Base(path)), progressbar.OptionShowBytes(true),
					progressbar.OptionClearOnFinish())
				pr := progressbar.NewReader(file, bar)
				r = &pr
			}
			ctx := cmd.Context()
			pool, release, err := openDatastore(ctx, g, f)
			if err != nil {
				return err
			}
			defer release()
			// Importing is a write: bring the schema up to date first (a no-op when current).
			if _, err := datastore.MigrateFS(ctx, pool, migrations.FS); err != nil {
				return err
			}
			res, err := jsonl.Import(ctx, datastore.New(pool), r, path, opt)
			if err != nil {
				return err
			}
			if g.jsonOut {
				return dsWriteJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s into dataset %q (%s): %d rows, %d new, %d already present\n",
				path, res.Dataset, res.Kind, res.Rows, res.Inserted, res.Duplicates)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opt.Kind, "kind", "", "row kind: prompts, preferences or sft (required)")
	fl.StringVar(&opt.Dataset, "dataset", "", "target dataset (default: the file name without extension)")
	fl.StringVar(&opt.Split, "split", "", "split of rows without their own \"split\": train or eval (default train)")
	fl.IntVar(&opt.Round, "round", 0, "round that produced the rows (0 for external data)")
	fl.StringVar(&opt.Description, "description", "", "description of a new dataset")
	fl.IntVar(&opt.MaxLineBytes, "max-line-bytes", jsonl.DefaultMaxLineBytes, "longest line accepted")
	return cmd
}

func newDataExportCmd(g *globalOptions, f *dbFlags) *cobra.Command {
	var kind, dataset, split string
	cmd := &cobra.Command{
		Use:   "export --kind prompts|preferences|sft FILE.jsonl",
		Short: "Export a dataset as JSONL (\"-\" for stdout)",
		Example: `  posttrain data export --kind preferences pairs.jsonl               # dataset "pairs"
  posttrain data export --kind sft --dataset seed --split eval -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkKind(kind); err != nil {
				return err
			}
			path := args[0]
			if dataset == "" {
				if path == "-" {
					return errors.New("--dataset is required when exporting to stdout")
				}
				base := filepath.Base(path)
				dataset = strings.TrimSuffix(base, filepath.Ext(base))
			}
			ctx := cmd.Context()
			pool, release, err := openDatastore(ctx, g, f)
			if err != nil {
				return err
			}
			defer release()
			store := datastore.New(pool)
			d, err := store.GetDataset(ctx, dataset)
			if err != nil {
				return schemaHint(err)
			}
			if d.Kind != kind {
				return fmt.Errorf("dataset %q holds %s, not %s", dataset, d.Kind, kind)
			}
			if path == "-" {
				_, err := jsonl.Export(ctx, store, cmd.OutOrStdout(), dataset, split)
				return err
			}
			n, err := exportAtomically(ctx, store, path, dataset, split)
			if err != nil {
				return err
			}
			if g.jsonOut {
				return dsWriteJSON(cmd.OutOrStdout(), map[string]any{"file": path, "dataset": dataset, "kind": kind, "rows": n})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported %d rows of dataset %q (%s) to %s\n", n, dataset, kind, path)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&kind, "kind", "", "row kind: prompts, preferences or sft (required; must match the dataset)")
	fl.StringVar(&dataset, "dataset", "", "dataset to export (default: the file name without extension)")
	fl.StringVar(&split, "split", "", "export only this split (train or eval)")
	return cmd
}

// exportAtomically writes the export to a temporary file beside path and renames it
// into place, so a failed export never leaves a half-written file.
func exportAtomically(ctx context.Context, store *datastore.Store, path, dataset, split string) (int, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return 0, fmt.Errorf("export %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	n, err := jsonl.Export(ctx, store, tmp, dataset, split)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return 0, fmt.Errorf("export %s: %w", path, err)
	}
	return n, nil
}

func newDataListCmd(g *globalOptions, f *dbFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List datasets with their row counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pool, release, err := openDatastore(ctx, g, f)
			if err != nil {
				return err
			}
			defer release()
			ds, err := datastore.New(pool).ListDatasets(ctx)
			if err != nil {
				return schemaHint(err)
			}
			if g.jsonOut {
				return dsWriteJSON(cmd.OutOrStdout(), dsNonNil(ds))
			}
			tw := newDSTable(cmd.OutOrStdout(), "DATASET", "KIND", "ROWS", "EVAL", "SOURCE", "CREATED")
			for _, d := range ds {
				tw.row(d.Name, d.Kind, fmt.Sprint(d.Rows), fmt.Sprint(d.EvalRows), dsDash(d.Source), d.CreatedAt.Format(time.DateTime))
			}
			return tw.flush()
		},
	}
}

// newRunsCmd is `posttrain runs list|show`: what the datastore knows about runs.
func newRunsCmd(g *globalOptions) *cobra.Command {
	f := &dbFlags{}
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List runs and show a run's rounds, stages, metrics and artifacts from the datastore",
		Long: `runs reads the datastore: every PostTraining run with its status, each round's models,
each stage's attempts, checkpoint and timing, the final value of every metric, and the
artifacts the run produced. (To start, pause or cancel runs, see 'posttrain run'.)`,
	}
	f.register(cmd)
	cmd.AddCommand(newRunsListCmd(g, f), newRunsShowCmd(g, f))
	return cmd
}

func newRunsListCmd(g *globalOptions, f *dbFlags) *cobra.Command {
	var filter datastore.RunFilter
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List runs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pool, release, err := openDatastore(ctx, g, f)
			if err != nil {
				return err
			}
			defer release()
			runs, err := datastore.New(pool).ListRuns(ctx, filter)
			if err != nil {
				return schemaHint(err)
			}
			if g.jsonOut {
				for i := range runs {
					runs[i].Config = nil // `runs show` has it; keep the list small
				}
				return dsWriteJSON(cmd.OutOrStdout(), dsNonNil(runs))
			}
			tw := newDSTable(cmd.OutOrStdout(), "RUN", "STATUS", "PRESET", "SERIES", "RESULT", "CREATED", "WORKFLOW")
			for _, r := range runs {
				tw.row(r.ID, r.Status, dsDash(r.Preset), dsDash(r.Series), dsDash(r.ResultArtifactID), r.CreatedAt.Format(time.DateTime), dsDash(r.WorkflowID))
			}
			return tw.flush()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&filter.Series, "series", "", "only runs of this schedule series")
	fl.StringVar(&filter.Status, "status", "", "only runs with this status")
	fl.IntVar(&filter.Limit, "limit", 50, "at most this many runs (0 for all)")
	return cmd
}

// runDetails is `runs show --json`.
type runDetails struct {
	Run       datastore.Run        `json:"run"`
	Rounds    []datastore.Round    `json:"rounds"`
	Stages    []datastore.Stage    `json:"stages"`
	Metrics   []datastore.Metric   `json:"metrics"`
	Artifacts []datastore.Artifact `json:"artifacts"`
}

func newRunsShowCmd(g *globalOptions, f *dbFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show RUN_ID",
		Short: "Show a run: rounds, stages, final metrics and artifacts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			pool, release, err := openDatastore(ctx, g, f)
			if err != nil {
				return err
			}
			defer release()
			d, err := loadRunDetails(ctx, datastore.New(pool), args[0])
			if err != nil {
				return schemaHint(err)
			}
			if g.jsonOut {
				return dsWriteJSON(cmd.OutOrStdout(), d)
			}
			return printRunDetails(cmd.OutOrStdout(), d)
		},
	}
}

func loadRunDetails(ctx context.Context, s *datastore.Store, id string) (*runDetails, error) {
	run, err := s.GetRun(ctx, id)
	if err != nil {
		return nil, err
	}
	d := &runDetails{Run: run}
	if d.Rounds, err = s.ListRounds(ctx, id); err != nil {
		return nil, err
	}
	if d.Stages, err = s.ListStages(ctx, id, 0); err != nil {
		return nil, err
	}
	if d.Metrics, err = s.FinalMetrics(ctx, id); err != nil {
		return nil, err
	}
	if d.Artifacts, err = s.ListArtifacts(ctx, datastore.ArtifactFilter{RunID: id}); err != nil {
		return nil, err
	}
	d.Rounds, d.Stages, d.Metrics, d.Artifacts = dsNonNil(d.Rounds), dsNonNil(d.Stages), dsNonNil(d.Metrics), dsNonNil(d.Artifacts)
	return d, nil
}

func printRunDetails(w io.Writer, d *runDetails) error {
	r := d.Run
	fmt.Fprintf(w, "run       %s\nstatus    %s\n", r.ID, r.Status)
	for _, kv := range [][2]string{
		{"workflow", r.WorkflowID}, {"run id", r.TemporalRunID}, {"preset", r.Preset}, {"series", r.Series},
		{"result", r.ResultArtifactID}, {"error", r.Error},
	} {
		if kv[1] != "" {
			fmt.Fprintf(w, "%-9s %s\n", kv[0], kv[1])
		}
	}
	fmt.Fprintf(w, "created   %s\nupdated   %s\n", r.CreatedAt.Format(time.DateTime), r.UpdatedAt.Format(time.DateTime))

	if len(d.Rounds) > 0 {
		fmt.Fprintln(w, "\nROUNDS")
		tw := newDSTable(w, "ROUND", "STATUS", "POLICY", "FINAL MODEL", "TIME", "ERROR")
		for _, rd := range d.Rounds {
			tw.row(fmt.Sprint(rd.N), rd.Status, dsDash(rd.PolicyArtifactID), dsDash(rd.FinalArtifactID), dsSpan(rd.StartedAt, rd.FinishedAt), dsDash(dsOneLine(rd.Error)))
		}
		if err := tw.flush(); err != nil {
			return err
		}
	}
	if len(d.Stages) > 0 {
		fmt.Fprintln(w, "\nSTAGES")
		tw := newDSTable(w, "ROUND", "KIND", "VARIANT", "STATUS", "ATTEMPT", "CHECKPOINT", "OUTPUT", "TIME", "ERROR")
		for _, st := range d.Stages {
			ckpt := "-"
			if st.CheckpointArtifactID != "" {
				ckpt = fmt.Sprintf("%s@%d", st.CheckpointArtifactID, st.CheckpointStep)
			}
			tw.row(fmt.Sprint(st.Round), st.Kind, dsDash(st.Variant), st.Status, fmt.Sprint(st.Attempt), ckpt,
				dsDash(st.OutputArtifactID), dsSpan(st.StartedAt, st.FinishedAt), dsDash(dsOneLine(st.Error)))
		}
		if err := tw.flush(); err != nil {
			return err
		}
	}
	if len(d.Metrics) > 0 {
		fmt.Fprintln(w, "\nFINAL METRICS")
		tw := newDSTable(w, "ROUND", "STAGE", "VARIANT", "NAME", "STEP", "VALUE")
		for _, m := range d.Metrics {
			tw.row(fmt.Sprint(m.Round), m.Stage, dsDash(m.Variant), m.Name, fmt.Sprint(m.Step), fmt.Sprintf("%.6g", m.Value))
		}
		if err := tw.flush(); err != nil {
			return err
		}
	}
	if len(d.Artifacts) > 0 {
		fmt.Fprintln(w, "\nARTIFACTS")
		tw := newDSTable(w, "ID", "KIND", "ROUND", "SIZE", "CREATED")
		for _, a := range d.Artifacts {
			tw.row(a.ID, a.Kind, fmt.Sprint(a.Round), fmt.Sprint(a.Size), a.CreatedAt.Format(time.DateTime))
		}
		return tw.flush()
	}
	return nil
}

// span formats a start-finish interval ("-" when not started, "running" when not done).
func dsSpan(start, end *time.Time) string {
	switch {
	case start == nil:
		return "-"
	case end == nil:
		return "running"
	}
	return end.Sub(*start).Round(time.Millisecond).String()
}

// table is a small tabwriter wrapper for the human-readable output.
type dsTable struct{ tw *tabwriter.Writer }

func newDSTable(w io.Writer, headers ...string) *dsTable {
	t := &dsTable{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(headers...)
	return t
}

func (t *dsTable) row(cols ...string) { fmt.Fprintln(t.tw, strings.Join(cols, "\t")) }

func (t *dsTable) flush() error { return t.tw.Flush() }

func dsWriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func dsDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// dsNonNil makes empty results print as [] rather than null in JSON.
func dsNonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func dsIsTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// dsOneLine keeps the first line of a (possibly multi-line) error text.
func dsOneLine(s string) string {
	first, _, cut := strings.Cut(strings.TrimSpace(s), "\n")
	if cut {
		return first + " ..."
	}
	return first
}
