package datastore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
)

func count(t *testing.T, s *datastore.Store, table string) int {
	t.Helper()
	var n int
	require.NoError(t, s.DB().QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n))
	return n
}

func newRun(t *testing.T, s *datastore.Store, id string) datastore.Run {
	t.Helper()
	r, err := s.CreateRun(context.Background(), datastore.Run{ID: id, WorkflowID: "wf-" + id, Config: json.RawMessage(`{"rounds":2}`)})
	require.NoError(t, err)
	return r
}

func TestRunsAreIdempotent(t *testing.T) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(t))
	first := newRun(t, s, "r1")
	assert.Equal(t, datastore.StatusPending, first.Status)
	assert.JSONEq(t, `{"rounds":2}`, string(first.Config))

	// A retry with another config and a Temporal run ID keeps the first snapshot but
	// fills the missing run ID.
	again, err := s.CreateRun(ctx, datastore.Run{ID: "r1", TemporalRunID: "trun", Config: json.RawMessage(`{"rounds":9}`)})
	require.NoError(t, err)
	assert.JSONEq(t, `{"rounds":2}`, string(again.Config))
	assert.Equal(t, "wf-r1", again.WorkflowID)
	assert.Equal(t, "trun", again.TemporalRunID)
	assert.Equal(t, 1, count(t, s, "runs"))

	require.NoError(t, s.SetRunStatus(ctx, "r1", datastore.StatusRunning, ""))
	require.ErrorIs(t, s.SetRunStatus(ctx, "nope", datastore.StatusRunning, ""), datastore.ErrNotFound)
	err = s.SetRunStatus(ctx, "r1", "exploded", "")
	require.Error(t, err, "the status check constraint holds")
	_, err = s.GetRun(ctx, "nope")
	require.ErrorIs(t, err, datastore.ErrNotFound)

	// Series: the latest completed run with a result.
	for i, st := range []string{datastore.StatusCompleted, datastore.StatusCompleted, datastore.StatusFailed} {
		id := fmt.Sprintf("s%d", i)
		_, err := s.CreateRun(ctx, datastore.Run{ID: id, Series: "nightly"})
		require.NoError(t, err)
		require.NoError(t, s.SetRunStatus(ctx, id, st, ""))
		require.NoError(t, s.SetRunResult(ctx, id, "model-"+id))
	}
	latest, err := s.LatestSeriesResult(ctx, "nightly")
	require.NoError(t, err)
	assert.Equal(t, "s1", latest.ID)
	_, err = s.LatestSeriesResult(ctx, "weekly")
	require.ErrorIs(t, err, datastore.ErrNotFound)

	runs, err := s.ListRuns(ctx, datastore.RunFilter{Series: "nightly"})
	require.NoError(t, err)
	assert.Len(t, runs, 3)
	runs, err = s.ListRuns(ctx, datastore.RunFilter{Limit: 2})
	require.NoError(t, err)
	assert.Len(t, runs, 2)
}

