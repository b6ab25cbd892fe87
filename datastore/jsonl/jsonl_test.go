package jsonl_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/datastore/jsonl"
	"github.com/posttrain/posttrain/internal/pgtest"
)

const testdata = "../testdata/jsonl"

// kindOf picks the kind a testdata file is parsed as from its name.
func kindOf(name string) string {
	switch {
	case strings.HasPrefix(name, "sft_"), strings.HasPrefix(name, "good_sft"):
		return datastore.KindSFT
	case strings.HasPrefix(name, "prompts_"), strings.HasPrefix(name, "good_prompts"):
		return datastore.KindPrompts
	}
	return datastore.KindPreferences
}

func badFiles(t *testing.T) []string {
	t.Helper()
	errs, err := filepath.Glob(filepath.Join(testdata, "*.err"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(errs), 15)
	return errs
}

func TestParseBadFilesNameLineAndReason(t *testing.T) {
	for _, errFile := range badFiles(t) {
		name := strings.TrimSuffix(filepath.Base(errFile), ".err")
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(errFile)
			require.NoError(t, err)
			f, err := os.Open(filepath.Join(testdata, name+".jsonl"))
			require.NoError(t, err)
			defer f.Close()
			rows, err := jsonl.Parse(f, name+".jsonl", jsonl.Options{Kind: kindOf(name), MaxLineBytes: 64 << 10})
			require.Error(t, err)
			assert.Nil(t, rows, "no rows from a bad file")
			// Each line of the .err file must appear in the error.
			for _, w := range strings.Split(string(want), "\n") {
				assert.Contains(t, err.Error(), w)
			}
			var pe *jsonl.ParseError
			require.ErrorAs(t, err, &pe)
			assert.Len(t, pe.Lines, 1, "exactly the bad line is reported")
		})
	}
}

func TestImportBadFileImportsNothing(t *testing.T) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(t))
	for _, errFile := range badFiles(t) {
		name := strings.TrimSuffix(filepath.Base(errFile), ".err")
		_, err := jsonl.ImportFile(ctx, s, filepath.Join(testdata, name+".jsonl"), jsonl.ImportOptions{Kind: kindOf(name), MaxLineBytes: 64 << 10})
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), name+".jsonl:", "the error names the file and line")
	}
	ds, err := s.ListDatasets(ctx)
	require.NoError(t, err)
	assert.Empty(t, ds, "no dataset, no row from any bad file")
	for _, table := range []string{"prompts", "preference_pairs", "sft_examples"} {
		var n int
		require.NoError(t, s.DB().QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n))
		assert.Zero(t, n, table)
	}
}

func TestParseManyBadLinesStops(t *testing.T) {
	var b strings.Builder
	for range 50 {
		b.WriteString("{broken\n")
	}
	_, err := jsonl.Parse(strings.NewReader(b.String()), "x.jsonl", jsonl.Options{Kind: datastore.KindPrompts})
	var pe *jsonl.ParseError
	require.ErrorAs(t, err, &pe)
	assert.Len(t, pe.Lines, 10)
	assert.True(t, pe.More)
	assert.Contains(t, err.Error(), "x.jsonl:10: not a JSON object")
	_, err = jsonl.Parse(strings.NewReader(""), "x.jsonl", jsonl.Options{Kind: "pairs"})
	require.ErrorContains(t, err, `kind "pairs"`)
}

