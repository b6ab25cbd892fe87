package datastore_test

import (
	"context"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
	"github.com/posttrain/posttrain/migrations"
)

func TestMigrateFromEmptyThenNoOp(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Open(t, pgtest.NewEmptyDatabase(t))
	all, err := datastore.LoadMigrations(migrations.FS)
	require.NoError(t, err)
	require.NotEmpty(t, all)

	done, err := datastore.MigrateFS(ctx, pool, migrations.FS)
	require.NoError(t, err)
	assert.Len(t, done, len(all), "every migration applies on an empty database")

	again, err := datastore.MigrateFS(ctx, pool, migrations.FS)
	require.NoError(t, err)
	assert.Empty(t, again, "a second run applies nothing")

	vs, err := datastore.AppliedVersions(ctx, pool)
	require.NoError(t, err)
	want := make([]int, len(all))
	for i, m := range all {
		want[i] = m.Version
	}
	assert.Equal(t, want, vs)
	for _, table := range []string{"runs", "rounds", "stages", "artifacts", "artifact_lineage", "metrics",
		"datasets", "prompts", "preference_pairs", "sft_examples", "sampling_candidates"} {
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n), table)
		assert.Zero(t, n, table)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewEmptyDatabase(t)
	pools := []*pgxpool.Pool{pgtest.Open(t, dsn), pgtest.Open(t, dsn)}
	var wg sync.WaitGroup
	results := make([][]datastore.Migration, len(pools))
	errs := make([]error, len(pools))
	for i, p := range pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = datastore.MigrateFS(ctx, p, migrations.FS)
		}()
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	all, err := datastore.LoadMigrations(migrations.FS)
	require.NoError(t, err)
	assert.Equal(t, len(all), len(results[0])+len(results[1]), "each migration is applied exactly once between the two")
	assert.True(t, len(results[0]) == 0 || len(results[1]) == 0, "the second caller finds nothing to do")
	var n int
	require.NoError(t, pools[0].QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n))
	assert.Equal(t, len(all), n)
}

func TestMigrateRejectsEditedAndMisnamedFiles(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Open(t, pgtest.NewEmptyDatabase(t))
	v1 := fstest.MapFS{"0001_a.sql": {Data: []byte("CREATE TABLE a (x int);")}}
	_, err := datastore.MigrateFS(ctx, pool, v1)
	require.NoError(t, err)

	edited := fstest.MapFS{"0001_a.sql": {Data: []byte("CREATE TABLE a (x bigint);")}}
	_, err = datastore.MigrateFS(ctx, pool, edited)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "0001_a.sql")
	assert.Contains(t, err.Error(), "never edit an applied migration")

	_, err = datastore.LoadMigrations(fstest.MapFS{"first.sql": {Data: []byte("SELECT 1")}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "first.sql")

	_, err = datastore.LoadMigrations(fstest.MapFS{"0002_x.sql": {}, "0002_y.sql": {}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "version 2 already used")
}

func TestMigrateFailureRollsBackThatFile(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Open(t, pgtest.NewEmptyDatabase(t))
	fsys := fstest.MapFS{
		"0001_ok.sql":  {Data: []byte("CREATE TABLE ok (x int);")},
		"0002_bad.sql": {Data: []byte("CREATE TABLE half (x int); SELECT no_such_column FROM ok;")},
	}
	done, err := datastore.MigrateFS(ctx, pool, fsys)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "0002_bad.sql")
	require.Len(t, done, 1)
	var exists bool
	require.NoError(t, pool.QueryRow(ctx, "SELECT to_regclass('half') IS NOT NULL").Scan(&exists))
	assert.False(t, exists, "the failed file's statements are rolled back")
	vs, err := datastore.AppliedVersions(ctx, pool)
	require.NoError(t, err)
	assert.Equal(t, []int{1}, vs)
}