func TestRoundsAndStagesSurviveRetries(t *testing.T) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(t))
	newRun(t, s, "r1")

	r, err := s.StartRound(ctx, "r1", 1, "model-base")
	require.NoError(t, err)
	require.NotNil(t, r.StartedAt)
	r2, err := s.StartRound(ctx, "r1", 1, "")
	require.NoError(t, err)
	assert.Equal(t, r.StartedAt, r2.StartedAt, "a retry keeps the first start")
	assert.Equal(t, "model-base", r2.PolicyArtifactID)
	_, err = s.StartRound(ctx, "missing", 1, "")
	require.ErrorIs(t, err, datastore.ErrNotFound)

	key := datastore.StageKey{RunID: "r1", Round: 1, Kind: datastore.StageSFT, Variant: "0"}
	st, err := s.StartStage(ctx, key, 1)
	require.NoError(t, err)
	require.NoError(t, s.SaveCheckpoint(ctx, st.ID, "ckpt-40", 40))
	require.NoError(t, s.SaveCheckpoint(ctx, st.ID, "ckpt-20", 20), "a stale checkpoint write is ignored")

	// The worker crashes; attempt 2 starts the same stage and resumes from step 40.
	st2, err := s.StartStage(ctx, key, 2)
	require.NoError(t, err)
	assert.Equal(t, st.ID, st2.ID)
	assert.Equal(t, 2, st2.Attempt)
	assert.Equal(t, int64(40), st2.CheckpointStep)
	assert.Equal(t, "ckpt-40", st2.CheckpointArtifactID)
	// An out-of-order older attempt does not lower the attempt number.
	st1, err := s.StartStage(ctx, key, 1)
	require.NoError(t, err)
	assert.Equal(t, 2, st1.Attempt)

	require.NoError(t, s.FinishStage(ctx, st.ID, datastore.StatusCompleted, "model-sft", ""))
	done, err := s.StartStage(ctx, key, 3)
	require.NoError(t, err)
	assert.Equal(t, datastore.StatusCompleted, done.Status, "a completed stage stays completed")
	assert.Equal(t, "model-sft", done.OutputArtifactID)
	assert.Positive(t, done.Duration())
	assert.Equal(t, 1, count(t, s, "stages"))

	other, err := s.StartStage(ctx, datastore.StageKey{RunID: "r1", Round: 1, Kind: datastore.StageDPO, Variant: "0"}, 1)
	require.NoError(t, err)
	n, err := s.CancelStages(ctx, "r1")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	got, err := s.GetStageByID(ctx, other.ID)
	require.NoError(t, err)
	assert.Equal(t, datastore.StatusCancelled, got.Status)

	_, err = s.StartStage(ctx, datastore.StageKey{RunID: "r1", Round: 1, Kind: "pretrain"}, 1)
	require.Error(t, err, "unknown stage kinds are refused")

	require.NoError(t, s.FinishRound(ctx, "r1", 1, datastore.StatusCompleted, "model-dpo", map[string]any{"accuracy": 0.9}, ""))
	require.NoError(t, s.FinishRound(ctx, "r1", 1, datastore.StatusCompleted, "model-dpo", map[string]any{"sft_loss": 1.5}, ""))
	r, err = s.GetRound(ctx, "r1", 1)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"accuracy": 0.9, "sft_loss": 1.5}, r.Summary)
	require.NoError(t, s.ApproveRound(ctx, "r1", 1))
	rounds, err := s.ListRounds(ctx, "r1")
	require.NoError(t, err)
	require.Len(t, rounds, 1)
	assert.NotNil(t, rounds[0].ApprovedAt)
	stages, err := s.ListStages(ctx, "r1", 0)
	require.NoError(t, err)
	assert.Len(t, stages, 2)
}

func TestMetricsUpsert(t *testing.T) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(t))
	newRun(t, s, "r1")
	for _, n := range []int{10, 1000} { // the batch path and the COPY path
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var ms []datastore.Metric
			for i := range n {
				ms = append(ms, datastore.Metric{RunID: "r1", Round: 1, Stage: "sft", Variant: fmt.Sprint(n), Step: int64(i), Name: "loss", Value: float64(i)})
			}
			require.NoError(t, s.RecordMetrics(ctx, ms))
			// Retried with new values: same rows, new values.
			for i := range ms {
				ms[i].Value = -ms[i].Value
			}
			require.NoError(t, s.RecordMetrics(ctx, ms))
			got, err := s.ListMetrics(ctx, datastore.MetricFilter{RunID: "r1", Variant: fmt.Sprint(n)})
			require.NoError(t, err)
			require.Len(t, got, n)
			assert.Equal(t, -float64(n-1), got[n-1].Value)
		})
	}
	// Duplicates inside one call: the last wins.
	require.NoError(t, s.RecordMetrics(ctx, []datastore.Metric{
		{RunID: "r1", Stage: "dpo", Name: "acc", Value: 1},
		{RunID: "r1", Stage: "dpo", Name: "acc", Value: 2},
		{RunID: "r1", Stage: "dpo", Step: 5, Name: "acc", Value: math.NaN()},
	}))
	final, err := s.FinalMetrics(ctx, "r1")
	require.NoError(t, err)
	byKey := map[string]datastore.Metric{}
	for _, m := range final {
		byKey[m.Stage+"/"+m.Variant+"/"+m.Name] = m
	}
	assert.Equal(t, int64(999), byKey["sft/1000/loss"].Step)
	assert.True(t, math.IsNaN(byKey["dpo//acc"].Value), "the highest step wins, NaN kept")
	require.Error(t, s.RecordMetrics(ctx, []datastore.Metric{{RunID: "r1", Stage: "x"}}), "empty name")
	require.Error(t, s.RecordMetrics(ctx, []datastore.Metric{{RunID: "nope", Stage: "x", Name: "y"}}), "unknown run")
}

