package datastore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
)

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestRecordArtifactIsIdempotent(t *testing.T) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(t))
	in := datastore.Artifact{Kind: "model", URI: "fs:abc", SHA256: digest("weights"), Size: 7,
		Metadata: map[string]any{"preset": "tiny"}}
	first, err := s.RecordArtifact(ctx, in)
	require.NoError(t, err)
	assert.Equal(t, datastore.ArtifactID("model", digest("weights")), first.ID)
	assert.Equal(t, "tiny", first.Metadata["preset"])
	assert.False(t, first.CreatedAt.IsZero())

	// A retry, even with another URI or an explicit ID, returns the first row.
	retry := in
	retry.URI = "postgres:abc"
	again, err := s.RecordArtifact(ctx, retry)
	require.NoError(t, err)
	assert.Equal(t, first, again)

	list, err := s.ListArtifacts(ctx, datastore.ArtifactFilter{Kind: "model"})
	require.NoError(t, err)
	require.Len(t, list, 1)

	// The same content as another kind is another artifact.
	other, err := s.RecordArtifact(ctx, datastore.Artifact{Kind: "checkpoint", SHA256: digest("weights"), Size: 7})
	require.NoError(t, err)
	assert.NotEqual(t, first.ID, other.ID)

	// Different content under an existing ID is refused.
	_, err = s.RecordArtifact(ctx, datastore.Artifact{ID: first.ID, Kind: "model", SHA256: digest("other"), Size: 5})
	require.Error(t, err)
	assert.Contains(t, err.Error(), first.ID)
	assert.Contains(t, err.Error(), "already used")

	got, err := s.GetArtifact(ctx, first.ID)
	require.NoError(t, err)
	assert.Equal(t, first, got)
	_, err = s.GetArtifact(ctx, "model-missing")
	require.ErrorIs(t, err, datastore.ErrNotFound)

	found, err := s.FindArtifactBySHA(ctx, "model", digest("weights"))
	require.NoError(t, err)
	assert.Equal(t, first.ID, found.ID)

	require.NoError(t, s.UpdateArtifactMetadata(ctx, first.ID, map[string]any{"accuracy": 0.5}))
	got, err = s.GetArtifact(ctx, first.ID)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"preset": "tiny", "accuracy": 0.5}, got.Metadata)
}

func TestRecordArtifactValidation(t *testing.T) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(t))
	cases := []struct {
		name string
		a    datastore.Artifact
		want string
	}{
		{"bad kind", datastore.Artifact{Kind: "Model!", SHA256: digest("x")}, "kind"},
		{"empty kind", datastore.Artifact{SHA256: digest("x")}, "kind"},
		{"short sha", datastore.Artifact{Kind: "model", SHA256: "abc"}, "sha256"},
		{"negative size", datastore.Artifact{Kind: "model", SHA256: digest("x"), Size: -1}, "size"},
		{"missing stage", datastore.Artifact{Kind: "model", SHA256: digest("x"), ProducedBy: 999}, "stage 999"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.RecordArtifact(ctx, tc.a)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestLineage(t *testing.T) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(t))
	rec := func(kind, content string) string {
		a, err := s.RecordArtifact(ctx, datastore.Artifact{Kind: kind, SHA256: digest(content)})
		require.NoError(t, err)
		return a.ID
	}
	base, data, sft, dpo, prefs := rec("model", "base"), rec("dataset", "sft-data"), rec("model", "sft"), rec("model", "dpo"), rec("dataset", "prefs")
	require.NoError(t, s.AddLineage(ctx, base, sft, "init"))
	require.NoError(t, s.AddLineage(ctx, data, sft, "train_data"))
	require.NoError(t, s.AddLineage(ctx, sft, dpo, "init"))
	require.NoError(t, s.AddLineage(ctx, sft, dpo, "reference"))
	require.NoError(t, s.AddLineage(ctx, prefs, dpo, "train_data"))
	// Retried: no duplicate edge.
	require.NoError(t, s.AddLineage(ctx, sft, dpo, "init"))

	edges, err := s.Lineage(ctx, dpo)
	require.NoError(t, err)
	require.Len(t, edges, 5)
	for _, e := range edges[:3] {
		assert.Equal(t, 1, e.Depth)
		assert.Equal(t, dpo, e.Child)
	}
	for _, e := range edges[3:] {
		assert.Equal(t, 2, e.Depth)
		assert.Equal(t, sft, e.Child)
	}

	down, err := s.Descendants(ctx, base)
	require.NoError(t, err)
	require.Len(t, down, 3)
	assert.Equal(t, datastore.LineageEdge{Parent: base, Child: sft, Role: "init", Depth: 1, CreatedAt: down[0].CreatedAt}, down[0])

	err = s.AddLineage(ctx, base, "model-nope", "init")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a recorded artifact")
	require.Error(t, s.AddLineage(ctx, base, base, "init"))
	require.Error(t, s.AddLineage(ctx, base, sft, ""))
}
