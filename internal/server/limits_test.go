package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// start serves h on a loopback listener with o; it returns the address and
// the metrics.
func startGuarded(t *testing.T, o Options, h http.Handler) (string, *Metrics) {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	o.Name, o.Address, o.Handler, o.Metrics = "test", "127.0.0.1:0", h, m
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.Serve() }()
	t.Cleanup(func() { s.Close(); <-done })
	return s.Addr().String(), m
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reports how long until the server closed c (reading and
// discarding whatever it sends), failing after limit.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v", limit)
	}
	return time.Since(start)
}

func TestSlowClientsAreCut(t *testing.T) {
	body := strings.Repeat("x", 64<<20)
	writeErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			_, err := io.WriteString(w, body)
			writeErr <- err
			return
		}
		io.Copy(io.Discard, r.Body)
	})
	o := Options{ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 600 * time.Millisecond,
		Limits: Limits{WriteIdleTimeout: 400 * time.Millisecond}}
	addr, m := startGuarded(t, o, h)

	t.Run("slow header", func(t *testing.T) {
		c := dial(t, addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
		if d := closedWithin(t, c, 5*time.Second); d < 250*time.Millisecond {
			t.Errorf("got cut after %v, want about 300ms", d)
		}
	})
	t.Run("slow body", func(t *testing.T) {
		c := dial(t, addr)
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
		if d := closedWithin(t, c, 5*time.Second); d < 400*time.Millisecond {
			t.Errorf("got cut after %v, want about 600ms", d)
		}
	})
	t.Run("slow reader", func(t *testing.T) {
		c := dial(t, addr)
		io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
		select {
		case err := <-writeErr:
			if err == nil {
				t.Fatal("got a complete 64 MiB write to a client that reads nothing, want a cut")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("slow reader not cut after 10s")
		}
		if got := testutil.ToFloat64(m.timeouts.WithLabelValues("test", "write")); got < 1 {
			t.Errorf("got write timeouts %v, want >= 1", got)
		}
	})
	t.Run("slow h2 reader", func(t *testing.T) {
		// Windows wide open, so that only the socket holds the server back.
		c, fr := rawH2C(t, addr)
		c.(*net.TCPConn).SetReadBuffer(4 << 10)
		if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}); err != nil {
			t.Fatal(err)
		}
		if err := fr.WriteWindowUpdate(0, 1<<31-1-65535); err != nil {
			t.Fatal(err)
		}
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/big"}, {":authority", "x"}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		before := testutil.ToFloat64(m.timeouts.WithLabelValues("test", "write"))
		select {
		case err := <-writeErr:
			if err == nil {
				t.Fatal("got a complete 64 MiB HTTP/2 write to a client that reads nothing, want a cut")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("slow HTTP/2 reader not cut after 10s")
		}
		deadline := time.Now().Add(10 * time.Second)
		for testutil.ToFloat64(m.timeouts.WithLabelValues("test", "write")) <= before {
			if time.Now().After(deadline) {
				t.Fatal("write timeouts not counted for the HTTP/2 cut")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func TestConnectionLimit(t *testing.T) {
	addr, m := startGuarded(t, Options{Limits: Limits{MaxConnections: 2}}, http.NotFoundHandler())
	a, b := dial(t, addr), dial(t, addr)
	_, _ = a, b
	time.Sleep(100 * time.Millisecond) // let the server accept both
	c := dial(t, addr)
	closedWithin(t, c, 2*time.Second)
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("test", "connections")); got != 1 {
		t.Errorf("got rejected connections %v, want 1", got)
	}
	a.Close()
	time.Sleep(100 * time.Millisecond)
	d := dial(t, addr)
	io.WriteString(d, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(d), nil)
	if err != nil {
		t.Fatalf("connection after a slot freed: %v", err)
	}
	resp.Body.Close()
}

func TestOverloadAnswers503(t *testing.T) {
	release := make(chan struct{})
	var in atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in.Add(1)
		<-release
	})
	addr, m := startGuarded(t, Options{Limits: Limits{MaxConcurrentRequests: 1}}, h)
	go http.Get("http://" + addr + "/")
	for in.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr + "/")
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("got %d, want 503", resp.StatusCode)
	}
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("test", "overload")); got != 1 {
		t.Errorf("got overload rejections %v, want 1", got)
	}
}