func TestParseGoodPreferences(t *testing.T) {
	f, err := os.Open(filepath.Join(testdata, "good_preferences.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	rows, err := jsonl.Parse(f, "good_preferences.jsonl", jsonl.Options{Kind: datastore.KindPreferences})
	require.NoError(t, err)
	require.Len(t, rows.Preferences, 4)
	p := rows.Preferences
	assert.Equal(t, "What is 2+3?", p[0].Prompt.Text)
	assert.Equal(t, "5", p[0].Chosen.Text)
	require.NotNil(t, p[0].Margin)
	assert.Equal(t, 1.5, *p[0].Margin)
	assert.Equal(t, "significantly better", p[0].Rating)
	assert.Equal(t, int64(1), p[0].Ord)

	assert.Len(t, p[1].Prompt.Messages, 2)
	require.NotNil(t, p[1].Edited)
	assert.Equal(t, "cba.", p[1].Edited.Text, "a one-message assistant response is its text")
	assert.Equal(t, "cba", p[1].Chosen.Text)
	assert.Equal(t, "better", p[1].Rating)

	// The implicit prompt (line 4, after a blank line) is the shared user turn.
	assert.Equal(t, int64(4), p[2].Ord)
	assert.Equal(t, []datastore.Message{{Role: "user", Content: "Upper-case hi"}}, p[2].Prompt.Messages)
	assert.Equal(t, "HI", p[2].Chosen.Text)
	assert.Equal(t, "hi", p[2].Rejected.Text)
	assert.Equal(t, map[string]any{"id": "implicit-1"}, p[2].Metadata)

	assert.Equal(t, []int32{1, 2, 3}, p[3].Prompt.IDs)
	assert.Equal(t, []int32{7, 8}, p[3].Edited.IDs)
	assert.Equal(t, datastore.SplitEval, p[3].Split)
}

func TestParseGoodSFTAndPrompts(t *testing.T) {
	f, err := os.Open(filepath.Join(testdata, "good_sft.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	rows, err := jsonl.Parse(f, "good_sft.jsonl", jsonl.Options{Kind: datastore.KindSFT})
	require.NoError(t, err)
	require.Len(t, rows.SFT, 4)
	assert.Len(t, rows.SFT[0].Messages, 2)
	assert.Equal(t, "5", rows.SFT[1].Completion.Text)
	assert.Equal(t, "hi", rows.SFT[2].Completion.Text)
	assert.Equal(t, "Say hi", rows.SFT[2].Prompt.Messages[0].Content)
	assert.Equal(t, []int32{12, 13, 14}, rows.SFT[3].Completion.IDs)

	g, err := os.Open(filepath.Join(testdata, "good_prompts.jsonl"))
	require.NoError(t, err)
	defer g.Close()
	rows, err = jsonl.Parse(g, "good_prompts.jsonl", jsonl.Options{Kind: datastore.KindPrompts})
	require.NoError(t, err)
	require.Len(t, rows.Prompts, 5)
	assert.Equal(t, "Reverse xyz", rows.Prompts[2].Prompt.Messages[0].Content)
	assert.Equal(t, "What is 2+3?", rows.Prompts[4].Prompt.Text, "a preference row imports as its prompt")
	assert.Empty(t, rows.Prompts[4].Metadata, "other formats' fields are not metadata")
}

func TestImportExportRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(t))
	for _, tc := range []struct{ file, kind string }{
		{"good_preferences.jsonl", datastore.KindPreferences},
		{"good_sft.jsonl", datastore.KindSFT},
		{"good_prompts.jsonl", datastore.KindPrompts},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			path := filepath.Join(testdata, tc.file)
			res, err := jsonl.ImportFile(ctx, s, path, jsonl.ImportOptions{Kind: tc.kind})
			require.NoError(t, err)
			assert.Equal(t, strings.TrimSuffix(tc.file, ".jsonl"), res.Dataset)
			assert.Equal(t, int64(res.Rows), res.Inserted)

			// Importing again adds nothing.
			again, err := jsonl.ImportFile(ctx, s, path, jsonl.ImportOptions{Kind: tc.kind})
			require.NoError(t, err)
			assert.Zero(t, again.Inserted)
			assert.Equal(t, int64(res.Rows), again.Duplicates)

			var out bytes.Buffer
			n, err := jsonl.Export(ctx, s, &out, res.Dataset, "")
			require.NoError(t, err)
			assert.Equal(t, res.Rows, n)

			// The export imports as the same content into another dataset.
			copyRes, err := jsonl.Import(ctx, s, bytes.NewReader(out.Bytes()), "copy.jsonl", jsonl.ImportOptions{Kind: tc.kind, Dataset: res.Dataset + "-copy"})
			require.NoError(t, err)
			assert.Equal(t, int64(res.Rows), copyRes.Inserted)
			var out2 bytes.Buffer
			_, err = jsonl.Export(ctx, s, &out2, res.Dataset+"-copy", "")
			require.NoError(t, err)
			assert.Equal(t, out.String(), out2.String(), "export -> import -> export is stable")

			var evalOut bytes.Buffer
			n, err = jsonl.Export(ctx, s, &evalOut, res.Dataset, datastore.SplitEval)
			require.NoError(t, err)
			assert.Equal(t, strings.Count(evalOut.String(), "\n"), n)
		})
	}
	d, err := s.GetDataset(ctx, "good_preferences")
	require.NoError(t, err)
	assert.Equal(t, int64(4), d.Rows)
	assert.Equal(t, int64(1), d.EvalRows)

	// The kind of an existing dataset is checked.
	_, err = jsonl.ImportFile(ctx, s, filepath.Join(testdata, "good_prompts.jsonl"), jsonl.ImportOptions{Kind: datastore.KindPrompts, Dataset: "good_sft"})
	require.ErrorContains(t, err, `dataset "good_sft" holds sft, not prompts`)
	_, err = jsonl.Export(ctx, s, &bytes.Buffer{}, "missing", "")
	require.ErrorIs(t, err, datastore.ErrNotFound)
	_, err = jsonl.ImportFile(ctx, s, filepath.Join(testdata, "good_prompts.jsonl"), jsonl.ImportOptions{Kind: datastore.KindPrompts, Split: "dev"})
	require.ErrorContains(t, err, `split "dev"`)
}

