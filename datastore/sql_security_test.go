package datastore_test

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
)

// sqlLike matches text that reads as a SQL statement or clause.
var sqlLike = regexp.MustCompile(`\b(SELECT|INSERT|UPDATE|DELETE|WHERE|VALUES|FROM|LIMIT|OFFSET|ORDER BY|DROP|CREATE)\b`)

// placeholderVerb is the one formatting verb allowed in SQL text: a parameter number.
var placeholderVerb = regexp.MustCompile(`\$%d`)

// trustedSQLParams are function parameters that carry SQL fragments into a query. Each
// is allowed only because the test also checks that every call passes a constant.
var trustedSQLParams = map[string][]string{"dataQuery": {"cols", "table"}}

// sqlSourceDirs are the packages that talk to PostgreSQL.
var sqlSourceDirs = []string{".", "jsonl", "../artifacts", "../artifacts/catalog", "../activities", "../pgserver", "../internal/pgtest"}

type sqlFinding struct {
	pos token.Position
	why string
}

// scanSQL parses the non-test Go files of dirs and reports SQL text built from values:
// fmt.Sprintf with SQL in the format and a verb other than `$%d`, and string
// concatenation of SQL text with anything but constants or trusted parameters.
func scanSQL(t *testing.T, dirs []string) ([]sqlFinding, int) {
	t.Helper()
	fset := token.NewFileSet()
	var findings []sqlFinding
	files := 0
	for _, dir := range dirs {
		matches, err := filepath.Glob(filepath.Join(dir, "*.go"))
		require.NoError(t, err)
		for _, path := range matches {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			require.NoError(t, err)
			files++
			consts := packageConsts(f)
			findings = append(findings, scanFile(fset, f, consts)...)
		}
	}
	return findings, files
}

// packageConsts lists the names declared const in f (file scope is enough: SQL
// constants sit next to the code using them).
func packageConsts(f *ast.File) map[string]bool {
	out := map[string]bool{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			for _, n := range s.(*ast.ValueSpec).Names {
				out[n.Name] = true
			}
		}
	}
	return out
}

// localTrusted finds a function's local constants and variables chosen from a map of
// string literals (e.g. a table name picked by kind): both can only hold fixed text.
func localTrusted(body *ast.BlockStmt) map[string]bool {
	out := map[string]bool{}
	ast.Inspect(body, func(n ast.Node) bool {
		switch v := n.(type) {
		case *ast.GenDecl:
			if v.Tok == token.CONST {
				for _, s := range v.Specs {
					for _, n := range s.(*ast.ValueSpec).Names {
						out[n.Name] = true
					}
				}
			}
		case *ast.AssignStmt:
			if v.Tok == token.DEFINE && len(v.Lhs) == 1 && len(v.Rhs) == 1 && isLiteralMapIndex(v.Rhs[0]) {
				if id, ok := v.Lhs[0].(*ast.Ident); ok {
					out[id.Name] = true
				}
			}
		}
		return true
	})
	return out
}

// isLiteralMapIndex reports whether e is map[K]string{k: "lit", ...}[key].
func isLiteralMapIndex(e ast.Expr) bool {
	ix, ok := e.(*ast.IndexExpr)
	if !ok {
		return false
	}
	cl, ok := ix.X.(*ast.CompositeLit)
	if !ok {
		return false
	}
	for _, el := range cl.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok || literalText(kv.Value) == "" {
			return false
		}
	}
	return len(cl.Elts) > 0
}

// isSanitizedIdentifier reports whether e is pgx.Identifier{...}.Sanitize(), which quotes
// an identifier safely.
func isSanitizedIdentifier(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Sanitize" {
		return false
	}
	cl, ok := sel.X.(*ast.CompositeLit)
	if !ok {
		return false
	}
	typ, ok := cl.Type.(*ast.SelectorExpr)
	return ok && isIdent(typ.X, "pgx") && typ.Sel.Name == "Identifier"
}

func isConstString(e ast.Expr, consts map[string]bool, trusted map[string]bool) bool {
	if isSanitizedIdentifier(e) {
		return true
	}
	switch v := e.(type) {
	case *ast.BasicLit:
		return v.Kind == token.STRING
	case *ast.Ident:
		return consts[v.Name] || trusted[v.Name]
	case *ast.ParenExpr:
		return isConstString(v.X, consts, trusted)
	case *ast.BinaryExpr:
		return v.Op == token.ADD && isConstString(v.X, consts, trusted) && isConstString(v.Y, consts, trusted)
	}
	return false
}

