package datastore

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Artifact is one row of the artifacts table: what a blob in the artifact store is, and
// where it came from. The content itself lives in the artifact store under SHA256.
type Artifact struct {
	// ID is the artifact's name everywhere (workflow payloads, lineage, CLI). When empty,
	// RecordArtifact derives it from Kind and SHA256 (see ArtifactID).
	ID string `json:"id"`
	// Kind is a lowercase word: "model", "reward_model", "checkpoint", "dataset", ...
	Kind string `json:"kind"`
	// URI says where the content lives (e.g. "fs:<key>" or "postgres:<key>").
	URI string `json:"uri"`
	// SHA256 is the lowercase hex digest of the content (of the manifest for a directory).
	SHA256 string `json:"sha256"`
	// Size is the content size in bytes.
	Size int64 `json:"size"`
	// Metadata is free-form JSON (config, metrics summary, file list, ...).
	Metadata map[string]any `json:"metadata,omitempty"`
	// ProducedBy is the stages.id that made it, 0 when none (imports, CLI use).
	ProducedBy int64 `json:"produced_by,omitempty"`
	// RunID and Round place the artifact in a run; "" and 0 when outside any run.
	RunID string `json:"run_id,omitempty"`
	Round int    `json:"round,omitempty"`
	// CreatedAt is set by the database.
	CreatedAt time.Time `json:"created_at"`
}

// LineageEdge says Child was made from Parent in Role. Depth is 1 for direct edges of the
// artifact asked about, 2 for their parents' edges, and so on.
type LineageEdge struct {
	Parent    string    `json:"parent"`
	Child     string    `json:"child"`
	Role      string    `json:"role"`
	Depth     int       `json:"depth"`
	CreatedAt time.Time `json:"created_at"`
}

// ArtifactFilter selects artifacts for ListArtifacts; zero fields match everything.
type ArtifactFilter struct {
	Kind       string
	RunID      string
	Round      int // 0 matches every round
	ProducedBy int64
	Limit      int // 0 means no limit
}

