package configs

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/posttrain/posttrain/datastore"
)

const envPrefix = "POSTTRAIN_"

// DefaultPreset is the preset every other preset and source is layered over.
const DefaultPreset = "default"

//go:embed presets/*.yaml
var presetFS embed.FS

// Sources says where a configuration comes from. Later sources override earlier ones:
// the default preset < Preset < File < Env < Sets.
type Sources struct {
	// Preset names an embedded preset ("" = "default").
	Preset string
	// File is a YAML config file; "" for none.
	File string
	// FileData, when non-nil, is used as File's content instead of reading File (File
	// then only names it in messages).
	FileData []byte
	// Env holds environment variables; nil means the process environment (os.Environ).
	// Pass an empty, non-nil map to ignore the environment. POSTTRAIN_<SECTION>_<KEY>
	// sets section.key, and POSTTRAIN_DATABASE_URL sets datastore.url.
	Env map[string]string
	// Sets are "key=value" overrides, e.g. "dpo.beta=0.2" or "dpo.formatting_token_ids=1,2".
	Sets []string
}

// PresetNames lists the embedded presets in sorted order.
func PresetNames() []string {
	entries, err := fs.ReadDir(presetFS, "presets")
	if err != nil {
		return nil // cannot happen: the directory is embedded
	}
	var out []string
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(out)
	return out
}

// PresetYAML returns the embedded YAML of the named preset.
func PresetYAML(name string) ([]byte, error) {
	b, err := presetFS.ReadFile(path.Join("presets", name+".yaml"))
	if err != nil {
		return nil, fmt.Errorf("unknown preset %q (have %s)", name, strings.Join(PresetNames(), ", "))
	}
	return b, nil
}

// Load builds the configuration from src: it layers the sources with a fresh viper,
// rejects unknown keys and ill-typed values (naming the key and its source), and
// validates the result (naming the field and the reason).
func Load(src Sources) (*Config, error) {
	layers, err := readLayers(src)
	if err != nil {
		return nil, err
	}
	v := viper.New()
	origins := map[string]string{}
	for _, l := range layers {
		if err := v.MergeConfigMap(l.values); err != nil {
			return nil, fmt.Errorf("merge config: %w", err)
		}
		for k, o := range l.origins {
			origins[k] = o
		}
	}
	var c Config
	err = v.Unmarshal(&c, func(dc *mapstructure.DecoderConfig) {
		dc.TagName = "json"
		dc.ErrorUnused = true
		dc.WeaklyTypedInput = false
		dc.DecodeHook = nil
	})
	if err != nil {
		return nil, fmt.Errorf("decode config: %w", err)
	}
	if err := c.validate(origins); err != nil {
		return nil, err
	}
	return &c, nil
}

