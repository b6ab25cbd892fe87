package pgtest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
)

func TestNewDBIsMigratedPrivateAndDropped(t *testing.T) {
	ctx := context.Background()
	var names []string
	for range 2 {
		t.Run("db", func(t *testing.T) {
			pool := pgtest.NewDB(t)
			var name string
			require.NoError(t, pool.QueryRow(ctx, "SELECT current_database()").Scan(&name))
			names = append(names, name)
			vs, err := datastore.AppliedVersions(ctx, pool)
			require.NoError(t, err)
			assert.NotEmpty(t, vs, "migrated")
		})
	}
	require.Len(t, names, 2)
	assert.NotEqual(t, names[0], names[1], "each test gets its own database")

	admin := pgtest.Open(t, pgtest.AdminURL())
	for _, name := range names {
		var exists bool
		require.NoError(t, admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists))
		assert.False(t, exists, "%s is dropped when its test ends", name)
	}
}

func TestNewEmptyDatabaseHasNoSchema(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Open(t, pgtest.NewEmptyDatabase(t))
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&n))
	assert.Zero(t, n)
}
