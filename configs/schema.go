package configs

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// KeyInfo describes one settable key.
type KeyInfo struct {
	// Path is the dotted key, e.g. "dpo.beta".
	Path string `json:"path"`
	// Type is a short type name: string, bool, int, float, float|null, list of ...
	Type string `json:"type"`
	// Env is the environment variable that sets it, e.g. POSTTRAIN_DPO_BETA.
	Env string `json:"env"`
}

// Keys lists every settable key in declaration order.
func Keys() []KeyInfo {
	var out []KeyInfo
	walkLeaves(reflect.TypeFor[Config](), "", func(path string, t reflect.Type) {
		out = append(out, KeyInfo{Path: path, Type: typeName(t), Env: envName(path)})
	})
	return out
}

// envName is the environment variable of a key path.
func envName(path string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

func walkLeaves(t reflect.Type, prefix string, fn func(path string, t reflect.Type)) {
	for i := range t.NumField() {
		f := t.Field(i)
		name := tagName(f)
		path := join(prefix, name)
		if f.Type.Kind() == reflect.Struct {
			walkLeaves(f.Type, path, fn)
			continue
		}
		fn(path, f.Type)
	}
}

func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// fieldByKey finds the struct field whose json name is key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if tagName(t.Field(i)) == key {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// lookupPath resolves a dotted path to its field type; section is true when the path
// names a struct (a section) rather than a key.
func lookupPath(path string) (t reflect.Type, section, ok bool) {
	t = reflect.TypeFor[Config]()
	for _, part := range strings.Split(path, ".") {
		if t.Kind() != reflect.Struct {
			return nil, false, false
		}
		f, found := fieldByKey(t, part)
		if !found {
			return nil, false, false
		}
		t = f.Type
	}
	return t, t.Kind() == reflect.Struct, true
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int64:
		return "int"
	case reflect.Float64:
		return "float"
	case reflect.Pointer:
		return typeName(t.Elem()) + "|null"
	case reflect.Slice:
		return "list of " + typeName(t.Elem())
	}
	return t.String()
}

// suggest returns " (did you mean X?)" for the known key closest to path, or "".
func suggest(path string) string {
	best, bestD := "", 4
	for _, k := range Keys() {
		if d := editDistance(path, k.Path); d < bestD {
			best, bestD = k.Path, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// layer is one source's settings: a nested map of typed values, and which source set
// each leaf (for error messages).
type layer struct {
	values  map[string]any
	origins map[string]string
}

func newLayer() *layer { return &layer{values: map[string]any{}, origins: map[string]string{}} }

// set stores v at the dotted path.
func (l *layer) set(path string, v any, origin string) {
	parts := strings.Split(path, ".")
	m := l.values
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
	l.origins[path] = origin
}

// yamlLayer decodes YAML text from source (e.g. "file x.yaml") into a layer, checking
// every key and value against Config.
func yamlLayer(source string, data []byte) (*layer, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	l := newLayer()
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return l, nil // empty document
	}
	root := deref(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return l, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s line %d: the top level must be a mapping of keys", source, root.Line)
	}
	if err := walkMapping(source, root, reflect.TypeFor[Config](), "", l); err != nil {
		return nil, err
	}
	return l, nil
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func walkMapping(source string, n *yaml.Node, t reflect.Type, prefix string, l *layer) error {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k == nil || v == nil {
			return fmt.Errorf("%s: malformed mapping under %q", source, prefix)
		}
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s line %d: keys must be plain names (under %q)", source, k.Line, prefix)
		}
		path := join(prefix, k.Value)
		if seen[k.Value] {
			return fmt.Errorf("%s line %d: %s: duplicate key", source, k.Line, path)
		}
		seen[k.Value] = true
		f, ok := fieldByKey(t, k.Value)
		if !ok {
			return fmt.Errorf("%s line %d: %s: unknown key%s", source, k.Line, path, suggest(path))
		}
		if f.Type.Kind() == reflect.Struct {
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				continue
			}
			if v.Kind != yaml.MappingNode {
				return fmt.Errorf("%s line %d: %s: is a section and needs a mapping of keys", source, v.Line, path)
			}
			if err := walkMapping(source, v, f.Type, path, l); err != nil {
				return err
			}
			continue
		}
		val, err := fromNode(v, f.Type)
		if err != nil {
			return fmt.Errorf("%s line %d: %s: %w", source, v.Line, path, err)
		}
		l.set(path, val, fmt.Sprintf("%s line %d", source, v.Line))
	}
	return nil
}

