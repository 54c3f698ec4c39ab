package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/websocket"

	"github.com/aegis-flow/aegis/internal/balance"
)

// fixture is a proxy in front of real upstream servers on 127.0.0.1.
type fixture struct {
	t       *testing.T
	front   *httptest.Server
	proxy   *Proxy
	metrics *Metrics
	reg     *prometheus.Registry
	logs    *bytes.Buffer
	access  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixtureOptions struct {
	routes    []Route
	upstreams map[string][]string // cluster -> addresses
	protocol  string              // upstream protocol
	listener  Listener
	h2c       bool // front end serves h2c as well as h1
	frontTLS  bool
	eject     int
}

func newFixture(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	bm, err := balance.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	clusters := map[string]*Cluster{}
	for name, addrs := range o.upstreams {
		var eps []balance.EndpointOptions
		for i, a := range addrs {
			eps = append(eps, balance.EndpointOptions{Address: a, Region: fmt.Sprintf("region-%d", i)})
		}
		bc, err := balance.New(balance.Options{Name: name, Endpoints: eps, Metrics: bm,
			Outlier: balance.OutlierOptions{ConsecutiveConnectFailures: o.eject}})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := NewTransport(TransportOptions{Protocol: o.protocol, ConnectTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tr.CloseIdleConnections)
		clusters[name] = &Cluster{Balancer: bc, Transport: tr}
	}
	logs := &bytes.Buffer{}
	access := &syncBuffer{}
	p, err := New(Options{
		Routes: o.routes, Clusters: clusters, Metrics: m,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		AccessLog: slog.New(slog.NewJSONHandler(access, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(p.Handler(o.listener))
	if o.h2c {
		var protos http.Protocols
		protos.SetHTTP1(true)
		protos.SetUnencryptedHTTP2(true)
		front.Config.Protocols = &protos
	}
	if o.frontTLS {
		front.EnableHTTP2 = true
		front.StartTLS()
	} else {
		front.Start()
	}
	t.Cleanup(front.Close)
	return &fixture{t: t, front: front, proxy: p, metrics: m, reg: reg, logs: logs, access: access}
}

func upstream(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func addr(s *httptest.Server) string { return s.Listener.Addr().String() }

func testRoute(name, cluster string) Route {
	return Route{Name: name, Cluster: cluster, PathPrefix: "/", Timeout: 5 * time.Second}
}

func get(t *testing.T, c *http.Client, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestRouting(t *testing.T) {
	named := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	}
	api, web, admin := upstream(t, named("api")), upstream(t, named("web")), upstream(t, named("admin"))
	f := newFixture(t, fixtureOptions{
		upstreams: map[string][]string{"api": {addr(api)}, "web": {addr(web)}, "admin": {addr(admin)}},
		routes: []Route{
			{Name: "admin", Cluster: "admin", PathPrefix: "/", Headers: map[string]string{"x-tenant": "ops"}},
			{Name: "api-post", Cluster: "api", Host: "*.example.com", PathPrefix: "/api/", Methods: []string{"POST"}},
			{Name: "api", Cluster: "api", Host: "api.example.com", PathPrefix: "/api/"},
			{Name: "web", Cluster: "web", Host: "www.example.com"},
		},
	})
	tests := []struct {
		name, host, path, tenant string
		wantStatus               int
		want                     string
	}{
		{name: "exact host and prefix", host: "api.example.com", path: "/api/v1", wantStatus: 200, want: "api"},
		{name: "host with port", host: "api.example.com:8443", path: "/api/v1", wantStatus: 200, want: "api"},
		{name: "host is case-insensitive", host: "API.Example.COM", path: "/api/", wantStatus: 200, want: "api"},
		{name: "prefix must match", host: "api.example.com", path: "/other", wantStatus: 404},
		{name: "other host", host: "www.example.com", path: "/anything", wantStatus: 200, want: "web"},
		{name: "header match wins first", host: "www.example.com", path: "/", tenant: "ops", wantStatus: 200, want: "admin"},
		{name: "no route", host: "nope.test", path: "/", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"Host": tt.host}
			if tt.tenant != "" {
				h["X-Tenant"] = tt.tenant
			}
			resp, body := get(t, f.front.Client(), f.front.URL+tt.path, h)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d, want %d (body %q)", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.want != "" && body != tt.want {
				t.Errorf("served by: got %q, want %q", body, tt.want)
			}
		})
	}
}

func TestRoutingMethodAndSuffix(t *testing.T) {
	api := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Method) }))
	f := newFixture(t, fixtureOptions{
		upstreams: map[string][]string{"api": {addr(api)}},
		routes:    []Route{{Name: "post", Cluster: "api", Host: "*.example.com", Methods: []string{"POST"}}},
	})
	resp, err := f.front.Client().Post(f.front.URL+"/x", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("POST to bare IP host: got %d, want 404 (suffix pattern needs a subdomain)", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", f.front.URL+"/x", strings.NewReader("x"))
	req.Host = "a.example.com"
	resp, err = f.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "POST" {
		t.Errorf("POST a.example.com: got %d %q, want 200 POST", resp.StatusCode, b)
	}
	resp, _ = get(t, f.front.Client(), f.front.URL+"/x", map[string]string{"Host": "a.example.com"})
	if resp.StatusCode != 404 {
		t.Errorf("GET on a POST-only route: got %d, want 404", resp.StatusCode)
	}
}

func TestHeaderEditsAndForwarded(t *testing.T) {
	var got http.Header
	var gotHost string
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		gotHost = r.Host
		w.Header().Set("Server", "upstream/1.0")
		w.Header().Set("X-Internal", "secret")
	}))
	r := testRoute("r", "c")
	r.RequestHeaders = HeaderOps{Set: map[string]string{"x-env": "prod"}, Add: map[string]string{"x-tag": "b"}, Remove: []string{"x-drop"}}
	r.ResponseHeaders = HeaderOps{Remove: []string{"x-internal"}, Set: map[string]string{"server": "aegis"}}
	f := newFixture(t, fixtureOptions{upstreams: map[string][]string{"c": {addr(up)}}, routes: []Route{r}})

	resp, _ := get(t, f.front.Client(), f.front.URL+"/p", map[string]string{
		"Host": "svc.test", "X-Env": "dev", "X-Tag": "a", "X-Drop": "1",
		"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.test",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"host preserved", gotHost, "svc.test"},
		{"set replaces", got.Values("X-Env"), []string{"prod"}},
		{"add appends", got.Values("X-Tag"), []string{"a", "b"}},
		{"remove", got.Values("X-Drop"), []string(nil)},
		{"untrusted XFF replaced", got.Get("X-Forwarded-For"), "127.0.0.1"},
		{"untrusted proto replaced", got.Get("X-Forwarded-Proto"), "http"},
		{"untrusted host replaced", got.Get("X-Forwarded-Host"), "svc.test"},
		{"response header set", resp.Header.Get("Server"), "aegis"},
		{"response header removed", resp.Header.Get("X-Internal"), ""},
	}
	for _, c := range checks {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestForwardedFromTrustedProxy(t *testing.T) {
	var got http.Header
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	f := newFixture(t, fixtureOptions{
		upstreams: map[string][]string{"c": {addr(up)}}, routes: []Route{testRoute("r", "c")},
		listener: Listener{Name: "l", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
	})
	get(t, f.front.Client(), f.front.URL+"/", map[string]string{
		"Host": "svc.test", "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.test",
	})
	if g, w := got.Get("X-Forwarded-For"), "203.0.113.7, 127.0.0.1"; g != w {
		t.Errorf("X-Forwarded-For: got %q, want %q", g, w)
	}
	if g, w := got.Get("X-Forwarded-Proto"), "https"; g != w {
		t.Errorf("X-Forwarded-Proto: got %q, want %q", g, w)
	}
	if g, w := got.Get("X-Forwarded-Host"), "public.test"; g != w {
		t.Errorf("X-Forwarded-Host: got %q, want %q", g, w)
	}
}

// rawRequest writes a request by hand and returns the upstream's view.
func TestHopByHopAndH2CUpgradeStripped(t *testing.T) {
	seen := make(chan http.Header, 2)
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- r.Header.Clone() }))
	f := newFixture(t, fixtureOptions{upstreams: map[string][]string{"c": {addr(up)}}, routes: []Route{testRoute("r", "c")}})
	conn, err := net.Dial("tcp", f.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings, X-Hop\r\n"+
		"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"+
		"Proxy-Connection: keep-alive\r\nTe: trailers\r\nX-End: 1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status: got %d, want 200", resp.StatusCode)
	}
	h := <-seen
	for _, k := range []string{"Upgrade", "Http2-Settings", "X-Hop", "Keep-Alive", "Proxy-Connection", "Connection"} {
		if v := h.Values(k); len(v) > 0 {
			t.Errorf("upstream saw hop-by-hop %s: %q", k, v)
		}
	}
	if h.Get("X-End") != "1" {
		t.Errorf("end-to-end header lost: %v", h)
	}
	if h.Get("Te") != "trailers" {
		t.Errorf("Te: trailers should pass (gRPC needs it): got %q", h.Get("Te"))
	}
}

