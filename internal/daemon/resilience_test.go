package daemon

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// flaky is an upstream whose /healthz and answers can be switched to fail.
type flaky struct {
	srv       *httptest.Server
	unhealthy atomic.Bool // /healthz answers 503
	status    atomic.Int64
	hits      atomic.Int64 // requests other than /healthz
}

func newFlaky(t *testing.T, region string, status int) *flaky {
	t.Helper()
	f := &flaky{}
	f.status.Store(int64(status))
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if f.unhealthy.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		f.hits.Add(1)
		w.WriteHeader(int(f.status.Load()))
		io.WriteString(w, region)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *flaky) addr() string { return f.srv.Listener.Addr().String() }

// resilienceConfig is one cleartext listener and route "all" over cluster
// "web" with the given endpoints, plus extra TOML for the route (routeTOML)
// and the cluster (clusterTOML).
func resilienceConfig(routeTOML, clusterTOML string, endpoints ...string) string {
	var eps strings.Builder
	for i, e := range endpoints {
		fmt.Fprintf(&eps, "  [[clusters.endpoints]]\n  address = %q\n  region = \"r%d\"\n", e, i)
	}
	return fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"
[log]
level = "debug"
access = "off"
[shutdown]
grace_period = "2s"

[[listeners]]
name = "edge-plain"
address = "127.0.0.1:0"

[[routes]]
name = "all"
cluster = "web"
%s

[[clusters]]
name = "web"
%s
%s`, routeTOML, clusterTOML, eps.String())
}

var gaugeLine = regexp.MustCompile(`(?m)^aegis_balance_healthy_endpoints\{cluster="web",region="(r\d)"\} (\d+)$`)

// healthy returns the healthy-endpoint gauge per region from /metrics.
func healthy(t *testing.T, r *running) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range gaugeLine.FindAllStringSubmatch(scrape(t, r), -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] = n
	}
	return out
}

func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in 15s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHealthEjectionAndRecovery: an endpoint whose health check starts
// failing leaves rotation, and comes back when it passes again.
func TestHealthEjectionAndRecovery(t *testing.T) {
	a, b := newFlaky(t, "r0", 200), newFlaky(t, "r1", 200)
	r := startDaemon(t, resilienceConfig("", `
  [clusters.health]
  path = "/healthz"
  interval = "1s"
  timeout = "500ms"
  healthy_threshold = 1
  unhealthy_threshold = 1
`, a.addr(), b.addr()))
	url := r.url("edge-plain", "/")

	b.unhealthy.Store(true)
	waitLong(t, "r1 marked down", func() bool { return healthy(t, r)["r1"] == 0 })
	before := b.hits.Load()
	for range 10 {
		if code, body := getBody(t, url); code != 200 || body != "r0" {
			t.Fatalf("while r1 is down: got %d %q, want 200 \"r0\"", code, body)
		}
	}
	if got := b.hits.Load(); got != before {
		t.Errorf("down endpoint got %d requests, want 0", got-before)
	}

	b.unhealthy.Store(false)
	waitLong(t, "r1 back up", func() bool { return healthy(t, r)["r1"] == 1 })
	seen := map[string]bool{}
	for range 10 {
		_, body := getBody(t, url)
		seen[body] = true
	}
	if !seen["r0"] || !seen["r1"] {
		t.Errorf("after recovery: served by %v, want both r0 and r1", seen)
	}
	m := scrape(t, r)
	for _, want := range []string{
		`aegis_balance_health_checks_total{cluster="web",result="failure"}`,
		`aegis_balance_health_checks_total{cluster="web",result="success"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestOutlierMaxEjectionPercent: three of four endpoints answer 503, but
// max_ejection_percent = 50 keeps at most two of them out, so detection
// alone never empties the cluster.
func TestOutlierMaxEjectionPercent(t *testing.T) {
	good := newFlaky(t, "r0", 200)
	bad := []*flaky{newFlaky(t, "r1", 503), newFlaky(t, "r2", 503), newFlaky(t, "r3", 503)}
	r := startDaemon(t, resilienceConfig(`
  [routes.retry]
  attempts = 1
`, `
  [clusters.outlier]
  consecutive_gateway_errors = 1
  consecutive_5xx = -1
  base_ejection_time = "1m"
  max_ejection_time = "1m"
  max_ejection_percent = 50
`, good.addr(), bad[0].addr(), bad[1].addr(), bad[2].addr()))
	url := r.url("edge-plain", "/")
	total := func() (n int) {
		for _, v := range healthy(t, r) {
			n += v
		}
		return n
	}
	for range 40 {
		getBody(t, url)
	}
	waitLong(t, "two endpoints ejected", func() bool { return total() == 2 })
	for range 40 {
		getBody(t, url)
	}
	if got := total(); got != 2 {
		t.Errorf("healthy endpoints after more failures: got %d, want 2 (50%% of 4 may be ejected)", got)
	}
	if got := healthy(t, r)["r0"]; got != 1 {
		t.Errorf("the good endpoint: healthy = %d, want 1", got)
	}
	if m := scrape(t, r); !strings.Contains(m, `aegis_balance_ejections_total{cluster="web",reason="gateway_error"} 2`) {
		t.Errorf("metrics lack 2 gateway_error ejections:\n%s", grepLines(m, "aegis_balance_ejections_total"))
	}
}

// TestRouteResilienceWired checks that [routes.retry] and
// [routes.rate_limit] reach the proxy.
func TestRouteResilienceWired(t *testing.T) {
	bad, good := newFlaky(t, "r0", 503), newFlaky(t, "r1", 200)
	r := startDaemon(t, resilienceConfig(`
  [routes.retry]
  attempts = 2
  retry_on = ["503"]
  [routes.rate_limit]
  requests_per_second = 0.5
  burst = 2
`, `
  [clusters.outlier]
  consecutive_gateway_errors = -1
  consecutive_5xx = -1
`, bad.addr(), good.addr()))
	url := r.url("edge-plain", "/")
	for i := range 2 {
		if code, body := getBody(t, url); code != 200 || body != "r1" {
			t.Fatalf("request %d: got %d %q, want 200 \"r1\" (retried past the 503)", i, code, body)
		}
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("over the limit: got %d Retry-After %q, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	m := scrape(t, r)
	for _, want := range []string{
		`aegis_proxy_rate_limited_total{route="all"} 1`,
		`aegis_proxy_retries_total{reason="503",route="all"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
