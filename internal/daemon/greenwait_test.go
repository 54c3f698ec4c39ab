package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aegis-flow/aegis/internal/greenwait"
)

// jobUpstream answers "done:<body>" and remembers the Idempotency-Key of
// each request it saw.
type jobUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	keys []string
}

func newJobUpstream(t *testing.T) *jobUpstream {
	t.Helper()
	u := &jobUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.keys = append(u.keys, r.Header.Get("Idempotency-Key"))
		u.mu.Unlock()
		w.Header().Set("X-Upstream", "yes")
		fmt.Fprintf(w, "done:%s", b)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *jobUpstream) sawKey(k string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range u.keys {
		if s == k {
			return true
		}
	}
	return false
}

// greenTrace is a replay trace for region r0: 500 g/kWh everywhere except
// trace hour 3, at 10. Replayed at 1800x (one trace hour every 2 wall
// seconds), the clean window starts about 6 s after the daemon starts.
func greenTrace(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("timestamp,region,g_kwh\n")
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for h := range 24 {
		v := 500
		if h == 3 {
			v = 10
		}
		fmt.Fprintf(&b, "%s,r0,%d\n", start.Add(time.Duration(h)*time.Hour).Format(time.RFC3339), v)
	}
	path := filepath.Join(dir, "trace.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func greenConfig(t *testing.T, upstream string) string {
	t.Helper()
	dir := t.TempDir()
	return fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"
[log]
level = "debug"
access = "off"
[shutdown]
grace_period = "5s"

[[listeners]]
name = "edge-plain"
address = "127.0.0.1:0"

[[routes]]
name = "batch"
cluster = "web"
  [routes.match]
  path_prefix = "/batch/"
  [routes.greenwait]
  enabled = true
  expected_duration = "2s"
  [routes.greenwait.max_wait]
  low = "30s"
  background = "40s"

[[routes]]
name = "small"
cluster = "web"
  [routes.match]
  path_prefix = "/small/"
  [routes.greenwait]
  enabled = true
  body_limit = 16

[[routes]]
name = "all"
cluster = "web"

[[clusters]]
name = "web"
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
speed = 1800.0
[[carbon.regions]]
region = "r0"
chain = [{ provider = "trace" }]

[greenwait]
store_path = %q
min_deferral = "0s"
retry_base = "100ms"
purge_interval = "1s"
`, upstream, greenTrace(t, dir), filepath.Join(dir, "gw", "jobs.db"))
}

func postJob(t *testing.T, url, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil && resp.StatusCode == 200 {
			t.Fatalf("decode %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

func TestGreenWaitEndToEnd(t *testing.T) {
	up := newJobUpstream(t)
	r := startDaemon(t, greenConfig(t, up.Listener.Addr().String()))
	plain := "http://" + r.d.Addr("edge-plain").String()
	admin := "http://" + r.d.Addr("admin").String()

	resp, body := postJob(t, plain+"/batch/report", "payload-1", map[string]string{"Aegis-Priority": "low"})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: got %d %s, want 202; log:\n%s", resp.StatusCode, body, r.stderr.String())
	}
	var acc greenwait.Acceptance
	if err := json.Unmarshal([]byte(body), &acc); err != nil {
		t.Fatal(err)
	}
	loc := resp.Header.Get("Location")
	if want := "/.aegis/jobs/" + acc.ID.String(); loc != want {
		t.Errorf("Location: got %q, want %q", loc, want)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if acc.Priority != greenwait.PriorityLow || !acc.PlannedRelease.After(time.Now()) {
		t.Errorf("acceptance: got priority %v planned %v, want low and in the future", acc.Priority, acc.PlannedRelease)
	}

	// The job runs in the clean window a few seconds later.
	var st greenwait.Status
	deadline := time.Now().Add(25 * time.Second)
	for {
		if code := getJSON(t, plain+loc, &st); code != 200 {
			t.Fatalf("GET status: got %d, want 200", code)
		}
		if st.State == greenwait.StateDone || st.State == greenwait.StateFailed || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.State != greenwait.StateDone {
		t.Fatalf("state: got %v, want done; log:\n%s", st.State, r.stderr.String())
	}
	if st.IntensityAtRun == nil || *st.IntensityAtRun != 10 || st.CarbonSavedGrams <= 0 {
		t.Errorf("ran at %v g/kWh (submitted at %v) saving %v g, want 10 and > 0", deref(st.IntensityAtRun), deref(st.IntensityAtSubmit), st.CarbonSavedGrams)
	}
	res, err := http.Get(plain + loc + "/result")
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(rb) != "done:payload-1" || res.Header.Get("X-Upstream") != "yes" {
		t.Errorf("result: got %d %q (X-Upstream %q), want 200 \"done:payload-1\"", res.StatusCode, rb, res.Header.Get("X-Upstream"))
	}
	if !up.sawKey(acc.ID.String()) {
		t.Errorf("upstream did not see Idempotency-Key %s", acc.ID)
	}

	// Admin list with a filter.
	var list struct {
		Jobs []greenwait.Status `json:"jobs"`
	}
	if code := getJSON(t, admin+"/jobs?state=done&priority=low", &list); code != 200 || len(list.Jobs) != 1 || list.Jobs[0].ID != acc.ID {
		t.Errorf("admin /jobs: got %d %+v, want the one done job", code, list.Jobs)
	} else if list.Jobs[0].Route != "batch" || list.Jobs[0].Region != "r0" {
		t.Errorf("admin /jobs: got route %q region %q, want batch, r0", list.Jobs[0].Route, list.Jobs[0].Region)
	}
	m := scrape(t, r)
	for _, want := range []string{
		`aegis_greenwait_jobs_total{outcome="done",priority="low"} 1`,
		`aegis_deferred_jobs_current{priority="low"} 0`,
		`aegis_greenwait_wait_seconds_count{priority="low"} 1`,
		"aegis_greenwait_carbon_saved_grams_total",
		"aegis_greenwait_store_bytes",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics: no %q", want)
		}
	}
}

func TestGreenWaitBadInput(t *testing.T) {
	up := newJobUpstream(t)
	r := startDaemon(t, greenConfig(t, up.Listener.Addr().String()))
	plain := "http://" + r.d.Addr("edge-plain").String()

	tests := []struct {
		name     string
		path     string
		body     string
		hdr      map[string]string
		want     int
		contains string
	}{
		{"unknown priority", "/batch/x", "", map[string]string{"Aegis-Priority": "urgent"}, 400, "critical, high, normal, low, background"},
		{"bad deadline", "/batch/x", "", map[string]string{"Aegis-Priority": "low", "Aegis-Deadline": "soon"}, 400, "Aegis-Deadline"},
		{"body too large", "/small/x", strings.Repeat("x", 100), map[string]string{"Aegis-Priority": "background"}, 413, "exceeds 16 bytes"},
		{"no priority runs now", "/batch/x", "now", nil, 200, "done:now"},
		{"critical runs now", "/batch/x", "crit", map[string]string{"Aegis-Priority": "critical"}, 200, "done:crit"},
		{"route without green-wait", "/other", "plain", map[string]string{"Aegis-Priority": "low"}, 200, "done:plain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := postJob(t, plain+tc.path, tc.body, tc.hdr)
			if resp.StatusCode != tc.want || !strings.Contains(body, tc.contains) {
				t.Errorf("got %d %q, want %d containing %q", resp.StatusCode, body, tc.want, tc.contains)
			}
		})
	}

	t.Run("deadline clamped", func(t *testing.T) {
		resp, body := postJob(t, plain+"/batch/x", "", map[string]string{"Aegis-Priority": "background", "Aegis-Deadline": "86400"})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("got %d %s, want 202", resp.StatusCode, body)
		}
		var acc greenwait.Acceptance
		if err := json.Unmarshal([]byte(body), &acc); err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get(greenwait.HeaderDeadlineClamped) != "true" || !acc.DeadlineClamped {
			t.Errorf("got header %q and deadline_clamped %v, want both true", resp.Header.Get(greenwait.HeaderDeadlineClamped), acc.DeadlineClamped)
		}
		if max := time.Now().Add(41 * time.Second); acc.Deadline.After(max) {
			t.Errorf("deadline: got %v, want at most now + 40s", acc.Deadline)
		}
		// Cancel it through the job API.
		req, _ := http.NewRequest(http.MethodDelete, plain+resp.Header.Get("Location"), nil)
		dr, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		dr.Body.Close()
		var st greenwait.Status
		getJSON(t, plain+resp.Header.Get("Location"), &st)
		if dr.StatusCode != 200 || st.State != greenwait.StateCancelled {
			t.Errorf("DELETE: got %d and state %v, want 200 and cancelled", dr.StatusCode, st.State)
		}
	})

	t.Run("unknown job", func(t *testing.T) {
		if code := getJSON(t, plain+"/.aegis/jobs/00000000000000000000000000000000", nil); code != 404 {
			t.Errorf("got %d, want 404", code)
		}
	})
}

// TestGreenWaitSurvivesRestart acknowledges a job, stops the daemon before
// it runs, starts a new one on the same store and sees the job finish.
func TestGreenWaitSurvivesRestart(t *testing.T) {
	up := newJobUpstream(t)
	cfg := greenConfig(t, up.Listener.Addr().String())
	r := startDaemon(t, cfg)
	plain := "http://" + r.d.Addr("edge-plain").String()
	resp, body := postJob(t, plain+"/batch/keep", "kept", map[string]string{"Aegis-Priority": "low"})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("got %d %s, want 202", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	r.stop(t)

	r2 := startDaemon(t, cfg)
	plain = "http://" + r2.d.Addr("edge-plain").String()
	var st greenwait.Status
	deadline := time.Now().Add(25 * time.Second)
	for getJSON(t, plain+loc, &st) == 200 && st.State != greenwait.StateDone && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if st.State != greenwait.StateDone {
		t.Fatalf("after restart: got state %v, want done", st.State)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