var (
	kindPattern   = regexp.MustCompile(`^[a-z][a-z0-9_.-]*$`)
	sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ArtifactID is the deterministic ID of content of the given kind: "<kind>-<first 16 hex
// digits of sha256>". Retried activities that record the same content get the same ID.
func ArtifactID(kind, sha256Hex string) string {
	if len(sha256Hex) > 16 {
		sha256Hex = sha256Hex[:16]
	}
	return kind + "-" + sha256Hex
}

// validate checks a to-be-recorded artifact and fills its derived ID.
func (a *Artifact) validate() error {
	a.SHA256 = strings.ToLower(a.SHA256)
	switch {
	case !kindPattern.MatchString(a.Kind):
		return fmt.Errorf("artifact kind %q: must be a lowercase word ([a-z][a-z0-9_.-]*)", a.Kind)
	case !sha256Pattern.MatchString(a.SHA256):
		return fmt.Errorf("artifact sha256 %q: must be 64 hex digits", a.SHA256)
	case a.Size < 0:
		return fmt.Errorf("artifact size %d: must be >= 0", a.Size)
	case a.Round < 0:
		return fmt.Errorf("artifact round %d: must be >= 0", a.Round)
	}
	if a.ID == "" {
		a.ID = ArtifactID(a.Kind, a.SHA256)
	}
	return nil
}

const artifactColumns = `id, kind, uri, sha256, size, metadata, COALESCE(stage_id, 0), run_id, round, created_at`

func scanArtifact(row pgx.Row) (Artifact, error) {
	var a Artifact
	err := row.Scan(&a.ID, &a.Kind, &a.URI, &a.SHA256, &a.Size, &a.Metadata, &a.ProducedBy, &a.RunID, &a.Round, &a.CreatedAt)
	return a, err
}

// RecordArtifact inserts a, or returns the artifact already recorded with the same kind
// and sha256 (so a retried activity gets the first row back, ID included: use the
// returned ID). Recording different content under an existing ID is an error.
func (s *Store) RecordArtifact(ctx context.Context, a Artifact) (Artifact, error) {
	if err := a.validate(); err != nil {
		return Artifact{}, fmt.Errorf("record artifact %s: %w", a.ID, err)
	}
	meta := a.Metadata
	if meta == nil {
		meta = map[string]any{}
	}
	var stage *int64
	if a.ProducedBy != 0 {
		stage = &a.ProducedBy
	}
	// DO UPDATE with a no-op assignment (not DO NOTHING) so RETURNING yields the existing row.
	row := s.db.QueryRow(ctx, `
		INSERT INTO artifacts (id, kind, uri, sha256, size, metadata, stage_id, run_id, round)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (kind, sha256) DO UPDATE SET kind = artifacts.kind
		RETURNING `+artifactColumns,
		a.ID, a.Kind, a.URI, a.SHA256, a.Size, meta, stage, a.RunID, a.Round)
	got, err := scanArtifact(row)
	switch {
	case isUniqueViolation(err):
		return Artifact{}, fmt.Errorf("record artifact %s: the ID is already used by other content (kind %s, sha256 %s is new)", a.ID, a.Kind, a.SHA256)
	case isFKViolation(err):
		return Artifact{}, fmt.Errorf("record artifact %s: producing stage %d does not exist", a.ID, a.ProducedBy)
	case err != nil:
		return Artifact{}, fmt.Errorf("record artifact %s: %w", a.ID, err)
	}
	return got, nil
}

// GetArtifact returns the artifact with the given ID (ErrNotFound when there is none).
func (s *Store) GetArtifact(ctx context.Context, id string) (Artifact, error) {
	a, err := scanArtifact(s.db.QueryRow(ctx, `SELECT `+artifactColumns+` FROM artifacts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Artifact{}, fmt.Errorf("artifact %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Artifact{}, fmt.Errorf("get artifact %s: %w", id, err)
	}
	return a, nil
}

// FindArtifactBySHA returns the artifact of the given kind and content digest
// (ErrNotFound when there is none).
func (s *Store) FindArtifactBySHA(ctx context.Context, kind, sha256Hex string) (Artifact, error) {
	a, err := scanArtifact(s.db.QueryRow(ctx, `SELECT `+artifactColumns+` FROM artifacts WHERE kind = $1 AND sha256 = $2`, kind, strings.ToLower(sha256Hex)))
	if errors.Is(err, pgx.ErrNoRows) {
		return Artifact{}, fmt.Errorf("artifact %s/%s: %w", kind, sha256Hex, ErrNotFound)
	}
	if err != nil {
		return Artifact{}, fmt.Errorf("find artifact %s/%s: %w", kind, sha256Hex, err)
	}
	return a, nil
}

// ListArtifacts returns the artifacts matching f, oldest first.
func (s *Store) ListArtifacts(ctx context.Context, f ArtifactFilter) ([]Artifact, error) {
	q := `SELECT ` + artifactColumns + ` FROM artifacts
		WHERE ($1 = '' OR kind = $1) AND ($2 = '' OR run_id = $2) AND ($3 = 0 OR round = $3)
		  AND ($4 = 0 OR stage_id = $4)
		ORDER BY created_at, id`
	args := []any{f.Kind, f.RunID, f.Round, f.ProducedBy}
	if f.Limit > 0 {
		q += ` LIMIT $5`
		args = append(args, f.Limit)
	}
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list artifacts: %w", err)
	}
	defer rows.Close()
	var out []Artifact
	for rows.Next() {
		a, err := scanArtifact(rows)
		if err != nil {
			return nil, fmt.Errorf("list artifacts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list artifacts: %w", err)
	}
	return out, nil
}

// UpdateArtifactMetadata merges meta into the artifact's metadata (top-level keys of
// meta replace existing ones). Re-applying the same keys is a no-op.
func (s *Store) UpdateArtifactMetadata(ctx context.Context, id string, meta map[string]any) error {
	tag, err := s.db.Exec(ctx, `UPDATE artifacts SET metadata = metadata || $2 WHERE id = $1`, id, meta)
	if err != nil {
		return fmt.Errorf("update artifact %s metadata: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("update artifact %s metadata: %w", id, ErrNotFound)
	}
	return nil
}

// AddLineage records that child was made from parent in role. Recording the same edge
// again is a no-op; both artifacts must exist.
func (s *Store) AddLineage(ctx context.Context, parent, child, role string) error {
	if role == "" {
		return fmt.Errorf("lineage %s -> %s: role must not be empty", parent, child)
	}
	if parent == child {
		return fmt.Errorf("lineage %s -> %s: an artifact cannot be its own parent", parent, child)
	}
	_, err := s.db.Exec(ctx, `INSERT INTO artifact_lineage (parent_id, child_id, role) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, parent, child, role)
	if isFKViolation(err) {
		return fmt.Errorf("lineage %s -> %s (%s): parent or child is not a recorded artifact", parent, child, role)
	}
	if err != nil {
		return fmt.Errorf("lineage %s -> %s (%s): %w", parent, child, role, err)
	}
	return nil
}

// Lineage returns every edge in the ancestry of id (its parents, their parents, ...),
// nearest first: the answer to "which data and which checkpoints produced this model".
func (s *Store) Lineage(ctx context.Context, id string) ([]LineageEdge, error) {
	return s.walkLineage(ctx, id, true)
}

// Descendants returns every edge below id (what was made from it, and so on), nearest
// first.
func (s *Store) Descendants(ctx context.Context, id string) ([]LineageEdge, error) {
	return s.walkLineage(ctx, id, false)
}

func (s *Store) walkLineage(ctx context.Context, id string, up bool) ([]LineageEdge, error) {
	// UNION (not UNION ALL) makes the walk terminate even on a cyclic graph.
	q := `WITH RECURSIVE walk(parent_id, child_id, role, depth, created_at) AS (
			SELECT parent_id, child_id, role, 1, created_at FROM artifact_lineage WHERE child_id = $1
			UNION
			SELECT l.parent_id, l.child_id, l.role, w.depth + 1, l.created_at
			FROM artifact_lineage l JOIN walk w ON l.child_id = w.parent_id
			WHERE w.depth < 64)
		SELECT parent_id, child_id, role, min(depth), min(created_at) FROM walk
		GROUP BY parent_id, child_id, role ORDER BY min(depth), parent_id, child_id, role`
	if !up {
		q = `WITH RECURSIVE walk(parent_id, child_id, role, depth, created_at) AS (
			SELECT parent_id, child_id, role, 1, created_at FROM artifact_lineage WHERE parent_id = $1
			UNION
			SELECT l.parent_id, l.child_id, l.role, w.depth + 1, l.created_at
			FROM artifact_lineage l JOIN walk w ON l.parent_id = w.child_id
			WHERE w.depth < 64)
		SELECT parent_id, child_id, role, min(depth), min(created_at) FROM walk
		GROUP BY parent_id, child_id, role ORDER BY min(depth), parent_id, child_id, role`
	}
	rows, err := s.db.Query(ctx, q, id)
	if err != nil {
		return nil, fmt.Errorf("lineage of %s: %w", id, err)
	}
	edges, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LineageEdge, error) {
		var e LineageEdge
		err := r.Scan(&e.Parent, &e.Child, &e.Role, &e.Depth, &e.CreatedAt)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("lineage of %s: %w", id, err)
	}
	return edges, nil
}
