package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aegis-flow/aegis/internal/carbon"
	"github.com/aegis-flow/aegis/internal/config"
)

// carbonBase is a daemon config without carbon: one listener, one cluster
// with endpoints in three regions (never dialled by these tests).
const carbonBase = `
[admin]
address = "127.0.0.1:0"

[log]
access = "off"

[shutdown]
grace_period = "2s"

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
  [[clusters.endpoints]]
  address = "127.0.0.1:2"
  region = "us-west"
  [[clusters.endpoints]]
  address = "127.0.0.1:3"
  region = "sa-east"
`

// demoCarbon returns the [carbon] part of the embedded default.
func demoCarbon(t testing.TB) string {
	t.Helper()
	text := string(config.DefaultText())
	i := strings.Index(text, "\n[carbon]")
	if i < 0 {
		t.Fatal("embedded default has no [carbon] section")
	}
	return text[i:]
}

func carbonWaitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// carbonRun is a running daemon with its admin base URL and process log.
type carbonRun struct {
	*running
	admin string
	log   *lockedBuffer
}

func startCarbonDaemon(t *testing.T, cfgText string) *carbonRun {
	t.Helper()
	r := launchDaemon(t, cfgText)
	return &carbonRun{running: r, admin: "http://" + r.d.Addr("admin").String(), log: r.stderr}
}

func (r *carbonRun) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(r.admin + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (r *carbonRun) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := r.get(t, "/readyz")
		if code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: got %d %q, want 200", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type carbonJSON struct {
	Ready   bool `json:"ready"`
	Regions []struct {
		Region        string   `json:"region"`
		Intensity     *float64 `json:"intensity_g_kwh"`
		Kind          string   `json:"kind"`
		Source        string   `json:"source"`
		AgeSeconds    *float64 `json:"age_seconds"`
		Fallback      string   `json:"fallback"`
		FallbackLevel int      `json:"fallback_level"`
		Providers     []struct {
			Name      string `json:"name"`
			Zone      string `json:"zone"`
			State     string `json:"state"`
			LastError string `json:"last_error"`
		} `json:"providers"`
	} `json:"regions"`
}

func (r *carbonRun) carbon(t *testing.T) carbonJSON {
	t.Helper()
	code, body := r.get(t, "/carbon")
	if code != http.StatusOK {
		t.Fatalf("/carbon: got %d %q, want 200", code, body)
	}
	var out carbonJSON
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("/carbon JSON: %v\n%s", err, body)
	}
	return out
}