func literalText(e ast.Expr) string {
	if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
		s, err := strconv.Unquote(bl.Value)
		if err == nil {
			return s
		}
	}
	return ""
}

// hasSQLLiteral reports whether the + chain e contains a SQL-looking string literal.
func hasSQLLiteral(e ast.Expr) bool {
	switch v := e.(type) {
	case *ast.BinaryExpr:
		return hasSQLLiteral(v.X) || hasSQLLiteral(v.Y)
	case *ast.ParenExpr:
		return hasSQLLiteral(v.X)
	}
	return sqlLike.MatchString(literalText(e))
}

func scanFile(fset *token.FileSet, f *ast.File, consts map[string]bool) []sqlFinding {
	var out []sqlFinding
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		trusted := localTrusted(fd.Body)
		for _, p := range trustedSQLParams[fd.Name.Name] {
			trusted[p] = true
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			switch v := n.(type) {
			case *ast.CallExpr:
				sel, ok := v.Fun.(*ast.SelectorExpr)
				if ok && isIdent(sel.X, "fmt") && strings.HasSuffix(sel.Sel.Name, "printf") && len(v.Args) > 0 {
					idx := 0
					if sel.Sel.Name == "Fprintf" {
						idx = 1
					}
					if idx < len(v.Args) {
						format := literalText(v.Args[idx])
						rest := placeholderVerb.ReplaceAllString(format, "")
						if sqlLike.MatchString(format) && strings.Contains(rest, "%") {
							out = append(out, sqlFinding{fset.Position(v.Pos()), "fmt." + sel.Sel.Name + " formats values into SQL: " + format})
						}
					}
				}
				// Callers of a function with trusted SQL parameters must pass constants.
				if id, ok := v.Fun.(*ast.Ident); ok {
					if params, ok := trustedSQLParams[id.Name]; ok {
						for i := range params {
							if i < len(v.Args) && !isConstString(v.Args[i], consts, nil) {
								out = append(out, sqlFinding{fset.Position(v.Args[i].Pos()), id.Name + " needs a constant SQL fragment"})
							}
						}
					}
				}
			case *ast.BinaryExpr:
				if v.Op == token.ADD && hasSQLLiteral(v) && !isConstString(v, consts, trusted) {
					out = append(out, sqlFinding{fset.Position(v.Pos()), "SQL text concatenated with a non-constant value"})
					return false
				}
			case *ast.AssignStmt:
				// q += "..." with a value on the right.
				if v.Tok == token.ADD_ASSIGN && len(v.Rhs) == 1 && hasSQLLiteral(v.Rhs[0]) && !isConstString(v.Rhs[0], consts, trusted) {
					out = append(out, sqlFinding{fset.Position(v.Pos()), "SQL text appended with a non-constant value"})
				}
			}
			return true
		})
	}
	return out
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

// TestSQLIsParameterised scans the Go source of every package that talks to PostgreSQL
// for SQL built from values instead of $n parameters.
func TestSQLIsParameterised(t *testing.T) {
	var dirs []string
	for _, d := range sqlSourceDirs {
		if _, err := os.Stat(d); err == nil {
			dirs = append(dirs, d)
		}
	}
	findings, files := scanSQL(t, dirs)
	require.Greater(t, files, 10, "the scan must actually read the datastore sources")
	for _, f := range findings {
		t.Errorf("%s: %s", f.pos, f.why)
	}
}