func TestHeaderCountLimit(t *testing.T) {
	addr, m := startGuarded(t, Options{}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for _, tc := range []struct {
		name string
		n    int
		want int
	}{
		{"at limit", 98, 200}, // the client adds User-Agent and Accept-Encoding
		{"over limit", 120, 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
			for i := range tc.n {
				req.Header.Set(fmt.Sprintf("X-H%d", i), "v")
			}
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("got %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("test", "header_count")); got != 1 {
		t.Errorf("got header_count rejections %v, want 1", got)
	}
}

// tcpPair is a connected loopback pair: the server side wrapped as admit
// wraps it, and the client side.
func tcpPair(t *testing.T) (*limitConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client := dial(t, ln.Addr().String())
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	lc := &limitConn{Conn: sc, adm: new(admission), m: m.forListener("test"), idle: time.Minute}
	t.Cleanup(func() { lc.Close() })
	return lc, client
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestLimitConnReadDeadline: read deadlines reach the socket when a Read
// starts, or at once during one; either way every Read sees the last one
// set.
func TestLimitConnReadDeadline(t *testing.T) {
	lc, client := tcpPair(t)
	buf := make([]byte, 8)

	// A past deadline fails the next Read.
	lc.SetReadDeadline(time.Unix(1, 0))
	if _, err := lc.Read(buf); !isTimeoutErr(err) {
		t.Fatalf("read after a past deadline: got %v, want a timeout", err)
	}

	// Cleared again before any Read: the Read waits for data.
	lc.SetReadDeadline(time.Unix(1, 0))
	lc.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(50 * time.Millisecond)
		client.Write([]byte("x"))
	}()
	if n, err := lc.Read(buf); n != 1 || err != nil {
		t.Fatalf("read after the deadline was cleared: got %d, %v, want 1 byte", n, err)
	}

	// A deadline moved to the past during a Read ends it (net/http's
	// abortPendingRead).
	errc := make(chan error, 1)
	go func() {
		_, err := lc.Read(buf)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	lc.SetReadDeadline(time.Unix(1, 0))
	select {
	case err := <-errc:
		if !isTimeoutErr(err) {
			t.Fatalf("aborted read: got %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a deadline set during a Read did not end it")
	}

	// A near deadline set before the Read bounds it.
	lc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := lc.Read(buf); !isTimeoutErr(err) {
		t.Fatalf("read with a near deadline: got %v, want a timeout", err)
	}
}

// TestLimitConnWriteDeadlineCleared: clearing the write deadline when none
// was set keeps the write-idle deadline; clearing one that was set removes
// it, leaving write-idle to the next Write.
func TestLimitConnWriteDeadlineCleared(t *testing.T) {
	lc, _ := tcpPair(t)
	if _, err := lc.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	armed := lc.armed
	if armed.IsZero() {
		t.Fatal("write-idle deadline not armed by a Write")
	}
	lc.SetWriteDeadline(time.Time{})
	if !lc.armed.Equal(armed) {
		t.Errorf("clearing no deadline: armed %v, want the write-idle %v kept", lc.armed, armed)
	}
	lc.SetWriteDeadline(time.Unix(1, 0))
	if _, err := lc.Write([]byte("x")); !isTimeoutErr(err) {
		t.Fatalf("write after a past deadline: got %v, want a timeout", err)
	}
	lc.SetWriteDeadline(time.Time{})
	if _, err := lc.Write([]byte("x")); err != nil {
		t.Fatalf("write after the deadline was cleared: %v", err)
	}
}

// TestReadTimeoutsCountOnlyDeadlines checks that the read timeouts counted
// are deadlines that passed, not net/http ending its background read of
// each keep-alive request.
func TestReadTimeoutsCountOnlyDeadlines(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	addr, m := startGuarded(t, Options{ReadHeaderTimeout: 200 * time.Millisecond}, h)
	reads := func() float64 { return testutil.ToFloat64(m.timeouts.WithLabelValues("test", "read")) }

	c := dial(t, addr)
	br := bufio.NewReader(c)
	for i := range 50 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if got := reads(); got != 0 {
		t.Fatalf("got %v read timeouts after 50 keep-alive requests, want 0", got)
	}

	slow := dial(t, addr)
	io.WriteString(slow, "GET / HTTP/1.1\r\nHost: x\r\n")
	closedWithin(t, slow, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for reads() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the header timeout was not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
