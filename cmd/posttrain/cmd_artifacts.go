package main

import "github.com/spf13/cobra"

// newArtifactsCmd is a placeholder until its package lands.
func newArtifactsCmd(*globalOptions) *cobra.Command {
	return &cobra.Command{Use: "artifacts", Short: "(not built yet)", Hidden: true}
}
