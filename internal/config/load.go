package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	defaulttoml "github.com/aegis-flow/aegis/config"
	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// MaxFileSize bounds a configuration file (1 MiB).
const MaxFileSize = 1 << 20

// Problem is one thing wrong with a configuration file.
type Problem struct {
	// File is the file name, when known.
	File string
	// Line is the 1-based line of the key, or 0 when unknown.
	Line int
	// Path is the key path, such as routes[1].cluster; empty for problems
	// with the whole file.
	Path string
	// Msg says what is wrong.
	Msg string
}

func (p *Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteByte(':')
	}
	if p.Line > 0 {
		b.WriteString(strconv.Itoa(p.Line))
		b.WriteByte(':')
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems returns every *Problem joined in err, in order.
func Problems(err error) []*Problem {
	var out []*Problem
	var walk func(error)
	walk = func(e error) {
		if p, ok := e.(*Problem); ok { //nolint:errorlint // walking the join tree by hand
			out = append(out, p)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok { //nolint:errorlint // walking the join tree
			for _, c := range j.Unwrap() {
				walk(c)
			}
			return
		}
		if e != nil {
			out = append(out, &Problem{Msg: e.Error()})
		}
	}
	walk(err)
	return out
}

// Load reads, decodes, defaults and validates the file at path.
func Load(path string) (*File, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return data, nil
}

// Default returns the embedded default configuration (config/default.toml).
func Default() (*File, error) {
	return Parse("default.toml", defaulttoml.Default)
}

// DefaultText returns the text of the embedded default configuration.
func DefaultText() []byte { return bytes.Clone(defaulttoml.Default) }

// Parse decodes data strictly, fills in defaults and validates. name is used
// in problem messages. The error, if any, joins every problem found.
func Parse(name string, data []byte) (*File, error) {
	f, err := Decode(name, data)
	if f == nil {
		return nil, err
	}
	SetDefaults(f)
	verr := f.Validate()
	if err == nil && verr == nil {
		return f, nil
	}
	// Report decode problems and validation problems together, leaving out
	// validation problems inside values that did not decode.
	problems := Problems(err)
	for _, p := range Problems(verr) {
		if !underAny(p.Path, f.badPaths) {
			problems = append(problems, p)
		}
	}
	slices.SortStableFunc(problems, func(a, b *Problem) int { return a.Line - b.Line })
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	return nil, errors.Join(errs...)
}

// Decode decodes data strictly into a File without defaults or validation.
// It reports every unknown key and every wrongly typed value it finds. On
// such problems it returns both the partly decoded File and the error; on a
// syntax error the File is nil.
func Decode(name string, data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, &Problem{File: name, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)}
	}
	lines, err := indexLines(data)
	if err != nil {
		return nil, syntaxProblem(name, err)
	}
	var raw map[string]any
	if err := toml.Unmarshal(data, &raw); err != nil {
		return nil, syntaxProblem(name, err)
	}
	f := &File{name: name, lines: lines}
	d := &decoder{file: name, lines: lines}
	d.decodeStruct("", raw, reflect.ValueOf(f).Elem())
	if len(d.problems) > 0 {
		f.badPaths = d.bad
		return f, errors.Join(d.problems...)
	}
	return f, nil
}

// decoder decodes a generic TOML tree into typed structs key by key, so that
// one bad value never hides another problem and every problem has an exact
// key path.
type decoder struct {
	file     string
	lines    map[string]int
	problems []error
	bad      []string // paths that failed to decode
}

