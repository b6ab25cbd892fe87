package main

import "github.com/spf13/cobra"

// newTokenizerCmd is a placeholder until its package lands.
func newTokenizerCmd(*globalOptions) *cobra.Command {
	return &cobra.Command{Use: "tokenizer", Short: "(not built yet)", Hidden: true}
}
