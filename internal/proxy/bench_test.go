package proxy

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aegis-flow/aegis/internal/balance"
)

// fakeTransport answers every request at once with a fixed 1 KiB body, so
// the benchmark measures the proxy's own work.
type fakeTransport struct{ body []byte }

// metersPending: like the h1 transport, the fake needs no httptrace hooks.
func (f *fakeTransport) metersPending() bool { return true }

func (f *fakeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{
		StatusCode:    200,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/octet-stream"}},
		Body:          io.NopCloser(bytes.NewReader(f.body)),
		ContentLength: int64(len(f.body)),
		Request:       r,
	}, nil
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

func benchProxy(b *testing.B, accessLog bool, policy balance.Policy) {
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	eps := []balance.EndpointOptions{{Address: "10.0.0.1:80", Region: "a"}, {Address: "10.0.0.2:80", Region: "b"}, {Address: "10.0.0.3:80", Region: "c"}}
	bc, err := balance.New(balance.Options{Name: "c", Endpoints: eps, Policy: policy})
	if err != nil {
		b.Fatal(err)
	}
	var al *slog.Logger
	if accessLog {
		al = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	r := testRoute("r", "c")
	r.ResponseHeaders = HeaderOps{Set: map[string]string{"x-served-by": "aegis"}}
	p, err := New(Options{
		Routes:    []Route{r},
		Clusters:  map[string]*Cluster{"c": {Balancer: bc, Transport: &fakeTransport{body: bytes.Repeat([]byte("x"), 1024)}}},
		Metrics:   m,
		AccessLog: al,
	})
	if err != nil {
		b.Fatal(err)
	}
	h := p.Handler(Listener{Name: "bench"})
	req, _ := http.NewRequest("GET", "http://svc.test/api/items?id=7", nil)
	req.RemoteAddr = "192.0.2.10:51234"
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "*/*")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// BenchmarkProxy measures the whole request path (route match, pick,
// Rewrite, header edits, response copy, metrics) with a fake RoundTripper.
func BenchmarkProxy(b *testing.B) {
	b.Run("round_robin", func(b *testing.B) { benchProxy(b, false, balance.RoundRobin) })
	b.Run("least_request", func(b *testing.B) { benchProxy(b, false, balance.LeastRequest) })
	b.Run("access_log", func(b *testing.B) { benchProxy(b, true, balance.RoundRobin) })
}

func BenchmarkRouteMatch(b *testing.B) {
	var routes []Route
	for _, p := range []string{"/a/", "/b/", "/c/", "/d/", "/e/", "/f/", "/g/", "/"} {
		routes = append(routes, Route{Name: strings.Trim(p, "/") + "x", Cluster: "c", PathPrefix: p, Host: "*.example.com"})
	}
	var ms []matcher
	for _, r := range routes {
		ms = append(ms, compileMatch(r))
	}
	req, _ := http.NewRequest("GET", "http://api.example.com/zzz", nil)
	b.ReportAllocs()
	for b.Loop() {
		host := hostOnly(req.Host)
		for i := range ms {
			if ms[i].match(req, host) {
				break
			}
		}
	}
}

// BenchmarkUpstreamH1 sends GETs for a 1 KiB body over loopback keep-alive
// connections to an in-process server, through the h1 transport and, for
// comparison, through net/http's Transport with the same pool settings.
// The server's work is in both figures.
func BenchmarkUpstreamH1(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	h1, err := NewH1Transport(TransportOptions{})
	if err != nil {
		b.Fatal(err)
	}
	std, err := newHTTPTransport(TransportOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		rt   Transport
	}{{"h1_transport", h1}, {"net_http", std}} {
		b.Run(tc.name, func(b *testing.B) {
			defer tc.rt.CloseIdleConnections()
			buf := make([]byte, 4096)
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest("GET", srv.URL+"/", nil)
				req.Header.Set("User-Agent", "bench")
				resp, err := tc.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := resp.Body.Read(buf); err != nil {
						break
					}
				}
				resp.Body.Close()
			}
		})
	}
}
