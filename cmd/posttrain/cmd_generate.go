package main

import "github.com/spf13/cobra"

// newGenerateCmd is a placeholder until its package lands.
func newGenerateCmd(*globalOptions) *cobra.Command {
	return &cobra.Command{Use: "generate", Short: "(not built yet)", Hidden: true}
}

// newEvalCmd is a placeholder until its package lands.
func newEvalCmd(*globalOptions) *cobra.Command {
	return &cobra.Command{Use: "eval", Short: "(not built yet)", Hidden: true}
}
