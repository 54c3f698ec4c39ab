package balance

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNewValidation(t *testing.T) {
	good := []EndpointOptions{{Address: "127.0.0.1:80", Region: "eu"}}
	tests := []struct {
		name string
		opts Options
		want []string // substrings of the error; nil means no error
	}{
		{name: "minimal", opts: Options{Name: "c", Endpoints: good}},
		{name: "no name", opts: Options{Endpoints: good}, want: []string{"name is empty"}},
		{name: "no endpoints", opts: Options{Name: "c"}, want: []string{"endpoints: none given"}},
		{
			name: "bad endpoints",
			opts: Options{Name: "c", Endpoints: []EndpointOptions{
				{Address: "nohost"}, {Address: "a:1", Weight: -2}, {Address: "a:1"},
			}},
			want: []string{"endpoints[0].address", "endpoints[1].weight", "endpoints[2].address: \"a:1\" is listed twice"},
		},
		{name: "bad policy", opts: Options{Name: "c", Endpoints: good, Policy: "random"}, want: []string{`policy "random"`}},
		{
			name: "all problems at once",
			opts: Options{Name: "c", Endpoints: good,
				Health:  HealthOptions{Path: "healthz", Interval: 500 * time.Millisecond},
				Outlier: OutlierOptions{MaxEjectionPercent: 101},
				Carbon:  CarbonOptions{MaxShareChange: 2, MinShare: 1, Interval: time.Millisecond},
			},
			want: []string{
				"health.interval: 500ms is below the minimum 1s", "health.path", "outlier.max_ejection_percent",
				"carbon.max_share_change", "carbon.min_share", "carbon.interval",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got error %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got nil error, want one mentioning %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestParseStatusRanges(t *testing.T) {
	tests := []struct {
		spec    string
		want    []StatusRange
		wantErr bool
	}{
		{spec: "200-399", want: []StatusRange{{200, 399}}},
		{spec: "200, 204 ,300-302", want: []StatusRange{{200, 200}, {204, 204}, {300, 302}}},
		{spec: "", wantErr: true},
		{spec: "200,", wantErr: true},
		{spec: "399-200", wantErr: true},
		{spec: "99", wantErr: true},
		{spec: "200-600", wantErr: true},
		{spec: "2xx", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseStatusRanges(tt.spec)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ranges mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseStatusRanges(f *testing.F) {
	for _, s := range []string{"200-399", "200,204", "", "-", "599-100", "1-2-3", " 200 - 300 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		rs, err := ParseStatusRanges(spec)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Min < 100 || r.Max > 599 || r.Min > r.Max {
				t.Fatalf("ParseStatusRanges(%q) accepted invalid range %v", spec, r)
			}
		}
	})
}

func TestRoundRobinWeights(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		want    string // one full cycle
	}{
		{name: "equal", weights: []int{1, 1, 1}, want: "abc"},
		{name: "smooth 5-1-1", weights: []int{5, 1, 1}, want: "aabacaa"},
		{name: "gcd reduced", weights: []int{20, 10}, want: "aba"},
		{name: "2-3", weights: []int{2, 3}, want: "babab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var eps []EndpointOptions
			for i, w := range tt.weights {
				eps = append(eps, EndpointOptions{Address: string(rune('a'+i)) + ":80", Weight: w})
			}
			c := mustNew(t, Options{Endpoints: eps})
			var got strings.Builder
			for range 3 * len(tt.want) {
				ep, _ := pick(t, c)
				got.WriteString(ep.Address()[:1])
				ep.Done(Outcome{})
			}
			if want := strings.Repeat(tt.want, 3); got.String() != want {
				t.Errorf("got sequence %s, want %s", got.String(), want)
			}
		})
	}
}

func TestLeastRequestFavoursLessLoaded(t *testing.T) {
	c := mustNew(t, Options{Policy: LeastRequest, Endpoints: endpoints(1, "a", "b", "c"), TestOnlyRand: seeded(1)})
	busy := byAddress(c, "a-0:80")
	for range 5 {
		busy.active.Add(1)
	}
	counts := map[string]int{}
	for range 3000 {
		ep, _ := pick(t, c)
		counts[ep.Address()]++
		ep.Done(Outcome{})
	}
	if counts["a-0:80"] != 0 {
		t.Errorf("got %d picks of the loaded endpoint, want 0 (counts %v)", counts["a-0:80"], counts)
	}
	if counts["b-0:80"] < 1300 || counts["c-0:80"] < 1300 {
		t.Errorf("got counts %v, want b and c about even", counts)
	}
}

func TestLeastRequestWeights(t *testing.T) {
	c := mustNew(t, Options{Policy: LeastRequest, TestOnlyRand: seeded(2), Endpoints: []EndpointOptions{
		{Address: "a:1", Weight: 1}, {Address: "b:1", Weight: 3},
	}})
	counts := map[string]int{}
	const n = 20000
	for range n {
		ep, _ := pick(t, c)
		counts[ep.Address()]++
		ep.Done(Outcome{})
	}
	if got := float64(counts["b:1"]) / n; got < 0.72 || got > 0.78 {
		t.Errorf("got share %.3f for weight 3 of 4, want about 0.75", got)
	}
	// Under load the comparison is per unit of weight: b with 3 active is
	// as loaded as a with 1, so the first draw wins; with 4 active b loses.
	byAddress(c, "b:1").active.Add(4)
	for range 100 {
		ep, _ := pick(t, c)
		if ep.Address() != "a:1" {
			t.Fatalf("got %s, want a:1 (b has 4 active at weight 3, a has 0)", ep.Address())
		}
		ep.Done(Outcome{})
	}
}

func TestPassiveEjection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := mustNew(t, Options{Policy: LeastRequest, Endpoints: endpoints(1, "a", "b"), TestOnlyRand: seeded(3)})
		a := byAddress(c, "a-0:80")
		failA := func(n int) {
			for range n {
				a.active.Add(1)
				c.active.Add(1)
				a.Done(Outcome{Result: ConnectFailure})
			}
		}
		onlyB := func(when string) {
			t.Helper()
			for range 50 {
				ep, _ := pick(t, c)
				ep.Done(Outcome{})
				if ep == a {
					t.Fatalf("%s: got a pick of the ejected endpoint, want only b", when)
				}
			}
		}
		seesA := func(when string) {
			t.Helper()
			for range 200 {
				ep, _ := pick(t, c)
				ep.Done(Outcome{Result: Canceled})
				if ep == a {
					return
				}
			}
			t.Fatalf("%s: got no pick of a, want it readmitted", when)
		}

		failA(2)
		seesA("after 2 failures")
		failA(1)
		onlyB("after 3 failures")
		time.Sleep(9 * time.Second)
		onlyB("at 9s")
		time.Sleep(time.Second)
		seesA("at 10s")

		failA(3) // second consecutive ejection: 20s
		time.Sleep(19 * time.Second)
		onlyB("at 19s of the second ejection")
		time.Sleep(time.Second)
		seesA("at 20s of the second ejection")

		// A success resets the backoff.
		a.active.Add(1)
		c.active.Add(1)
		a.Done(Outcome{Result: Success})
		failA(3)
		time.Sleep(10 * time.Second)
		seesA("10s after an ejection that followed a success")
		if got, want := testutil.ToFloat64(c.m.ejections.WithLabelValues("test", reasonConnect)), 3.0; got != want {
			t.Errorf("got %v connect ejections, want %v", got, want)
		}
	})
}

func TestBackoffCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := mustNew(t, Options{Endpoints: endpoints(1, "a", "b"), Outlier: OutlierOptions{
			ConsecutiveConnectFailures: 1, BaseEjectionTime: time.Second, MaxEjectionTime: 5 * time.Second,
		}})
		a := byAddress(c, "a-0:80")
		var got []time.Duration
		for range 5 {
			start := time.Now()
			a.active.Add(1)
			c.active.Add(1)
			a.Done(Outcome{Result: ConnectFailure})
			for !a.Healthy() {
				time.Sleep(100 * time.Millisecond)
				c.tick()
			}
			got = append(got, time.Since(start).Round(time.Second))
		}
		want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ejection times mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestOutlierDetection(t *testing.T) {
	tests := []struct {
		name        string
		endpoints   int
		percent     int
		result      Result
		perEndpoint int
		wantEjected int
	}{
		{name: "5xx ejects half of four", endpoints: 4, result: ServerError, perEndpoint: 5, wantEjected: 2},
		{name: "4 5xx are not enough", endpoints: 4, result: ServerError, perEndpoint: 4, wantEjected: 0},
		{name: "gateway errors after 3", endpoints: 4, result: GatewayError, perEndpoint: 3, wantEjected: 2},
		{name: "100 percent keeps one", endpoints: 3, percent: 100, result: ServerError, perEndpoint: 5, wantEjected: 2},
		{name: "single endpoint stays", endpoints: 1, percent: 100, result: GatewayError, perEndpoint: 10, wantEjected: 0},
		{name: "connect failures are not capped", endpoints: 3, result: ConnectFailure, perEndpoint: 3, wantEjected: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustNew(t, Options{Endpoints: endpoints(tt.endpoints, "r"), Outlier: OutlierOptions{MaxEjectionPercent: tt.percent}})
			for _, e := range c.endpoints {
				for range tt.perEndpoint {
					e.active.Add(1)
					c.active.Add(1)
					e.Done(Outcome{Result: tt.result})
				}
			}
			if got := c.Stats().Ejected; got != tt.wantEjected {
				t.Errorf("got %d ejected, want %d", got, tt.wantEjected)
			}
			_, _, err := c.Pick()
			if wantErr := tt.wantEjected == tt.endpoints; wantErr != errors.Is(err, ErrNoHealthyEndpoint) {
				t.Errorf("got Pick error %v, want ErrNoHealthyEndpoint %v", err, wantErr)
			}
		})
	}
}

