package daemon

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The shipped Grafana dashboard and Prometheus rules are linted here without
// Grafana or Prometheus: the JSON and the rule file's structure, and every
// PromQL expression's shape. TestDashboardMetricsExist checks that the metric
// names they use exist; CI also runs promtool check rules (.ci/run).

const (
	dashboardFile = "../../deploy/grafana/aegis.json"
	rulesFile     = "../../deploy/prometheus/alerts.yml"
)

type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int           `json:"id"`
	Type       string        `json:"type"`
	Title      string        `json:"title"`
	Datasource *datasource   `json:"datasource"`
	Targets    []panelTarget `json:"targets"`
	Panels     []panel       `json:"panels"` // a row's panels
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panelTarget struct {
	Expr       string      `json:"expr"`
	RefID      string      `json:"refId"`
	Datasource *datasource `json:"datasource"`
}

// TestDashboardJSON checks that the dashboard is valid JSON, that every
// panel queries Prometheus with at least one well-formed PromQL target, and
// that every $variable used is defined.
func TestDashboardJSON(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatalf("%s is not valid JSON", dashboardFile)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("decode %s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("got title %q uid %q, want both set", d.Title, d.UID)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	var panels []panel
	var flatten func([]panel)
	flatten = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				flatten(p.Panels)
				continue
			}
			panels = append(panels, p)
		}
	}
	flatten(d.Panels)
	if len(panels) == 0 {
		t.Fatal("got no panels, want some")
	}
	ids := map[int]string{}
	varRef := regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)
	for _, p := range panels {
		name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.Title == "" {
			t.Errorf("%s: got no title, want one", name)
		}
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("%s: id also used by %q, want unique ids", name, prev)
		}
		ids[p.ID] = p.Title
		if len(p.Targets) == 0 {
			t.Errorf("%s: got no targets, want at least one PromQL target", name)
		}
		refs := map[string]bool{}
		for i, tg := range p.Targets {
			ds := tg.Datasource
			if ds == nil {
				ds = p.Datasource
			}
			if ds == nil || ds.Type != "prometheus" {
				t.Errorf("%s target %d: got datasource %+v, want a prometheus one", name, i, ds)
			}
			if refs[tg.RefID] {
				t.Errorf("%s target %d: got refId %q twice, want unique refIds", name, i, tg.RefID)
			}
			refs[tg.RefID] = true
			for _, problem := range lintPromQL(tg.Expr) {
				t.Errorf("%s target %d: %s: %s", name, i, problem, tg.Expr)
			}
			for _, m := range varRef.FindAllStringSubmatch(tg.Expr, -1) {
				if !vars[m[1]] {
					t.Errorf("%s target %d: uses $%s, which the dashboard does not define", name, i, m[1])
				}
			}
		}
	}
}

// TestAlertRules checks the rule file's structure and expressions.
func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := parseRuleFile(b)
	if err != nil {
		t.Fatalf("parse %s: %v", rulesFile, err)
	}
	if len(groups) == 0 {
		t.Fatal("got no rule groups, want at least one")
	}
	for _, problem := range lintRuleGroups(groups) {
		t.Error(problem)
	}
}

func TestLintRuleGroupsFindsProblems(t *testing.T) {
	tests := []struct {
		name string
		file string
		want string // a substring of one problem
	}{
		{name: "ok", file: okRule, want: ""},
		{name: "unbalanced", file: strings.Replace(okRule, "[5m]))", "[5m])", 1), want: "unbalanced"},
		{name: "counter without rate", file: strings.Replace(okRule, "increase(aegis_x_total[5m])", "aegis_x_total", 1), want: "counter aegis_x_total outside rate"},
		{name: "bad for", file: strings.Replace(okRule, "for: 5m", "for: 5 minutes", 1), want: "for"},
		{name: "no severity", file: strings.Replace(okRule, "severity: warning", "team: edge", 1), want: "severity"},
		{name: "label not kept", file: strings.Replace(okRule, "$labels.cluster", "$labels.route", 1), want: "$labels.route"},
		{name: "unknown key", file: strings.Replace(okRule, "for: 5m", "for: 5m\n        keep: 1", 1), want: "unknown key"},
		{name: "duplicate", file: okRule + strings.SplitN(okRule, "    rules:\n", 2)[1], want: "twice"},
		{name: "no description", file: strings.Replace(okRule, "description:", "runbook:", 1), want: "description"},
		{name: "template", file: strings.Replace(okRule, "{{ $labels.cluster }}", "{{ $labels.cluster }", 1), want: "template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			groups, err := parseRuleFile([]byte(tt.file))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			problems := lintRuleGroups(groups)
			if tt.want == "" {
				if len(problems) != 0 {
					t.Fatalf("got problems %q, want none", problems)
				}
				return
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("got problems %q, want one mentioning %q", problems, tt.want)
			}
		})
	}
}

