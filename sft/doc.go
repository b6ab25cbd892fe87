// Package sft runs supervised fine-tuning on assistant tokens only, with optional packing.
package sft