// TestSQLScannerCatchesInjection checks the scanner on code that builds SQL from values,
// so that a clean result above means something.
func TestSQLScannerCatchesInjection(t *testing.T) {
	dir := t.TempDir()
	src := `package bad

import "fmt"

const cols = "id, name"

func q1(name string) string { return fmt.Sprintf("SELECT * FROM runs WHERE id = '%s'", name) }
func q2(name string) string { return "SELECT " + cols + " FROM runs WHERE id = '" + name + "'" }
func q3(n int) string { q := "SELECT 1"; q += " LIMIT " + fmt.Sprint(n); return q }
func ok1(n int) string { return fmt.Sprintf(" OFFSET $%d", n) }
func ok2() string { return "SELECT " + cols + " FROM runs" }
func dataQuery(cols, table string) string { return "SELECT " + cols + " FROM " + table }
func ok3() string { return dataQuery("id", "prompts") }
func bad4(tbl string) string { return dataQuery("id", tbl) }
func ok4(kind string) string { table := map[string]string{"a": "prompts"}[kind]; return "SELECT 1 FROM " + table }
func bad5(m map[string]string, kind string) string { table := m[kind]; return "SELECT 1 FROM " + table }
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.go"), []byte(src), 0o644))
	findings, _ := scanSQL(t, []string{dir})
	lines := map[int]bool{}
	for _, f := range findings {
		lines[f.pos.Line] = true
	}
	assert.True(t, lines[7], "Sprintf of a value into SQL")
	assert.True(t, lines[8], "concatenation of a value into SQL")
	assert.True(t, lines[9], "append of a value to SQL")
	assert.True(t, lines[14], "a non-constant table name passed to a trusted parameter")
	assert.True(t, lines[16], "a table name from a non-literal map")
	assert.False(t, lines[10] || lines[11] || lines[12] || lines[13] || lines[15], "false positives: %v", findings)
}

// hostile strings that would break or subvert SQL built by concatenation.
var hostile = []string{
	`'; DROP TABLE runs; --`,
	`" OR 1=1 --`,
	`Robert'); DELETE FROM metrics; --`,
	`$1 $2 \x00 %s %d`,
	"back\\slash 'quote' \"dq\" ;; \n newline \t tab ☃",
}

// TestHostileStringsRoundTrip stores hostile strings in every kind of text column a user
// controls and reads them back unchanged, with every table still there.
func TestHostileStringsRoundTrip(t *testing.T) {
	pool := pgtest.NewDB(t)
	s := datastore.New(pool)
	ctx := context.Background()
	for i, h := range hostile {
		h := strings.ReplaceAll(h, "\x00", "") // PostgreSQL text cannot hold NUL
		run, err := s.CreateRun(ctx, datastore.Run{ID: h, WorkflowID: h, Series: h, Preset: h, Config: []byte(`{"note":` + strconv.Quote(h) + `}`)})
		require.NoError(t, err, "run %q", h)
		got, err := s.GetRun(ctx, h)
		require.NoError(t, err)
		assert.Equal(t, h, got.ID)
		assert.Equal(t, h, got.Series)
		assert.Equal(t, run.ID, got.ID)
		require.NoError(t, s.SetRunStatus(ctx, h, datastore.StatusFailed, h))
		got, err = s.GetRun(ctx, h)
		require.NoError(t, err)
		assert.Equal(t, h, got.Error)

		require.NoError(t, s.RecordMetrics(ctx, []datastore.Metric{{RunID: h, Stage: h, Variant: h, Name: h, Value: float64(i)}}))
		ms, err := s.ListMetrics(ctx, datastore.MetricFilter{RunID: h, Stage: h, Name: h})
		require.NoError(t, err)
		require.Len(t, ms, 1)
		assert.Equal(t, h, ms[0].Name)

		name := "ds " + strconv.Itoa(i) + " " + h
		_, err = s.CreateDataset(ctx, datastore.Dataset{Name: name, Kind: datastore.KindPrompts, Description: h})
		require.NoError(t, err)
		_, err = s.InsertPrompts(ctx, []datastore.Prompt{{Dataset: name, Prompt: datastore.Segment{Text: h}, Source: h}})
		require.NoError(t, err)
		ps, err := s.ListPrompts(ctx, datastore.DataFilter{Dataset: name})
		require.NoError(t, err)
		require.Len(t, ps, 1)
		assert.Equal(t, h, ps[0].Prompt.Text)
		assert.Equal(t, h, ps[0].Source)
	}
	runs, err := s.ListRuns(ctx, datastore.RunFilter{})
	require.NoError(t, err)
	assert.Len(t, runs, len(hostile), "every run is there: no statement was cut short or injected")
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_name IN ('runs', 'metrics', 'prompts')`).Scan(&n))
	assert.Equal(t, 3, n, "tables survive")
}
