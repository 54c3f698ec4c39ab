package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func start(t *testing.T, o Options) *Server {
	t.Helper()
	if o.Address == "" {
		o.Address = "127.0.0.1:0"
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func text(s string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, s+" "+r.Proto) })
}

func fetch(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	s := httptest.NewUnstartedServer(nil)
	s.EnableHTTP2 = true
	s.StartTLS()
	cfg := s.TLS.Clone()
	s.Close()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	return cfg
}

func TestProtocols(t *testing.T) {
	plain := start(t, Options{Name: "plain", Handler: text("hi")})
	url := "http://" + plain.Addr().String() + "/"
	if got := fetch(t, http.DefaultClient, url); got != "hi HTTP/1.1" {
		t.Errorf("h1: got %q", got)
	}
	if got := fetch(t, h2cClient(), url); got != "hi HTTP/2.0" {
		t.Errorf("h2c: got %q", got)
	}

	secure := start(t, Options{Name: "tls", Handler: text("hi"), TLS: testTLS(t)})
	surl := "https://" + secure.Addr().String() + "/"
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	if got := fetch(t, h2, surl); got != "hi HTTP/2.0" {
		t.Errorf("h2 over TLS: got %q", got)
	}
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}}}
	if got := fetch(t, h1, surl); got != "hi HTTP/1.1" {
		t.Errorf("h1 over TLS: got %q", got)
	}
}

func TestBadProtocols(t *testing.T) {
	for _, o := range []Options{
		{Handler: text("x"), Protocols: []string{"h2"}},                      // h2 without TLS
		{Handler: text("x"), Protocols: []string{"h2c"}, TLS: &tls.Config{}}, // h2c with TLS
		{Protocols: []string{"h1"}},                                          // no handler
	} {
		o.Address = "127.0.0.1:0"
		if s, err := New(o); err == nil {
			s.Close()
			t.Errorf("New(%v): got no error", o.Protocols)
		}
	}
}

func TestHTTP2Limits(t *testing.T) {
	s := start(t, Options{Handler: text("x")})
	g := s.cur
	if got := g.srv.HTTP2.MaxConcurrentStreams; got != 100 {
		t.Errorf("MaxConcurrentStreams: got %d, want 100", got)
	}
	if got := g.srv.HTTP2.MaxReadFrameSize; got != 16384 {
		t.Errorf("MaxReadFrameSize: got %d, want 16384", got)
	}
	if g.srv.ReadHeaderTimeout == 0 || g.srv.IdleTimeout == 0 || g.srv.ReadTimeout == 0 {
		t.Errorf("timeouts must be set: %+v", g.srv)
	}
}

// TestUpdateHandlerInPlace swaps the handler; a kept-alive connection
// carries on and sees the new handler.
func TestUpdateHandlerInPlace(t *testing.T) {
	o := Options{Name: "l", Address: "127.0.0.1:0", Handler: text("old")}
	s := start(t, o)
	c := &http.Client{Transport: &http.Transport{}}
	url := "http://" + s.Addr().String() + "/"
	var conns int
	tr := c.Transport.(*http.Transport)
	tr.DialContext = func(ctx context.Context, n, a string) (net.Conn, error) {
		conns++
		return (&net.Dialer{}).DialContext(ctx, n, a)
	}
	if got := fetch(t, c, url); got != "old HTTP/1.1" {
		t.Fatalf("got %q", got)
	}
	o.Handler = text("new")
	o.Address = s.Addr().String()
	if err := s.Update(o, time.Second); err != nil {
		t.Fatal(err)
	}
	if got := fetch(t, c, url); got != "new HTTP/1.1" {
		t.Errorf("after update: got %q", got)
	}
	if conns != 1 {
		t.Errorf("connections: got %d, want 1 (the handler swap must keep connections)", conns)
	}
}

// TestUpdateNewGeneration changes a timeout: a new generation takes over
// the socket while an in-flight request on the old one finishes.
func TestUpdateNewGeneration(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "gen1")
	})
	o := Options{Name: "l", Address: "127.0.0.1:0", Handler: slow}
	s := start(t, o)
	url := "http://" + s.Addr().String()
	res := make(chan string, 1)
	go func() {
		resp, err := http.Get(url + "/slow")
		if err != nil {
			res <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- string(b)
	}()
	<-entered
	o.Address = s.Addr().String()
	o.Handler = text("gen2")
	o.IdleTimeout = 30 * time.Second
	if err := s.Update(o, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := fetch(t, &http.Client{Transport: &http.Transport{}}, url+"/"); got != "gen2 HTTP/1.1" {
		t.Errorf("new connection after update: got %q", got)
	}
	close(release)
	if got := <-res; got != "gen1" {
		t.Errorf("in-flight request across update: got %q, want gen1", got)
	}
}

func TestShutdownDrains(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	s, err := New(Options{Address: "127.0.0.1:0", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "finished")
	})})
	if err != nil {
		t.Fatal(err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.Serve() }()
	res := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + s.Addr().String() + "/")
		if err != nil {
			res <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- string(b)
	}()
	<-entered
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	// New connections are refused while draining.
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr().String(), 100*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting during shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if got := <-res; got != "finished" {
		t.Errorf("in-flight request: got %q, want finished", got)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-serveErr; err != nil {
		t.Errorf("Serve after Shutdown: got %v, want nil", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	s, err := New(Options{Address: "127.0.0.1:0", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	go http.Get("http://" + s.Addr().String() + "/")
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown past deadline: got %v, want DeadlineExceeded", err)
	}
}

func TestServeTwice(t *testing.T) {
	s := start(t, Options{Handler: text("x")})
	time.Sleep(20 * time.Millisecond)
	if err := s.Serve(); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("second Serve: got %v, want ErrServerClosed", err)
	}
	if !strings.HasPrefix(s.Addr().String(), "127.0.0.1:") {
		t.Errorf("Addr: got %v", s.Addr())
	}
}