func TestCarbonDemoRegions(t *testing.T) {
	r := startCarbonDaemon(t, carbonBase+demoCarbon(t))
	r.waitReady(t)
	got := r.carbon(t)
	if !got.Ready {
		t.Error("/carbon ready: got false, want true")
	}
	var regions []string
	for _, reg := range got.Regions {
		regions = append(regions, reg.Region)
		if reg.Intensity == nil || *reg.Intensity <= 0 {
			t.Errorf("%s intensity: got %v, want a positive value", reg.Region, reg.Intensity)
		}
		if reg.Kind != "average" || reg.Source == "" || reg.Fallback != "live" || reg.FallbackLevel != 0 || reg.AgeSeconds == nil {
			t.Errorf("%s: got kind %q source %q fallback %q level %d age %v, want average, a source, live, 0, an age",
				reg.Region, reg.Kind, reg.Source, reg.Fallback, reg.FallbackLevel, reg.AgeSeconds)
		}
		if len(reg.Providers) != 1 || reg.Providers[0].Name != "demo-trace" || reg.Providers[0].Zone != reg.Region {
			t.Errorf("%s providers: got %+v, want demo-trace with zone %s", reg.Region, reg.Providers, reg.Region)
		}
	}
	if want := "eu-south,us-west,sa-east"; strings.Join(regions, ",") != want {
		t.Errorf("regions: got %v, want %s", regions, want)
	}

	t.Run("sdk best", func(t *testing.T) {
		code, body := r.get(t, "/emissions/bylocations/best?location=eu-south&location=us-west&location=sa-east")
		if code != http.StatusOK {
			t.Fatalf("got %d %q, want 200", code, body)
		}
		var best []struct {
			Location string  `json:"location"`
			Rating   float64 `json:"rating"`
		}
		if err := json.Unmarshal([]byte(body), &best); err != nil || len(best) == 0 || best[0].Location == "" {
			t.Fatalf("got %q (%v), want a non-empty array of emissions data", body, err)
		}
	})
	t.Run("sdk forecast", func(t *testing.T) {
		carbonWaitFor(t, func() bool {
			code, _ := r.get(t, "/emissions/forecasts/current?location=eu-south")
			return code == http.StatusOK
		})
		_, body := r.get(t, "/emissions/forecasts/current?location=eu-south")
		var fc []struct {
			Location     string            `json:"location"`
			ForecastData []json.RawMessage `json:"forecastData"`
		}
		if err := json.Unmarshal([]byte(body), &fc); err != nil || len(fc) != 1 || fc[0].Location != "eu-south" || len(fc[0].ForecastData) == 0 {
			t.Fatalf("got %q (%v), want one eu-south forecast with data", body, err)
		}
	})
	t.Run("sdk bad location", func(t *testing.T) {
		code, body := r.get(t, "/emissions/bylocations/best?location=mars")
		if code != http.StatusBadRequest || !strings.Contains(body, "location") {
			t.Errorf("got %d %q, want 400 naming location", code, body)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		_, body := r.get(t, "/metrics")
		for _, want := range []string{
			`aegis_carbon_intensity_g_kwh{region="sa-east"}`,
			`aegis_carbon_signal_age_seconds{region="eu-south"}`,
			`aegis_carbon_fallback_level{region="us-west"} 0`,
			`aegis_carbon_provider_requests_total{provider="demo-trace",result="ok"}`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
	t.Run("adapters", func(t *testing.T) {
		v, kind, ok := r.d.CarbonIntensity().Intensity("eu-south")
		if !ok || v <= 0 || kind != "average" {
			t.Errorf("Intensity(eu-south): got %v %q %v, want a positive average", v, kind, ok)
		}
		if _, _, ok := r.d.CarbonIntensity().Intensity("nowhere"); ok {
			t.Error("Intensity(nowhere): got ok, want unknown")
		}
		carbonWaitFor(t, func() bool { _, ok := r.d.CarbonTracker().Forecast("us-west"); return ok })
		now := time.Now()
		start, avg, err := r.d.CarbonForecaster().BestWindow(context.Background(), "us-west", 20*time.Second, now, now.Add(2*time.Minute))
		if err != nil || avg <= 0 || start.Before(now.Add(-time.Second)) {
			t.Errorf("BestWindow: got %v %v %v, want a window from now", start, avg, err)
		}
	})
}

// fakeEMaps is an Electricity Maps API stand-in: per zone it answers 500,
// malformed JSON or 401, and it records the auth-token it was sent.
type fakeEMaps struct {
	*httptest.Server
	mu     sync.Mutex
	tokens map[string]bool
	block  chan struct{} // non-nil: requests wait until it is closed
}

func newFakeEMaps(t *testing.T, block chan struct{}) *fakeEMaps {
	f := &fakeEMaps{tokens: map[string]bool{}, block: block}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.tokens[r.Header.Get("auth-token")] = true
		f.mu.Unlock()
		if f.block != nil {
			select {
			case <-f.block:
			case <-r.Context().Done():
				return
			}
		}
		switch r.URL.Query().Get("zone") {
		case "ES":
			http.Error(w, "upstream exploded", http.StatusInternalServerError)
		case "US-CAL-CISO":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"zone": "US-CAL-CISO", "carbonIntensity": `)
		default:
			http.Error(w, `{"message":"bad token"}`, http.StatusUnauthorized)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeEMaps) sawToken(tok string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokens[tok]
}

func emapsCarbon(baseURL string) string {
	return `
[carbon]
max_attempts = 1
timeout = "20s"

[[carbon.providers]]
name = "emaps"
type = "electricitymaps"
base_url = "` + baseURL + `"
token_env = "AEGIS_TEST_EMAPS_TOKEN"

[[carbon.regions]]
region = "eu-south"
chain = [{ provider = "emaps", zone = "ES" }]
static = { value = 111.0 }

[[carbon.regions]]
region = "us-west"
chain = [{ provider = "emaps", zone = "US-CAL-CISO" }]
static = { value = 222.0 }

[[carbon.regions]]
region = "sa-east"
chain = [{ provider = "emaps", zone = "BR" }]
`
}

const testToken = "tok-3f9a-SECRET-do-not-print"

func TestCarbonProviderFailureFallsBack(t *testing.T) {
	t.Setenv("AEGIS_TEST_EMAPS_TOKEN", testToken)
	fake := newFakeEMaps(t, nil)
	r := startCarbonDaemon(t, carbonBase+emapsCarbon(fake.URL))
	r.waitReady(t)
	if !fake.sawToken(testToken) {
		t.Error("the fake provider never got the token from the environment")
	}
	got := r.carbon(t)
	want := map[string]struct {
		fallback string
		level    int
		value    float64
		errPart  string
	}{
		"eu-south": {"static", 2, 111, "500"},
		"us-west":  {"static", 2, 222, "bad provider response"},
		"sa-east":  {"unknown", 3, 0, "unauthorized"},
	}
	for _, reg := range got.Regions {
		w := want[reg.Region]
		if reg.Fallback != w.fallback || reg.FallbackLevel != w.level {
			t.Errorf("%s: got fallback %q level %d, want %q %d", reg.Region, reg.Fallback, reg.FallbackLevel, w.fallback, w.level)
		}
		if w.level == 2 && (reg.Intensity == nil || *reg.Intensity != w.value || reg.Source != "static") {
			t.Errorf("%s: got intensity %v source %q, want static %v", reg.Region, reg.Intensity, reg.Source, w.value)
		}
		if w.level == 3 && reg.Intensity != nil {
			t.Errorf("%s: got intensity %v, want none (unknown)", reg.Region, *reg.Intensity)
		}
		if len(reg.Providers) != 1 || reg.Providers[0].State != "failed" || !strings.Contains(reg.Providers[0].LastError, w.errPart) {
			t.Errorf("%s providers: got %+v, want failed with an error containing %q", reg.Region, reg.Providers, w.errPart)
		}
	}
	if ok := r.d.CarbonTracker().Ready(); !ok {
		t.Error("Ready after fallback: got false, want true")
	}
	if _, _, ok := r.d.CarbonIntensity().Intensity("sa-east"); ok {
		t.Error("Intensity(sa-east) with nothing usable: got ok, want unknown (carbon-neutral)")
	}
	if v, _, ok := r.d.CarbonIntensity().Intensity("eu-south"); !ok || v != 111 {
		t.Errorf("Intensity(eu-south): got %v %v, want the static 111", v, ok)
	}

	_, metrics := r.get(t, "/metrics")
	for _, want := range []string{
		`aegis_carbon_fallback_level{region="eu-south"} 2`,
		`aegis_carbon_fallback_level{region="sa-east"} 3`,
		`aegis_carbon_intensity_g_kwh{region="us-west"} 222`,
		`aegis_carbon_provider_requests_total{provider="emaps",result="unavailable"}`,
		`aegis_carbon_provider_requests_total{provider="emaps",result="bad_response"}`,
		`aegis_carbon_provider_requests_total{provider="emaps",result="unauthorized"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, `aegis_carbon_provider_requests_total{provider="emaps",result="unavailable"} 0`) {
		t.Error("unavailable counter did not go up")
	}

	logs := r.log.String()
	for _, want := range []string{"carbon provider failed", "provider=emaps", "region=eu-south", "region=us-west", "region=sa-east"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	_, cfgJSON := r.get(t, "/config")
	_, carbonBody := r.get(t, "/carbon")
	for name, text := range map[string]string{"log": logs, "/config": cfgJSON, "/carbon": carbonBody, "/metrics": metrics} {
		if strings.Contains(text, testToken) {
			t.Errorf("the token appears in %s", name)
		}
	}
	if !strings.Contains(cfgJSON, `"token_env": "AEGIS_TEST_EMAPS_TOKEN"`) {
		t.Errorf("/config should name the token's environment variable:\n%s", cfgJSON)
	}
}

func TestCarbonReadyzWaitsForFirstSignal(t *testing.T) {
	t.Setenv("AEGIS_TEST_EMAPS_TOKEN", testToken)
	block := make(chan struct{})
	fake := newFakeEMaps(t, block)
	r := startCarbonDaemon(t, carbonBase+emapsCarbon(fake.URL))
	carbonWaitFor(t, func() bool { return fake.sawToken(testToken) }) // the tracker runs and waits
	code, body := r.get(t, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "carbon") {
		t.Errorf("/readyz while the provider hangs: got %d %q, want 503 naming carbon", code, body)
	}
	if got := r.carbon(t); got.Ready || got.Regions[0].Fallback != "static" {
		t.Errorf("/carbon before the first refresh: got ready %v, eu-south %q; want false, static", got.Ready, got.Regions[0].Fallback)
	}
	close(block)
	r.waitReady(t)
}

func TestCarbonMissingSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "aegis.toml")
	if err := os.WriteFile(path, []byte(carbonBase+emapsCarbon("http://127.0.0.1:1")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(context.Background(), Options{ConfigPath: path})
	if err == nil || !strings.Contains(err.Error(), "emaps") || !strings.Contains(err.Error(), "AEGIS_TEST_EMAPS_TOKEN") {
		t.Errorf("New without the token: got %v, want an error naming the provider and the variable", err)
	}
}

func TestCarbonReload(t *testing.T) {
	r := startCarbonDaemon(t, carbonBase+demoCarbon(t))
	r.waitReady(t)
	first := r.d.CarbonTracker()

	// Unchanged [carbon]: the tracker is kept.
	if err := os.WriteFile(r.path, []byte(carbonBase+demoCarbon(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.d.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if r.d.CarbonTracker() != first {
		t.Error("reload without a [carbon] change rebuilt the tracker")
	}

	// A changed [carbon] rebuilds it: eu-south becomes static only.
	changed := strings.Replace(demoCarbon(t), `chain = [{ provider = "demo-trace", zone = "eu-south" }]`, `chain = []`, 1)
	changed = strings.Replace(changed, "value = 150.0", "value = 42.0", 1)
	if err := os.WriteFile(r.path, []byte(carbonBase+changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.d.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if r.d.CarbonTracker() == first {
		t.Fatal("reload with a [carbon] change kept the old tracker")
	}
	r.waitReady(t)
	carbonWaitFor(t, func() bool {
		got := r.carbon(t)
		return got.Regions[0].Fallback == "static" && got.Regions[0].Intensity != nil && *got.Regions[0].Intensity == 42
	})
	_, metrics := r.get(t, "/metrics")
	if n := strings.Count(metrics, `aegis_carbon_fallback_level{region="eu-south"}`); n != 1 {
		t.Errorf("after reload /metrics has %d eu-south fallback series, want 1", n)
	}
}

func TestNewCarbonTracker(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte(carbonBase+demoCarbon(t)))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewCarbonTracker(cfg, CarbonOptions{Regions: []string{"sa-east", "eu-south"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tr.Regions(), ","); got != "sa-east,eu-south" {
		t.Errorf("regions: got %s, want sa-east,eu-south", got)
	}
	if err := tr.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if r, ok := tr.Current("sa-east"); !ok || r.Level != carbon.Live {
		t.Errorf("Current(sa-east): got %+v %v, want live", r, ok)
	}

	_, err = NewCarbonTracker(cfg, CarbonOptions{Regions: []string{"mars"}})
	if !errors.Is(err, ErrNoCarbonRegion) || !strings.Contains(err.Error(), "mars") {
		t.Errorf("unknown region: got %v, want ErrNoCarbonRegion naming mars", err)
	}

	trace := filepath.Join(t.TempDir(), "trace.csv")
	if err := os.WriteFile(trace, []byte("timestamp,region,g_kwh\n2024-01-01T00:00:00Z,north,100\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg2, err := config.Parse("t.toml", []byte(carbonBase+`
[[carbon.providers]]
name = "tr"
type = "replay"
file = "`+trace+`"
[[carbon.regions]]
region = "eu-south"
chain = [{ provider = "tr", zone = "south" }]
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewCarbonTracker(cfg2, CarbonOptions{})
	if err == nil || !strings.Contains(err.Error(), `no zone "south"`) || !strings.Contains(err.Error(), "north") {
		t.Errorf("zone missing from trace: got %v, want an error naming the zone and the trace's zones", err)
	}
}

func TestCarbonSecretFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte(testToken+"\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := secret(os.Getenv, "", file)
	if err != nil || got != testToken {
		t.Errorf("secret from file: got %q %v, want the first line", got, err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := secret(os.Getenv, "", empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty secret file: got %v, want an error", err)
	}
	if _, err := secret(os.Getenv, "", filepath.Join(dir, "missing")); err == nil || strings.Contains(err.Error(), testToken) {
		t.Errorf("missing secret file: got %v, want an error", err)
	}
}

// BenchmarkCarbonIntensity is the request-path read that carbon-aware
// routing does: target 50 ns or less and 0 allocs.
func BenchmarkCarbonIntensity(b *testing.B) {
	cfg, err := config.Parse("t.toml", []byte(carbonBase+demoCarbon(b)))
	if err != nil {
		b.Fatal(err)
	}
	tr, err := NewCarbonTracker(cfg, CarbonOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if err := tr.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	d := &Daemon{}
	d.carbon.cur.Store(&carbonState{tracker: tr})
	src := d.CarbonIntensity()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := src.Intensity("us-west"); !ok {
			b.Fatal("unknown")
		}
	}
}
