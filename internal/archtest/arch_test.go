package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/aegis-flow/aegis"

type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
	Name       string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 8 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// area returns the top-level internal package a path belongs to
// ("carbon" for internal/carbon/replay), or "" outside internal/.
func area(path string) string {
	rest, ok := strings.CutPrefix(path, module+"/internal/")
	if !ok {
		return ""
	}
	a, _, _ := strings.Cut(rest, "/")
	return a
}

// leaves import no other internal package (their own sub-packages aside).
var leaves = map[string]bool{"config": true, "pqtls": true, "carbon": true, "greenwait": true, "telemetry": true}

// allowed lists, for each non-leaf area, which internal areas it may import.
// Everything else is forbidden; daemon (the composition root) and cli may
// import what they wire.
var allowed = map[string][]string{
	"proxy":     {"balance", "pqtls"},
	"server":    {},
	"balance":   {},
	"cli":       {"config", "daemon", "pqtls", "carbon", "greenwait", "balance", "telemetry"},
	"daemon":    {"config", "pqtls", "carbon", "greenwait", "telemetry", "proxy", "server", "balance"},
	"archtest":  {},
	"aegistest": {"config", "pqtls", "carbon", "greenwait", "telemetry", "proxy", "server", "balance", "daemon"},
}

func TestImportRules(t *testing.T) {
	for _, p := range listPackages(t) {
		from := area(p.ImportPath)
		if p.ImportPath == module+"/cmd/aegis" {
			for _, imp := range p.Imports {
				if a := area(imp); a != "" && a != "cli" {
					t.Errorf("cmd/aegis imports %s: it may only call internal/cli", imp)
				}
			}
			continue
		}
		if from == "" {
			continue
		}
		for _, imp := range p.Imports {
			to := area(imp)
			if to == "" || to == from {
				continue
			}
			if leaves[from] {
				t.Errorf("leaf %s imports %s: leaves import no other internal package", p.ImportPath, imp)
				continue
			}
			ok := false
			for _, a := range allowed[from] {
				if a == to {
					ok = true
				}
			}
			if !ok {
				t.Errorf("forbidden edge %s -> %s", p.ImportPath, imp)
			}
		}
	}
}

func TestEveryPackageHasDoc(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.Name == "main" && strings.HasSuffix(p.ImportPath, "/cmd/aegis") && p.Doc != "" {
			continue
		}
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
	}
}