func TestCandidatesUpsert(t *testing.T) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(t))
	newRun(t, s, "r1")
	var cs []datastore.Candidate
	pass, fail := true, false
	for p := range 20 {
		for k := range 16 {
			c := datastore.Candidate{RunID: "r1", Round: 1, PromptID: fmt.Sprintf("p%02d", p), SampleIndex: k,
				Text: fmt.Sprintf("sample %d", k), TokenIDs: []int32{int32(p), int32(k)}, Reward: float64(k), Selected: k == 15}
			switch {
			case p == 0 && k == 15:
				c.Verified = &pass
			case p == 0:
				c.Verified = &fail
			}
			cs = append(cs, c)
		}
	}
	require.NoError(t, s.RecordCandidates(ctx, cs))
	require.NoError(t, s.RecordCandidates(ctx, cs), "a retried shard")
	total, selected, err := s.CandidateCounts(ctx, "r1", 1)
	require.NoError(t, err)
	assert.Equal(t, int64(320), total)
	assert.Equal(t, int64(20), selected)
	sel, err := s.ListCandidates(ctx, datastore.CandidateFilter{RunID: "r1", Round: 1, SelectedOnly: true})
	require.NoError(t, err)
	require.Len(t, sel, 20)
	assert.Equal(t, []int32{0, 15}, sel[0].TokenIDs)
	assert.Equal(t, 15.0, sel[0].Reward)
	require.NotNil(t, sel[0].Verified, "the verifier's verdict is stored")
	assert.True(t, *sel[0].Verified)
	assert.Nil(t, sel[1].Verified, "an unchecked sample stays unchecked")
	p0, err := s.ListCandidates(ctx, datastore.CandidateFilter{RunID: "r1", Round: 1, PromptID: "p00"})
	require.NoError(t, err)
	require.NotNil(t, p0[3].Verified)
	assert.False(t, *p0[3].Verified)

	// Two calls inside one transaction (the temp table is reused).
	require.NoError(t, s.InTx(ctx, func(tx *datastore.Store) error {
		if err := tx.RecordCandidates(ctx, cs[:3]); err != nil {
			return err
		}
		return tx.RecordCandidates(ctx, cs[3:6])
	}))
	assert.Equal(t, 320, count(t, s, "sampling_candidates"))
	err = s.RecordCandidates(ctx, []datastore.Candidate{{RunID: "nope", PromptID: "p", Reward: 1}})
	require.ErrorIs(t, err, datastore.ErrNotFound)
}

