package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aegis-flow/aegis/internal/balance"
)

// fakeIntensity is a balance.IntensitySource backed by a map that tests
// change; a missing region is unknown.
type fakeIntensity struct {
	mu   sync.Mutex
	v    map[string]float64
	kind string
}

func (f *fakeIntensity) Intensity(region string) (float64, string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.v[region]
	if !ok {
		return 0, "", false
	}
	return v, f.kind, true
}

func (f *fakeIntensity) set(region string, v float64) {
	f.mu.Lock()
	f.v[region] = v
	f.mu.Unlock()
}

// fixedMeter accounts every request at a fixed energy.
type fixedMeter struct{ joules float64 }

func (m fixedMeter) Observe(EnergySample) float64 { return m.joules }

// carbonFixture is a proxy with one carbon_headers route (/c) and one
// plain route (/p) in front of one real loopback upstream per region; each
// upstream answers with its region's name.
type carbonFixture struct {
	url    string
	access *syncBuffer
}

func newCarbonFixture(t *testing.T, policy balance.Policy, src balance.IntensitySource, regions ...string) *carbonFixture {
	t.Helper()
	var eps []balance.EndpointOptions
	for _, region := range regions {
		up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, region) }))
		eps = append(eps, balance.EndpointOptions{Address: addr(up), Region: region})
	}
	bc, err := balance.New(balance.Options{Name: "web", Endpoints: eps, Policy: policy, Intensity: src,
		Carbon: balance.CarbonOptions{RequestJoules: 36}})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTransport(TransportOptions{ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	carbonRoute := Route{Name: "carbon", Cluster: "web", PathPrefix: "/c", Timeout: 5 * time.Second, CarbonHeaders: true}
	plainRoute := Route{Name: "plain", Cluster: "web", PathPrefix: "/p", Timeout: 5 * time.Second}
	access := &syncBuffer{}
	p, err := New(Options{
		Routes:    []Route{carbonRoute, plainRoute},
		Clusters:  map[string]*Cluster{"web": {Balancer: bc, Transport: tr}},
		AccessLog: slog.New(slog.NewJSONHandler(access, nil)),
		Energy:    func(string) EnergyMeter { return fixedMeter{joules: 2.5} },
	})
	if err != nil {
		t.Fatal(err)
	}
	front := upstream(t, p.Handler(Listener{Name: "edge"}))
	return &carbonFixture{url: front.URL, access: access}
}

// accessCarbon is the access log's carbon group.
type accessCarbon struct {
	Intensity    *float64 `json:"intensity"`
	Kind         *string  `json:"kind"`
	CarbonAware  bool     `json:"carbon_aware"`
	BestRegion   string   `json:"best_region"`
	LeastRequest string   `json:"least_request_region"`
	EnergyJ      float64  `json:"energy_j"`
}

type accessLine struct {
	Route  string        `json:"route"`
	Region string        `json:"region"`
	Carbon *accessCarbon `json:"carbon"`
}

func accessLines(t *testing.T, log string) []accessLine {
	t.Helper()
	var out []accessLine
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var l accessLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("access log line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// TestCarbonHeadersAndAccessLog checks that a carbon_headers route sends
// Aegis-Region and, whenever the serving region's intensity is known,
// Aegis-Carbon-Intensity, for every policy and every carbon fallback, and
// that the access log's carbon group records the same decision.
func TestCarbonHeadersAndAccessLog(t *testing.T) {
	tests := []struct {
		name   string
		policy balance.Policy
		values map[string]float64 // missing: unknown
		kind   string
		aware  bool   // carbon policy comparing intensities
		best   string // every region known and of one kind
	}{
		{name: "carbon comparable", policy: balance.Carbon, values: map[string]float64{"north": 420, "south": 35.5}, kind: "average", aware: true, best: "south"},
		{name: "carbon flat", policy: balance.Carbon, values: map[string]float64{"north": 200, "south": 200}, kind: "marginal", best: "north"},
		{name: "carbon one unknown", policy: balance.Carbon, values: map[string]float64{"south": 90}, kind: "average"},
		{name: "least_request", policy: balance.LeastRequest, values: map[string]float64{"north": 420, "south": 35.5}, kind: "average", best: "south"},
		{name: "round_robin", policy: balance.RoundRobin, values: map[string]float64{"north": 420, "south": 35.5}, kind: "average", best: "south"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &fakeIntensity{v: map[string]float64{}, kind: tt.kind}
			f := newCarbonFixture(t, tt.policy, src, "north", "south")
			// The values arrive after the cluster was built, as from a
			// carbon tracker that loads its first signal in the background:
			// the first request must already carry them.
			for r, v := range tt.values {
				src.set(r, v)
			}
			c := &http.Client{}
			seen := map[string]bool{}
			for i := range 40 {
				resp, body := get(t, c, f.url+"/c/x", nil)
				region := resp.Header.Get(HeaderRegion)
				if region != body {
					t.Fatalf("request %d: got %s %q, want the serving region %q", i, HeaderRegion, region, body)
				}
				seen[region] = true
				got, has := resp.Header[HeaderCarbonIntensity]
				v, known := tt.values[region]
				switch {
				case known && (!has || got[0] != strconv.FormatFloat(v, 'f', -1, 64)):
					t.Fatalf("request %d from %s: got %s %q, want %v", i, region, HeaderCarbonIntensity, got, v)
				case !known && has:
					t.Fatalf("request %d from %s: got %s %q, want none (unknown)", i, region, HeaderCarbonIntensity, got)
				}
			}
			if !tt.aware && len(seen) != 2 {
				t.Errorf("got regions %v, want both served", seen)
			}

			// A route without carbon_headers sends neither header.
			resp, _ := get(t, c, f.url+"/p/x", nil)
			for _, h := range []string{HeaderRegion, HeaderCarbonIntensity} {
				if got := resp.Header.Get(h); got != "" {
					t.Errorf("plain route: got %s %q, want none", h, got)
				}
			}

			lines := accessLines(t, f.access.String())
			if len(lines) != 41 {
				t.Fatalf("got %d access log lines, want 41", len(lines))
			}
			for i, l := range lines {
				if l.Carbon == nil {
					t.Fatalf("line %d: got no carbon group, want one", i)
				}
				v, known := tt.values[l.Region]
				want := accessCarbon{CarbonAware: tt.aware, BestRegion: tt.best, LeastRequest: l.Region, EnergyJ: 2.5}
				if known {
					want.Intensity, want.Kind = &v, &tt.kind
				}
				got := *l.Carbon
				if tt.aware {
					want.LeastRequest = got.LeastRequest // may differ from the pick
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("line %d (route %s, region %s): carbon group mismatch (-want +got):\n%s", i, l.Route, l.Region, diff)
				}
			}
		})
	}
}
