package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/artifacts/catalog"
	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/pgserver"
)

// artifactFlags are the overrides every `artifacts` subcommand accepts on top of
// the config (artifacts.backend, artifacts.root, datastore.url).
type artifactFlags struct {
	databaseURL string
	root        string
	backend     string
}

// newArtifactsCmd is `posttrain artifacts`: list, show, get, verify and put the
// models, checkpoints and datasets tracked in the datastore.
func newArtifactsCmd(g *globalOptions) *cobra.Command {
	f := &artifactFlags{}
	cmd := &cobra.Command{
		Use:   "artifacts",
		Short: "List, inspect, fetch and verify tracked artifacts (models, checkpoints, datasets)",
		Long: `Every model, checkpoint and dataset posttrain produces is stored by content (sha256) in
the artifact store and recorded in the datastore with its kind, run and lineage.

The store comes from the config (artifacts.backend: fs or postgres; artifacts.root for fs,
default <data_dir>/artifacts); the database from datastore.url or POSTTRAIN_DATABASE_URL.
When neither is set and a private cluster exists under data_dir (left by posttrain dev or
demo), it is started for the duration of the command.

An ID is an artifact ID (see 'artifacts list') or a bare content sha256.`,
		Example: `  posttrain artifacts list --kind model
  posttrain artifacts show model-3f2a9c1e0b7d4a55
  posttrain artifacts get model-3f2a9c1e0b7d4a55 --out ./policy-round6
  posttrain artifacts verify            # every recorded artifact
  posttrain artifacts put ./my-base-model --kind model`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.databaseURL, "database-url", "", "PostgreSQL DSN (overrides datastore.url and POSTTRAIN_DATABASE_URL)")
	pf.StringVar(&f.root, "artifact-root", "", "fs artifact store directory (overrides artifacts.root)")
	pf.StringVar(&f.backend, "artifact-backend", "", "artifact store backend, fs or postgres (overrides artifacts.backend)")
	cmd.AddCommand(
		newArtifactsListCmd(g, f), newArtifactsShowCmd(g, f), newArtifactsGetCmd(g, f),
		newArtifactsVerifyCmd(g, f), newArtifactsPutCmd(g, f),
	)
	return cmd
}

// artifactsEnv is an open catalog plus what must be released after the command.
type artifactsEnv struct {
	cat     *catalog.Catalog
	pool    *pgxpool.Pool // nil without a database
	closers []func()
}

func (e *artifactsEnv) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// openArtifacts loads the config, applies the flag overrides, connects to the
// database (starting the private cluster under data_dir if that is the only one
// there is) and returns the catalog. needDB makes a missing database an error.
func openArtifacts(ctx context.Context, g *globalOptions, f *artifactFlags, needDB bool) (*artifactsEnv, error) {
	cfg, err := configs.Load(configs.Sources{Preset: g.preset, File: g.configFile, Sets: g.sets})
	if err != nil {
		return nil, err
	}
	opts := artifacts.Options{Backend: cfg.Artifacts.Backend, Root: cfg.ArtifactsRoot()}
	if f.backend != "" {
		opts.Backend = f.backend
	}
	if f.root != "" {
		opts.Root = f.root
	}
	dsn := cfg.Datastore.URL
	if f.databaseURL != "" {
		dsn = f.databaseURL
	}
	env := &artifactsEnv{}
	if dsn == "" && pgserver.ClusterExists(cfg.DataDir) {
		srv, err := pgserver.Start(ctx, pgserver.Options{DataDir: cfg.DataDir})
		if err != nil {
			return nil, err
		}
		env.closers = append(env.closers, func() { srv.Close(context.WithoutCancel(ctx)) })
		dsn = srv.DSN()
	}
	if dsn == "" {
		if needDB || opts.Backend == artifacts.BackendPostgres {
			return nil, fmt.Errorf("no database configured: set --database-url, POSTTRAIN_DATABASE_URL or datastore.url (or run `posttrain dev` once to create the private cluster under %s)", cfg.DataDir)
		}
		env.cat = catalog.New(nil, nil, opts)
		return env, nil
	}
	pool, err := datastore.Open(ctx, dsn)
	if err != nil {
		env.close()
		return nil, err
	}
	env.closers = append(env.closers, pool.Close)
	env.pool = pool
	env.cat = catalog.New(datastore.New(pool), pool, opts)
	return env, nil
}

func newArtifactsListCmd(g *globalOptions, f *artifactFlags) *cobra.Command {
	var filter datastore.ArtifactFilter
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List recorded artifacts, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := openArtifacts(cmd.Context(), g, f, true)
			if err != nil {
				return err
			}
			defer env.close()
			list, err := env.cat.List(cmd.Context(), filter)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.jsonOut {
				if list == nil {
					list = []datastore.Artifact{}
				}
				return writeArtifactsJSON(out, list)
			}
			if len(list) == 0 {
				fmt.Fprintln(out, "no artifacts recorded")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tSIZE\tRUN\tROUND\tCREATED\tSHA256")
			for _, a := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Kind, humanBytes(a.Size), orDash(a.RunID),
					roundOrDash(a.Round), a.CreatedAt.Local().Format(time.DateTime), a.SHA256[:12])
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&filter.Kind, "kind", "", "only artifacts of this kind (model, reward_model, checkpoint, dataset, ...)")
	fl.StringVar(&filter.RunID, "run", "", "only artifacts of this run")
	fl.IntVar(&filter.Round, "round", 0, "only artifacts of this round (0 = all)")
	fl.IntVar(&filter.Limit, "limit", 0, "at most this many (0 = all)")
	return cmd
}

