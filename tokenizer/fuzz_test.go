package tokenizer

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzRoundTrip checks Decode(Encode(s)) == s for arbitrary bytes, that Encode never
// yields special ids, and that the heap and scan BPE paths agree with the definition.
func FuzzRoundTrip(f *testing.F) {
	for _, c := range roundTripCases {
		f.Add(c.text)
	}
	tok, err := trainedTokenizer()
	if err != nil {
		f.Fatal(err)
	}
	fx, err := LoadFile(filepath.Join("testdata", "tiny_llama3.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tk := range []*Tokenizer{tok, fx} {
			ids := tk.Encode(s)
			if got := tk.Decode(ids); got != s {
				t.Fatalf("Decode(Encode(%q)) = %q", s, got)
			}
			for _, id := range ids {
				if tk.IsSpecial(id) {
					t.Fatalf("Encode(%q) produced special id %d", s, id)
				}
			}
			if got := tk.Decode(tk.EncodeWithSpecials(s)); got != s {
				t.Fatalf("Decode(EncodeWithSpecials(%q)) = %q", s, got)
			}
		}
		if len(s) > 1 && len(s) < 200 {
			want := naiveBPE(tok, s)
			if got := tok.bpeHeap(nil, s); !slices.Equal(got, want) {
				t.Fatalf("bpeHeap(%q) = %v, want %v", s, got, want)
			}
			if got := tok.bpe(nil, s); !slices.Equal(got, want) {
				t.Fatalf("bpe(%q) = %v, want %v", s, got, want)
			}
		}
	})
}

// FuzzLoadTokenizerJSON feeds arbitrary bytes to Parse: errors are fine, panics are
// not, and whatever loads must encode, round-trip and save to a file that loads again.
func FuzzLoadTokenizerJSON(f *testing.F) {
	fx, err := os.ReadFile(filepath.Join("testdata", "tiny_llama3.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fx)
	small, err := Train(f.Context(), slices.Values([]string{"hello hello world world"}), 256+7+3, TrainOptions{})
	if err != nil {
		f.Fatal(err)
	}
	data, err := small.MarshalJSON()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}`))
	f.Add([]byte(`{"model": null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Parse(data)
		if err != nil {
			return
		}
		const s = "Hello, wörld! 😀 \xff <|eot_id|>\n\n  x"
		if got := tok.Decode(tok.Encode(s)); got != s {
			t.Fatalf("loaded tokenizer does not round-trip: %q", got)
		}
		tok.EncodeWithSpecials(s)
		out, err := tok.MarshalJSON()
		if err != nil {
			t.Fatalf("marshal a loaded tokenizer: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("reload a saved tokenizer: %v", err)
		}
		if !slices.Equal(tok.Encode(s), again.Encode(s)) {
			t.Fatal("reloaded tokenizer encodes differently")
		}
	})
}
