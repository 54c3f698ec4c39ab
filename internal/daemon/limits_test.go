package daemon

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingUpstream is a raw HTTP/1.1 origin that counts the well-framed
// requests it receives (head and whole body read) and keeps their bodies.
type countingUpstream struct {
	ln     net.Listener
	n      atomic.Int32
	mu     sync.Mutex
	bodies []string
	wg     sync.WaitGroup
}

func newCountingUpstream(t *testing.T) *countingUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &countingUpstream{ln: ln}
	u.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.wg.Go(func() { u.serve(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); u.wg.Wait() })
	return u
}

func (u *countingUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		u.n.Add(1)
		u.mu.Lock()
		u.bodies = append(u.bodies, string(body))
		u.mu.Unlock()
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

func limitsConfig(upstream string) string {
	return fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"
[log]
access = "off"
[shutdown]
grace_period = "2s"

[[listeners]]
name = "edge-tls"
address = "127.0.0.1:0"
  [listeners.tls]
  pq = "prefer"

[[listeners]]
name = "edge-tls-h1"
address = "127.0.0.1:0"
protocols = ["h1"]
  [listeners.tls]
  pq = "prefer"

[[listeners]]
name = "edge-plain"
address = "127.0.0.1:0"

[[routes]]
name = "all"
cluster = "web"
max_body_bytes = 100

[[clusters]]
name = "web"
  [[clusters.endpoints]]
  address = %q
  region = "r0"
`, upstream)
}

// rawExchangeLater sends raw, then later after a pause (so that a body
// arrives after its head was handled).
func rawExchangeLater(t *testing.T, r *running, listener, raw, later string) int {
	t.Helper()
	addr := r.d.Addr(listener).String()
	var c net.Conn
	var err error
	if strings.Contains(listener, "tls") {
		c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, raw)
	if later != "" {
		time.Sleep(100 * time.Millisecond)
		io.WriteString(c, later)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: no response: %v", listener, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestEdgeDefencesThroughProxy(t *testing.T) {
	up := newCountingUpstream(t)
	r := startDaemon(t, limitsConfig(up.ln.Addr().String()))
	for _, listener := range []string{"edge-plain", "edge-tls"} {
		for _, tc := range []struct {
			name, raw string
			later     string
			want      int
			upstream  int32 // well-framed requests the upstream sees
		}{
			{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", "", 400, 0},
			{"duplicate CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", "", 400, 0},
			{"differing CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc", "", 400, 0},
			{"obsolete line folding", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", "", 400, 0},
			{"invalid chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", "", 400, 0},
			{"invalid chunk size after the head", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "zz\r\nabc\r\n0\r\n\r\n", 400, 0},
			{"declared body over the limit", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n" + strings.Repeat("a", 101), "", 413, 0},
			{"chunked body over the limit", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" + strings.Repeat("a", 101) + "\r\n0\r\n\r\n", "", 413, 0},
			{"well framed, smuggling-looking body", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n", "", 200, 1},
		} {
			t.Run(listener+"/"+tc.name, func(t *testing.T) {
				before := up.n.Load()
				if got := rawExchangeLater(t, r, listener, tc.raw, tc.later); got != tc.want {
					t.Errorf("got %d, want %d", got, tc.want)
				}
				time.Sleep(50 * time.Millisecond) // let a stray upstream request land
				if got := up.n.Load() - before; got != tc.upstream {
					t.Errorf("upstream saw %d well-framed requests, want %d", got, tc.upstream)
				}
			})
		}
	}
	up.mu.Lock()
	for _, b := range up.bodies {
		if b != "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n" {
			t.Errorf("upstream body %q, want the client's body verbatim", b)
		}
	}
	up.mu.Unlock()
	m := scrape(t, r)
	if testing.Verbose() {
		t.Log(m)
	}
	for _, want := range []string{
		`aegis_server_rejected_total{listener="edge-plain",reason="smuggling"} 4`,
		`aegis_server_rejected_total{listener="edge-tls",reason="smuggling"} 4`,
		`aegis_request_body_rejected_total{reason="too_large",route="all"} 4`,
		`aegis_request_body_rejected_total{reason="malformed",route="all"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestALPN(t *testing.T) {
	up := newCountingUpstream(t)
	r := startDaemon(t, limitsConfig(up.ln.Addr().String()))
	for _, tc := range []struct {
		listener string
		offer    []string
		want     string
	}{
		{"edge-tls", []string{"h2", "http/1.1"}, "h2"},
		{"edge-tls", []string{"http/1.1"}, "http/1.1"},
		{"edge-tls-h1", []string{"h2", "http/1.1"}, "http/1.1"},
		{"edge-tls-h1", nil, ""},
	} {
		t.Run(fmt.Sprintf("%s/%v", tc.listener, tc.offer), func(t *testing.T) {
			c, err := tls.Dial("tcp", r.d.Addr(tc.listener).String(), &tls.Config{InsecureSkipVerify: true, NextProtos: tc.offer})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.ConnectionState().NegotiatedProtocol; got != tc.want {
				t.Errorf("got ALPN %q, want %q", got, tc.want)
			}
		})
	}
	// An h2-only client gets no protocol from an h1-only listener.
	_, err := tls.Dial("tcp", r.d.Addr("edge-tls-h1").String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err == nil {
		t.Error("an h2-only client completed a handshake with an h1-only listener, want a no_application_protocol alert")
	}
}

// TestSlowClientsThroughProxy: a slow-header, a slow-body and a
// slow-reading client are each cut at the configured deadline.
func TestSlowClientsThroughProxy(t *testing.T) {
	big := strings.Repeat("x", 64<<20)
	origin := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, big)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go origin.Serve(ln)
	t.Cleanup(func() { origin.Close() })
	cfg := strings.Replace(limitsConfig(ln.Addr().String()), `name = "edge-plain"
address = "127.0.0.1:0"`, `name = "edge-plain"
address = "127.0.0.1:0"
  [listeners.timeouts]
  read_header = "300ms"
  read = "700ms"
  write_idle = "500ms"`, 1)
	cfg = strings.Replace(cfg, "max_body_bytes = 100", "max_body_bytes = -1", 1)
	r := startDaemon(t, cfg)
	addr := r.d.Addr("edge-plain").String()
	cut := func(t *testing.T, raw string, min, max time.Duration, read bool) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if read {
			// A client that stops reading: keep the receive buffer small so
			// that the server's writes stall soon.
			c.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		start := time.Now()
		io.WriteString(c, raw)
		if read {
			time.Sleep(max) // read nothing while the server is cut off
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, _ := io.Copy(io.Discard, c)
			if n >= int64(len(big)) {
				t.Fatalf("got the whole %d-byte body, want the connection cut", n)
			}
			return
		}
		c.SetReadDeadline(start.Add(10 * time.Second))
		io.Copy(io.Discard, c)
		if d := time.Since(start); d < min || d > max {
			t.Errorf("cut after %v, want between %v and %v", d, min, max)
		}
	}
	t.Run("slow header", func(t *testing.T) {
		cut(t, "GET / HTTP/1.1\r\nHost: x\r\n", 250*time.Millisecond, 3*time.Second, false)
	})
	t.Run("slow body", func(t *testing.T) {
		cut(t, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc", 600*time.Millisecond, 3*time.Second, false)
	})
	t.Run("slow reader", func(t *testing.T) {
		cut(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, 3*time.Second, true)
	})
	waitFor(t, func() bool {
		return strings.Contains(scrape(t, r), `aegis_server_timeouts_total{direction="write",listener="edge-plain"}`) &&
			!strings.Contains(scrape(t, r), `aegis_server_timeouts_total{direction="write",listener="edge-plain"} 0`)
	})
}

func TestTLSHygiene(t *testing.T) {
	up := newCountingUpstream(t)
	cfg := strings.Replace(limitsConfig(up.ln.Addr().String()), `name = "edge-tls-h1"
address = "127.0.0.1:0"
protocols = ["h1"]
  [listeners.tls]
  pq = "prefer"`, `name = "edge-tls-h1"
address = "127.0.0.1:0"
protocols = ["h1"]
  [listeners.tls]
  pq = "prefer"
  min_version = "1.2"
  session_ticket_rotation = "1h"`, 1)
	r := startDaemon(t, cfg)
	tls12 := func(suite uint16) *tls.Config {
		return &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}}
	}
	for _, tc := range []struct {
		name     string
		listener string
		cfg      *tls.Config
		ok       bool
	}{
		{"1.3 listener refuses 1.2", "edge-tls", tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), false},
		{"1.2 listener, ECDHE AEAD", "edge-tls-h1", tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), true},
		{"1.2 listener, ECDHE ChaCha20", "edge-tls-h1", tls12(tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256), true},
		{"1.2 listener, CBC refused", "edge-tls-h1", tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA), false},
		{"1.2 listener, RSA key exchange refused", "edge-tls-h1", tls12(tls.TLS_RSA_WITH_AES_128_GCM_SHA256), false},
		{"1.2 listener, 1.3 client", "edge-tls-h1", &tls.Config{InsecureSkipVerify: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", r.d.Addr(tc.listener).String(), tc.cfg)
			if err == nil {
				c.Close()
			}
			if (err == nil) != tc.ok {
				t.Errorf("got handshake error %v, want success %v", err, tc.ok)
			}
		})
	}
	if got := r.d.Config().Listeners[1].TLS.SessionTicketRotation.Duration; got != time.Hour {
		t.Errorf("got session_ticket_rotation %v, want 1h", got)
	}
}
