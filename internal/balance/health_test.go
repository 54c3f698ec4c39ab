package balance

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// statusServer answers every request with the status it holds. It is started
// outside the synctest bubble so that its accept loop does not keep the
// bubble's clock from advancing.
type statusServer struct {
	*httptest.Server
	status atomic.Int32
	hits   atomic.Int32
}

func newStatusServer(t *testing.T) *statusServer {
	s := &statusServer{}
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if r.URL.Path != "/healthz" || r.Host != "svc.internal" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(int(s.status.Load()))
	}))
	t.Cleanup(s.Close)
	return s
}

func TestActiveHealthChecks(t *testing.T) {
	up := newStatusServer(t)
	flaky := newStatusServer(t)
	addr := func(s *statusServer) string { return strings.TrimPrefix(s.URL, "http://") }

	synctest.Test(t, func(t *testing.T) {
		c := mustNew(t, Options{
			Endpoints: []EndpointOptions{{Address: addr(up), Region: "a"}, {Address: addr(flaky), Region: "b"}},
			Health: HealthOptions{
				Path: "/healthz", Host: "svc.internal", Interval: time.Second,
				HealthyThreshold: 2, UnhealthyThreshold: 3,
				ExpectedStatuses: []StatusRange{{200, 299}, {418, 418}},
				// No keep-alive: an idle connection's reader would keep the
				// bubble from ever being idle.
				Transport: &http.Transport{DisableKeepAlives: true},
			},
		})
		f := byAddress(c, addr(flaky))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- c.Run(ctx) }()

		// settle lets the round that is due at the current instant finish.
		settle := func() {
			time.Sleep(500 * time.Millisecond)
		}
		var got []bool
		record := func() { got = append(got, f.Healthy()) }

		settle()
		record() // round 1 passed
		flaky.status.Store(http.StatusInternalServerError)
		for range 3 { // rounds 2, 3, 4 fail: down after the third
			time.Sleep(time.Second)
			record()
		}
		flaky.status.Store(http.StatusTeapot) // expected by configuration
		for range 2 {                         // rounds 5, 6 pass: up after the second
			time.Sleep(time.Second)
			record()
		}
		want := []bool{true, true, true, false, false, true}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("healthy over rounds mismatch (-want +got):\n%s", diff)
		}
		if !byAddress(c, addr(up)).Healthy() {
			t.Error("got the steady endpoint down, want up")
		}
		if err := c.Run(ctx); err != ErrRunning {
			t.Errorf("got %v from a second Run, want ErrRunning", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("got %v from Run, want nil", err)
		}
		if got, want := testutil.ToFloat64(c.checksFailed), 3.0; got != want {
			t.Errorf("got %v failed checks, want %v", got, want)
		}
		if got, want := testutil.ToFloat64(c.checksPassed), 9.0; got != want {
			t.Errorf("got %v passed checks, want %v", got, want)
		}
	})
}

func TestActiveCheckMarksDownPicks(t *testing.T) {
	srv := newStatusServer(t)
	srv.status.Store(http.StatusServiceUnavailable)
	synctest.Test(t, func(t *testing.T) {
		c := mustNew(t, Options{
			Endpoints: []EndpointOptions{{Address: strings.TrimPrefix(srv.URL, "http://"), Region: "a"}},
			Health: HealthOptions{Path: "/healthz", Host: "svc.internal", Interval: time.Second,
				UnhealthyThreshold: 1, Timeout: 100 * time.Millisecond,
				Transport: &http.Transport{DisableKeepAlives: true}},
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- c.Run(ctx) }()
		time.Sleep(500 * time.Millisecond)
		if _, _, err := c.Pick(); err != ErrNoHealthyEndpoint {
			t.Errorf("got %v, want ErrNoHealthyEndpoint", err)
		}
		cancel()
		<-done
	})
}

func TestCheckDefaultTransport(t *testing.T) {
	srv := newStatusServer(t)
	c := mustNew(t, Options{
		Endpoints: []EndpointOptions{{Address: strings.TrimPrefix(srv.URL, "http://")}},
		Health:    HealthOptions{Path: "/healthz", Host: "svc.internal"},
	})
	defer c.ownedTransport.CloseIdleConnections()
	e := c.endpoints[0]
	tests := []struct {
		status int32
		want   bool
	}{
		{http.StatusOK, true}, {http.StatusFound, true}, {http.StatusNotFound, false}, {http.StatusBadGateway, false},
	}
	for _, tt := range tests {
		srv.status.Store(tt.status)
		if got := c.check(t.Context(), e); got != tt.want {
			t.Errorf("status %d: got pass %v, want %v", tt.status, got, tt.want)
		}
	}
}
