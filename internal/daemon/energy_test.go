package daemon

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// slowServer answers with its region after delay.
func slowServer(t *testing.T, region string, delay time.Duration) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(delay)
		io.WriteString(w, region)
	}))
	t.Cleanup(s.Close)
	return s
}

type regionSpec struct {
	name      string
	intensity float64
	delay     time.Duration
}

func carbonConfig(policy string, regions []regionSpec, addrs []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `
[admin]
address = "127.0.0.1:0"
[log]
access = "stdout"
[shutdown]
grace_period = "2s"
[energy]
region = %q
interval = "200ms"
[[listeners]]
name = "edge-plain"
address = "127.0.0.1:0"
[[routes]]
name = "api"
cluster = "web"
carbon_headers = true
[[clusters]]
name = "web"
policy = %q
  [clusters.carbon]
  interval = "20ms"
  max_added_latency = "50ms"
  max_share_change = 0.2
  [clusters.energy]
  joules_per_request = 10.0
`, regions[0].name, policy)
	for i, r := range regions {
		fmt.Fprintf(&b, "  [[clusters.endpoints]]\n  address = %q\n  region = %q\n", addrs[i], r.name)
	}
	fmt.Fprintf(&b, "\n[carbon]\n[[carbon.providers]]\nname = \"fixed\"\ntype = \"static\"\nvalues = {")
	for i, r := range regions {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %q = %g", r.name, r.intensity)
	}
	b.WriteString(" }\n")
	for _, r := range regions {
		fmt.Fprintf(&b, "[[carbon.regions]]\nregion = %q\nchain = [{ provider = \"fixed\" }]\n", r.name)
	}
	return b.String()
}

type runStats struct {
	gramsPerRequest float64
	p99             time.Duration
	byRegion        map[string]int
}