func readLayers(src Sources) ([]*layer, error) {
	preset := src.Preset
	if preset == "" {
		preset = DefaultPreset
	}
	names := []string{DefaultPreset}
	if preset != DefaultPreset {
		names = append(names, preset)
	}
	var layers []*layer
	for _, name := range names {
		b, err := PresetYAML(name)
		if err != nil {
			return nil, err
		}
		l, err := yamlLayer("preset "+name, b)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	if src.File != "" || src.FileData != nil {
		data := src.FileData
		if data == nil {
			b, err := os.ReadFile(src.File)
			if err != nil {
				return nil, fmt.Errorf("read config file: %w", err)
			}
			data = b
		}
		name := src.File
		if name == "" {
			name = "<config>"
		}
		l, err := yamlLayer("file "+name, data)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	env := src.Env
	if env == nil {
		env = environ()
	}
	l, err := envLayer(env)
	if err != nil {
		return nil, err
	}
	layers = append(layers, l)
	l, err = setLayer(src.Sets)
	if err != nil {
		return nil, err
	}
	return append(layers, l), nil
}

func environ() map[string]string {
	out := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

// envLayer reads POSTTRAIN_* variables. A variable in a config section that names no
// key (POSTTRAIN_DPO_BETTA) is an error; other POSTTRAIN_* variables (such as
// POSTTRAIN_TEST_DATABASE_URL) belong to other tools and are ignored.
func envLayer(env map[string]string) (*layer, error) {
	byEnv := map[string]KeyInfo{}
	for _, k := range Keys() {
		byEnv[k.Env] = k
	}
	byEnv[datastore.EnvDatabaseURL] = KeyInfo{Path: "datastore.url", Env: datastore.EnvDatabaseURL}
	names := make([]string, 0, len(env))
	for name := range env {
		if strings.HasPrefix(name, envPrefix) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	l := newLayer()
	secs := sections()
	for _, name := range names {
		val := env[name]
		key, ok := byEnv[name]
		if !ok {
			rest := strings.TrimPrefix(name, envPrefix)
			for _, s := range secs {
				if strings.HasPrefix(rest, s+"_") {
					guess := strings.ToLower(s) + "." + strings.ToLower(strings.TrimPrefix(rest, s+"_"))
					return nil, fmt.Errorf("env %s: unknown key %s%s", name, guess, suggest(guess))
				}
			}
			continue
		}
		// POSTTRAIN_DATABASE_URL is the documented name; the derived
		// POSTTRAIN_DATASTORE_URL also works and wins when both are set.
		if name == datastore.EnvDatabaseURL {
			if _, both := env[envName("datastore.url")]; both {
				continue
			}
		}
		t, _, _ := lookupPath(key.Path)
		v, err := fromString(val, t)
		if err != nil {
			return nil, fmt.Errorf("env %s: %s: %w", name, key.Path, err)
		}
		l.set(key.Path, v, "env "+name)
	}
	return l, nil
}

// setLayer parses --set key=value flags.
func setLayer(sets []string) (*layer, error) {
	l := newLayer()
	for _, raw := range sets {
		key, val, ok := strings.Cut(raw, "=")
		key = strings.TrimSpace(key)
		// s labels the flag in messages; a DSN value is shown without its password.
		s := raw
		if ok {
			s = key + "=" + datastore.RedactDSN(val)
		}
		if !ok || key == "" {
			return nil, fmt.Errorf("--set %s: want key=value, e.g. --set dpo.beta=0.2", s)
		}
		t, section, found := lookupPath(key)
		switch {
		case !found:
			return nil, fmt.Errorf("--set %s: unknown key %s%s", s, key, suggest(key))
		case section:
			return nil, fmt.Errorf("--set %s: %s is a section; set one of its keys, e.g. %s", s, key, firstKeyUnder(key))
		}
		v, err := fromString(val, t)
		if err != nil {
			return nil, fmt.Errorf("--set %s: %s: %w", s, key, err)
		}
		l.set(key, v, "--set "+s)
	}
	return l, nil
}

func firstKeyUnder(section string) string {
	for _, k := range Keys() {
		if strings.HasPrefix(k.Path, section+".") {
			return k.Path
		}
	}
	return section + ".<key>"
}

// Redacted returns a copy of c that is safe to print or store: the datastore password
// is replaced by "xxxxx".
func (c *Config) Redacted() *Config {
	out := *c
	out.Datastore.URL = datastore.RedactDSN(c.Datastore.URL)
	// Copy slices so the copy never aliases c.
	out.Sampling.SystemPrompts = slices.Clone(c.Sampling.SystemPrompts)
	out.Reward.AverageWeights = slices.Clone(c.Reward.AverageWeights)
	out.SFT.AverageWeights = slices.Clone(c.SFT.AverageWeights)
	out.DPO.AverageWeights = slices.Clone(c.DPO.AverageWeights)
	out.DPO.FormattingTokenIDs = slices.Clone(c.DPO.FormattingTokenIDs)
	if c.Sampling.MinReward != nil {
		m := *c.Sampling.MinReward
		out.Sampling.MinReward = &m
	}
	return &out
}

// Snapshot is the redacted config as JSON, for the runs table and workflow payloads.
func (c *Config) Snapshot() ([]byte, error) {
	b, err := json.Marshal(c.Redacted())
	if err != nil {
		return nil, fmt.Errorf("snapshot config: %w", err)
	}
	return b, nil
}

// ArtifactsRoot is the fs artifact store directory: artifacts.root, or
// <data_dir>/artifacts when that is empty.
func (c *Config) ArtifactsRoot() string {
	if c.Artifacts.Root != "" {
		return c.Artifacts.Root
	}
	return filepath.Join(c.DataDir, "artifacts")
}

// FromJSON decodes a config snapshot (see Snapshot) strictly, so a run retried later
// uses the config it started with. Unknown fields are errors; the result is validated.
func FromJSON(b []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode config snapshot: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode config snapshot: more than one JSON value")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}