func TestWebSocket(t *testing.T) {
	up := upstream(t, websocket.Handler(func(ws *websocket.Conn) {
		io.Copy(ws, ws) // echo
	}))
	f := newFixture(t, fixtureOptions{upstreams: map[string][]string{"c": {addr(up)}}, routes: []Route{testRoute("r", "c")}})
	wsURL := "ws://" + f.front.Listener.Addr().String() + "/echo"
	ws, err := websocket.Dial(wsURL, "", "http://localhost/")
	if err != nil {
		t.Fatalf("websocket through proxy: %v", err)
	}
	defer ws.Close()
	for _, msg := range []string{"hello", "post-quantum", strings.Repeat("x", 70000)} {
		if _, err := ws.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(ws, got); err != nil {
			t.Fatal(err)
		}
		if string(got) != msg {
			t.Errorf("echo of %d bytes came back different", len(msg))
		}
	}
}

func TestStreamingIsNotBuffered(t *testing.T) {
	release := make(chan struct{})
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: second\n\n")
	}))
	f := newFixture(t, fixtureOptions{upstreams: map[string][]string{"c": {addr(up)}}, routes: []Route{testRoute("r", "c")}})
	resp, err := f.front.Client().Get(f.front.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	// The first event arrived while the upstream is still blocked: nothing
	// buffered it.
	if line != "data: first\n" {
		t.Errorf("first event: got %q", line)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: second") {
		t.Errorf("second event: got %q", rest)
	}
}

