package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/temporaltest"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/posttrain/posttrain/activities"
	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/trainer/pretrain"
	"github.com/posttrain/posttrain/workflows"
)

// server is the package's one in-process Temporal server.
var server *temporaltest.TestServer

func TestMain(m *testing.M) {
	if raw := os.Getenv(crashEnv); raw != "" {
		// A worker process of the crash test, on the parent's server.
		if err := runCrashWorker(raw); err != nil {
			fmt.Fprintln(os.Stderr, "crash worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	server = temporaltest.NewServer()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_, err := server.GetDefaultClient().OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		SearchAttributes: map[string]enumspb.IndexedValueType{
			workflows.SearchAttrRound: enumspb.INDEXED_VALUE_TYPE_INT,
			workflows.SearchAttrStage: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		},
		Namespace: server.GetDefaultNamespace(),
	})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "register search attributes:", err)
		os.Exit(1)
	}
	code := m.Run()
	server.Stop()
	os.Exit(code)
}

// tinyBase writes a randomly initialised tiny model with the test tokenizer.
func tinyBase(t *testing.T) string {
	t.Helper()
	tokPath := "../tokenizer/testdata/tiny_llama3.json"
	tok, err := tokenizer.LoadFile(tokPath)
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "base")
	_, err = pretrain.Init(context.Background(), pretrain.InitOptions{Preset: "tiny", Tokenizer: tokPath, VocabSize: tok.VocabSize(), Seed: 3, OutDir: dir})
	require.NoError(t, err)
	return dir
}

// tinyOverrides make a two-round run take seconds per stage.
var tinyOverrides = []string{
	"task.train_prompts=32", "task.eval_prompts=8", "task.sft_seed_examples=16",
	"trainer.warmup_steps=1", "trainer.checkpoint_every=2",
	"reward.steps=4", "reward.batch_size=4", "reward.variants=2",
	"sampling.k=3", "sampling.max_new_tokens=8", "sampling.shards=2", "sampling.prompts_per_round=8", "sampling.kv_budget_bytes=0",
	// An untrained model answers nothing right: the ground-truth filter would keep no sample.
	"sampling.verify=none",
	"sft.steps=4", "sft.batch_size=4", "sft.variants=1",
	"dpo.steps=4", "dpo.batch_size=2", "dpo.variants=2",
	"eval.prompts=8", "eval.max_new_tokens=8", "annotator.prompts_per_round=16",
}

// startWorker runs a worker on a fresh database and artifact store.
func startWorker(t *testing.T) (*datastore.Store, client.Client, string) {
	t.Helper()
	pool := pgtest.NewDB(t)
	store, err := artifacts.NewFS(t.TempDir())
	require.NoError(t, err)
	base := tinyBase(t)
	deps := activities.Deps{Pool: pool, Store: store, DataDir: t.TempDir(), Threads: 2, Env: map[string]string{},
		DefaultBaseModel: func(context.Context) (string, error) { return base, nil }}
	queue := "it-" + t.Name()
	c := server.GetDefaultClient()
	ws, err := New(c, deps, Options{TaskQueue: queue})
	require.NoError(t, err)
	require.NoError(t, ws.Start())
	t.Cleanup(ws.Stop)
	return datastore.New(pool), c, queue
}

func TestTwoRoundsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: trains real tiny models for two rounds")
	}
	db, c, queue := startWorker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	id := "it-run-" + fmt.Sprint(time.Now().UnixNano())
	start := time.Now()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, workflows.WorkflowType,
		workflows.RunInput{Preset: "demo", Rounds: 2, Overrides: tinyOverrides, Seed: 5})
	require.NoError(t, err)
	var res workflows.RunResult
	require.NoError(t, run.Get(ctx, &res))
	wall := time.Since(start)
	require.Len(t, res.Rounds, 2)
	require.NotEmpty(t, res.FinalModel)

	// The run and its rounds.
	r, err := db.GetRun(ctx, id)
	require.NoError(t, err)
	require.Equal(t, datastore.StatusCompleted, r.Status)
	require.Equal(t, res.FinalModel, r.ResultArtifactID)
	rounds, err := db.ListRounds(ctx, id)
	require.NoError(t, err)
	require.Len(t, rounds, 2)
	base := rounds[0].PolicyArtifactID
	require.NotEmpty(t, base)
	require.Equal(t, res.Rounds[0].FinalModel, rounds[1].PolicyArtifactID, "round 2 samples with round 1's final model")
	require.Equal(t, res.Rounds[1].FinalModel, rounds[1].FinalArtifactID)

	for i, rr := range res.Rounds {
		n := i + 1
		// Lineage: the final model is the average of two DPO variants, each trained
		// from and against the round's SFT model on a dataset snapshot; SFT and RM
		// start from the base model.
		edges, err := db.Lineage(ctx, rr.FinalModel)
		require.NoError(t, err)
		var variants []string
		for _, e := range edges {
			if e.Depth == 1 {
				require.Equal(t, "variant", e.Role)
				variants = append(variants, e.Parent)
			}
		}
		require.Len(t, variants, 2, "round %d final model parents: %+v", n, edges)
		for _, v := range variants {
			roles := parentsByRole(t, db, v)
			require.Equal(t, rr.SFTModel, roles["init"], "round %d DPO init", n)
			require.Equal(t, rr.SFTModel, roles["reference"], "round %d DPO reference", n)
			require.Contains(t, roles["train_data"], "dataset-")
		}
		sftRoles := parentsByRole(t, db, rr.SFTModel)
		require.Equal(t, base, sftRoles["init"], "round %d SFT starts from the base model", n)
		rmEdges, err := db.Lineage(ctx, rr.RewardModel)
		require.NoError(t, err)
		var rmVariants int
		for _, e := range rmEdges {
			if e.Depth == 1 && e.Role == "variant" {
				rmVariants++
				require.Equal(t, base, parentsByRole(t, db, e.Parent)["init"])
			}
		}
		require.Equal(t, 2, rmVariants)
		rm, err := db.GetArtifact(ctx, rr.RewardModel)
		require.NoError(t, err)
		require.Equal(t, "reward_model", rm.Kind)

		// Candidates: 8 prompts x K=3 per round, some selected.
		total, selected, err := db.CandidateCounts(ctx, id, n)
		require.NoError(t, err)
		require.Equal(t, int64(24), total)
		require.Positive(t, selected)

		// Metrics: evaluation of every stage, per-step losses of training.
		for _, stage := range []string{"reward", "sft", "dpo"} {
			ms, err := db.ListMetrics(ctx, datastore.MetricFilter{RunID: id, Round: n, Stage: datastore.StageEval, Variant: stage})
			require.NoError(t, err)
			require.NotEmpty(t, ms, "round %d %s eval metrics", n, stage)
			require.Contains(t, rr.Metrics, workflows.MetricKey(n, stage, metricName(stage)))
		}
		if n == 2 {
			require.Contains(t, rr.Metrics, workflows.MetricKey(n, "dpo", "win_rate"), "round 2 is compared with round 1's model")
		}
		losses, err := db.ListMetrics(ctx, datastore.MetricFilter{RunID: id, Round: n, Stage: datastore.StageSFT, Variant: "0", Name: "loss"})
		require.NoError(t, err)
		require.Len(t, losses, 4, "one loss per SFT step")
	}

	// Every stage has one row, completed (a slow machine may retry an attempt whose
	// heartbeat was late; the row stays one).
	for n := 0; n <= 2; n++ {
		stages, err := db.ListStages(ctx, id, n)
		require.NoError(t, err)
		require.NotEmpty(t, stages)
		for _, s := range stages {
			require.Equal(t, datastore.StatusCompleted, s.Status, "%s", s.StageKey)
			require.GreaterOrEqual(t, s.Attempt, 1, "%s", s.StageKey)
			if s.Attempt > 1 {
				t.Logf("%s took %d attempts", s.StageKey, s.Attempt)
			}
		}
	}

	// Orchestration overhead: wall time not covered by any running activity.
	busy, first, last := activityBusy(t, c, id, 2)
	t.Logf("run wall %.2fs (client %.2fs), activities busy %.2fs, orchestration overhead %.2fs = %.1f%%",
		last.Sub(first).Seconds(), wall.Seconds(), busy.Seconds(), (last.Sub(first) - busy).Seconds(), 100*(last.Sub(first)-busy).Seconds()/last.Sub(first).Seconds())

	if dir := os.Getenv("POSTTRAIN_RECORD_HISTORY"); dir != "" {
		recordHistory(t, c, id, filepath.Join(dir, "posttraining.json"))
		recordHistory(t, c, workflows.RoundWorkflowID(id, 1), filepath.Join(dir, "posttraining_round.json"))
	}
}

func metricName(stage string) string {
	if stage == "reward" {
		return "pairs"
	}
	return "format_compliance"
}

// parentsByRole maps each direct lineage role of id to its parent.
func parentsByRole(t *testing.T, db *datastore.Store, id string) map[string]string {
	t.Helper()
	edges, err := db.Lineage(context.Background(), id)
	require.NoError(t, err)
	out := map[string]string{}
	for _, e := range edges {
		if e.Depth == 1 {
			out[e.Role] = e.Parent
		}
	}
	return out
}

// history reads a workflow's events.
func history(t testing.TB, c client.Client, id string) []*historypb.HistoryEvent {
	t.Helper()
	it := c.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*historypb.HistoryEvent
	for it.HasNext() {
		e, err := it.Next()
		require.NoError(t, err)
		events = append(events, e)
	}
	return events
}

// activityBusy is the union of the activities' execution intervals over the run
// and its rounds, and the run's first and last event times.
func activityBusy(t testing.TB, c client.Client, id string, rounds int) (time.Duration, time.Time, time.Time) {
	t.Helper()
	type span struct{ a, b time.Time }
	var spans []span
	var first, last time.Time
	ids := []string{id}
	for n := 1; n <= rounds; n++ {
		ids = append(ids, workflows.RoundWorkflowID(id, n))
	}
	for i, wid := range ids {
		events := history(t, c, wid)
		if i == 0 {
			first, last = events[0].GetEventTime().AsTime(), events[len(events)-1].GetEventTime().AsTime()
		}
		started := map[int64]time.Time{}
		for _, e := range events {
			switch e.GetEventType() {
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
				started[e.GetEventId()] = e.GetEventTime().AsTime()
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
				s := started[e.GetActivityTaskCompletedEventAttributes().GetStartedEventId()]
				spans = append(spans, span{s, e.GetEventTime().AsTime()})
			}
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].a.Before(spans[j].a) })
	var busy time.Duration
	var cur span
	for i, s := range spans {
		if i == 0 || s.a.After(cur.b) {
			if i > 0 {
				busy += cur.b.Sub(cur.a)
			}
			cur = s
			continue
		}
		if s.b.After(cur.b) {
			cur.b = s.b
		}
	}
	if len(spans) > 0 {
		busy += cur.b.Sub(cur.a)
	}
	return busy, first, last
}

// recordHistory writes a workflow's history as JSON for the replay test.
func recordHistory(t *testing.T, c client.Client, id, path string) {
	t.Helper()
	h := &historypb.History{Events: history(t, c, id)}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o644))
}