func (d *decoder) add(path, msg string) {
	d.problems = append(d.problems, &Problem{File: d.file, Line: lineOf(d.lines, path), Path: path, Msg: msg})
	d.bad = append(d.bad, path)
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func (d *decoder) decodeStruct(path string, m map[string]any, dst reflect.Value) {
	fields := map[string]int{}
	for i := range dst.NumField() {
		if tag := tomlName(dst.Type().Field(i)); tag != "" && dst.Type().Field(i).IsExported() {
			fields[tag] = i
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sub := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := lineOf(d.lines, sub(a)) - lineOf(d.lines, sub(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	for _, k := range keys {
		p := sub(k)
		i, ok := fields[k]
		if !ok {
			d.add(p, "unknown key")
			continue
		}
		d.decodeValue(p, k, m[k], dst, dst.Field(i))
	}
}

// decodeValue decodes v into field (named key inside parent).
func (d *decoder) decodeValue(path, key string, v any, parent, field reflect.Value) {
	ft := field.Type()
	switch {
	case reflect.PointerTo(ft).Implements(textUnmarshaler):
		// Leaf, such as Duration.
	case ft.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.add(path, fmt.Sprintf("wrong type: got %s, want a table", tomlKind(v)))
			return
		}
		d.decodeStruct(path, m, field)
		return
	case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.add(path, fmt.Sprintf("wrong type: got %s, want a table", tomlKind(v)))
			return
		}
		nv := reflect.New(ft.Elem())
		d.decodeStruct(path, m, nv.Elem())
		field.Set(nv)
		return
	case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
		items, ok := v.([]any)
		if !ok {
			d.add(path, fmt.Sprintf("wrong type: got %s, want a list of tables", tomlKind(v)))
			return
		}
		sl := reflect.MakeSlice(ft, len(items), len(items))
		for j, item := range items {
			ip := fmt.Sprintf("%s[%d]", path, j)
			m, ok := item.(map[string]any)
			if !ok {
				d.add(ip, fmt.Sprintf("wrong type: got %s, want a table", tomlKind(item)))
				continue
			}
			d.decodeStruct(ip, m, sl.Index(j))
		}
		field.Set(sl)
		return
	}
	// A leaf: let go-toml decode just this key into the parent struct.
	text, err := toml.Marshal(map[string]any{key: v})
	if err != nil {
		d.add(path, fmt.Sprintf("cannot re-encode value: %v", err))
		return
	}
	if err := toml.Unmarshal(text, parent.Addr().Interface()); err != nil {
		if de, ok := errors.AsType[*toml.DecodeError](err); ok {
			d.add(path, typeMessage(de.Error()))
			return
		}
		d.add(path, err.Error())
	}
}

var typeErrRE = regexp.MustCompile(`cannot decode TOML (\w+) into (?:struct field \S+ of type )?(\S+)`)

func typeMessage(msg string) string {
	msg = strings.TrimPrefix(msg, "toml: ")
	m := typeErrRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	return fmt.Sprintf("wrong type: got %s, want %s", article(m[1]), friendlyType(m[2]))
}

func article(kind string) string {
	if strings.IndexByte("aeiou", kind[0]) >= 0 {
		return "an " + kind
	}
	return "a " + kind
}

func friendlyType(goType string) string {
	switch {
	case strings.HasSuffix(goType, "Duration"):
		return `a duration string such as "30s"`
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	case goType == "int":
		return "an integer"
	case goType == "float64":
		return "a number"
	case goType == "[]string":
		return "a list of strings"
	case strings.HasPrefix(goType, "map[string]string"):
		return "a table of strings"
	case strings.HasPrefix(goType, "[]"):
		return "a list of tables"
	default:
		return "a table"
	}
}

func tomlKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return "a date or time"
	}
}

func tomlName(f reflect.StructField) string {
	tag := f.Tag.Get("toml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return ""
	}
	return name
}

func syntaxProblem(name string, err error) error {
	if p, ok := errors.AsType[*Problem](err); ok {
		p.File = name
		return p
	}
	if pe, ok := errors.AsType[*unstable.ParserError](err); ok {
		return &Problem{File: name, Msg: "syntax error: " + pe.Message}
	}
	if de, ok := errors.AsType[*toml.DecodeError](err); ok {
		line, _ := de.Position()
		return &Problem{File: name, Line: line, Msg: "syntax error: " + strings.TrimPrefix(de.Error(), "toml: ")}
	}
	return &Problem{File: name, Msg: "syntax error: " + err.Error()}
}

// lineOf returns the line of path or, failing that, of its nearest parent.
func lineOf(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}

// indexLines maps every key path in the document to the line it is on.
func indexLines(data []byte) (map[string]int, error) {
	lines := map[string]int{}
	counts := map[string]int{} // array-table path -> number of elements so far
	var p unstable.Parser
	p.Reset(data)
	current := ""
	resolve := func(parts []string) string {
		path := ""
		for _, part := range parts {
			if path == "" {
				path = part
			} else {
				path += "." + part
			}
			if n, ok := counts[path]; ok {
				path += fmt.Sprintf("[%d]", n-1)
			}
		}
		return path
	}
	lineAt := func(n *unstable.Node) int {
		if n == nil || n.Raw.Length == 0 && n.Raw.Offset == 0 {
			return 0
		}
		return p.Shape(n.Raw).Start.Line
	}
	var walkValue func(path string, v *unstable.Node)
	walkValue = func(path string, v *unstable.Node) {
		switch v.Kind {
		case unstable.InlineTable:
			for it := v.Children(); it.Next(); {
				kv := it.Node()
				if kv.Kind != unstable.KeyValue {
					continue
				}
				sub := path + "." + keyString(kv.Key())
				lines[sub] = firstKeyLine(kv, lineAt)
				walkValue(sub, kv.Value())
			}
		case unstable.Array:
			i := 0
			for it := v.Children(); it.Next(); {
				n := it.Node()
				sub := fmt.Sprintf("%s[%d]", path, i)
				if l := lineAt(n); l > 0 {
					lines[sub] = l
				}
				walkValue(sub, n)
				i++
			}
		}
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table:
			parts := keyParts(e.Key())
			current = resolve(parts)
			lines[current] = firstKeyLine(e, lineAt)
		case unstable.ArrayTable:
			parts := keyParts(e.Key())
			parent := resolve(parts[:len(parts)-1])
			full := parts[len(parts)-1]
			if parent != "" {
				full = parent + "." + full
			}
			n := counts[full]
			counts[full] = n + 1
			current = fmt.Sprintf("%s[%d]", full, n)
			lines[current] = firstKeyLine(e, lineAt)
			if _, ok := lines[full]; !ok {
				lines[full] = lines[current]
			}
		case unstable.KeyValue:
			path := keyString(e.Key())
			if current != "" {
				path = current + "." + path
			}
			lines[path] = firstKeyLine(e, lineAt)
			walkValue(path, e.Value())
		}
	}
	if err := p.Error(); err != nil {
		if pe, ok := errors.AsType[*unstable.ParserError](err); ok && len(pe.Highlight) > 0 {
			line := bytes.Count(data[:len(data)-len(tailFrom(data, pe.Highlight))], []byte("\n")) + 1
			return nil, &Problem{Line: line, Msg: "syntax error: " + pe.Message}
		}
		return nil, err
	}
	return lines, nil
}

// tailFrom returns data from the start of sub (a sub-slice of data) onward.
func tailFrom(data, sub []byte) []byte {
	off := cap(data) - cap(sub)
	if off < 0 || off > len(data) {
		return data
	}
	return data[off:]
}

func firstKeyLine(n *unstable.Node, lineAt func(*unstable.Node) int) int {
	it := n.Key()
	if it.Next() {
		return lineAt(it.Node())
	}
	return 0
}

func keyParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

func keyString(it unstable.Iterator) string { return strings.Join(keyParts(it), ".") }

// underAny reports whether path is one of roots or inside one of them.
func underAny(path string, roots []string) bool {
	for _, r := range roots {
		if path == r || strings.HasPrefix(path, r+".") || strings.HasPrefix(path, r+"[") {
			return true
		}
	}
	return false
}
