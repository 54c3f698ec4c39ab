package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCarbon(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), append([]string{"carbon"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// carbonConfig writes a configuration whose regions use a static provider
// (eu-south) and an Electricity Maps provider at baseURL (us-west).
func carbonConfig(t *testing.T, baseURL string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "aegis.toml")
	text := `
[[listeners]]
name = "plain"
address = "127.0.0.1:0"

[[routes]]
name = "r"
cluster = "c"

[[clusters]]
name = "c"
  [[clusters.endpoints]]
  address = "127.0.0.1:1"
  region = "eu-south"

[carbon]
max_attempts = 1

[[carbon.providers]]
name = "fixed"
type = "static"
values = { eu-south = 123.5 }

[[carbon.providers]]
name = "emaps"
type = "electricitymaps"
base_url = "` + baseURL + `"
token_env = "AEGIS_CLI_TEST_TOKEN"

[[carbon.regions]]
region = "eu-south"
chain = [{ provider = "fixed" }]

[[carbon.regions]]
region = "us-west"
chain = [{ provider = "emaps", zone = "US-CAL-CISO" }]
static = { value = 250.0 }
`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCarbonNowDemo(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		regions []string
	}{
		{"all", []string{"now"}, []string{"eu-south", "us-west", "sa-east"}},
		{"some", []string{"now", "sa-east", "eu-south"}, []string{"sa-east", "eu-south"}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" table", func(t *testing.T) {
			code, out, errOut := runCarbon(t, tt.args...)
			if code != ExitOK {
				t.Fatalf("exit: got %d, want 0; stderr %q", code, errOut)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != len(tt.regions)+1 || !strings.HasPrefix(lines[0], "REGION") {
				t.Fatalf("got table\n%s\nwant a header and %d rows", out, len(tt.regions))
			}
			for i, r := range tt.regions {
				f := strings.Fields(lines[i+1])
				if f[0] != r || f[2] != "average" || f[3] != "demo-trace" || f[4] != "live" {
					t.Errorf("row %d: got %q, want %s average demo-trace live", i, lines[i+1], r)
				}
			}
		})
		t.Run(tt.name+" json", func(t *testing.T) {
			code, out, errOut := runCarbon(t, append(tt.args, "--json")...)
			if code != ExitOK {
				t.Fatalf("exit: got %d, want 0; stderr %q", code, errOut)
			}
			var rows []nowJSON
			if err := json.Unmarshal([]byte(out), &rows); err != nil {
				t.Fatalf("JSON: %v\n%s", err, out)
			}
			if len(rows) != len(tt.regions) {
				t.Fatalf("got %d rows, want %d", len(rows), len(tt.regions))
			}
			for i, r := range rows {
				if r.Region != tt.regions[i] || r.Intensity == nil || r.Fallback != "live" || r.AgeSeconds == nil || r.ObservedAt == nil {
					t.Errorf("row %d: got %+v, want live %s with intensity, age and observed_at", i, r, tt.regions[i])
				}
			}
		})
	}
}

func TestCarbonNowUnknownRegion(t *testing.T) {
	code, _, errOut := runCarbon(t, "now", "mars")
	if code != ExitError || !strings.Contains(errOut, "mars") || !strings.Contains(errOut, "eu-south") {
		t.Errorf("got exit %d stderr %q, want 1 naming mars and the configured regions", code, errOut)
	}
}

func TestCarbonForecastDemo(t *testing.T) {
	code, out, errOut := runCarbon(t, "forecast", "us-west")
	if code != ExitOK {
		t.Fatalf("exit: got %d, want 0; stderr %q", code, errOut)
	}
	if !strings.HasPrefix(out, "region us-west: ") || !strings.Contains(out, "points, average intensity from demo-trace") || !strings.Contains(out, "START") {
		t.Errorf("got\n%s\nwant a summary line and a table", out)
	}

	code, out, _ = runCarbon(t, "forecast", "--json", "us-west")
	var fc forecastJSON
	if code != ExitOK || json.Unmarshal([]byte(out), &fc) != nil {
		t.Fatalf("exit %d, output %q: want JSON", code, out)
	}
	if fc.Region != "us-west" || fc.Kind != "average" || len(fc.Points) < 24 {
		t.Errorf("got region %q kind %q %d points, want us-west average, 24 hours of points", fc.Region, fc.Kind, len(fc.Points))
	}
	for i := 1; i < len(fc.Points); i++ {
		if !fc.Points[i].Start.Equal(fc.Points[i-1].End) {
			t.Fatalf("point %d starts at %v, want %v (contiguous)", i, fc.Points[i].Start, fc.Points[i-1].End)
		}
	}

	if code, _, errOut := runCarbon(t, "forecast"); code != ExitUsage || !strings.Contains(errOut, "REGION") {
		t.Errorf("no region: got exit %d %q, want usage", code, errOut)
	}
}

func TestCarbonBestDemo(t *testing.T) {
	args := []string{"best", "--region", "eu-south,us-west,sa-east", "--duration", "30s", "--within", "3m"}
	code, out, errOut := runCarbon(t, args...)
	if code != ExitOK {
		t.Fatalf("exit: got %d, want 0; stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "RANK") || !strings.HasPrefix(lines[1], "1 ") {
		t.Fatalf("got\n%s\nwant a header and three ranked rows", out)
	}

	code, out, _ = runCarbon(t, append(args, "--json")...)
	var rows []bestJSON
	if code != ExitOK || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 3 {
		t.Fatalf("exit %d, output %q: want three JSON rows", code, out)
	}
	for i, r := range rows {
		if r.Rank != i+1 || r.End.Sub(r.Start).Seconds() != 30 {
			t.Errorf("row %d: got %+v, want rank %d and a 30s window", i, r, i+1)
		}
		if i > 0 && r.Intensity < rows[i-1].Intensity {
			t.Errorf("row %d (%.1f) is cleaner than row %d (%.1f): want best first", i, r.Intensity, i-1, rows[i-1].Intensity)
		}
	}

	code, _, errOut = runCarbon(t, "best", "--region", "eu-south", "--duration", "2h", "--within", "48h")
	if code != ExitError || !strings.Contains(errOut, "no window of 2h0m0s fits") {
		t.Errorf("window longer than the forecast: got exit %d %q, want a clear error", code, errOut)
	}
	if code, _, _ := runCarbon(t, "best", "--duration", "1m"); code != ExitUsage {
		t.Errorf("no --region: got exit %d, want %d", code, ExitUsage)
	}
}

func TestCarbonStaticAndFailingProvider(t *testing.T) {
	t.Setenv("AEGIS_CLI_TEST_TOKEN", "cli-secret-token-77")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	cfg := carbonConfig(t, srv.URL)

	code, out, errOut := runCarbon(t, "now", "--config", cfg)
	if code != ExitOK {
		t.Fatalf("exit: got %d, want 0 (us-west falls back to static); stderr %q", code, errOut)
	}
	for _, want := range []string{"eu-south  123.5", "fixed", "live", "us-west   250.0", "static"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"provider emaps, region us-west (zone US-CAL-CISO)", "503"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q: %q", want, errOut)
		}
	}
	if strings.Contains(out+errOut, "cli-secret-token-77") {
		t.Error("the token was printed")
	}

	code, out, _ = runCarbon(t, "now", "--config", cfg, "--json", "us-west")
	var rows []nowJSON
	if code != ExitOK || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 {
		t.Fatalf("exit %d, output %q: want one JSON row", code, out)
	}
	if r := rows[0]; r.Fallback != "static" || r.FallbackLevel != 2 || r.Intensity == nil || *r.Intensity != 250 {
		t.Errorf("us-west: got %+v, want static 250 at level 2", r)
	}

	code, _, errOut = runCarbon(t, "forecast", "--config", cfg, "us-west")
	if code != ExitError || !strings.Contains(errOut, "region us-west: no forecast") || !strings.Contains(errOut, "provider emaps") {
		t.Errorf("forecast from a failing provider: got exit %d %q, want 1 naming provider and region", code, errOut)
	}
}

func TestCarbonMissingToken(t *testing.T) {
	cfg := carbonConfig(t, "http://127.0.0.1:1")
	code, _, errOut := runCarbon(t, "now", "--config", cfg)
	if code != ExitError || !strings.Contains(errOut, "emaps") || !strings.Contains(errOut, "AEGIS_CLI_TEST_TOKEN") {
		t.Errorf("got exit %d %q, want 1 naming the provider and the variable", code, errOut)
	}
	// A region that does not use the provider needs no token.
	if code, _, errOut := runCarbon(t, "now", "--config", cfg, "eu-south"); code != ExitOK {
		t.Errorf("eu-south only: got exit %d %q, want 0", code, errOut)
	}
}

func TestCarbonUsage(t *testing.T) {
	if code, _, errOut := runCarbon(t); code != ExitUsage || !strings.Contains(errOut, "aegis carbon now") {
		t.Errorf("no subcommand: got exit %d %q, want usage", code, errOut)
	}
	if code, _, _ := runCarbon(t, "later"); code != ExitUsage {
		t.Errorf("unknown subcommand: got exit %d, want %d", code, ExitUsage)
	}
}
