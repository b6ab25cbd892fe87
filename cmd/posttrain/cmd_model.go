package main

import "github.com/spf13/cobra"

// newModelCmd is a placeholder until its package lands.
func newModelCmd(*globalOptions) *cobra.Command {
	return &cobra.Command{Use: "model", Short: "(not built yet)", Hidden: true}
}

// newPretrainCmd is a placeholder until its package lands.
func newPretrainCmd(*globalOptions) *cobra.Command {
	return &cobra.Command{Use: "pretrain", Short: "(not built yet)", Hidden: true}
}

// newBenchCmd is a placeholder until its package lands.
func newBenchCmd(*globalOptions) *cobra.Command {
	return &cobra.Command{Use: "bench", Short: "(not built yet)", Hidden: true}
}