func TestSuccessResetsConsecutive(t *testing.T) {
	c := mustNew(t, Options{Endpoints: endpoints(2, "r")})
	e := c.endpoints[0]
	for range 10 {
		for _, r := range []Result{ServerError, ServerError, ServerError, ServerError, Success} {
			e.active.Add(1)
			c.active.Add(1)
			e.Done(Outcome{Result: r})
		}
	}
	if got := c.Stats().Ejected; got != 0 {
		t.Errorf("got %d ejected, want 0: successes interrupt the 5xx run", got)
	}
}

func TestCircuitBreaker(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := mustNew(t, Options{Endpoints: endpoints(1, "r"), Metrics: m,
		Breaker: BreakerOptions{MaxRequests: 2, MaxConnections: 1, MaxPending: -1}})
	e1, _ := pick(t, c)
	e2, _ := pick(t, c)
	if _, _, err := c.Pick(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("got %v for the third request, want ErrCircuitOpen", err)
	}
	e1.Done(Outcome{})
	e3, _ := pick(t, c)
	e2.Done(Outcome{})
	e3.Done(Outcome{})

	if err := c.AcquireConn(); err != nil {
		t.Fatalf("got %v for the first connection, want nil", err)
	}
	if err := c.AcquireConn(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("got %v for the second connection, want ErrCircuitOpen", err)
	}
	c.ReleaseConn()
	if err := c.AcquireConn(); err != nil {
		t.Fatalf("got %v after release, want nil", err)
	}
	for range 5000 {
		if err := c.AcquirePending(); err != nil {
			t.Fatalf("got %v with unlimited pending, want nil", err)
		}
	}
	got := map[string]float64{
		"requests":    testutil.ToFloat64(m.circuitOpen.WithLabelValues("test", "requests")),
		"connections": testutil.ToFloat64(m.circuitOpen.WithLabelValues("test", "connections")),
		"pending":     testutil.ToFloat64(m.circuitOpen.WithLabelValues("test", "pending")),
	}
	if diff := cmp.Diff(map[string]float64{"requests": 1, "connections": 1, "pending": 0}, got); diff != "" {
		t.Errorf("circuit_open_total mismatch (-want +got):\n%s", diff)
	}
	if got, want := c.Stats().ActiveRequests, int64(0); got != want {
		t.Errorf("got %d active requests, want %d", got, want)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Error("got nil error registering twice, want one")
	}
	c := mustNew(t, Options{Endpoints: endpoints(2, "eu", "us"), Metrics: m})
	for range 8 {
		ep, _ := pick(t, c)
		ep.Done(Outcome{})
	}
	got := map[string]float64{
		"requests eu": testutil.ToFloat64(m.requests.WithLabelValues("test", "eu")),
		"requests us": testutil.ToFloat64(m.requests.WithLabelValues("test", "us")),
		"healthy eu":  testutil.ToFloat64(m.healthy.WithLabelValues("test", "eu")),
		"share us":    testutil.ToFloat64(m.share.WithLabelValues("test", "us")),
	}
	want := map[string]float64{"requests eu": 4, "requests us": 4, "healthy eu": 2, "share us": 0.5}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics mismatch (-want +got):\n%s", diff)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n == 0 {
		t.Errorf("got %d series, error %v; want some series and no error", n, err)
	}
}

func TestResultForStatus(t *testing.T) {
	tests := []struct {
		code int
		want Result
	}{
		{200, Success}, {404, Success}, {499, Success}, {500, ServerError}, {501, ServerError},
		{502, GatewayError}, {503, GatewayError}, {504, GatewayError}, {505, ServerError},
	}
	for _, tt := range tests {
		if got := ResultForStatus(tt.code); got != tt.want {
			t.Errorf("ResultForStatus(%d): got %v, want %v", tt.code, got, tt.want)
		}
	}
}

func TestPendingLimit(t *testing.T) {
	c := mustNew(t, Options{Endpoints: endpoints(1, "r"), Breaker: BreakerOptions{MaxPending: 1}})
	if err := c.AcquirePending(); err != nil {
		t.Fatalf("got %v for the first wait, want nil", err)
	}
	if err := c.AcquirePending(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("got %v for the second wait, want ErrCircuitOpen", err)
	}
	c.ReleasePending()
	if err := c.AcquirePending(); err != nil {
		t.Fatalf("got %v after release, want nil", err)
	}
	if got := c.Stats().PendingRequests; got != 1 {
		t.Errorf("got %d pending, want 1", got)
	}
}

func TestScheduleScalesLargeWeights(t *testing.T) {
	c := mustNew(t, Options{Endpoints: []EndpointOptions{
		{Address: "a:1", Weight: 10000}, {Address: "b:1", Weight: 9999}, {Address: "c:1", Weight: 1},
	}})
	st := c.state.Load()
	if len(st.rr) > maxSchedule {
		t.Fatalf("got a schedule of %d, want at most %d", len(st.rr), maxSchedule)
	}
	counts := map[string]int{}
	for _, e := range st.rr {
		counts[e.Address()]++
	}
	if counts["c:1"] != 1 || counts["a:1"] < counts["b:1"] || float64(counts["a:1"])/float64(len(st.rr)) < 0.49 {
		t.Errorf("got schedule counts %v, want about 50/50/0 with c kept at 1", counts)
	}
}
