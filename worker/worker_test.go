package worker

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/activities"
	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/internal/pgtest"
	"github.com/posttrain/posttrain/workflows"
)

func TestNewPollsTheConfiguredQueues(t *testing.T) {
	pool := pgtest.NewDB(t)
	store, err := artifacts.NewFS(t.TempDir())
	require.NoError(t, err)
	acts, err := activities.New(activities.Deps{Pool: pool, Store: store, DataDir: t.TempDir()})
	require.NoError(t, err)
	c := server.GetDefaultClient()
	tests := []struct {
		name    string
		opts    Options
		want    []string
		wantErr string
	}{
		{"default", Options{}, []string{workflows.DefaultTaskQueue}, ""},
		{"split", Options{TaskQueue: "main", TrainingQueue: "gpu", SamplingQueue: "sampling"}, []string{"main", "gpu", "sampling"}, ""},
		{"shared", Options{TaskQueue: "main", TrainingQueue: "main", SamplingQueue: ""}, []string{"main"}, ""},
		{"only sampling", Options{TaskQueue: "main", SamplingQueue: "sampling", OnlyQueues: []string{"sampling"}}, []string{"sampling"}, ""},
		{"none", Options{TaskQueue: "main", OnlyQueues: []string{"gpu"}}, nil, "none of the queues"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws, err := NewWithActivities(c, acts, tc.opts)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, ws.Queues())
		})
	}
}

func TestNewRejectsMissingDependencies(t *testing.T) {
	_, err := New(nil, activities.Deps{}, Options{})
	require.ErrorContains(t, err, "no Temporal client")
	_, err = New(server.GetDefaultClient(), activities.Deps{DataDir: t.TempDir()}, Options{})
	require.ErrorContains(t, err, "no datastore pool")
}