const okRule = `# a comment
groups:
  - name: test
    rules:
      - alert: TestEjections
        expr: sum by (cluster) (increase(aegis_x_total[5m])) > 0
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: "Ejections in {{ $labels.cluster }}"
          description: >-
            {{ $value }} ejections
            in the last 5m.
`

func TestParseRuleFile(t *testing.T) {
	groups, err := parseRuleFile([]byte(okRule + `      - record: "aegis:x:rate5m"
        expr: |
          sum(rate(aegis_x_total[5m]))
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []ruleGroup{{Name: "test", Rules: []rule{
		{Line: 5, Fields: map[string]string{"alert": "TestEjections", "expr": "sum by (cluster) (increase(aegis_x_total[5m])) > 0", "for": "5m"},
			Labels: map[string]string{"severity": "warning"},
			Annotations: map[string]string{"summary": "Ejections in {{ $labels.cluster }}",
				"description": "{{ $value }} ejections in the last 5m."}},
		{Line: 15, Fields: map[string]string{"record": "aegis:x:rate5m", "expr": "sum(rate(aegis_x_total[5m]))\n"}},
	}}}
	if diff := cmp.Diff(want, groups); diff != "" {
		t.Errorf("parse mismatch (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"groups:\n  - name: a\n\trules:\n", "rules:\n  - alert: A\n", "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: \"x\n"} {
		if _, err := parseRuleFile([]byte(bad)); err == nil {
			t.Errorf("parse %q: got no error, want one", bad)
		}
	}
}

func FuzzParseRuleFile(f *testing.F) {
	if b, err := os.ReadFile(rulesFile); err == nil {
		f.Add(b)
	}
	f.Add([]byte(okRule))
	f.Add([]byte("groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: |\n          x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		groups, err := parseRuleFile(b)
		if err != nil {
			return
		}
		lintRuleGroups(groups) // must not panic
	})
}

// ruleGroup and rule are the parts of a Prometheus rule file that the lint
// reads.
type ruleGroup struct {
	Name  string
	Rules []rule
}

type rule struct {
	Line        int               // of the rule's first key, 1-based
	Fields      map[string]string // alert or record, expr, for, keep_firing_for
	Labels      map[string]string
	Annotations map[string]string
}

// parseRuleFile reads the YAML subset that rule files use: a top-level
// groups list, each group a name and a rules list, each rule scalar fields
// plus labels and annotations maps. Scalars may be plain, single- or
// double-quoted, or block scalars (| and >, with - or + chomping).
func parseRuleFile(b []byte) ([]ruleGroup, error) {
	lines := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	var groups []ruleGroup
	var cur *rule             // the rule being read
	var sub map[string]string // its labels or annotations being read
	groupIndent, ruleItemIndent, subIndent := -1, -1, -1
	inRules := false
	for i := 0; i < len(lines); i++ {
		raw := lines[i]
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		lead := raw[:len(raw)-len(strings.TrimLeft(raw, " \t"))]
		if strings.ContainsRune(lead, '\t') {
			return nil, fmt.Errorf("line %d: tab in indentation", i+1)
		}
		indent := len(lead)
		item := strings.HasPrefix(trimmed, "- ")
		keyCol := indent
		if item {
			keyCol += 2
		}
		key, val, ok := strings.Cut(strings.TrimPrefix(trimmed, "- "), ":")
		if !ok || key == "" || strings.ContainsAny(key, " \"'") {
			return nil, fmt.Errorf("line %d: want key: value, got %q", i+1, trimmed)
		}
		val = strings.TrimSpace(val)
		if slices.Contains([]string{"|", "|-", "|+", ">", ">-", ">+"}, val) {
			var block []string
			for i+1 < len(lines) {
				next := lines[i+1]
				if strings.TrimSpace(next) != "" && len(next)-len(strings.TrimLeft(next, " ")) <= keyCol {
					break
				}
				block = append(block, next)
				i++
			}
			val = foldBlock(block, val)
		} else {
			v, err := unquoteScalar(val)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			val = v
		}
		switch {
		case indent == 0:
			if key != "groups" || val != "" || item {
				return nil, fmt.Errorf("line %d: got top-level %q, want groups:", i+1, trimmed)
			}
		case item && (groupIndent < 0 || indent == groupIndent):
			groupIndent, ruleItemIndent, inRules = indent, -1, false
			groups = append(groups, ruleGroup{})
			fallthrough
		case !item && keyCol == groupIndent+2:
			if len(groups) == 0 {
				return nil, fmt.Errorf("line %d: %q outside a group", i+1, key)
			}
			g := &groups[len(groups)-1]
			cur, sub = nil, nil
			switch key {
			case "name":
				g.Name = val
			case "rules":
				inRules = val == ""
			case "interval", "limit", "query_offset":
			default:
				return nil, fmt.Errorf("line %d: unknown group key %q", i+1, key)
			}
		case item && inRules && (ruleItemIndent < 0 || indent == ruleItemIndent):
			if key != "alert" && key != "record" {
				return nil, fmt.Errorf("line %d: got rule key %q first, want alert or record", i+1, key)
			}
			ruleItemIndent = indent
			g := &groups[len(groups)-1]
			g.Rules = append(g.Rules, rule{Line: i + 1, Fields: map[string]string{key: val}})
			cur, sub = &g.Rules[len(g.Rules)-1], nil
		case cur != nil && !item && indent == ruleItemIndent+2:
			sub = nil
			switch key {
			case "labels":
				cur.Labels = map[string]string{}
				sub, subIndent = cur.Labels, -1
			case "annotations":
				cur.Annotations = map[string]string{}
				sub, subIndent = cur.Annotations, -1
			default:
				if _, dup := cur.Fields[key]; dup {
					return nil, fmt.Errorf("line %d: key %q twice in a rule", i+1, key)
				}
				cur.Fields[key] = val
			}
		case sub != nil && !item && indent > ruleItemIndent+2 && (subIndent < 0 || indent == subIndent):
			subIndent = indent
			sub[key] = val
		default:
			return nil, fmt.Errorf("line %d: unexpected %q", i+1, trimmed)
		}
	}
	return groups, nil
}

// foldBlock joins a block scalar's lines: literal (|) keeps newlines,
// folded (>) joins them with spaces; "-" strips the final newline.
func foldBlock(lines []string, style string) string {
	minIndent := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if n := len(l) - len(strings.TrimLeft(l, " ")); minIndent < 0 || n < minIndent {
			minIndent = n
		}
	}
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	var parts []string
	for _, l := range lines {
		if len(l) >= minIndent && minIndent >= 0 {
			l = l[minIndent:]
		}
		parts = append(parts, strings.TrimRight(l, " "))
	}
	sep := "\n"
	if style[0] == '>' {
		sep = " "
	}
	s := strings.Join(parts, sep)
	if !strings.HasSuffix(style, "-") && s != "" {
		s += "\n"
	}
	return s
}

// unquoteScalar returns a plain, single- or double-quoted YAML scalar's
// value. Double-quoted escapes are read as Go's (the subset rule files use:
// \" and \\).
func unquoteScalar(s string) (string, error) {
	switch {
	case strings.HasPrefix(s, `"`):
		v, err := strconv.Unquote(s)
		if err != nil {
			return "", fmt.Errorf("bad double-quoted scalar %s", s)
		}
		return v, nil
	case strings.HasPrefix(s, "'"):
		if len(s) < 2 || !strings.HasSuffix(s, "'") {
			return "", fmt.Errorf("unterminated single-quoted scalar %s", s)
		}
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'"), nil
	}
	if i := strings.Index(s, " #"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s, nil
}

var (
	alertName    = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)
	recordName   = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	promDuration = regexp.MustCompile(`^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$`)
	labelRef     = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
	byClause     = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	ruleKeys     = []string{"alert", "record", "expr", "for", "keep_firing_for"}
	severities   = []string{"info", "warning", "critical"}
)

// lintRuleGroups returns every problem found in the rule groups.
func lintRuleGroups(groups []ruleGroup) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	seenGroup := map[string]bool{}
	seenRule := map[string]bool{}
	for _, g := range groups {
		if g.Name == "" || seenGroup[g.Name] {
			bad("group %q: want a unique non-empty name", g.Name)
		}
		seenGroup[g.Name] = true
		if len(g.Rules) == 0 {
			bad("group %q: got no rules, want some", g.Name)
		}
		for _, r := range g.Rules {
			name, alert := r.Fields["alert"], true
			if name == "" {
				name, alert = r.Fields["record"], false
			}
			where := fmt.Sprintf("rule %q (line %d)", name, r.Line)
			for k := range r.Fields {
				if !slices.Contains(ruleKeys, k) {
					bad("%s: unknown key %q", where, k)
				}
			}
			if seenRule[name] {
				bad("%s: defined twice", where)
			}
			seenRule[name] = true
			expr := r.Fields["expr"]
			for _, p := range lintPromQL(expr) {
				bad("%s: %s: %s", where, p, expr)
			}
			if !alert {
				if !recordName.MatchString(name) {
					bad("%s: got record name %q, want a metric name", where, name)
				}
				if r.Annotations != nil || r.Fields["for"] != "" {
					bad("%s: a recording rule has no for or annotations", where)
				}
				continue
			}
			if !alertName.MatchString(name) {
				bad("%s: got alert name %q, want CamelCase", where, name)
			}
			for _, k := range []string{"for", "keep_firing_for"} {
				if v, ok := r.Fields[k]; ok && (v == "" || !promDuration.MatchString(v)) {
					bad("%s: got %s %q, want a Prometheus duration such as 10m", where, k, v)
				}
			}
			if !slices.Contains(severities, r.Labels["severity"]) {
				bad("%s: got severity %q, want one of %v", where, r.Labels["severity"], severities)
			}
			for _, k := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[k]) == "" {
					bad("%s: got no %s annotation, want one", where, k)
				}
			}
			// Labels an annotation prints must survive the aggregation.
			var kept []string
			aggregated := byClause.MatchString(expr)
			for _, m := range byClause.FindAllStringSubmatch(expr, -1) {
				for l := range strings.SplitSeq(m[1], ",") {
					kept = append(kept, strings.TrimSpace(l))
				}
			}
			for k, v := range r.Annotations {
				if strings.Count(v, "{{") != strings.Count(v, "}}") {
					bad("%s: annotation %s: unbalanced template braces", where, k)
				}
				for _, m := range labelRef.FindAllStringSubmatch(v, -1) {
					if aggregated && !slices.Contains(kept, m[1]) {
						bad("%s: annotation %s prints $labels.%s, which the expression aggregates away", where, k, m[1])
					}
				}
			}
		}
	}
	return out
}

