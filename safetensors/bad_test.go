package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/bad from the case builders")

// file assembles a safetensors file from a header string and data bytes.
func file(header string, data int) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(make([]byte, data))
	return b.Bytes()
}

// withLength is a file whose length prefix is n regardless of what follows.
func withLength(n uint64, rest string) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, n)
	b.WriteString(rest)
	return b.Bytes()
}

// badCases builds the corpus of malformed files, each with the error substring the
// reader must report. Run `go test ./safetensors -run TestBadCorpus -update` after editing.
func badCases() map[string]struct {
	data []byte
	want string
} {
	type c = struct {
		data []byte
		want string
	}
	return map[string]c{
		"too_short":          {[]byte{1, 2, 3}, "too short for the 8-byte header length"},
		"header_over_limit":  {withLength(200<<20, "{}"), "exceeds the 104857600-byte limit"},
		"header_over_file":   {withLength(1000, "{}"), "header length 1000 exceeds the file size"},
		"bad_json":           {file(`{"w":{"dtype":"F32",`, 0), "bad header JSON"},
		"not_object":         {file(`[1,2]`, 0), "want an object"},
		"garbage_after":      {file(`{} xx`, 0), "unexpected bytes after the header object"},
		"invalid_utf8":       {file("{\"w\xff\":{}}", 0), "not valid UTF-8"},
		"unknown_dtype":      {file(`{"w":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}}`, 4), `tensor "w": unknown dtype "F7"`},
		"shape_mismatch":     {file(`{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}`, 20), `tensor "w": shape [2 3] of dtype F32 needs 24 bytes`},
		"bf16_mismatch":      {file(`{"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,16]}}`, 16), `tensor "w": shape [4] of dtype BF16 needs 8 bytes`},
		"negative_dim":       {file(`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4), `tensor "w": negative dimension`},
		"huge_shape":         {file(`{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, 4), `tensor "w": shape [4294967296 4294967296] is too large`},
		"missing_offsets":    {file(`{"w":{"dtype":"F32","shape":[1]}}`, 4), `tensor "w": missing data_offsets`},
		"missing_dtype":      {file(`{"w":{"shape":[1],"data_offsets":[0,4]}}`, 4), `tensor "w": missing dtype`},
		"unknown_field":      {file(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, 4), `tensor "w": bad header entry`},
		"three_offsets":      {file(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, 8), `tensor "w": data_offsets must be [begin, end]`},
		"reversed_offsets":   {file(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}`, 8), `tensor "w": bad data_offsets [8, 4]`},
		"truncated":          {file(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 8), `tensor "w": data_offsets [0, 16] run past the 8-byte data region (file truncated?)`},
		"overlap":            {file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12), `tensor "b": data_offsets [4, 12] overlap tensor "a"`},
		"gap":                {file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, 12), `tensor "b": gap of 4 bytes`},
		"trailing":           {file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8), `4 trailing bytes in the data region after tensor "a"`},
		"data_no_tensors":    {file(`{}`, 8), "8 bytes of data but no tensors"},
		"duplicate_name":     {file(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), `tensor "w": duplicate name`},
		"bad_metadata":       {file(`{"__metadata__":{"a":1}}`, 0), "__metadata__ must map strings to strings"},
		"duplicate_metadata": {file(`{"__metadata__":{},"__metadata__":{}}`, 0), "duplicate __metadata__"},
		"entry_not_object":   {file(`{"w":[1]}`, 0), `tensor "w": bad header entry`},
	}
}

// TestBadCorpus reads every file in testdata/bad and checks the reader rejects it with the
// expected message (testdata/bad/cases.json maps file name to error substring).
func TestBadCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "bad")
	if *update {
		want := map[string]string{}
		for name, c := range badCases() {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name+".safetensors"), c.data, 0o644))
			want[name+".safetensors"] = c.want
		}
		raw, err := json.MarshalIndent(want, "", "  ")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "cases.json"), append(raw, '\n'), 0o644))
	}
	raw, err := os.ReadFile(filepath.Join(dir, "cases.json"))
	require.NoError(t, err)
	var want map[string]string
	require.NoError(t, json.Unmarshal(raw, &want))
	require.Len(t, want, len(badCases()), "corpus out of date: rerun with -update")
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			r, err := Open(path)
			require.Error(t, err)
			require.Nil(t, r)
			require.ErrorContains(t, err, want[name])
			require.ErrorContains(t, err, path, "error must name the file")
		})
	}
}