// drive sends n requests (workers at a time) and returns the modelled grams per
// request (10 J each, at the serving region's intensity) and the p99.
func drive(t *testing.T, r *running, regions []regionSpec, n, workers int, requireIntensity bool) runStats {
	t.Helper()
	intensity := map[string]float64{}
	for _, rg := range regions {
		intensity[rg.name] = rg.intensity
	}
	var mu sync.Mutex
	st := runStats{byRegion: map[string]int{}}
	var lats []time.Duration
	var grams float64
	var wg sync.WaitGroup
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range workers {
		wg.Go(func() {
			for range next {
				start := time.Now()
				resp, err := http.Get(r.url("edge-plain", "/"))
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				lat := time.Since(start)
				region := resp.Header.Get("Aegis-Region")
				if region != string(body) {
					t.Errorf("Aegis-Region: got %q, want %q (the serving region)", region, body)
				}
				// The carbon policy records the intensity of its pick; when it
				// falls back to least_request (flat values) it compares none.
				if got, want := resp.Header.Get("Aegis-Carbon-Intensity"), fmt.Sprint(intensity[region]); got != want && (got != "" || requireIntensity) {
					t.Errorf("Aegis-Carbon-Intensity for %s: got %q, want %q", region, got, want)
				}
				mu.Lock()
				lats = append(lats, lat)
				grams += 10 / 3.6e6 * intensity[region]
				st.byRegion[region]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(lats)
	st.p99 = lats[len(lats)*99/100]
	st.gramsPerRequest = grams / float64(n)
	return st
}

// TestCarbonRoutingThroughDaemon is the acceptance check through the running
// daemon: three regions with known intensities and latencies; carbon cuts
// the modelled grams per request by at least 30% against least_request and
// its p99 stays within the latency budget.
func TestCarbonRoutingThroughDaemon(t *testing.T) {
	regions := []regionSpec{
		{"fast-dirty", 600, time.Millisecond},
		{"mid", 350, 5 * time.Millisecond},
		{"slow-clean", 40, 15 * time.Millisecond},
	}
	var addrs []string
	for _, rg := range regions {
		addrs = append(addrs, slowServer(t, rg.name, rg.delay).Listener.Addr().String())
	}
	results := map[string]runStats{}
	for _, policy := range []string{"least_request", "carbon"} {
		r := startDaemon(t, carbonConfig(policy, regions, addrs))
		drive(t, r, regions, 100, 1, false) // warm up latencies and shares
		results[policy] = drive(t, r, regions, 300, 1, policy == "carbon")
		if policy == "carbon" {
			checkAccessLog(t, r.stdout.String())
			m := scrape(t, r)
			for _, want := range []string{
				`aegis_estimated_energy_joules_total{region="slow-clean",route="api"}`,
				`aegis_estimated_carbon_grams_total{region="slow-clean",route="api"}`,
				`aegis_carbon_avoided_grams_total{route="api"}`,
				`aegis_sci_grams_per_request{route="api"}`,
			} {
				if !strings.Contains(m, want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
		}
		r.stop(t)
	}
	lr, c := results["least_request"], results["carbon"]
	cut := 1 - c.gramsPerRequest/lr.gramsPerRequest
	t.Logf("least_request: %.3g g/req p99 %v %v; carbon: %.3g g/req p99 %v %v; cut %.1f%%",
		lr.gramsPerRequest, lr.p99, lr.byRegion, c.gramsPerRequest, c.p99, c.byRegion, 100*cut)
	if cut < 0.30 {
		t.Errorf("carbon cut grams per request by %.1f%%, want at least 30%%", 100*cut)
	}
	if added := c.p99 - lr.p99; added > 50*time.Millisecond {
		t.Errorf("carbon added %v to p99, want at most the 50ms budget", added)
	}
}

func checkAccessLog(t *testing.T, log string) {
	t.Helper()
	var aware int
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var line struct {
			Region string `json:"region"`
			Carbon *struct {
				Intensity   float64 `json:"intensity"`
				CarbonAware bool    `json:"carbon_aware"`
				Best        string  `json:"best_region"`
				Worst       string  `json:"worst_region"`
				LR          string  `json:"least_request_region"`
				Energy      float64 `json:"energy_j"`
			} `json:"carbon"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Region == "" {
			continue
		}
		if line.Carbon == nil {
			t.Fatalf("access log line without carbon record: %s", sc.Text())
		}
		if line.Carbon.CarbonAware {
			aware++
			if line.Carbon.Best != "slow-clean" || line.Carbon.Worst != "fast-dirty" || line.Carbon.LR == "" {
				t.Errorf("decision record: got best %q worst %q least_request %q, want slow-clean, fast-dirty, a region",
					line.Carbon.Best, line.Carbon.Worst, line.Carbon.LR)
			}
		}
		if line.Carbon.Energy < 10 {
			t.Errorf("energy_j: got %v, want at least the 10 J upstream model", line.Carbon.Energy)
		}
	}
	if aware == 0 {
		t.Error("no carbon-aware decision in the access log")
	}
}

// TestFlatIntensitiesAreLeastRequest: with equal intensities the carbon
// policy never compares them, and every pick is least_request's.
func TestFlatIntensitiesAreLeastRequest(t *testing.T) {
	regions := []regionSpec{{"a", 200, time.Millisecond}, {"b", 200, 2 * time.Millisecond}, {"c", 200, 3 * time.Millisecond}}
	var addrs []string
	for _, rg := range regions {
		addrs = append(addrs, slowServer(t, rg.name, rg.delay).Listener.Addr().String())
	}
	r := startDaemon(t, carbonConfig("carbon", regions, addrs))
	st := drive(t, r, regions, 150, 4, false)
	r.stop(t)
	sc := bufio.NewScanner(strings.NewReader(r.stdout.String()))
	n := 0
	for sc.Scan() {
		var line struct {
			Region string `json:"region"`
			Carbon struct {
				CarbonAware bool   `json:"carbon_aware"`
				LR          string `json:"least_request_region"`
			} `json:"carbon"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Region == "" {
			continue
		}
		n++
		if line.Carbon.CarbonAware || line.Carbon.LR != line.Region {
			t.Errorf("flat intensities: got carbon_aware %v, least_request_region %q for region %q; want false and the same region",
				line.Carbon.CarbonAware, line.Carbon.LR, line.Region)
		}
	}
	if n != 150 {
		t.Errorf("access log lines: got %d, want 150", n)
	}
	for _, rg := range regions {
		if st.byRegion[rg.name] == 0 {
			t.Errorf("region %s got no traffic (%v)", rg.name, st.byRegion)
		}
	}
}

var metricName = regexp.MustCompile(`\baegis_[a-z0-9_]+\b`)

// TestDashboardMetricsExist starts the daemon, makes traffic that touches
// every series (TLS handshakes, a classical one under audit, an ejection, a
// carbon-routed request) and checks that every metric the Grafana dashboard
// and the alert rules use is on /metrics.
func TestDashboardMetricsExist(t *testing.T) {
	var used []string
	for _, f := range []string{"../../deploy/grafana/aegis.json", "../../deploy/prometheus/alerts.yml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metricName.FindAllString(string(b), -1) {
			if !slices.Contains(used, m) {
				used = append(used, m)
			}
		}
	}
	if len(used) < 10 {
		t.Fatalf("found only %d metric names in the dashboard and rules: %v", len(used), used)
	}
	regions := []regionSpec{{"eu", 100, 0}, {"us", 300, 0}}
	addrs := []string{slowServer(t, "eu", 0).Listener.Addr().String(), slowServer(t, "us", 0).Listener.Addr().String()}
	cfg := carbonConfig("carbon", regions, addrs) + fmt.Sprintf(`
[[listeners]]
name = "edge-tls"
address = "127.0.0.1:0"
  [listeners.tls]
  pq = "audit"
[[routes]]
name = "dead"
cluster = "dead"
  [routes.match]
  path_prefix = "/dead"
[[routes]]
name = "batch"
cluster = "web"
  [routes.match]
  path_prefix = "/batch/"
  [routes.greenwait]
  enabled = true
[greenwait]
store_path = %q
[[clusters]]
name = "dead"
  [[clusters.endpoints]]
  address = "127.0.0.1:1"
  region = "eu"
`, t.TempDir()+"/gw.db")
	// Routes match in order: move the catch-all "api" route last.
	cfg = strings.Replace(cfg, "[[routes]]\nname = \"api\"\ncluster = \"web\"\ncarbon_headers = true\n", "", 1) +
		"[[routes]]\nname = \"api\"\ncluster = \"web\"\ncarbon_headers = true\n"
	r := startDaemon(t, cfg)
	for range 5 {
		get(t, http.DefaultClient, r.url("edge-plain", "/"))
		get(t, http.DefaultClient, r.url("edge-plain", "/dead"))
	}
	get(t, tlsClient(), r.url("edge-tls", "/"))
	get(t, tlsClient(0x001d), r.url("edge-tls", "/")) // X25519 only: classical
	waitFor(t, func() bool {
		m := scrape(t, r)
		return strings.Contains(m, "aegis_balance_ejections_total") && strings.Contains(m, "aegis_sci_grams_per_request{route=\"api\"}")
	})
	m := scrape(t, r)
	var have []string
	for line := range strings.SplitSeq(m, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		have = append(have, name)
	}
	for _, u := range used {
		if !slices.Contains(have, u) {
			t.Errorf("the dashboard or rules use %s, which /metrics does not have", u)
		}
	}
}

func get(t *testing.T, c *http.Client, url string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
