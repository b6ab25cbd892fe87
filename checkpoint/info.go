package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/posttrain/posttrain/safetensors"
	"github.com/posttrain/posttrain/transformer"
)

// FileInfo is one file of a checkpoint directory.
type FileInfo struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
}

// Summary describes a checkpoint without loading its weights.
type Summary struct {
	Dir            string             `json:"dir"`
	Architecture   string             `json:"architecture"`
	Config         transformer.Config `json:"config"`
	Parameters     int64              `json:"parameters"`
	Tensors        int                `json:"tensors"`
	DTypes         map[string]int     `json:"dtypes"`
	TiedEmbeddings bool               `json:"tied_embeddings"`
	HasTokenizer   bool               `json:"has_tokenizer"`
	Files          []FileInfo         `json:"files"`
	TotalBytes     int64              `json:"total_bytes"`
}

// Info reads dir's config and safetensors header (both validated) and summarises them.
func Info(dir string) (*Summary, error) {
	cfg, err := transformer.LoadConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, fmt.Errorf("checkpoint info %s: %w", dir, err)
	}
	r, err := safetensors.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		return nil, fmt.Errorf("checkpoint info %s: %w", dir, err)
	}
	defer r.Close()
	s := &Summary{Dir: dir, Config: cfg, DTypes: map[string]int{}, TiedEmbeddings: cfg.TieWordEmbeddings}
	s.Architecture = transformer.ArchCausalLM
	if cfg.IsSequenceClassifier() {
		s.Architecture = transformer.ArchSequenceClassifier
	}
	for _, t := range r.Tensors() {
		s.Parameters += int64(t.NumElements())
		s.Tensors++
		s.DTypes[string(t.DType)]++
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint info %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("checkpoint info %s: %w", dir, err)
		}
		s.Files = append(s.Files, FileInfo{Name: e.Name(), Bytes: fi.Size()})
		s.TotalBytes += fi.Size()
		if e.Name() == TokenizerFile {
			s.HasTokenizer = true
		}
	}
	sort.Slice(s.Files, func(i, j int) bool { return s.Files[i].Name < s.Files[j].Name })
	return s, nil
}

// TokenizerPath returns dir's tokenizer.json path and whether it exists.
func TokenizerPath(dir string) (string, bool) {
	p := filepath.Join(dir, TokenizerFile)
	_, err := os.Stat(p)
	return p, !errors.Is(err, os.ErrNotExist) && err == nil
}
