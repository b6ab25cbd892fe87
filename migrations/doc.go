// Package migrations embeds the versioned SQL files that build posttrain's PostgreSQL
// schema. Files are named NNNN_name.sql and applied in version order by
// datastore.Migrate; a file, once applied anywhere, is never edited (its checksum is
// recorded and a changed file is an error). Versions 0001-0009 belong to the datastore,
// 0010 and up to the artifact blob store.
package migrations

import "embed"

// FS holds every migration file (*.sql) at its root.
//
//go:embed *.sql
var FS embed.FS
