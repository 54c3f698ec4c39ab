package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// answered reports whether r's connection answered net/http's background
// read itself (bgread.go), waiting up to a second for net/http to issue it.
func answered(r *http.Request) bool {
	hc, ok := r.Context().Value(connKey{}).(*h1Conn)
	if !ok {
		return false
	}
	for range 100 {
		hc.mu.Lock()
		a := hc.bg.answered
		hc.mu.Unlock()
		if a {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// TestClientGoneIsSeen checks that a client that closes its connection
// while a long request runs cancels the request's context, over plain TCP
// and over TLS, and that the background read was answered lazily.
func TestClientGoneIsSeen(t *testing.T) {
	for _, secure := range []bool{false, true} {
		name := "tcp"
		if secure {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			gone := make(chan error, 1)
			lazy := make(chan bool, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				lazy <- answered(r)
				select {
				case <-r.Context().Done():
					gone <- context.Cause(r.Context())
				case <-time.After(10 * time.Second):
					gone <- nil
				}
			})
			o := Options{}
			if secure {
				o.TLS = testTLS(t)
			}
			addr, _ := startGuarded(t, o, h)
			var c net.Conn = dial(t, addr)
			if secure {
				tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				c = tc
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if !<-lazy {
				t.Error("the background read was not answered by the connection")
			}
			c.Close()
			select {
			case err := <-gone:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("handler ended with cause %v, want a cancellation", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the client leaving was not seen")
			}
		})
	}
}

// TestWatchKeepsPipelinedBytes checks that a request sent while a long
// one runs (so that the watch reads its first byte) is served whole, and
// that a watch cut short leaves the connection usable.
func TestWatchKeepsPipelinedBytes(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(4 * bgWatchDelay)
		}
		io.WriteString(w, r.URL.Path)
	})
	addr, _ := startGuarded(t, Options{}, h)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	read := func(want string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Fatalf("got %q, want %q", b, want)
		}
	}
	// A watch cut short by the end of the request.
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	read("/slow")
	// A watch that reads the first byte of the next request.
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(2 * bgWatchDelay)
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	read("/slow")
	read("/next")
	// And plain keep-alive after both.
	for range 3 {
		io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
		read("/fast")
	}
}

// TestWatchSeesSmuggling checks that bytes the watch reads still pass the
// smuggling scanner.
func TestWatchSeesSmuggling(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(4 * bgWatchDelay)
		io.WriteString(w, "ok")
	})
	addr, m := startGuarded(t, Options{}, h)
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(2 * bgWatchDelay)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, _ := io.ReadAll(c)
	if !strings.Contains(string(out), "400 Bad Request") {
		t.Fatalf("ambiguous framing after a watched request was not refused:\n%s", out)
	}
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("test", "smuggling")); got != 1 {
		t.Errorf("got %v smuggling refusals counted, want 1", got)
	}
}

// TestUpgradeKeepsNetHTTPRead checks that a request that may be hijacked
// is not armed: net/http's own background read stays.
func TestUpgradeKeepsNetHTTPRead(t *testing.T) {
	lazy := make(chan bool, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hc := r.Context().Value(connKey{}).(*h1Conn)
		time.Sleep(20 * time.Millisecond)
		hc.mu.Lock()
		lazy <- hc.bg.armed || hc.bg.answered && !hc.bg.noWatch
		hc.mu.Unlock()
	})
	addr, _ := startGuarded(t, Options{}, h)
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if <-lazy {
		t.Error("an upgrade request was armed for the lazy background read")
	}
}

// headReadConn returns an h1Conn over one end of a pipe that has read one
// request head, and the pipe's other end.
func headReadConn(t *testing.T) (*h1Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	hc := &h1Conn{Conn: a}
	go io.WriteString(b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	buf := make([]byte, 4096)
	n, err := hc.Read(buf)
	if err != nil || !strings.HasSuffix(string(buf[:n]), "\r\n\r\n") {
		t.Fatalf("head read: %q, %v", buf[:n], err)
	}
	return hc, b
}

func TestBackgroundReadAnswer(t *testing.T) {
	t.Run("closed before the watch", func(t *testing.T) {
		hc, _ := headReadConn(t)
		if n, err := hc.Read(make([]byte, 1)); n != 0 || err != nil {
			t.Fatalf("background read: got %d, %v; want 0, nil", n, err)
		}
		hc.Close()
		time.Sleep(2 * bgWatchDelay)
		hc.mu.Lock()
		defer hc.mu.Unlock()
		if hc.bg.watching || hc.bg.err != nil {
			t.Error("a watch started on a closed connection")
		}
	})
	t.Run("taken over by HTTP/2", func(t *testing.T) {
		hc, peer := headReadConn(t)
		hc.stop()
		go io.WriteString(peer, "x")
		hc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := hc.Read(make([]byte, 1)); n != 1 || err != nil {
			t.Fatalf("one-byte read after the takeover: got %d, %v; want the byte", n, err)
		}
	})
	t.Run("only the first one-byte read", func(t *testing.T) {
		hc, peer := headReadConn(t)
		hc.Read(make([]byte, 1))
		go io.WriteString(peer, "y")
		hc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := hc.Read(make([]byte, 1)); n != 1 || err != nil {
			t.Fatalf("second one-byte read: got %d, %v; want the byte", n, err)
		}
	})
}

// TestWatchKeepsIdleTimeout checks that a watch cut short by the next
// request's read leaves that read the deadline net/http gave it: an idle
// keep-alive connection is still closed after a watched request.
func TestWatchKeepsIdleTimeout(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(4 * bgWatchDelay)
		io.WriteString(w, "ok")
	})
	addr, _ := startGuarded(t, Options{IdleTimeout: 300 * time.Millisecond}, h)
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	start := time.Now()
	c.SetReadDeadline(start.Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("got a byte from an idle connection")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("idle connection still open after 5s")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("closed after %v, want about the idle timeout (300ms)", d)
	}
}
