package main

import "github.com/spf13/cobra"

// newConfigCmd is a placeholder until its package lands.
func newConfigCmd(*globalOptions) *cobra.Command {
	return &cobra.Command{Use: "config", Short: "(not built yet)", Hidden: true}
}

// newMigrateCmd is a placeholder until its package lands.
func newMigrateCmd(*globalOptions) *cobra.Command {
	return &cobra.Command{Use: "migrate", Short: "(not built yet)", Hidden: true}
}

// newDataCmd is a placeholder until its package lands.
func newDataCmd(*globalOptions) *cobra.Command {
	return &cobra.Command{Use: "data", Short: "(not built yet)", Hidden: true}
}

// newRunsCmd is a placeholder until its package lands.
func newRunsCmd(*globalOptions) *cobra.Command {
	return &cobra.Command{Use: "runs", Short: "(not built yet)", Hidden: true}
}