func TestLargeBodiesBothWays(t *testing.T) {
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("X-Request-Sha", hex.EncodeToString(h.Sum(nil)))
		w.Header().Set("X-Request-Bytes", fmt.Sprint(n))
		// Answer with 8 MiB of deterministic bytes.
		io.CopyN(w, &pattern{}, 8<<20)
	}))
	for _, proto := range []string{ProtoH1, ProtoH2C} {
		t.Run(proto, func(t *testing.T) {
			upH := up
			if proto == ProtoH2C {
				upH = httptest.NewUnstartedServer(up.Config.Handler)
				var p http.Protocols
				p.SetUnencryptedHTTP2(true)
				upH.Config.Protocols = &p
				upH.Start()
				t.Cleanup(upH.Close)
			}
			f := newFixture(t, fixtureOptions{upstreams: map[string][]string{"c": {addr(upH)}}, routes: []Route{testRoute("r", "c")}, protocol: proto})
			body := make([]byte, 6<<20)
			rand.Read(body)
			sum := sha256.Sum256(body)
			resp, err := f.front.Client().Post(f.front.URL+"/upload", "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if g := resp.Header.Get("X-Request-Sha"); g != hex.EncodeToString(sum[:]) {
				t.Errorf("upstream got a different body (%s bytes)", resp.Header.Get("X-Request-Bytes"))
			}
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			if err != nil || n != 8<<20 {
				t.Fatalf("response body: %d bytes, err %v", n, err)
			}
			want := sha256.New()
			io.CopyN(want, &pattern{}, 8<<20)
			if !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
				t.Error("response body corrupted")
			}
		})
	}
}

type pattern struct{ i byte }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = p.i
		p.i = p.i*31 + 7
	}
	return len(b), nil
}

// TestTrailersAndGRPCStyle sends a gRPC-shaped exchange over h2 end to end:
// client -> proxy over TLS h2, proxy -> upstream over h2c, with trailers.
func TestTrailersAndGRPCStyle(t *testing.T) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "want h2", 505)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		w.Write(b) // echo the framed message
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set("Grpc-Message", "ok "+r.Trailer.Get("X-Client-Trailer"))
	}))
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	up.Config.Protocols = &p
	up.Start()
	t.Cleanup(up.Close)
	f := newFixture(t, fixtureOptions{upstreams: map[string][]string{"c": {addr(up)}}, routes: []Route{testRoute("r", "c")}, protocol: ProtoH2C, frontTLS: true})

	msg := []byte{0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'}
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", f.front.URL+"/pkg.Svc/Echo", pr)
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Trailer = http.Header{"X-Client-Trailer": nil}
	go func() {
		pw.Write(msg)
		req.Trailer.Set("X-Client-Trailer", "from-client")
		pw.Close()
	}()
	resp, err := f.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("client side: got %s, want HTTP/2", resp.Proto)
	}
	b, _ := io.ReadAll(resp.Body)
	if !bytes.Equal(b, msg) {
		t.Errorf("body: got %x, want %x", b, msg)
	}
	if g := resp.Trailer.Get("Grpc-Status"); g != "0" {
		t.Errorf("Grpc-Status trailer: got %q, want 0", g)
	}
	if g := resp.Trailer.Get("Grpc-Message"); g != "ok from-client" {
		t.Errorf("Grpc-Message trailer: got %q (request trailer must reach upstream)", g)
	}
}