func TestImportSplitAndRound(t *testing.T) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(t))
	res, err := jsonl.ImportFile(ctx, s, filepath.Join(testdata, "good_prompts.jsonl"),
		jsonl.ImportOptions{Kind: datastore.KindPrompts, Dataset: "heldout", Split: datastore.SplitEval, Round: 2})
	require.NoError(t, err)
	ps, err := s.ListPrompts(ctx, datastore.DataFilter{Dataset: res.Dataset})
	require.NoError(t, err)
	require.Len(t, ps, 5)
	for _, p := range ps {
		assert.Equal(t, datastore.SplitEval, p.Split)
		assert.Equal(t, 2, p.Round)
		assert.Equal(t, "good_prompts.jsonl", p.Source)
	}
}

func FuzzParseJSONL(f *testing.F) {
	for _, name := range []string{"good_preferences.jsonl", "good_sft.jsonl", "good_prompts.jsonl", "bad_json.jsonl", "partial_ids.jsonl"} {
		b, err := os.ReadFile(filepath.Join(testdata, name))
		require.NoError(f, err)
		f.Add(b, uint8(0))
		f.Add(b, uint8(1))
		f.Add(b, uint8(2))
	}
	kinds := []string{datastore.KindPrompts, datastore.KindPreferences, datastore.KindSFT}
	f.Fuzz(func(t *testing.T, data []byte, k uint8) {
		kind := kinds[int(k)%len(kinds)]
		rows, err := jsonl.Parse(bytes.NewReader(data), "fuzz.jsonl", jsonl.Options{Kind: kind, MaxLineBytes: 4096})
		if err != nil {
			require.Contains(t, err.Error(), "fuzz.jsonl:")
			return
		}
		for _, p := range rows.Prompts {
			require.False(t, p.Prompt.IsEmpty())
		}
		for _, p := range rows.Preferences {
			require.False(t, p.Prompt.IsEmpty())
			require.False(t, p.Chosen.IsEmpty())
			require.False(t, p.Rejected.IsEmpty())
		}
		for _, e := range rows.SFT {
			require.True(t, len(e.Messages) > 0 || (e.Prompt != nil && e.Completion != nil))
		}
	})
}

// TestStoredRowsMatchDatasets checks the converters: what the datastore stores and
// exports is what the stages' datasets package reads from the original file.
func TestStoredRowsMatchDatasets(t *testing.T) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(t))
	path := filepath.Join(testdata, "good_preferences.jsonl")
	_, err := jsonl.ImportFile(ctx, s, path, jsonl.ImportOptions{Kind: datastore.KindPreferences})
	require.NoError(t, err)
	want, err := datasets.ReadPreferencesFile(path, datasets.ReadOptions{})
	require.NoError(t, err)
	stored, err := s.ListPreferencePairs(ctx, datastore.DataFilter{Dataset: "good_preferences"})
	require.NoError(t, err)
	require.Len(t, stored, len(want))
	for i := range want {
		got := jsonl.ToPreference(stored[i])
		assert.Equal(t, stored[i].ID, got.ID, "the stages see the stored ID")
		got.ID, want[i].ID = "", ""
		assert.Equal(t, want[i], got, "row %d", i)
	}

	var out bytes.Buffer
	_, err = jsonl.Export(ctx, s, &out, "good_preferences", "")
	require.NoError(t, err)
	reread, err := datasets.ReadPreferences(bytes.NewReader(out.Bytes()), "export.jsonl", datasets.ReadOptions{})
	require.NoError(t, err, "exports read back with the datasets package")
	assert.Len(t, reread, len(want))

	for _, tc := range []struct {
		file string
		kind string
	}{{"good_sft.jsonl", datastore.KindSFT}, {"good_prompts.jsonl", datastore.KindPrompts}} {
		res, err := jsonl.ImportFile(ctx, s, filepath.Join(testdata, tc.file), jsonl.ImportOptions{Kind: tc.kind})
		require.NoError(t, err)
		switch tc.kind {
		case datastore.KindSFT:
			want, err := datasets.ReadSFTFile(filepath.Join(testdata, tc.file), datasets.ReadOptions{})
			require.NoError(t, err)
			rows, err := s.ListSFTExamples(ctx, datastore.DataFilter{Dataset: res.Dataset})
			require.NoError(t, err)
			require.Len(t, rows, len(want))
			for i := range want {
				got := jsonl.ToSFT(rows[i])
				got.ID, want[i].ID = "", ""
				assert.Equal(t, want[i], got)
			}
		case datastore.KindPrompts:
			want, err := datasets.ReadPromptsFile(filepath.Join(testdata, tc.file), datasets.ReadOptions{})
			require.NoError(t, err)
			rows, err := s.ListPrompts(ctx, datastore.DataFilter{Dataset: res.Dataset})
			require.NoError(t, err)
			require.Len(t, rows, len(want))
			for i := range want {
				got := jsonl.ToPrompt(rows[i])
				got.ID, want[i].ID = "", ""
				assert.Equal(t, want[i], got)
			}
		}
	}
}
