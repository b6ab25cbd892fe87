package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/posttrain/posttrain/tokenizer"
)

// newTokenizerCmd groups the tokenizer commands: train, encode and decode.
func newTokenizerCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tokenizer",
		Short: "Train, inspect and debug byte-level BPE tokenizers (Hugging Face tokenizer.json)",
		Long: `Byte-level BPE tokenizers in the Llama 3 style: the Llama 3 pre-tokenizer, the Llama 3
special tokens (<|begin_of_text|>, <|eot_id|>, ...) and a Hugging Face tokenizer.json that
the tokenizers library loads. A tokenizer directory holds just tokenizer.json.`,
	}
	cmd.AddCommand(newTokenizerTrainCmd(g), newTokenizerEncodeCmd(g), newTokenizerDecodeCmd(g))
	return cmd
}

// tokenizerTrainSummary is what `tokenizer train` reports.
type tokenizerTrainSummary struct {
	Out           string  `json:"out"`
	VocabSize     int     `json:"vocab_size"`
	Merges        int     `json:"merges"`
	SpecialTokens int     `json:"special_tokens"`
	InputFiles    int     `json:"input_files"`
	InputBytes    int64   `json:"input_bytes"`
	InputTokens   int64   `json:"input_tokens"`
	BytesPerToken float64 `json:"bytes_per_token"`
	Seconds       float64 `json:"seconds"`
}

func newTokenizerTrainCmd(g *globalOptions) *cobra.Command {
	var (
		vocab, minFreq, reserved int
		out                      string
		overwrite                bool
	)
	cmd := &cobra.Command{
		Use:   "train --vocab N --out DIR FILES...",
		Short: "Learn a byte-level BPE vocabulary from text files",
		Long: `Learn a byte-level BPE vocabulary of exactly --vocab ids from text: 256 byte tokens, the
learned merges, then the 7 Llama 3 special tokens (and --reserved-specials more) at the
end. Training is deterministic: the same files give the same tokenizer.

Files ending in .jsonl are read row by row, taking the "text", "prompt", "completion",
"chosen" and "rejected" string fields and rendering "messages" (and message lists under
those keys) the way the chat template encodes them. Other files are plain text.

Training stops early, with a smaller vocabulary, when no pair of tokens occurs at least
--min-frequency times. The summary reports the compression on the input (bytes/token).`,
		Example: `  posttrain tokenizer train --vocab 4096 --out tok corpus.txt more.txt
  posttrain tokenizer train --vocab 512 --out tok chats.jsonl --json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if vocab <= 0 {
				return errors.New("--vocab is required (e.g. --vocab 4096)")
			}
			if out == "" {
				return errors.New("--out is required: the directory to write tokenizer.json to")
			}
			target := filepath.Join(out, tokenizer.FileName)
			if _, err := os.Stat(target); err == nil && !overwrite {
				return fmt.Errorf("%s exists (use --overwrite to replace it)", target)
			}
			var total int64
			for _, f := range files {
				st, err := os.Stat(f)
				if err != nil {
					return fmt.Errorf("corpus: %w", err)
				}
				if st.IsDir() {
					return fmt.Errorf("corpus: %s is a directory; pass files", f)
				}
				total += st.Size()
			}
			start := time.Now()
			errw := cmd.ErrOrStderr()
			readBar := progressbar.NewOptions64(total,
				progressbar.OptionSetWriter(errw),
				progressbar.OptionSetDescription("reading"),
				progressbar.OptionShowBytes(true),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish())
			tr := tokenizer.NewTrainer(tokenizer.TrainOptions{MinFrequency: minFreq, ReservedSpecialTokens: reserved})
			for _, f := range files {
				if err := tr.AddFile(cmd.Context(), f, func(n int64) { _ = readBar.Add64(n) }); err != nil {
					return err
				}
			}
			_ = readBar.Finish()
			var mergeBar *progressbar.ProgressBar
			tr.SetProgress(func(done, total int) {
				if mergeBar == nil {
					mergeBar = progressbar.NewOptions(total,
						progressbar.OptionSetWriter(errw),
						progressbar.OptionSetDescription("merges"),
						progressbar.OptionShowCount(),
						progressbar.OptionThrottle(100*time.Millisecond),
						progressbar.OptionClearOnFinish())
				}
				_ = mergeBar.Set(done)
			})
			tok, err := tr.Train(cmd.Context(), vocab)
			if mergeBar != nil {
				_ = mergeBar.Finish()
			}
			if err != nil {
				return err
			}
			if err := tok.SaveDir(out); err != nil {
				return err
			}
			bytes, tokens := tr.Evaluate(tok)
			s := tokenizerTrainSummary{
				Out: target, VocabSize: tok.VocabSize(), Merges: tok.NumMerges(),
				SpecialTokens: len(tok.AddedTokens()), InputFiles: len(files),
				InputBytes: bytes, InputTokens: tokens, Seconds: time.Since(start).Seconds(),
			}
			if tokens > 0 {
				s.BytesPerToken = float64(bytes) / float64(tokens)
			}
			return printTokenizerTrainSummary(cmd.OutOrStdout(), g.jsonOut, s, vocab)
		},
	}
	f := cmd.Flags()
	f.IntVar(&vocab, "vocab", 0, "vocabulary size: byte tokens + merges + special tokens (required)")
	f.StringVar(&out, "out", "", "directory to write tokenizer.json to (required)")
	f.IntVar(&minFreq, "min-frequency", 2, "stop when the most frequent pair occurs fewer times")
	f.IntVar(&reserved, "reserved-specials", 0, "add N <|reserved_special_token_K|> tokens after the Llama 3 ones")
	f.BoolVar(&overwrite, "overwrite", false, "replace an existing tokenizer.json in --out")
	return cmd
}

func printTokenizerTrainSummary(w io.Writer, asJSON bool, s tokenizerTrainSummary, asked int) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "wrote\t%s\n", s.Out)
	fmt.Fprintf(tw, "vocab size\t%d", s.VocabSize)
	if s.VocabSize < asked {
		fmt.Fprintf(tw, " (asked %d: no pair left above --min-frequency)", asked)
	}
	fmt.Fprintf(tw, "\nmerges\t%d\n", s.Merges)
	fmt.Fprintf(tw, "special tokens\t%d\n", s.SpecialTokens)
	fmt.Fprintf(tw, "input\t%d files, %d bytes\n", s.InputFiles, s.InputBytes)
	fmt.Fprintf(tw, "compression\t%.2f bytes/token (%d tokens)\n", s.BytesPerToken, s.InputTokens)
	fmt.Fprintf(tw, "time\t%.1fs\n", s.Seconds)
	return tw.Flush()
}

// loadTokenizerArg loads a tokenizer directory or a tokenizer.json file.
func loadTokenizerArg(path string) (*tokenizer.Tokenizer, error) {
	if path == "" {
		return nil, errors.New("--tokenizer is required: a directory with tokenizer.json, or the file")
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if st.IsDir() {
		return tokenizer.LoadDir(path)
	}
	return tokenizer.LoadFile(path)
}

// textArg is the command's text: the arguments joined by spaces, or stdin for "-".
func textArg(cmd *cobra.Command, args []string) (string, error) {
	if len(args) == 1 && args[0] == "-" {
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return "", fmt.Errorf("read stdin: %w", err)
		}
		return string(b), nil
	}
	return strings.Join(args, " "), nil
}

func newTokenizerEncodeCmd(g *globalOptions) *cobra.Command {
	var (
		dir      string
		specials bool
	)
	cmd := &cobra.Command{
		Use:   "encode --tokenizer DIR [--specials] TEXT|-",
		Short: "Show the token ids of a text",
		Long: `Encode TEXT (or standard input with "-") and print the ids, comma-separated, then one
line per token with its bytes. Special tokens written in the text stay plain text unless
--specials is given. No BOS is added. With --json: {"ids": [...], "tokens": [...]}, tokens
being the vocabulary spellings.`,
		Example: `  posttrain tokenizer encode --tokenizer tok "Hello world"
  echo "<|eot_id|>" | posttrain tokenizer encode --tokenizer tok --specials --json -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := loadTokenizerArg(dir)
			if err != nil {
				return err
			}
			text, err := textArg(cmd, args)
			if err != nil {
				return err
			}
			ids := tok.Encode(text)
			if specials {
				ids = tok.EncodeWithSpecials(text)
			}
			spell := make([]string, len(ids))
			for i, id := range ids {
				spell[i], _ = tok.Token(id)
			}
			w := cmd.OutOrStdout()
			if g.jsonOut {
				if ids == nil {
					ids = []int32{}
				}
				enc := json.NewEncoder(w)
				enc.SetEscapeHTML(false)
				return enc.Encode(map[string]any{"ids": ids, "tokens": spell})
			}
			strs := make([]string, len(ids))
			for i, id := range ids {
				strs[i] = fmt.Sprint(id)
			}
			fmt.Fprintln(w, strings.Join(strs, ","))
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			for _, id := range ids {
				b, _ := tok.TokenBytes(id)
				fmt.Fprintf(tw, "%d\t%q\n", id, b)
			}
			fmt.Fprintf(tw, "%d tokens, %d bytes\n", len(ids), len(text))
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "tokenizer", "", "tokenizer directory or tokenizer.json (required)")
	cmd.Flags().BoolVar(&specials, "specials", false, "recognise special tokens written in the text")
	return cmd
}