func TestErrorStatuses(t *testing.T) {
	slow := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there now: connections are refused

	slowRoute := testRoute("slow", "slow")
	slowRoute.Timeout = 150 * time.Millisecond
	f := newFixture(t, fixtureOptions{
		upstreams: map[string][]string{"slow": {addr(slow)}, "dead": {deadAddr}},
		routes:    []Route{{Name: "dead", Cluster: "dead", PathPrefix: "/dead"}, slowRoute},
		eject:     2,
	})
	tests := []struct {
		name   string
		path   string
		status int
		body   string
	}{
		{"dial failure is 502", "/dead", 502, "upstream unavailable\n"},
		{"second dial failure ejects", "/dead", 502, "upstream unavailable\n"},
		{"all ejected is 503", "/dead", 503, "no healthy upstream\n"},
		{"route timeout is 504", "/slow", 504, "upstream timed out\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, f.front.Client(), f.front.URL+tt.path, nil)
			if resp.StatusCode != tt.status || body != tt.body {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tt.status, tt.body)
			}
			if strings.Contains(body, "127.0.0.1") {
				t.Errorf("error body leaks an address: %q", body)
			}
		})
	}
	if got := testutil.ToFloat64(f.metrics.requests.WithLabelValues("slow", "5xx")); got != 1 {
		t.Errorf("aegis_requests_total{route=slow,code_class=5xx}: got %v, want 1", got)
	}
	if got := testutil.ToFloat64(f.metrics.upstreamErrors.WithLabelValues("dead", "connect")); got != 2 {
		t.Errorf("connect errors: got %v, want 2", got)
	}
}

func TestClientGoneIs499(t *testing.T) {
	started := make(chan struct{})
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	}))
	f := newFixture(t, fixtureOptions{upstreams: map[string][]string{"c": {addr(up)}}, routes: []Route{testRoute("r", "c")}})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", f.front.URL+"/", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := f.front.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: got %v, want context.Canceled", err)
	}
	// The access log records 499; nothing was sent.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(f.access.String(), `"status":499`) {
		if time.Now().After(deadline) {
			t.Fatalf("no 499 in access log: %s", f.access.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAccessLogFields(t *testing.T) {
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	f := newFixture(t, fixtureOptions{upstreams: map[string][]string{"c": {addr(up)}}, routes: []Route{testRoute("r", "c")}, frontTLS: true, listener: Listener{Name: "edge", TLS: true}})
	c := f.front.Client()
	c.Transport.(*http.Transport).TLSClientConfig.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768}
	get(t, c, f.front.URL+"/hello", nil)
	line := f.access.String()
	for _, want := range []string{`"method":"GET"`, `"path":"/hello"`, `"status":200`, `"bytes":5`, `"route":"r"`,
		`"cluster":"c"`, `"upstream":"` + addr(up) + `"`, `"region":"region-0"`, `"protocol":"HTTP/2.0"`,
		`"tls_group":"X25519MLKEM768"`, `"listener":"edge"`, `"duration_ms":`} {
		if !strings.Contains(line, want) {
			t.Errorf("access log lacks %s: %s", want, line)
		}
	}
}

func TestH2CFrontEnd(t *testing.T) {
	up := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	f := newFixture(t, fixtureOptions{upstreams: map[string][]string{"c": {addr(up)}}, routes: []Route{testRoute("r", "c")}, h2c: true})
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &p}}
	resp, body := get(t, c, f.front.URL+"/", nil)
	if resp.ProtoMajor != 2 || body != "ok" {
		t.Errorf("h2c: got %s %q, want HTTP/2 ok", resp.Proto, body)
	}
}

func TestRoundRobinSpreads(t *testing.T) {
	var hits [3]atomic.Int64
	var addrs []string
	for i := range 3 {
		s := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits[i].Add(1) }))
		addrs = append(addrs, addr(s))
	}
	f := newFixture(t, fixtureOptions{upstreams: map[string][]string{"c": addrs}, routes: []Route{testRoute("r", "c")}})
	for range 30 {
		get(t, f.front.Client(), f.front.URL+"/", nil)
	}
	for i := range hits {
		if g := hits[i].Load(); g != 10 {
			t.Errorf("endpoint %d: got %d requests, want 10", i, g)
		}
	}
}

func TestStatusFor(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	timedOut, cancel2 := context.WithCancelCause(context.Background())
	cancel2(errRouteTimeout)
	bg := context.Background()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want int
	}{
		{"dial", bg, &net.OpError{Op: "dial", Err: errors.New("refused")}, 502},
		{"no healthy", bg, fmt.Errorf("pick: %w", balance.ErrNoHealthyEndpoint), 503},
		{"circuit open", bg, balance.ErrCircuitOpen, 503},
		{"deadline", bg, context.DeadlineExceeded, 504},
		{"route timeout", timedOut, context.Canceled, 504},
		{"client gone", canceled, context.Canceled, 499},
		{"other", bg, io.ErrUnexpectedEOF, 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := StatusFor(tt.ctx, tt.err); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}
