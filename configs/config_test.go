package configs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/posttrain/posttrain/configs"
)

// noEnv ignores the process environment.
var noEnv = map[string]string{}

func load(t *testing.T, src configs.Sources) *configs.Config {
	t.Helper()
	if src.Env == nil {
		src.Env = noEnv
	}
	c, err := configs.Load(src)
	require.NoError(t, err)
	return c
}

func TestPresetsValidate(t *testing.T) {
	names := configs.PresetNames()
	require.Contains(t, names, "default")
	require.Contains(t, names, "demo")
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			c := load(t, configs.Sources{Preset: name})
			require.NoError(t, c.Validate())
		})
	}
	def := load(t, configs.Sources{})
	assert.Equal(t, 6, def.Rounds)
	assert.Equal(t, 16, def.Sampling.K)
	assert.Equal(t, 0.1, def.DPO.Beta)
	assert.Equal(t, 0.2, def.DPO.NLLCoef)
	assert.Equal(t, configs.NLLPerSequenceMean, def.DPO.NLLNorm)
	assert.True(t, def.DPO.MaskFormatting)
	assert.False(t, def.Reward.Margin)
	assert.Nil(t, def.Sampling.MinReward)
	demo := load(t, configs.Sources{Preset: "demo"})
	assert.Equal(t, "tiny", demo.Model.Size)
	assert.Less(t, demo.SFT.Steps, def.SFT.Steps, "demo trains fewer steps")
	assert.Equal(t, def.DPO.Beta, demo.DPO.Beta, "demo inherits what it does not change")
}

// TestDefaultPresetListsEveryKey keeps default.yaml the complete reference of keys.
func TestDefaultPresetListsEveryKey(t *testing.T) {
	b, err := configs.PresetYAML("default")
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, yaml.Unmarshal(b, &m))
	for _, k := range configs.Keys() {
		var cur any = m
		for _, part := range strings.Split(k.Path, ".") {
			mm, ok := cur.(map[string]any)
			require.True(t, ok, "default.yaml: %s", k.Path)
			_, present := mm[part]
			require.True(t, present, "default.yaml lacks %s", k.Path)
			cur = mm[part]
		}
	}
}

func TestKeysHaveUniqueEnvNames(t *testing.T) {
	seen := map[string]string{}
	for _, k := range configs.Keys() {
		prev, dup := seen[k.Env]
		assert.False(t, dup, "%s and %s share %s", prev, k.Path, k.Env)
		seen[k.Env] = k.Path
	}
	assert.Equal(t, "dpo.beta", seen["POSTTRAIN_DPO_BETA"])
	assert.Equal(t, "dpo.nll_coef", seen["POSTTRAIN_DPO_NLL_COEF"])
}

func TestNullOverridesEarlierValue(t *testing.T) {
	c := load(t, configs.Sources{File: "c.yaml", FileData: []byte("sampling:\n  min_reward: 0.5\n")})
	require.NotNil(t, c.Sampling.MinReward)
	assert.Equal(t, 0.5, *c.Sampling.MinReward)
	c = load(t, configs.Sources{File: "c.yaml", FileData: []byte("sampling:\n  min_reward: 0.5\n"), Sets: []string{"sampling.min_reward=null"}})
	assert.Nil(t, c.Sampling.MinReward, "a later null clears an earlier value")
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	require.NoError(t, os.WriteFile(file, []byte("dpo:\n  beta: 0.3\n  nll_coef: 0.5\nsampling:\n  k: 4\nrounds: 3\n"), 0o600))
	env := map[string]string{
		"POSTTRAIN_DPO_BETA":          "0.4",
		"POSTTRAIN_SAMPLING_K":        "5",
		"POSTTRAIN_DATABASE_URL":      "postgres://u:secret@db:5432/x",
		"POSTTRAIN_TEST_DATABASE_URL": "ignored",
		"UNRELATED":                   "x",
	}
	c := load(t, configs.Sources{Preset: "demo", File: file, Env: env, Sets: []string{"dpo.beta=0.5"}})
	assert.Equal(t, 0.5, c.DPO.Beta, "--set beats env, file and preset")
	assert.Equal(t, 5, c.Sampling.K, "env beats file and preset")
	assert.Equal(t, 0.5, c.DPO.NLLCoef, "file beats preset")
	assert.Equal(t, 3, c.Rounds, "file beats default")
	assert.Equal(t, 256, c.Eval.Prompts, "preset beats default")
	assert.Equal(t, "postgres://u:secret@db:5432/x", c.Datastore.URL)

	// POSTTRAIN_DATASTORE_URL, the derived name, wins over POSTTRAIN_DATABASE_URL.
	env["POSTTRAIN_DATASTORE_URL"] = "postgres://other/db"
	c = load(t, configs.Sources{Env: env})
	assert.Equal(t, "postgres://other/db", c.Datastore.URL)
}