func TestDatasetsAreIdempotent(t *testing.T) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(t))
	_, err := s.CreateDataset(ctx, datastore.Dataset{Name: "p", Kind: datastore.KindPrompts})
	require.NoError(t, err)
	_, err = s.CreateDataset(ctx, datastore.Dataset{Name: "p", Kind: datastore.KindSFT})
	require.ErrorContains(t, err, `dataset "p" holds prompts, not sft`)
	ps := []datastore.Prompt{
		{Dataset: "p", Ord: 1, Prompt: datastore.Segment{Text: "2+2?"}},
		{Dataset: "p", Ord: 2, Prompt: datastore.Segment{Messages: []datastore.Message{{Role: "user", Content: "hi"}}}, Split: datastore.SplitEval},
	}
	n, err := s.InsertPrompts(ctx, ps)
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)
	ps2 := []datastore.Prompt{{Dataset: "p", Ord: 1, Prompt: datastore.Segment{Text: "2+2?"}}}
	n, err = s.InsertPrompts(ctx, ps2)
	require.NoError(t, err)
	assert.Zero(t, n, "the same content is the same row")
	assert.Equal(t, ps[0].ID, ps2[0].ID)

	d1, c1, err := s.DatasetDigest(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, int64(2), c1)
	got, err := s.GetPrompts(ctx, []string{ps[1].ID, ps[0].ID})
	require.NoError(t, err)
	assert.Equal(t, "hi", got[0].Prompt.Messages[0].Content)
	_, err = s.GetPrompts(ctx, []string{strings.Repeat("0", 64)})
	require.ErrorIs(t, err, datastore.ErrNotFound)

	_, err = s.InsertPrompts(ctx, []datastore.Prompt{{Dataset: "p", Prompt: datastore.Segment{Text: "new"}}})
	require.NoError(t, err)
	d2, _, err := s.DatasetDigest(ctx, "p")
	require.NoError(t, err)
	assert.NotEqual(t, d1, d2, "the digest follows the content")

	snap, err := s.RecordDatasetArtifact(ctx, "p", "", 0)
	require.NoError(t, err)
	assert.Equal(t, datastore.DatasetArtifactKind, snap.Kind)
	assert.Equal(t, d2, snap.SHA256)
	assert.Equal(t, float64(3), snap.Metadata["rows"])
	again, err := s.RecordDatasetArtifact(ctx, "p", "", 0)
	require.NoError(t, err)
	assert.Equal(t, snap.ID, again.ID, "unchanged data is the same artifact")
	_, err = s.RecordDatasetArtifact(ctx, "missing", "", 0)
	require.ErrorIs(t, err, datastore.ErrNotFound)

	ds, err := s.ListDatasets(ctx)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	assert.Equal(t, int64(3), ds[0].Rows)
	assert.Equal(t, int64(1), ds[0].EvalRows)
	eval, err := s.ListPrompts(ctx, datastore.DataFilter{Dataset: "p", Split: datastore.SplitEval})
	require.NoError(t, err)
	assert.Len(t, eval, 1)
}

func TestRedactDSN(t *testing.T) {
	cases := []struct{ in, want string }{
		{"postgres://alice:s3cret@db:5432/pt?sslmode=disable", "postgres://alice:xxxxx@db:5432/pt?sslmode=disable"},
		{"postgresql://alice:p%40ss@db/pt", "postgresql://alice:xxxxx@db/pt"},
		{"postgres://alice@db/pt?password=s3cret", "postgres://alice@db/pt?password=xxxxx"},
		{"postgres://postgres@127.0.0.1:5432/test", "postgres://postgres@127.0.0.1:5432/test"},
		{"host=db user=alice password=s3cret dbname=pt", "host=db user=alice password=xxxxx dbname=pt"},
		{"host=db password='s3 cret' dbname=pt", "host=db password=xxxxx dbname=pt"},
		{"postgres://alice:s3cret@db:bad port/pt", "postgres://alice:xxxxx@db:bad port/pt"},
		{"", ""},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got := datastore.RedactDSN(tc.in)
			assert.Equal(t, tc.want, got)
			assert.NotContains(t, got, "s3cret")
			assert.NotContains(t, got, "p%40ss")
		})
	}
}

func TestOpenErrorsHidePassword(t *testing.T) {
	ctx := context.Background()
	for _, dsn := range []string{
		"postgres://alice:s3cret@127.0.0.1:1/pt?connect_timeout=2",
		"host=127.0.0.1 port=1 user=alice password=s3cret connect_timeout=2",
		"postgres://alice:s3cret@127.0.0.1:notaport/pt",
		"host=127.0.0.1 password=s3cret sslmode=bogus",
	} {
		_, err := datastore.Open(ctx, dsn)
		require.Error(t, err, dsn)
		assert.NotContains(t, err.Error(), "s3cret")
		assert.NotContains(t, err.Error(), url.QueryEscape("s3cret")+"@")
	}
	_, err := datastore.Open(ctx, "")
	require.ErrorContains(t, err, datastore.EnvDatabaseURL)
}

func TestOpenWithMaxConns(t *testing.T) {
	pool, err := datastore.Open(context.Background(), pgtest.AdminURL(), datastore.WithMaxConns(3))
	require.NoError(t, err)
	defer pool.Close()
	assert.Equal(t, int32(3), pool.Config().MaxConns)
	var app string
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT current_setting('application_name')").Scan(&app))
	assert.Equal(t, "posttrain", app)
}
