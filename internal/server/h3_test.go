package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go/http3"

	"github.com/aegis-flow/aegis/internal/pqtls"
)

func h3TLS(t *testing.T) *tls.Config {
	t.Helper()
	s, err := pqtls.NewServer(pqtls.ServerOptions{Name: "h3"})
	if err != nil {
		t.Fatal(err)
	}
	return s.TLSConfig()
}

// startH3 serves o on 127.0.0.1:0 until the end of the test.
func startH3(t *testing.T, o H3Options) *H3Server {
	t.Helper()
	o.Address = "127.0.0.1:0"
	if o.TLS == nil {
		o.TLS = h3TLS(t)
	}
	s, err := NewH3(o)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		// A test that ends before this goroutine runs closes the server
		// first; Serve then reports ErrServerClosed, as net/http does.
		if err := s.Serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	t.Cleanup(func() {
		s.Close()
		wg.Wait()
	})
	return s
}

func h3Get(t *testing.T, s *H3Server) (int, string) {
	t.Helper()
	code, body, err := h3GetErr(s)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	return code, body
}

func h3GetErr(s *H3Server) (int, string, error) {
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+s.Addr().String()+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func h3Text(s string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, s) })
}

// TestH3Retry: with the threshold reached (here: always) a new client first
// gets a Retry, and the handshake still completes.
func TestH3Retry(t *testing.T) {
	tests := []struct {
		name      string
		threshold int
		wantRetry bool
	}{
		{name: "always", threshold: -1, wantRetry: true},
		{name: "not under load", threshold: 1000, wantRetry: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewH3Metrics(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			s := startH3(t, H3Options{Name: "edge", Handler: h3Text("ok"), RetryThreshold: tt.threshold, Metrics: m})
			if code, body := h3Get(t, s); code != http.StatusOK || body != "ok" {
				t.Fatalf("got %d %q, want 200 ok", code, body)
			}
			got := testutil.ToFloat64(m.retries.WithLabelValues("edge")) > 0
			if got != tt.wantRetry {
				t.Errorf("got retry %v, want %v", got, tt.wantRetry)
			}
		})
	}
}

// TestH3TooEarly: requests that arrive before the handshake is complete
// (0-RTT early data) are served only for idempotent methods.
func TestH3TooEarly(t *testing.T) {
	m, err := NewH3Metrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := startH3(t, H3Options{Name: "edge", Handler: h3Text("ok"), Allow0RTT: true, Metrics: m})
	tests := []struct {
		method   string
		complete bool
		want     int
	}{
		{http.MethodGet, false, http.StatusOK},
		{http.MethodHead, false, http.StatusOK},
		{http.MethodPut, false, http.StatusOK},
		{http.MethodPost, false, http.StatusTooEarly},
		{http.MethodPatch, false, http.StatusTooEarly},
		{http.MethodPost, true, http.StatusOK},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, "https://example/", nil)
		r.TLS = &tls.ConnectionState{HandshakeComplete: tt.complete}
		w := httptest.NewRecorder()
		s.cur.srv.Handler.ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("%s (handshake complete %v): got %d, want %d", tt.method, tt.complete, w.Code, tt.want)
		}
	}
	if got := testutil.ToFloat64(m.tooEarly.WithLabelValues("edge")); got != 2 {
		t.Errorf("got %v too-early refusals counted, want 2", got)
	}
}

// TestH3Update swaps the handler in place and starts a new generation for
// new HTTP/3 limits, without closing the socket.
func TestH3Update(t *testing.T) {
	o := H3Options{Name: "edge", Handler: h3Text("one"), TLS: h3TLS(t)}
	s := startH3(t, o)
	addr := s.Addr().String()
	if _, body := h3Get(t, s); body != "one" {
		t.Fatalf("got %q, want one", body)
	}
	o.Address, o.Handler = addr, h3Text("two")
	if err := s.Update(o, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, body := h3Get(t, s); body != "two" {
		t.Errorf("got %q after a handler update, want two", body)
	}
	o.Handler, o.MaxHeaderBytes = h3Text("three"), 8<<10
	if err := s.Update(o, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, body := h3Get(t, s); body != "three" {
		t.Errorf("got %q after a new generation, want three", body)
	}
	if got := s.Addr().String(); got != addr {
		t.Errorf("got address %s after updates, want %s", got, addr)
	}
}

func TestAltSvc(t *testing.T) {
	tests := []struct {
		name   string
		port   int
		maxAge time.Duration
		want   string
	}{
		{name: "day", port: 8443, maxAge: 24 * time.Hour, want: `h3=":8443"; ma=86400`},
		{name: "off", port: 8443, maxAge: 0, want: ""},
		{name: "no port", port: 0, maxAge: time.Hour, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			AltSvc(h3Text("x"), tt.port, tt.maxAge).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
			if got := w.Header().Get("Alt-Svc"); got != tt.want {
				t.Errorf("got Alt-Svc %q, want %q", got, tt.want)
			}
		})
	}
}

// TestH3ShutdownDrains: Shutdown lets an in-flight request finish, then
// closes the socket.
func TestH3ShutdownDrains(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	s := startH3(t, H3Options{Name: "edge", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "done")
	})})
	got := make(chan string, 1)
	go func() {
		_, body, err := h3GetErr(s)
		if err != nil {
			body = err.Error()
		}
		got <- body
	}()
	<-arrived
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond)
	close(release)
	if body := <-got; body != "done" {
		t.Errorf("got %q, want done", body)
	}
	if err := <-shut; err != nil && !strings.Contains(err.Error(), "closed") {
		t.Errorf("Shutdown: %v", err)
	}
}
