// Package dpo runs Direct Preference Optimization with formatting-token masking and an NLL
// term on the chosen responses.
package dpo