func TestEnvAndSetParsing(t *testing.T) {
	cases := []struct {
		name  string
		env   map[string]string
		sets  []string
		check func(t *testing.T, c *configs.Config)
	}{
		{"bools", map[string]string{"POSTTRAIN_DPO_MASK_FORMATTING": "false"}, []string{"reward.margin=true", "sft.packing=1"},
			func(t *testing.T, c *configs.Config) {
				assert.False(t, c.DPO.MaskFormatting)
				assert.True(t, c.Reward.Margin)
				assert.True(t, c.SFT.Packing)
			}},
		{"floats", map[string]string{"POSTTRAIN_SAMPLING_TOP_P": "0.5"}, []string{"dpo.lr=1e-6", "sampling.min_reward=-0.25"},
			func(t *testing.T, c *configs.Config) {
				assert.Equal(t, 0.5, c.Sampling.TopP)
				assert.Equal(t, 1e-6, c.DPO.LR)
				require.NotNil(t, c.Sampling.MinReward)
				assert.Equal(t, -0.25, *c.Sampling.MinReward)
			}},
		{"int lists", map[string]string{"POSTTRAIN_DPO_FORMATTING_TOKEN_IDS": "257, 258,259"}, nil,
			func(t *testing.T, c *configs.Config) { assert.Equal(t, []int{257, 258, 259}, c.DPO.FormattingTokenIDs) }},
		{"yaml flow list keeps commas", nil, []string{"sampling.system_prompts=[\"Be brief, please.\", Be exact.]"},
			func(t *testing.T, c *configs.Config) {
				assert.Equal(t, []string{"Be brief, please.", "Be exact."}, c.Sampling.SystemPrompts)
				assert.Equal(t, "Be brief, please.", c.Sampling.SystemPrompt(1))
				assert.Equal(t, "Be exact.", c.Sampling.SystemPrompt(2))
				assert.Equal(t, "Be exact.", c.Sampling.SystemPrompt(6), "later rounds reuse the last prompt")
			}},
		{"weights", nil, []string{"sft.averaging=weighted", "sft.variants=3", "sft.average_weights=1,2,3.5"},
			func(t *testing.T, c *configs.Config) { assert.Equal(t, []float64{1, 2, 3.5}, c.SFT.AverageWeights) }},
		{"empty list and null", nil, []string{"dpo.formatting_token_ids=", "sampling.min_reward=null"},
			func(t *testing.T, c *configs.Config) {
				assert.Empty(t, c.DPO.FormattingTokenIDs)
				assert.Nil(t, c.Sampling.MinReward)
			}},
		{"value with =", nil, []string{"datastore.url=host=db password=pw"},
			func(t *testing.T, c *configs.Config) { assert.Equal(t, "host=db password=pw", c.Datastore.URL) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if env == nil {
				env = noEnv
			}
			tc.check(t, load(t, configs.Sources{Env: env, Sets: tc.sets}))
		})
	}
}