var metricRef = regexp.MustCompile(`\baegis_[a-z0-9_]+\b`)

// lintPromQL returns shape problems of a PromQL expression: empty, no
// Aegis-Flow metric, unbalanced brackets or quotes, a counter or histogram
// bucket read outside rate, irate or increase.
func lintPromQL(expr string) []string {
	var out []string
	if strings.TrimSpace(expr) == "" {
		return []string{"empty expression"}
	}
	var stack []byte
	var quote byte
	pairs := map[byte]byte{')': '(', ']': '[', '}': '{'}
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '(' || c == '[' || c == '{':
			stack = append(stack, c)
		case pairs[c] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[c] {
				return append(out, fmt.Sprintf("unbalanced %q at offset %d", c, i))
			}
			stack = stack[:len(stack)-1]
		}
	}
	if quote != 0 || len(stack) != 0 {
		return append(out, "unbalanced brackets or quotes")
	}
	names := metricRef.FindAllStringIndex(expr, -1)
	if len(names) == 0 {
		out = append(out, "no aegis_ metric")
	}
	for _, loc := range names {
		name := expr[loc[0]:loc[1]]
		if !strings.HasSuffix(name, "_total") && !strings.HasSuffix(name, "_bucket") {
			continue
		}
		if f := enclosingFunc(expr, loc[0]); f != "rate" && f != "irate" && f != "increase" {
			out = append(out, fmt.Sprintf("counter %s outside rate, irate or increase (in %q)", name, f))
		}
	}
	return out
}

// enclosingFunc returns the name of the function call whose parentheses
// enclose offset i of expr ("" at top level or in a bare parenthesis).
func enclosingFunc(expr string, i int) string {
	depth := 0
	for j := i - 1; j >= 0; j-- {
		switch expr[j] {
		case ')':
			depth++
		case '(':
			if depth > 0 {
				depth--
				continue
			}
			k := j
			for k > 0 && (isIdent(expr[k-1])) {
				k--
			}
			return expr[k:j]
		}
	}
	return ""
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
