package workflows

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRunInputRefusesDSNOverride: the run input is stored in the workflow history, so
// it must not carry the database URL (and its password).
func TestRunInputRefusesDSNOverride(t *testing.T) {
	for _, o := range []string{
		"datastore.url=postgres://u:secret@db:5432/pt",
		" datastore.url =host=db password=secret",
		"datastore.url=",
	} {
		err := RunInput{Overrides: []string{"dpo.beta=0.2", o}}.Validate()
		require.Error(t, err, "%q", o)
		assert.Contains(t, err.Error(), "datastore.url cannot be set per run")
		assert.NotContains(t, err.Error(), "secret", "the error must not echo the value")
	}
	assert.NoError(t, RunInput{Overrides: []string{"dpo.beta=0.2", "datastore.max_conns=4", "sampling.k=4"}}.Validate())
}
