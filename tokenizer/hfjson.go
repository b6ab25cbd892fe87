package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// FileName is the tokenizer file inside a model directory.
const FileName = "tokenizer.json"

// LoadDir reads dir/tokenizer.json.
func LoadDir(dir string) (*Tokenizer, error) {
	return LoadFile(filepath.Join(dir, FileName))
}

// SaveDir writes dir/tokenizer.json, creating dir if needed.
func (t *Tokenizer) SaveDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save tokenizer: %w", err)
	}
	return t.SaveFile(filepath.Join(dir, FileName))
}

// LoadFile reads a Hugging Face tokenizer.json.
func LoadFile(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return t, nil
}

// SaveFile writes the tokenizer as a Hugging Face tokenizer.json, atomically (a
// temporary file renamed into place).
func (t *Tokenizer) SaveFile(path string) error {
	data, err := t.MarshalJSON()
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tokenizer-*.json")
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	// CreateTemp makes the file private; a tokenizer is meant to be shared.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}

// The JSON shapes of tokenizer.json that we read.
type hfFile struct {
	AddedTokens   []hfAddedToken  `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         json.RawMessage `json:"model"`
}

type hfAddedToken struct {
	ID         *int64  `json:"id"`
	Content    *string `json:"content"`
	SingleWord bool    `json:"single_word"`
	LStrip     bool    `json:"lstrip"`
	RStrip     bool    `json:"rstrip"`
	Normalized bool    `json:"normalized"`
	Special    bool    `json:"special"`
}

type hfModel struct {
	Type                    string          `json:"type"`
	Dropout                 *float64        `json:"dropout"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Vocab                   json.RawMessage `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
}

type hfPreTokenizer struct {
	Type           string            `json:"type"`
	AddPrefixSpace bool              `json:"add_prefix_space"`
	UseRegex       *bool             `json:"use_regex"`
	PreTokenizers  []json.RawMessage `json:"pretokenizers"`
	Pattern        *struct {
		Regex  *string `json:"Regex"`
		String *string `json:"String"`
	} `json:"pattern"`
	Behavior string `json:"behavior"`
	Invert   bool   `json:"invert"`
}

type hfTyped struct {
	Type        string            `json:"type"`
	Normalizers []json.RawMessage `json:"normalizers"`
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// jsonErr names the field a decoding error belongs to.
func jsonErr(field string, err error) error { return fmt.Errorf("%s: invalid JSON: %w", field, err) }

// Parse reads a Hugging Face tokenizer.json: a BPE model over the byte-level alphabet, a
// ByteLevel pre-tokenizer (alone, or after a Split with Llama 3's or GPT-2's pattern),
// no normalizer, a ByteLevel decoder (or none) and added tokens. It checks that ids run
// from 0 without gaps or duplicates, that every merge names known tokens, and that all
// 256 bytes have a token; an error names the offending field. The post_processor is kept
// for writing back but not applied (Encode never adds BOS).
func Parse(data []byte) (*Tokenizer, error) {
	// JSON text is UTF-8 (RFC 8259). encoding/json would silently replace bad bytes in the
	// fields it decodes and keep them in the raw ones (post_processor), which then could
	// not be written back.
	if !utf8.Valid(data) {
		for i := 0; i < len(data); {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				return nil, fmt.Errorf("tokenizer.json: not valid UTF-8 at byte %d", i)
			}
			i += size
		}
	}
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, jsonErr("tokenizer.json", err)
	}
	var m model
	if err := parseNormalizer(f.Normalizer); err != nil {
		return nil, err
	}
	if err := parsePreTokenizer(f.PreTokenizer, &m); err != nil {
		return nil, err
	}
	if !isNull(f.Decoder) {
		var d hfTyped
		if err := json.Unmarshal(f.Decoder, &d); err != nil {
			return nil, jsonErr("decoder", err)
		}
		if d.Type != "ByteLevel" {
			return nil, fmt.Errorf("decoder.type: %q is not supported (want ByteLevel)", d.Type)
		}
	}
	if !isNull(f.PostProcessor) {
		m.post = append(json.RawMessage(nil), f.PostProcessor...)
	}
	if isNull(f.Model) {
		return nil, errors.New("model: missing")
	}
	var hm hfModel
	if err := json.Unmarshal(f.Model, &hm); err != nil {
		return nil, jsonErr("model", err)
	}
	if err := checkModelOptions(hm); err != nil {
		return nil, err
	}
	m.ignoreMerges = hm.IgnoreMerges
	if isNull(hm.Vocab) {
		return nil, errors.New("model.vocab: missing")
	}
	var vocab map[string]int64
	if err := json.Unmarshal(hm.Vocab, &vocab); err != nil {
		return nil, jsonErr("model.vocab", err)
	}
	spellings := make(map[int64]string, len(vocab)+len(f.AddedTokens))
	modelIDs := make(map[string]int32, len(vocab))
	for tok, id := range vocab {
		if id < 0 || id > math.MaxInt32 {
			return nil, fmt.Errorf("model.vocab: token %q has id %d outside [0, 2^31)", tok, id)
		}
		if other, dup := spellings[id]; dup {
			a, b := other, tok
			if b < a {
				a, b = b, a
			}
			return nil, fmt.Errorf("model.vocab: tokens %q and %q share id %d", a, b, id)
		}
		spellings[id] = tok
		modelIDs[tok] = int32(id)
	}
	added, err := parseAdded(f.AddedTokens, spellings, modelIDs)
	if err != nil {
		return nil, err
	}
	n := int64(len(spellings))
	m.vocab = make([]string, n)
	m.inModel = make([]bool, n)
	for id, sp := range spellings {
		if id >= n {
			return nil, fmt.Errorf("model.vocab / added_tokens: id %d is out of range: %d ids must be numbered 0..%d without gaps", id, n, n-1)
		}
		m.vocab[id] = sp
	}
	for _, id := range modelIDs {
		m.inModel[id] = true
	}
	m.added = added
	if m.merges, err = parseMerges(hm.Merges, modelIDs); err != nil {
		return nil, err
	}
	return assemble(m)
}

func parseNormalizer(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var n hfTyped
	if err := json.Unmarshal(raw, &n); err != nil {
		return jsonErr("normalizer", err)
	}
	if n.Type == "Sequence" && len(n.Normalizers) == 0 {
		return nil
	}
	return fmt.Errorf("normalizer: type %q is not supported (byte-level BPE files have none)", n.Type)
}

func parsePreTokenizer(raw json.RawMessage, m *model) error {
	const field = "pre_tokenizer"
	if isNull(raw) {
		return fmt.Errorf("%s: missing (a byte-level BPE needs ByteLevel)", field)
	}
	var p hfPreTokenizer
	if err := json.Unmarshal(raw, &p); err != nil {
		return jsonErr(field, err)
	}
	switch p.Type {
	case "ByteLevel":
		return byteLevelAlone(p, m)
	case "Sequence":
		subs := make([]hfPreTokenizer, len(p.PreTokenizers))
		for i, r := range p.PreTokenizers {
			if err := json.Unmarshal(r, &subs[i]); err != nil {
				return jsonErr(fmt.Sprintf("%s.pretokenizers[%d]", field, i), err)
			}
		}
		switch {
		case len(subs) == 1 && subs[0].Type == "ByteLevel":
			return byteLevelAlone(subs[0], m)
		case len(subs) == 2 && subs[0].Type == "Split" && subs[1].Type == "ByteLevel":
			mode, err := parseSplit(subs[0], field+".pretokenizers[0]")
			if err != nil {
				return err
			}
			if subs[1].UseRegex == nil || *subs[1].UseRegex {
				return fmt.Errorf("%s.pretokenizers[1].use_regex: must be false after a Split", field)
			}
			m.mode = mode
			m.prefix = prefixNone
			if subs[1].AddPrefixSpace {
				m.prefix = prefixPiece
			}
			return nil
		}
		return fmt.Errorf("%s.pretokenizers: want [ByteLevel] or [Split, ByteLevel], got %d entries", field, len(subs))
	}
	return fmt.Errorf("%s.type: %q is not supported (want ByteLevel or Sequence)", field, p.Type)
}

// byteLevelAlone is a ByteLevel pre-tokenizer doing its own splitting (GPT-2 style).
func byteLevelAlone(p hfPreTokenizer, m *model) error {
	m.mode = splitGPT2
	if p.UseRegex != nil && !*p.UseRegex {
		m.mode = splitNone
	}
	m.prefix = prefixNone
	if p.AddPrefixSpace {
		m.prefix = prefixSegment
	}
	m.byteLevelOnly = true
	return nil
}

func parseSplit(p hfPreTokenizer, field string) (splitMode, error) {
	if p.Pattern == nil || p.Pattern.Regex == nil {
		return 0, fmt.Errorf("%s.pattern: want {\"Regex\": ...} with Llama 3's or GPT-2's pattern", field)
	}
	if p.Behavior != "Isolated" {
		return 0, fmt.Errorf("%s.behavior: %q is not supported (want Isolated)", field, p.Behavior)
	}
	if p.Invert {
		return 0, fmt.Errorf("%s.invert: true is not supported", field)
	}
	switch *p.Pattern.Regex {
	case llama3Pattern:
		return splitLlama3, nil
	case gpt2Pattern:
		return splitGPT2, nil
	}
	return 0, fmt.Errorf("%s.pattern.Regex: %q is not supported (only Llama 3's and GPT-2's patterns are implemented)", field, *p.Pattern.Regex)
}

func checkModelOptions(hm hfModel) error {
	if hm.Type != "" && hm.Type != "BPE" {
		return fmt.Errorf("model.type: %q is not supported (want BPE)", hm.Type)
	}
	if hm.Dropout != nil && *hm.Dropout != 0 {
		return fmt.Errorf("model.dropout: %v is not supported (want null)", *hm.Dropout)
	}
	if hm.ContinuingSubwordPrefix != nil && *hm.ContinuingSubwordPrefix != "" {
		return fmt.Errorf("model.continuing_subword_prefix: %q is not supported by byte-level BPE", *hm.ContinuingSubwordPrefix)
	}
	if hm.EndOfWordSuffix != nil && *hm.EndOfWordSuffix != "" {
		return fmt.Errorf("model.end_of_word_suffix: %q is not supported by byte-level BPE", *hm.EndOfWordSuffix)
	}
	if hm.ByteFallback {
		return errors.New("model.byte_fallback: true is not supported (byte-level BPE has a token for every byte)")
	}
	return nil
}

func parseAdded(list []hfAddedToken, spellings map[int64]string, modelIDs map[string]int32) ([]AddedToken, error) {
	out := make([]AddedToken, 0, len(list))
	seenID := map[int64]bool{}
	seenContent := map[string]bool{}
	for i, a := range list {
		field := fmt.Sprintf("added_tokens[%d]", i)
		if a.ID == nil {
			return nil, fmt.Errorf("%s.id: missing", field)
		}
		if a.Content == nil || *a.Content == "" {
			return nil, fmt.Errorf("%s.content: missing or empty", field)
		}
		id, content := *a.ID, *a.Content
		if id < 0 || id > math.MaxInt32 {
			return nil, fmt.Errorf("%s.id: %d is outside [0, 2^31)", field, id)
		}
		if seenID[id] {
			return nil, fmt.Errorf("%s.id: %d is used by an earlier added token", field, id)
		}
		if seenContent[content] {
			return nil, fmt.Errorf("%s.content: %q repeats an earlier added token", field, content)
		}
		seenID[id], seenContent[content] = true, true
		if sp, ok := spellings[id]; ok && sp != content {
			return nil, fmt.Errorf("%s.id: %d is model.vocab's %q, not %q", field, id, sp, content)
		}
		if mid, ok := modelIDs[content]; ok && int64(mid) != id {
			return nil, fmt.Errorf("%s.content: %q is model.vocab id %d, not %d", field, content, mid, id)
		}
		spellings[id] = content
		out = append(out, AddedToken{
			ID: int32(id), Content: content, Special: a.Special,
			SingleWord: a.SingleWord, LStrip: a.LStrip, RStrip: a.RStrip, Normalized: a.Normalized,
		})
	}
	return out, nil
}

// parseMerges accepts both spellings of model.merges: "a b" strings (tokenizers before
// 0.20) and ["a", "b"] pairs.
func parseMerges(raw json.RawMessage, modelIDs map[string]int32) ([]Merge, error) {
	if isNull(raw) {
		return nil, errors.New("model.merges: missing")
	}
	var pairs [][2]string
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		pairs = make([][2]string, len(strs))
		for i, s := range strs {
			a, b, ok := cutSpace(s)
			if !ok {
				return nil, fmt.Errorf("model.merges[%d]: %q is not two tokens separated by one space", i, s)
			}
			pairs[i] = [2]string{a, b}
		}
	} else {
		var lists [][]string
		if err := json.Unmarshal(raw, &lists); err != nil {
			return nil, fmt.Errorf("model.merges: want a list of \"a b\" strings or of [a, b] pairs: %w", err)
		}
		pairs = make([][2]string, len(lists))
		for i, l := range lists {
			if len(l) != 2 {
				return nil, fmt.Errorf("model.merges[%d]: want 2 tokens, got %d", i, len(l))
			}
			pairs[i] = [2]string{l[0], l[1]}
		}
	}
	merges := make([]Merge, len(pairs))
	for i, p := range pairs {
		a, okA := modelIDs[p[0]]
		b, okB := modelIDs[p[1]]
		switch {
		case !okA:
			return nil, fmt.Errorf("model.merges[%d]: unknown token %q", i, p[0])
		case !okB:
			return nil, fmt.Errorf("model.merges[%d]: unknown token %q", i, p[1])
		}
		out, ok := modelIDs[p[0]+p[1]]
		if !ok {
			return nil, fmt.Errorf("model.merges[%d]: merged token %q is not in model.vocab", i, p[0]+p[1])
		}
		merges[i] = Merge{a, b, out}
	}
	return merges, nil
}

// cutSpace splits "a b" at its only space.
func cutSpace(s string) (string, string, bool) {
	i := strings.IndexByte(s, ' ')
	if i <= 0 || i == len(s)-1 || strings.IndexByte(s[i+1:], ' ') >= 0 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// MarshalJSON writes the tokenizer in Hugging Face's tokenizer.json layout, which the
// tokenizers library loads: merges as "a b" strings (readable by every tokenizers
// version; byte-level tokens never contain a space), vocab in id order.
func (t *Tokenizer) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	str := func(s string) string {
		var sb bytes.Buffer
		enc := json.NewEncoder(&sb)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s) // a string always encodes
		return string(bytes.TrimRight(sb.Bytes(), "\n"))
	}
	w("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [")
	for i, a := range t.added {
		if i > 0 {
			w(",")
		}
		w("\n    {\"id\": %d, \"content\": %s, \"single_word\": %t, \"lstrip\": %t, \"rstrip\": %t, \"normalized\": %t, \"special\": %t}",
			a.ID, str(a.Content), a.SingleWord, a.LStrip, a.RStrip, a.Normalized, a.Special)
	}
	if len(t.added) > 0 {
		w("\n  ")
	}
	w("],\n  \"normalizer\": null,\n  \"pre_tokenizer\": ")
	if t.byteLevelOnly {
		w(`{"type": "ByteLevel", "add_prefix_space": %t, "trim_offsets": true, "use_regex": %t}`,
			t.prefix == prefixSegment, t.mode == splitGPT2)
	} else {
		pattern := llama3Pattern
		if t.mode == splitGPT2 {
			pattern = gpt2Pattern
		}
		w("{\n    \"type\": \"Sequence\",\n    \"pretokenizers\": [\n")
		w("      {\"type\": \"Split\", \"pattern\": {\"Regex\": %s}, \"behavior\": \"Isolated\", \"invert\": false},\n", str(pattern))
		w("      {\"type\": \"ByteLevel\", \"add_prefix_space\": %t, \"trim_offsets\": true, \"use_regex\": false}\n    ]\n  }",
			t.prefix == prefixPiece)
	}
	w(",\n  \"post_processor\": ")
	if len(t.postProcessor) > 0 {
		var c bytes.Buffer
		if err := json.Compact(&c, t.postProcessor); err != nil {
			return nil, fmt.Errorf("post_processor: %w", err)
		}
		b.Write(c.Bytes())
	} else {
		w("null")
	}
	w(",\n  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n")
	w("  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n")
	w("    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n")
	w("    \"byte_fallback\": false,\n    \"ignore_merges\": %t,\n    \"vocab\": {", t.ignoreMerges)
	first := true
	for id, sp := range t.vocab {
		if !t.inModel[id] {
			continue
		}
		if !first {
			w(",")
		}
		first = false
		w("\n      %s: %d", str(sp), id)
	}
	w("\n    },\n    \"merges\": [")
	for i, mg := range t.merges {
		if i > 0 {
			w(",")
		}
		w("\n      %s", str(t.vocab[mg.A]+" "+t.vocab[mg.B]))
	}
	w("\n    ]\n  }\n}\n")
	if !utf8.Valid(b.Bytes()) {
		return nil, errors.New("tokenizer.json: would not be valid UTF-8")
	}
	return b.Bytes(), nil
}