func newTokenizerDecodeCmd(g *globalOptions) *cobra.Command {
	var (
		dir         string
		skipSpecial bool
	)
	cmd := &cobra.Command{
		Use:   "decode --tokenizer DIR IDS...",
		Short: "Turn token ids back into text",
		Long: `Decode token ids given as "1,2,3", "1 2 3" or "[1, 2, 3]" (or "-" to read them from
standard input) and print the text. An id outside the vocabulary is an error. With --json:
{"text": ...}.`,
		Example: `  posttrain tokenizer decode --tokenizer tok 9906,1917
  posttrain tokenizer decode --tokenizer tok --skip-special 128000 9906 128009`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := loadTokenizerArg(dir)
			if err != nil {
				return err
			}
			raw, err := textArg(cmd, args)
			if err != nil {
				return err
			}
			ids, err := tokenizer.ParseIDs(raw)
			if err != nil {
				return err
			}
			text, err := tok.DecodeStrict(ids)
			if err != nil {
				return err
			}
			if skipSpecial {
				text = tok.DecodeWithoutSpecials(ids)
			}
			w := cmd.OutOrStdout()
			if g.jsonOut {
				enc := json.NewEncoder(w)
				enc.SetEscapeHTML(false)
				return enc.Encode(map[string]string{"text": text})
			}
			_, err = fmt.Fprintln(w, text)
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "tokenizer", "", "tokenizer directory or tokenizer.json (required)")
	cmd.Flags().BoolVar(&skipSpecial, "skip-special", false, "leave special tokens out of the text")
	return cmd
}