func TestSourceErrors(t *testing.T) {
	cases := []struct {
		name string
		src  configs.Sources
		want []string
	}{
		{"unknown key in file", configs.Sources{File: "c.yaml", FileData: []byte("dpo:\n  betta: 0.2\n")},
			[]string{"file c.yaml line 2", "dpo.betta: unknown key", "did you mean dpo.beta"}},
		{"unknown section in file", configs.Sources{File: "c.yaml", FileData: []byte("dpoo:\n  beta: 0.2\n")},
			[]string{"file c.yaml line 1", "dpoo: unknown key"}},
		{"wrong type in file", configs.Sources{File: "c.yaml", FileData: []byte("rounds: six\n")},
			[]string{"file c.yaml line 1", "rounds: want a int, got string \"six\""}},
		{"bool is not a number", configs.Sources{File: "c.yaml", FileData: []byte("dpo:\n  beta: true\n")},
			[]string{"dpo.beta: want a float"}},
		{"section given a scalar", configs.Sources{File: "c.yaml", FileData: []byte("dpo: 3\n")},
			[]string{"dpo: is a section"}},
		{"list item type", configs.Sources{File: "c.yaml", FileData: []byte("dpo:\n  formatting_token_ids: [1, x]\n")},
			[]string{"dpo.formatting_token_ids: item 1: want a int"}},
		{"duplicate key", configs.Sources{File: "c.yaml", FileData: []byte("rounds: 2\nrounds: 3\n")},
			[]string{"line 2", "rounds: duplicate key"}},
		{"top level not a mapping", configs.Sources{File: "c.yaml", FileData: []byte("- a\n")},
			[]string{"file c.yaml", "top level must be a mapping"}},
		{"broken yaml", configs.Sources{File: "c.yaml", FileData: []byte("dpo: [\n")},
			[]string{"file c.yaml"}},
		{"missing file", configs.Sources{File: "/nonexistent/c.yaml"}, []string{"/nonexistent/c.yaml"}},
		{"unknown preset", configs.Sources{Preset: "huge"}, []string{"unknown preset \"huge\"", "default", "demo"}},
		{"unknown env key", configs.Sources{Env: map[string]string{"POSTTRAIN_DPO_BETTA": "1"}},
			[]string{"env POSTTRAIN_DPO_BETTA", "unknown key dpo.betta"}},
		{"bad env value", configs.Sources{Env: map[string]string{"POSTTRAIN_SAMPLING_K": "many"}},
			[]string{"env POSTTRAIN_SAMPLING_K", "sampling.k", "want an int"}},
		{"bad env bool", configs.Sources{Env: map[string]string{"POSTTRAIN_REWARD_MARGIN": "maybe"}},
			[]string{"reward.margin", "want a bool"}},
		{"unknown --set key", configs.Sources{Sets: []string{"dpo.bta=1"}}, []string{"--set dpo.bta=1", "unknown key dpo.bta", "did you mean dpo.beta"}},
		{"--set without =", configs.Sources{Sets: []string{"dpo.beta"}}, []string{"--set dpo.beta", "want key=value"}},
		{"--set a section", configs.Sources{Sets: []string{"dpo=1"}}, []string{"dpo is a section"}},
		{"--set non-finite", configs.Sources{Sets: []string{"dpo.lr=NaN"}}, []string{"dpo.lr", "finite"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.src.Env == nil {
				tc.src.Env = noEnv
			}
			_, err := configs.Load(tc.src)
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestValidationNamesField(t *testing.T) {
	cases := []struct {
		set   string
		field string
		why   string
	}{
		{"rounds=0", "rounds", "must be >= 1"},
		{"sampling.k=0", "sampling.k", "must be >= 1"},
		{"reward.lr=0", "reward.lr", "must be > 0"},
		{"sft.lr=-1", "sft.lr", "must be > 0"},
		{"dpo.lr=0", "dpo.lr", "must be > 0"},
		{"dpo.beta=0", "dpo.beta", "must be > 0"},
		{"dpo.beta=-0.1", "dpo.beta", "must be > 0"},
		{"sampling.top_p=0", "sampling.top_p", "must be in (0, 1]"},
		{"sampling.top_p=1.5", "sampling.top_p", "must be in (0, 1]"},
		{"sampling.temperature=0", "sampling.temperature", "must be > 0"},
		{"sampling.top_n=99", "sampling.top_n", "must be <= sampling.k"},
		{"sampling.shards=0", "sampling.shards", "must be >= 1"},
		{"sampling.max_new_tokens=0", "sampling.max_new_tokens", "must be >= 1"},
		{"sampling.kv_budget_bytes=-1", "sampling.kv_budget_bytes", "must be >= 0"},
		{"dpo.nll_norm=mean", "dpo.nll_norm", "must be one of per-sequence-mean, batch-token-mean, per-sequence-sum"},
		{"dpo.nll_coef=-1", "dpo.nll_coef", "must be in"},
		{"dpo.reference=other", "dpo.reference", "must be one of"},
		{"dpo.formatting_token_ids=1,-2", "dpo.formatting_token_ids", "item 1 is -2"},
		{"sft.train_on=first", "sft.train_on", "must be one of all, last"},
		{"sft.data=every", "sft.data", "must be one of round, all-rounds"},
		{"sft.averaging=median", "sft.averaging", "must be one of uniform, weighted, greedy"},
		{"sft.averaging=weighted", "sft.average_weights", "one weight per variant"},
		{"dpo.average_weights=1", "dpo.average_weights", "has 1 weights but dpo.variants is 2"},
		{"reward.variants=0", "reward.variants", "must be >= 1"},
		{"reward.similarity_threshold=0", "reward.similarity_threshold", "must be in (0, 1]"},
		{"reward.centering_eta=-1", "reward.centering_eta", "must be in"},
		{"reward.steps=0", "reward.steps", "one of reward.steps or reward.epochs must be > 0"},
		{"reward.batch_size=0", "reward.batch_size", "must be >= 1"},
		{"trainer.schedule=step", "trainer.schedule", "must be one of cosine, linear, constant"},
		{"trainer.min_lr_ratio=2", "trainer.min_lr_ratio", "must be in [0, 1]"},
		{"trainer.grad_accum=0", "trainer.grad_accum", "must be >= 1"},
		{"annotator.kind=robot", "annotator.kind", "must be one of simulated, file, human"},
		{"annotator.kind=file", "annotator.file", "must name a JSONL file"},
		{"annotator.noise=1.5", "annotator.noise", "must be in [0, 1]"},
		{"annotator.bias=-2", "annotator.bias", "must be in [-1, 1]"},
		{"model.size=huge", "model.size", "must be one of bench, small, tiny"},
		{"artifacts.backend=s3", "artifacts.backend", "must be one of fs, postgres"},
		{"temporal.address=nohost", "temporal.address", "must be host:port"},
		{"temporal.address=h:99999", "temporal.address", "port must be 1-65535"},
		{"temporal.task_queue=", "temporal.task_queue", "must not be empty"},
		{"temporal.ui_port=70000", "temporal.ui_port", "must be 0 (no UI) or 1-65535"},
		{"datastore.url=postgres://u:pw@h:notaport/db", "datastore.url", "is not a PostgreSQL DSN"},
		{"datastore.max_conns=0", "datastore.max_conns", "must be >= 1"},
		{"data_dir=", "data_dir", "must not be empty"},
		{"eval.max_new_tokens=0", "eval.max_new_tokens", "must be >= 1"},
	}
	for _, tc := range cases {
		t.Run(tc.set, func(t *testing.T) {
			_, err := configs.Load(configs.Sources{Env: noEnv, Sets: []string{tc.set}})
			require.Error(t, err)
			var ve *configs.ValidationError
			require.ErrorAs(t, err, &ve)
			require.NotEmpty(t, ve.Fields)
			assert.Equal(t, tc.field, ve.Fields[0].Path)
			assert.Contains(t, ve.Fields[0].Reason, tc.why)
			if key, _, _ := strings.Cut(tc.set, "="); key == tc.field {
				assert.Contains(t, err.Error(), "(set by --set "+key, "the error names the source")
			}
			assert.NotContains(t, err.Error(), ":pw@", "no password in errors")
		})
	}
}

func TestValidationListsEveryError(t *testing.T) {
	_, err := configs.Load(configs.Sources{Env: noEnv, File: "c.yaml", FileData: []byte("rounds: 0\ndpo:\n  beta: 0\n")})
	var ve *configs.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Fields, 2)
	assert.Equal(t, "rounds", ve.Fields[0].Path)
	assert.Equal(t, "file c.yaml line 1", ve.Fields[0].Source)
	assert.Equal(t, "dpo.beta", ve.Fields[1].Path)
	assert.Equal(t, "file c.yaml line 3", ve.Fields[1].Source)
	assert.Equal(t, "invalid config (2 errors):\n  rounds: must be >= 1, got 0 (set by file c.yaml line 1)\n  dpo.beta: must be > 0, got 0 (set by file c.yaml line 3)", err.Error())
}

func TestRedacted(t *testing.T) {
	c := load(t, configs.Sources{Sets: []string{"datastore.url=postgres://alice:s3cret@db:5432/pt", "sampling.system_prompts=a"}})
	r := c.Redacted()
	assert.Equal(t, "postgres://alice:xxxxx@db:5432/pt", r.Datastore.URL)
	assert.Equal(t, "postgres://alice:s3cret@db:5432/pt", c.Datastore.URL, "the original is untouched")
	r.Sampling.SystemPrompts[0] = "changed"
	assert.Equal(t, "a", c.Sampling.SystemPrompts[0], "the copy does not alias")
	snap, err := c.Snapshot()
	require.NoError(t, err)
	assert.NotContains(t, string(snap), "s3cret")
	assert.Contains(t, string(snap), `"beta":0.1`)
}

func TestSnapshotRoundTrip(t *testing.T) {
	c := load(t, configs.Sources{Preset: "demo", Sets: []string{"sampling.min_reward=0.5", "dpo.formatting_token_ids=1,2"}})
	snap, err := c.Snapshot()
	require.NoError(t, err)
	back, err := configs.FromJSON(snap)
	require.NoError(t, err)
	assert.Equal(t, c, back)

	_, err = configs.FromJSON([]byte(`{"rounds": 2, "dpo": {"betta": 1}}`))
	require.ErrorContains(t, err, "betta")
	_, err = configs.FromJSON([]byte(`{"rounds": 0}`))
	var ve *configs.ValidationError
	require.ErrorAs(t, err, &ve)
}

func TestLoadIsIndependentPerCall(t *testing.T) {
	a := load(t, configs.Sources{Sets: []string{"rounds=2"}})
	b := load(t, configs.Sources{})
	assert.Equal(t, 2, a.Rounds)
	assert.Equal(t, 6, b.Rounds, "no state leaks between loads")
}

func TestQueuesAndRoot(t *testing.T) {
	c := load(t, configs.Sources{Sets: []string{"temporal.training_task_queue=gpu", "data_dir=/d"}})
	assert.Equal(t, "gpu", c.Temporal.TrainingQueue())
	assert.Equal(t, "posttrain", c.Temporal.SamplingQueue())
	assert.Equal(t, filepath.Join("/d", "artifacts"), c.ArtifactsRoot())
}

func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte("rounds: 3\ndpo:\n  beta: 0.2\n"))
	f.Add([]byte("sampling:\n  system_prompts: [a, b]\n  min_reward: null\n"))
	f.Add([]byte("a: &x {b: *x}\n"))
	f.Add([]byte("dpo: {formatting_token_ids: [1, 2, 3]}\n"))
	f.Add([]byte("- 1\n"))
	f.Add([]byte("rounds: 99999999999999999999\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := configs.Load(configs.Sources{File: "fuzz.yaml", FileData: data, Env: noEnv})
		if err == nil {
			require.NoError(t, c.Validate())
		} else {
			require.NotEmpty(t, err.Error())
		}
	})
}

// TestReadmeListsEveryKey keeps configs/README.md's key table complete.
func TestReadmeListsEveryKey(t *testing.T) {
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	for _, k := range configs.Keys() {
		assert.Contains(t, string(b), "| `"+k.Path+"` | "+k.Type+" |", "README.md lacks %s", k.Path)
		assert.Contains(t, string(b), "`"+k.Env+"`")
	}
}
