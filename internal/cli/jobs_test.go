package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-flow/aegis/internal/daemon"
	"github.com/aegis-flow/aegis/internal/greenwait"
)

// jobsDaemon runs a daemon with a Green-Wait route whose jobs wait: the
// replay trace's clean hour starts a wall minute after the start, so jobs
// stay planned while the test runs.
type jobsDaemon struct {
	d      *daemon.Daemon
	admin  string
	plain  string
	stderr *syncBuf
}

func startJobsDaemon(t *testing.T) *jobsDaemon {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(up.Close)
	dir := t.TempDir()
	var trace strings.Builder
	trace.WriteString("timestamp,region,g_kwh\n")
	for h := range 24 {
		v := 500
		if h == 1 {
			v = 10
		}
		fmt.Fprintf(&trace, "%s,r0,%d\n", time.Date(2024, 1, 1, h, 0, 0, 0, time.UTC).Format(time.RFC3339), v)
	}
	tracePath := filepath.Join(dir, "trace.csv")
	cfgPath := filepath.Join(dir, "aegis.toml")
	cfg := fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"
[log]
access = "off"
[[listeners]]
name = "edge-plain"
address = "127.0.0.1:0"
[[routes]]
name = "batch"
cluster = "c"
  [routes.match]
  path_prefix = "/batch/"
  [routes.greenwait]
  enabled = true
  [routes.greenwait.max_wait]
  low = "10m"
  background = "20m"
[[clusters]]
name = "c"
  [[clusters.endpoints]]
  address = %q
  region = "r0"
[carbon]
interval = "1s"
forecast_interval = "1s"
[[carbon.providers]]
name = "trace"
type = "replay"
file = %q
speed = 60.0
[[carbon.regions]]
region = "r0"
chain = [{ provider = "trace" }]
[greenwait]
store_path = %q
min_deferral = "0s"
`, up.Listener.Addr().String(), tracePath, filepath.Join(dir, "gw", "jobs.db"))
	for path, text := range map[string]string{tracePath: trace.String(), cfgPath: cfg} {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stderr := &syncBuf{}
	d, err := daemon.New(context.Background(), daemon.Options{ConfigPath: cfgPath, Stderr: stderr})
	if err != nil {
		t.Fatalf("daemon.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	jd := &jobsDaemon{d: d, admin: d.Addr("admin").String(), plain: d.Addr("edge-plain").String(), stderr: stderr}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + jd.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready; log:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return jd
}

// submit defers one request and returns its job id.
func (jd *jobsDaemon) submit(t *testing.T, path, prio string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodPost, "http://"+jd.plain+path, strings.NewReader("payload"))
		req.Header.Set(greenwait.HeaderPriority, prio)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var acc greenwait.Acceptance
		err = json.NewDecoder(resp.Body).Decode(&acc)
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted && err == nil {
			return acc.ID.String()
		}
		// 200: the first forecast is not loaded yet, so it ran at once.
		if resp.StatusCode != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("POST %s: got %d, want 202; log:\n%s", path, resp.StatusCode, jd.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jobsRun runs `aegis jobs ARGS --admin ADDR`.
func (jd *jobsDaemon) jobs(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return run(append(append([]string{"jobs"}, args...), "--admin", jd.admin)...)
}

// tableRows returns the data rows of `jobs list`, by id, as their first
// five columns (id, state, priority, route, region), and checks the header
// and the count line.
func tableRows(t *testing.T, out string) map[string][]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("jobs list: got %q, want a header, rows and a count", out)
	}
	wantHeader := []string{"ID", "STATE", "PRIORITY", "ROUTE", "REGION", "SUBMITTED", "PLANNED", "DEADLINE", "TRIES", "SAVED_G"}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != strings.Join(wantHeader, " ") {
		t.Errorf("header: got %q, want %q", got, wantHeader)
	}
	rows := map[string][]string{}
	for _, l := range lines[1 : len(lines)-1] {
		f := strings.Fields(l)
		if len(f) < 5 {
			t.Errorf("row %q: want at least 5 columns", l)
			continue
		}
		rows[f[0]] = f[:5]
	}
	if want := fmt.Sprintf("%d job(s)", len(rows)); lines[len(lines)-1] != want {
		t.Errorf("count line: got %q, want %q", lines[len(lines)-1], want)
	}
	return rows
}

func TestJobsCommands(t *testing.T) {
	jd := startJobsDaemon(t)
	a := jd.submit(t, "/batch/a", "low")
	b := jd.submit(t, "/batch/b", "low")
	c := jd.submit(t, "/batch/c", "background")

	t.Run("list table", func(t *testing.T) {
		code, out, errOut := jd.jobs(t, "list")
		if code != ExitOK {
			t.Fatalf("exit: got %d (%s), want 0", code, errOut)
		}
		rows := tableRows(t, out)
		want := map[string][]string{
			a: {a, "planned", "low", "batch", "r0"},
			b: {b, "planned", "low", "batch", "r0"},
			c: {c, "planned", "background", "batch", "r0"},
		}
		if len(rows) != len(want) {
			t.Errorf("rows: got %d, want %d:\n%s", len(rows), len(want), out)
		}
		for id, w := range want {
			if got := rows[id]; strings.Join(got, " ") != strings.Join(w, " ") {
				t.Errorf("row %s: got %q, want %q", id, got, w)
			}
		}
	})

	t.Run("list json with filters", func(t *testing.T) {
		code, out, errOut := jd.jobs(t, "list", "--priority", "background", "--json")
		if code != ExitOK {
			t.Fatalf("exit: got %d (%s), want 0", code, errOut)
		}
		var l struct {
			Jobs      []greenwait.Status `json:"jobs"`
			Truncated bool               `json:"truncated"`
		}
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		if len(l.Jobs) != 1 || l.Jobs[0].ID.String() != c || l.Jobs[0].Priority != greenwait.PriorityBackground || l.Truncated {
			t.Errorf("got %+v, want only job %s (background), not truncated", l, c)
		}
		code, out, _ = jd.jobs(t, "list", "--state", "planned", "--route", "batch", "--limit", "2", "--json")
		if err := json.Unmarshal([]byte(out), &l); code != ExitOK || err != nil || len(l.Jobs) != 2 || !l.Truncated {
			t.Errorf("--limit 2: got exit %d, %d jobs, truncated %v (%v), want 0, 2, true", code, len(l.Jobs), l.Truncated, err)
		}
		code, out, _ = jd.jobs(t, "list", "--limit", "2")
		if code != ExitOK || !strings.Contains(out, "(more jobs match; raise --limit)") {
			t.Errorf("--limit 2 table: got exit %d %q, want a note that more match", code, out)
		}
	})

	t.Run("show", func(t *testing.T) {
		code, out, errOut := jd.jobs(t, "show", a)
		if code != ExitOK {
			t.Fatalf("exit: got %d (%s), want 0", code, errOut)
		}
		fields := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			k, v, _ := strings.Cut(l, "  ")
			fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
		for k, want := range map[string]string{
			"id": a, "state": "planned", "priority": "low", "route": "batch", "cluster": "c", "region": "r0",
			"request": "POST http://" + jd.plain + "/batch/a", "attempts": "0",
			"intensity at submit": "500.0 gCO2eq/kWh", "intensity at run": "-", "started": "-",
		} {
			if fields[k] != want {
				t.Errorf("show %s: got %q, want %q\n%s", k, fields[k], want, out)
			}
		}
		code, out, _ = jd.jobs(t, "show", "--json", a)
		var s greenwait.Status
		if err := json.Unmarshal([]byte(out), &s); code != ExitOK || err != nil {
			t.Fatalf("show --json: got exit %d, decode %v", code, err)
		}
		if s.ID.String() != a || s.State != greenwait.StatePlanned || s.Route != "batch" || s.Method != http.MethodPost {
			t.Errorf("show --json: got %+v, want job %s planned on batch, POST", s, a)
		}
	})

	t.Run("cancel and retry", func(t *testing.T) {
		code, out, errOut := jd.jobs(t, "cancel", b)
		if code != ExitOK || !strings.Contains(out, "cancelled") {
			t.Fatalf("cancel: got exit %d %q (%s), want 0 and state cancelled", code, out, errOut)
		}
		code, _, errOut = jd.jobs(t, "cancel", b)
		if code != ExitError || !strings.Contains(errOut, "HTTP 409") {
			t.Errorf("cancel twice: got exit %d %q, want 1 and HTTP 409", code, errOut)
		}
		code, out, errOut = jd.jobs(t, "retry", b, "--json")
		var s greenwait.Status
		if err := json.Unmarshal([]byte(out), &s); code != ExitOK || err != nil {
			t.Fatalf("retry: got exit %d %q (%s), decode %v", code, out, errOut, err)
		}
		if s.ID.String() != b || (s.State != greenwait.StatePlanned && s.State != greenwait.StateQueued) {
			t.Errorf("retry: got job %s in state %v, want %s planned or queued", s.ID, s.State, b)
		}
	})

	t.Run("purge", func(t *testing.T) {
		if code, _, errOut := jd.jobs(t, "cancel", c); code != ExitOK {
			t.Fatalf("cancel: got exit %d (%s), want 0", code, errOut)
		}
		code, out, errOut := jd.jobs(t, "purge", "--state", "cancelled")
		if code != ExitOK || out != "purged 1 job(s)\n" {
			t.Errorf("purge: got exit %d %q (%s), want 0 \"purged 1 job(s)\"", code, out, errOut)
		}
		code, out, _ = jd.jobs(t, "list")
		rows := tableRows(t, out)
		if _, gone := rows[c]; code != ExitOK || gone || len(rows) != 2 {
			t.Errorf("list after purge: got exit %d and %d rows (purged job present: %v), want 0 and 2 rows without %s", code, len(rows), gone, c)
		}
		code, out, _ = jd.jobs(t, "purge", "--json")
		if code != ExitOK || strings.TrimSpace(out) != `{"purged":0}` {
			t.Errorf("purge --json: got exit %d %q, want 0 {\"purged\":0}", code, out)
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name     string
			args     []string
			want     int
			contains string
		}{
			{"unknown job", []string{"show", strings.Repeat("0", 32)}, ExitError, "HTTP 404"},
			{"malformed id", []string{"show", "xyz"}, ExitUsage, "malformed job id"},
			{"missing id", []string{"cancel"}, ExitUsage, "wrong arguments"},
			{"bad state", []string{"list", "--state", "sleeping"}, ExitError, "HTTP 400"},
			{"unknown subcommand", []string{"frobnicate"}, ExitUsage, "unknown subcommand"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				code, _, errOut := jd.jobs(t, tc.args...)
				if code != tc.want || !strings.Contains(errOut, tc.contains) {
					t.Errorf("got exit %d %q, want %d containing %q", code, errOut, tc.want, tc.contains)
				}
			})
		}
		code, _, errOut := run("jobs", "list", "--admin", "127.0.0.1:1")
		if code != ExitError || !strings.Contains(errOut, "reach admin API") {
			t.Errorf("unreachable admin: got exit %d %q, want 1 and \"reach admin API\"", code, errOut)
		}
		if code, out, _ := run("jobs"); code != ExitUsage || !strings.Contains(out, "aegis jobs list") {
			t.Errorf("no subcommand: got exit %d %q, want usage", code, out)
		}
	})
}