// fromNode converts a YAML value to the Go value of type t, strictly: a string is not a
// number, a number is not a bool.
func fromNode(n *yaml.Node, t reflect.Type) (any, error) {
	n = deref(n)
	isNull := n.Kind == yaml.ScalarNode && n.Tag == "!!null"
	switch t.Kind() {
	case reflect.Pointer:
		if isNull {
			return nil, nil
		}
		return fromNode(n, t.Elem())
	case reflect.Slice:
		if isNull {
			return reflect.MakeSlice(t, 0, 0).Interface(), nil
		}
		if n.Kind != yaml.SequenceNode {
			return nil, fmt.Errorf("want a %s, got %s", typeName(t), describe(n))
		}
		out := reflect.MakeSlice(t, 0, len(n.Content))
		for i, e := range n.Content {
			v, err := fromNode(e, t.Elem())
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			out = reflect.Append(out, reflect.ValueOf(v))
		}
		return out.Interface(), nil
	}
	if n.Kind != yaml.ScalarNode {
		return nil, fmt.Errorf("want a %s, got %s", typeName(t), describe(n))
	}
	switch t.Kind() {
	case reflect.String:
		switch n.Tag {
		case "!!null":
			return "", nil
		case "!!str", "!!int", "!!float":
			return n.Value, nil
		}
	case reflect.Bool:
		if n.Tag == "!!bool" {
			var b bool
			if err := n.Decode(&b); err == nil {
				return b, nil
			}
		}
	case reflect.Int, reflect.Int64:
		if n.Tag == "!!int" {
			var i int64
			if err := n.Decode(&i); err != nil {
				return nil, fmt.Errorf("%q is out of range for an int", n.Value)
			}
			if t.Kind() == reflect.Int {
				return int(i), nil
			}
			return i, nil
		}
	case reflect.Float64:
		if n.Tag == "!!int" || n.Tag == "!!float" {
			var f float64
			if err := n.Decode(&f); err != nil {
				return nil, fmt.Errorf("%q is not a number", n.Value)
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("%q is not a finite number", n.Value)
			}
			return f, nil
		}
	}
	return nil, fmt.Errorf("want a %s, got %s", typeName(t), describe(n))
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	kind := strings.TrimPrefix(n.Tag, "!!")
	if kind == "str" {
		kind = "string"
	}
	return fmt.Sprintf("%s %q", kind, n.Value)
}

// fromString converts an environment or --set value to type t. Lists are comma-separated
// ("1,2,3") or a YAML flow list ("[a, 'b, c']").
func fromString(s string, t reflect.Type) (any, error) {
	switch t.Kind() {
	case reflect.String:
		return s, nil
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("want a bool (true or false), got %q", s)
		}
		return b, nil
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("want an int, got %q", s)
		}
		if t.Kind() == reflect.Int {
			return int(i), nil
		}
		return i, nil
	case reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("want a finite number, got %q", s)
		}
		return f, nil
	case reflect.Pointer:
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "", "null", "none", "~":
			return nil, nil
		}
		return fromString(s, t.Elem())
	case reflect.Slice:
		trimmed := strings.TrimSpace(s)
		if strings.HasPrefix(trimmed, "[") {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(trimmed), &n); err != nil || len(n.Content) == 0 {
				return nil, fmt.Errorf("want a %s, got %q", typeName(t), s)
			}
			return fromNode(n.Content[0], t)
		}
		out := reflect.MakeSlice(t, 0, 0)
		if trimmed == "" {
			return out.Interface(), nil
		}
		for i, part := range strings.Split(trimmed, ",") {
			v, err := fromString(strings.TrimSpace(part), t.Elem())
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			out = reflect.Append(out, reflect.ValueOf(v))
		}
		return out.Interface(), nil
	}
	return nil, fmt.Errorf("unsupported type %s", t)
}

// sections lists the top-level section names (upper-cased) for env-var typo detection.
func sections() []string {
	var out []string
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if t.Field(i).Type.Kind() == reflect.Struct {
			out = append(out, strings.ToUpper(tagName(t.Field(i))))
		}
	}
	sort.Strings(out)
	return out
}
