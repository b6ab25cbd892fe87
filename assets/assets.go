// Package assets ships the base model of `posttrain demo` inside the binary: a small
// causal LM pre-trained on the bundled task's corpus (see README.md and
// make-basemodel.sh), so the demo starts post-training at once instead of pre-training.
package assets

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// baseModel holds the three files of the shipped checkpoint.
//
//go:embed basemodel/config.json basemodel/model.safetensors basemodel/tokenizer.json
var baseModel embed.FS

// BaseModelFiles are the file names of the shipped checkpoint.
func BaseModelFiles() []string {
	return []string{"config.json", "model.safetensors", "tokenizer.json"}
}

// BaseModelSHA256 fingerprints the shipped checkpoint (its files, in name order).
func BaseModelSHA256() (string, error) {
	h := sha256.New()
	for _, name := range BaseModelFiles() {
		b, err := baseModel.ReadFile("basemodel/" + name)
		if err != nil {
			return "", fmt.Errorf("shipped base model: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// WriteBaseModel writes the shipped checkpoint under dir, in a subdirectory named by its
// fingerprint (basemodel-<first 12 hex digits>), and returns that directory. An existing,
// identical copy is reused; the files are written to a temporary directory and renamed
// into place, so a crash never leaves a half-written model behind.
func WriteBaseModel(dir string) (string, error) {
	sum, err := BaseModelSHA256()
	if err != nil {
		return "", err
	}
	target := filepath.Join(dir, "basemodel-"+sum[:12])
	if same(target) {
		return target, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("shipped base model: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".basemodel-*")
	if err != nil {
		return "", fmt.Errorf("shipped base model: %w", err)
	}
	defer os.RemoveAll(tmp)
	for _, name := range BaseModelFiles() {
		b, err := baseModel.ReadFile("basemodel/" + name)
		if err != nil {
			return "", fmt.Errorf("shipped base model: %w", err)
		}
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return "", fmt.Errorf("shipped base model: %w", err)
		}
	}
	if err := os.RemoveAll(target); err != nil {
		return "", fmt.Errorf("shipped base model: %w", err)
	}
	if err := os.Rename(tmp, target); err != nil {
		return "", fmt.Errorf("shipped base model: %w", err)
	}
	return target, nil
}

// same reports whether dir already holds exactly the shipped files.
func same(dir string) bool {
	for _, name := range BaseModelFiles() {
		want, err := baseModel.ReadFile("basemodel/" + name)
		if err != nil {
			return false
		}
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			return false
		}
	}
	return true
}