func newArtifactsShowCmd(g *globalOptions, f *artifactFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one artifact: its record, metadata, lineage (parents and children with roles) and files",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := openArtifacts(cmd.Context(), g, f, false)
			if err != nil {
				return err
			}
			defer env.close()
			d, err := env.cat.Show(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.jsonOut {
				return writeArtifactsJSON(cmd.OutOrStdout(), d)
			}
			return printArtifactDetails(cmd.OutOrStdout(), d)
		},
	}
}

func printArtifactDetails(w io.Writer, d catalog.Details) error {
	a := d.Artifact
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if d.Recorded {
		fmt.Fprintf(tw, "ID:\t%s\n", a.ID)
		fmt.Fprintf(tw, "Kind:\t%s\n", a.Kind)
	} else {
		fmt.Fprintf(tw, "ID:\t(not recorded; addressed by content)\n")
	}
	fmt.Fprintf(tw, "SHA256:\t%s\n", d.SHA256)
	fmt.Fprintf(tw, "Store:\t%s\n", d.Backend)
	if d.Recorded {
		fmt.Fprintf(tw, "URI:\t%s\n", orDash(a.URI))
		fmt.Fprintf(tw, "Size:\t%s (%d bytes)\n", humanBytes(a.Size), a.Size)
		fmt.Fprintf(tw, "Run:\t%s\n", orDash(a.RunID))
		fmt.Fprintf(tw, "Round:\t%s\n", roundOrDash(a.Round))
		if a.ProducedBy != 0 {
			fmt.Fprintf(tw, "Produced by:\tstage %d\n", a.ProducedBy)
		}
		fmt.Fprintf(tw, "Created:\t%s\n", a.CreatedAt.Local().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(a.Metadata) > 0 {
		b, err := json.MarshalIndent(a.Metadata, "  ", "  ")
		if err != nil {
			return fmt.Errorf("encode metadata: %w", err)
		}
		fmt.Fprintf(w, "\nMetadata:\n  %s\n", b)
	}
	if d.Recorded {
		printEdges(w, "Parents", "PARENT", d.Parents, func(e datastore.LineageEdge) string { return e.Parent })
		printEdges(w, "Children", "CHILD", d.Children, func(e datastore.LineageEdge) string { return e.Child })
		if len(d.Ancestry) > len(d.Parents) {
			fmt.Fprintln(w, "\nAncestry:")
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  DEPTH\tPARENT\tROLE\tCHILD")
			for _, e := range d.Ancestry {
				fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", e.Depth, e.Parent, e.Role, e.Child)
			}
			tw.Flush()
		}
	}
	switch {
	case d.StoreError != "":
		fmt.Fprintf(w, "\nContent: unavailable: %s\n", d.StoreError)
	case d.Directory:
		fmt.Fprintf(w, "\nFiles (%d):\n", len(d.Files))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  PATH\tSIZE\tSHA256")
		for _, f := range d.Files {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Path, humanBytes(f.Size), f.SHA256[:12])
		}
		tw.Flush()
	default:
		fmt.Fprintln(w, "\nContent: a single file")
	}
	return nil
}

func printEdges(w io.Writer, title, col string, edges []datastore.LineageEdge, other func(datastore.LineageEdge) string) {
	if len(edges) == 0 {
		fmt.Fprintf(w, "\n%s: none\n", title)
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  ROLE\t%s\n", col)
	for _, e := range edges {
		fmt.Fprintf(tw, "  %s\t%s\n", e.Role, other(e))
	}
	tw.Flush()
}

func newArtifactsGetCmd(g *globalOptions, f *artifactFlags) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "get ID --out PATH",
		Short: "Write an artifact to disk, verified: a model directory becomes directory PATH, a file artifact file PATH",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := openArtifacts(cmd.Context(), g, f, false)
			if err != nil {
				return err
			}
			defer env.close()
			bar := newArtifactsBar("get " + args[0])
			res, err := env.cat.Get(cmd.Context(), args[0], out, bar.progress())
			bar.finish()
			if err != nil {
				return err
			}
			if g.jsonOut {
				return writeArtifactsJSON(cmd.OutOrStdout(), res)
			}
			what := "file"
			if res.Directory {
				what = fmt.Sprintf("directory (%d files)", res.Files)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s %s, %s, verified, to %s\n", orDash(res.ID), what, humanBytes(res.Bytes), res.Path)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "destination: must not exist (an empty directory is fine for a directory artifact)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func newArtifactsVerifyCmd(g *globalOptions, f *artifactFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "verify [ID...]",
		Short: "Re-hash stored content against its sha256 (every recorded artifact when no ID is given)",
		Long: `verify reads every byte of the named artifacts (all recorded ones when none is named)
and checks it against its sha256; for a model directory it checks every file against the
manifest. It exits non-zero when any artifact is corrupt or missing.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := openArtifacts(cmd.Context(), g, f, len(args) == 0)
			if err != nil {
				return err
			}
			defer env.close()
			bar := newArtifactsCountBar(len(args))
			results, err := env.cat.Verify(cmd.Context(), args, func(catalog.VerifyResult) { bar.add(1) })
			bar.finish()
			if err != nil {
				return err
			}
			bad := 0
			for _, r := range results {
				if !r.OK() {
					bad++
				}
			}
			out := cmd.OutOrStdout()
			if g.jsonOut {
				if err := writeArtifactsJSON(out, results); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tKIND\tFILES\tSTATUS\tDETAIL")
				for _, r := range results {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", orDash(r.ID), orDash(r.Kind), r.Files, strings.ToUpper(r.Status), oneLine(r.Detail))
				}
				tw.Flush()
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d artifacts failed verification", bad, len(results))
			}
			if !g.jsonOut {
				fmt.Fprintf(out, "%d artifacts verified\n", len(results))
			}
			return nil
		},
	}
}

func newArtifactsPutCmd(g *globalOptions, f *artifactFlags) *cobra.Command {
	var (
		kind, runID string
		round       int
		meta        []string
	)
	cmd := &cobra.Command{
		Use:   "put PATH --kind KIND",
		Short: "Store a file or model directory and record it as an artifact (e.g. a base model to start from)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			md, err := parseArtifactMeta(meta)
			if err != nil {
				return err
			}
			env, err := openArtifacts(cmd.Context(), g, f, true)
			if err != nil {
				return err
			}
			defer env.close()
			// put writes, so like a worker it brings the schema up to date first.
			if err := datastore.Migrate(cmd.Context(), env.pool); err != nil {
				return err
			}
			bar := newArtifactsBar("put " + filepath.Base(args[0]))
			a, err := env.cat.Put(cmd.Context(), catalog.PutRequest{
				Path:     args[0],
				Artifact: datastore.Artifact{Kind: kind, RunID: runID, Round: round, Metadata: md},
			}, bar.progress())
			bar.finish()
			if err != nil {
				return err
			}
			if g.jsonOut {
				return writeArtifactsJSON(cmd.OutOrStdout(), a)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "recorded %s (%s, %s, %s)\n", a.ID, a.Kind, humanBytes(a.Size), a.URI)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&kind, "kind", "", "artifact kind: model, reward_model, checkpoint, dataset, ... (required)")
	fl.StringVar(&runID, "run", "", "run the artifact belongs to")
	fl.IntVar(&round, "round", 0, "round the artifact belongs to")
	fl.StringArrayVar(&meta, "meta", nil, "metadata key=value (repeatable; JSON values such as 3 or true are decoded)")
	_ = cmd.MarkFlagRequired("kind")
	return cmd
}

// parseArtifactMeta turns --meta key=value flags into a metadata map.
func parseArtifactMeta(kvs []string) (map[string]any, error) {
	out := map[string]any{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--meta %q: want key=value", kv)
		}
		var decoded any
		if err := json.Unmarshal([]byte(v), &decoded); err == nil {
			out[k] = decoded
		} else {
			out[k] = v
		}
	}
	return out, nil
}

// artifactsBar is a byte progress bar on stderr, shown only on a terminal.
type artifactsBar struct{ bar *progressbar.ProgressBar }

func stderrIsTerminal() bool { return term.IsTerminal(int(os.Stderr.Fd())) }

func newArtifactsBar(desc string) *artifactsBar {
	return &artifactsBar{bar: progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetVisibility(stderrIsTerminal()),
	)}
}

// newArtifactsCountBar counts artifacts; n = 0 means the total is not known yet.
func newArtifactsCountBar(n int) *artifactsBar {
	total := int64(n)
	if n == 0 {
		total = -1
	}
	return &artifactsBar{bar: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription("verify"),
		progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetVisibility(stderrIsTerminal()),
	)}
}

func (b *artifactsBar) progress() catalog.Progress {
	return catalog.Progress{
		Start: func(total int64) { b.bar.ChangeMax64(total) },
		Add:   func(n int64) { b.bar.Add64(n) },
	}
}

func (b *artifactsBar) add(n int64) { b.bar.Add64(n) }

func (b *artifactsBar) finish() { b.bar.Finish() }

func writeArtifactsJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// humanBytes formats a size with a binary unit: 1.5 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	v, i := float64(n)/unit, 0
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func roundOrDash(r int) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprint(r)
}

// oneLine keeps a multi-line error (one per bad file) in one table cell.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines[1:])
	return strings.Join(lines, "; ")
}
