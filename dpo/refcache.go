package dpo

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/posttrain/posttrain/transformer"
)

// refCacheVersion changes whenever the cached quantities or the key's inputs change.
const refCacheVersion = 1

// RefLogProbs are the frozen reference's summed log-probs over each pair's unmasked
// response tokens, indexed like the pairs.
type RefLogProbs struct {
	Chosen   []float64 `json:"chosen"`
	Rejected []float64 `json:"rejected"`
}

// CacheInfo tells where reference log-probs came from.
type CacheInfo struct {
	// Key is the hex SHA-256 of the pairs, the masking switch and the reference weights.
	Key string `json:"key"`
	// Path is the cache file, empty when no cache directory was given.
	Path string `json:"path,omitempty"`
	// Hit is true when the values were read from Path instead of computed.
	Hit bool `json:"hit"`
	// Forwards counts the reference forward passes run (0 on a hit).
	Forwards int `json:"forwards"`
}

// refCacheFile is the JSON document stored per key.
type refCacheFile struct {
	Version        int    `json:"version"`
	Key            string `json:"key"`
	Pairs          int    `json:"pairs"`
	MaskFormatting bool   `json:"mask_formatting"`
	RefLogProbs
}

// ReferenceKey hashes what the reference log-probs depend on: the pairs' tokens and
// formatting masks, whether masking is on, and the reference's config and weights.
func ReferenceKey(ref *transformer.Model, pairs []Pair, mask bool) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "posttrain-dpo-refcache-v%d mask=%t\n", refCacheVersion, mask)
	cfg, err := json.Marshal(ref.Config)
	if err != nil {
		return "", fmt.Errorf("reference key: %w", err)
	}
	h.Write(cfg)
	buf := make([]byte, 0, 1<<16)
	for _, v := range ref.W.Data {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		if len(buf) == cap(buf) {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	h.Write(buf)
	hashPairs(h, pairs)
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// ReferenceLogProbs returns the reference's masked log-prob sums for every pair,
// computing them once (batch pairs per forward pass) and storing them in cacheDir as
// refcache-<key>.json; a later call with the same pairs, masking and reference weights
// reads them back without a forward pass. An empty cacheDir keeps them in memory only.
func ReferenceLogProbs(ctx context.Context, ref *transformer.Model, pairs []Pair, mask bool, batch int, cacheDir string) (RefLogProbs, CacheInfo, error) {
	return referenceLogProbs(ctx, ref, pairs, mask, batch, cacheDir, nil)
}

func referenceLogProbs(ctx context.Context, ref *transformer.Model, pairs []Pair, mask bool, batch int, cacheDir string, progress func(done, total int)) (RefLogProbs, CacheInfo, error) {
	if batch < 1 {
		return RefLogProbs{}, CacheInfo{}, fmt.Errorf("dpo: reference batch must be >= 1, got %d", batch)
	}
	if err := checkModel(ref, "reference"); err != nil {
		return RefLogProbs{}, CacheInfo{}, err
	}
	if err := CheckPairs(pairs, ref.Config); err != nil {
		return RefLogProbs{}, CacheInfo{}, err
	}
	key, err := ReferenceKey(ref, pairs, mask)
	if err != nil {
		return RefLogProbs{}, CacheInfo{}, err
	}
	info := CacheInfo{Key: key}
	if cacheDir != "" {
		info.Path = filepath.Join(cacheDir, "refcache-"+key[:32]+".json")
		if r, ok := readRefCache(info.Path, key, len(pairs), mask); ok {
			info.Hit = true
			return r, info, nil
		}
	}
	r, forwards, err := computeReference(ctx, ref, pairs, mask, batch, progress)
	info.Forwards = forwards
	if err != nil {
		return RefLogProbs{}, info, err
	}
	if cacheDir != "" {
		if err := writeRefCache(info.Path, refCacheFile{Version: refCacheVersion, Key: key, Pairs: len(pairs), MaskFormatting: mask, RefLogProbs: r}); err != nil {
			return RefLogProbs{}, info, err
		}
	}
	return r, info, nil
}

// computeReference runs the reference over the pairs in order.
func computeReference(ctx context.Context, ref *transformer.Model, pairs []Pair, mask bool, batch int, progress func(done, total int)) (RefLogProbs, int, error) {
	batch = min(batch, len(pairs))
	s := newScorer(ref, batch, maxWidth(pairs))
	out := RefLogProbs{Chosen: make([]float64, len(pairs)), Rejected: make([]float64, len(pairs))}
	c, r := make([]Sums, batch), make([]Sums, batch)
	idx := make([]int, 0, batch)
	for lo := 0; lo < len(pairs); lo += batch {
		if err := ctx.Err(); err != nil {
			return RefLogProbs{}, s.forwards, err
		}
		idx = idx[:0]
		for i := lo; i < min(lo+batch, len(pairs)); i++ {
			idx = append(idx, i)
		}
		if err := s.forward(pairs, idx, mask, c, r); err != nil {
			return RefLogProbs{}, s.forwards, fmt.Errorf("dpo: reference: %w", err)
		}
		for k, i := range idx {
			out.Chosen[i], out.Rejected[i] = c[k].Masked, r[k].Masked
		}
		if progress != nil {
			progress(lo+len(idx), len(pairs))
		}
	}
	return out, s.forwards, nil
}

// readRefCache loads a cache file if it exists and matches; anything else is a miss
// (a stale or damaged file is recomputed and overwritten, never trusted).
func readRefCache(path, key string, n int, mask bool) (RefLogProbs, bool) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return RefLogProbs{}, false
	}
	var f refCacheFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return RefLogProbs{}, false
	}
	if f.Version != refCacheVersion || f.Key != key || f.Pairs != n || f.MaskFormatting != mask ||
		len(f.Chosen) != n || len(f.Rejected) != n {
		return RefLogProbs{}, false
	}
	return f.RefLogProbs, true
}

// writeRefCache writes the file through a temporary sibling and a rename, so a reader
// never sees half a cache.
func writeRefCache(path string, f refCacheFile) error {
	raw, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("dpo: reference cache: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("dpo: reference cache: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return fmt.Errorf("dpo: reference cache: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(fmt.Errorf("dpo: reference cache: %w", err), os.Remove(tmp))
	}
	return nil
}

// checkModel rejects a model that cannot score tokens.
func checkModel(m *transformer.Model, role string) error {
	switch {
	case m == nil || m.W == nil:
		return fmt.Errorf("dpo: nil %s model", role)
	case m.Pool == nil:
		return fmt.Errorf("dpo: %s model has no kernel pool", role)
	case m.Config.IsSequenceClassifier():
		return fmt.Errorf("dpo: the %s model is a %s; DPO needs a causal LM", role, transformer.ArchSequenceClassifier)
	}
	return nil
}
