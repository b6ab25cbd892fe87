// Command posttrain runs the Llama 3 post-training loop (reward models, rejection
// sampling, SFT, DPO, model averaging) as durable Temporal workflows on a native Go
// transformer, with every artifact tracked in PostgreSQL.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// globalOptions are the persistent flags every subcommand sees.
type globalOptions struct {
	configFile string
	preset     string
	sets       []string
	jsonOut    bool
}

func newRootCmd() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "posttrain",
		Short: "Run the Llama 3 post-training loop as a durable, tracked program",
		Long: `posttrain runs the Llama 3 post-training loop -- Bradley-Terry reward models,
rejection sampling, SFT, DPO with formatting-token masking and an NLL term, and model
averaging, for several rounds -- as Temporal workflows on a native Go transformer, with
every dataset, checkpoint and metric tracked in PostgreSQL.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.configFile, "config", "", "YAML config file layered over the preset")
	pf.StringVar(&g.preset, "preset", "", "config preset shipped in configs/ (default \"default\")")
	pf.StringArrayVar(&g.sets, "set", nil, "override one config key, e.g. --set dpo.beta=0.2 (repeatable)")
	pf.BoolVar(&g.jsonOut, "json", false, "print machine-readable JSON instead of tables")
	for _, mk := range commandConstructors() {
		root.AddCommand(mk(g))
	}
	return root
}

// commandConstructors lists the subcommand groups; each lives in its own cmd_*.go file.
func commandConstructors() []func(*globalOptions) *cobra.Command {
	return []func(*globalOptions) *cobra.Command{
		newConfigCmd, newMigrateCmd, newDataCmd, newRunsCmd,
		newArtifactsCmd,
		newModelCmd, newPretrainCmd, newBenchCmd,
		newTokenizerCmd,
		newGenerateCmd, newEvalCmd,
		newSampleCmd,
		newSFTCmd, newDPOCmd,
		newRewardCmd, newAverageCmd,
		newDemoCmd, newReportCmd,
		newRunCmd, newScheduleCmd, newAnnotationsCmd, newWorkerCmd,
		newDevCmd,
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "posttrain: interrupted")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "posttrain:", err)
		os.Exit(1)
	}
}
