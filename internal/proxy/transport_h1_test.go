package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aegis-flow/aegis/internal/balance"
)

// countingServer is an httptest server that counts its new connections.
func countingServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, &conns
}

func newH1(t *testing.T, o TransportOptions) *H1Transport {
	t.Helper()
	tr, err := NewH1Transport(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func h1Get(t *testing.T, tr http.RoundTripper, ctx context.Context, method, url, body string) (int, string, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestH1TransportReusesConnections(t *testing.T) {
	s, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(b))
	}))
	tr := newH1(t, TransportOptions{})
	for i := range 20 {
		method, body, want := "GET", "", "GET /x 0"
		switch i % 3 {
		case 1:
			method, body, want = "POST", "hello", "POST /x 5"
		case 2:
			method, want = "HEAD", ""
		}
		code, got, err := h1Get(t, tr, context.Background(), method, s.URL+"/x", body)
		if err != nil || code != 200 || got != want {
			t.Fatalf("request %d: got %d %q %v, want 200 %q", i, code, got, err, want)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("connections: got %d, want 1", got)
	}
}

// rawServer accepts connections and runs serve on each.
func rawServer(t *testing.T, serve func(c net.Conn, n int)) (addr string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(accepted.Add(1))
			wg.Go(func() { defer c.Close(); serve(c, n) })
		}
	})
	return ln.Addr().String(), accepted
}

// TestH1TransportStaleConnection: the endpoint closes each connection after
// one answer without saying so. A GET is sent again on a new connection; a
// POST first checks its idle connection and dials a new one.
func TestH1TransportStaleConnection(t *testing.T) {
	addr, accepted := rawServer(t, func(c net.Conn, _ int) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	tr := newH1(t, TransportOptions{})
	for i, method := range []string{"GET", "GET", "POST", "GET", "POST"} {
		body := ""
		if method == "POST" {
			body = "payload"
		}
		// Let the endpoint's close reach this side before the reuse.
		time.Sleep(20 * time.Millisecond)
		code, got, err := h1Get(t, tr, context.Background(), method, "http://"+addr+"/", body)
		if err != nil || code != 200 || got != "ok" {
			t.Fatalf("request %d (%s): got %d %q %v, want 200 \"ok\"", i, method, code, got, err)
		}
	}
	if got := accepted.Load(); got != 5 {
		t.Errorf("connections: got %d, want 5 (one per request)", got)
	}
}

// TestH1TransportNoResendWithBody: a POST whose connection dies after the
// request was sent is not sent again.
func TestH1TransportNoResendWithBody(t *testing.T) {
	var posts atomic.Int64
	addr, _ := rawServer(t, func(c net.Conn, _ int) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if req.Method == "POST" {
				posts.Add(1)
				return // drop the connection without an answer
			}
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	})
	tr := newH1(t, TransportOptions{})
	if code, _, err := h1Get(t, tr, context.Background(), "GET", "http://"+addr+"/", ""); err != nil || code != 204 {
		t.Fatalf("warm-up: got %d %v, want 204", code, err)
	}
	if _, _, err := h1Get(t, tr, context.Background(), "POST", "http://"+addr+"/", "once"); err == nil {
		t.Fatal("POST on a dying connection: got no error")
	}
	if got := posts.Load(); got != 1 {
		t.Errorf("POSTs seen by the endpoint: got %d, want 1", got)
	}
}

// TestH1TransportConnectionCap: at MaxConnsPerEndpoint a request waits for a
// connection and counts as pending; one whose context ends while it waits
// gives up without leaking a slot.
func TestH1TransportConnectionCap(t *testing.T) {
	release := make(chan struct{})
	s, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "done")
	}))
	var pending, maxPending atomic.Int64
	tr := newH1(t, TransportOptions{
		MaxConnsPerEndpoint: 1,
		AcquirePending: func() error {
			n := pending.Add(1)
			for m := maxPending.Load(); n > m && !maxPending.CompareAndSwap(m, n); m = maxPending.Load() {
			}
			return nil
		},
		ReleasePending: func() { pending.Add(-1) },
	})
	slow := make(chan error, 1)
	go func() {
		_, _, err := h1Get(t, tr, context.Background(), "GET", s.URL+"/slow", "")
		slow <- err
	}()
	waitUntil(t, func() bool { return conns.Load() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := h1Get(t, tr, ctx, "GET", s.URL+"/", ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting request: got %v, want context.DeadlineExceeded", err)
	}

	queued := make(chan string, 1)
	go func() {
		_, body, _ := h1Get(t, tr, context.Background(), "GET", s.URL+"/", "")
		queued <- body
	}()
	waitUntil(t, func() bool { return pending.Load() == 1 })
	close(release)
	if err := <-slow; err != nil {
		t.Fatalf("slow request: %v", err)
	}
	if got := <-queued; got != "done" {
		t.Errorf("queued request: got %q, want \"done\"", got)
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("connections: got %d, want 1", got)
	}
	if got := pending.Load(); got != 0 {
		t.Errorf("pending at the end: got %d, want 0", got)
	}
}

func TestH1TransportPendingRefused(t *testing.T) {
	s, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tr := newH1(t, TransportOptions{AcquirePending: func() error { return balance.ErrCircuitOpen }, ReleasePending: func() {}})
	if _, _, err := h1Get(t, tr, context.Background(), "GET", s.URL, ""); !errors.Is(err, balance.ErrCircuitOpen) {
		t.Fatalf("got %v, want ErrCircuitOpen", err)
	}
}

// TestH1TransportCancelMidBody: a context that ends while the body streams
// closes the connection; the next request gets a new one.
func TestH1TransportCancelMidBody(t *testing.T) {
	s, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream" {
			io.WriteString(w, "short")
			return
		}
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	tr := newH1(t, TransportOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/stream", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("first chunk: got %q %v", buf, err)
	}
	cancel()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("read after cancel: got no error")
	}
	resp.Body.Close()
	if code, body, err := h1Get(t, tr, context.Background(), "GET", s.URL+"/", ""); err != nil || code != 200 || body != "short" {
		t.Fatalf("next request: got %d %q %v", code, body, err)
	}
	if got := conns.Load(); got != 2 {
		t.Errorf("connections: got %d, want 2", got)
	}
}

// TestH1TransportEarlyAnswer: the endpoint refuses a body before reading it.
// The answer reaches the caller and the connection is not reused.
func TestH1TransportEarlyAnswer(t *testing.T) {
	s, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 10 {
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		io.WriteString(w, "small")
	}))
	tr := newH1(t, TransportOptions{})
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", s.URL+"/", pr)
	req.ContentLength = 1 << 20
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %d, want 413", resp.StatusCode)
	}
	pw.CloseWithError(errors.New("client gave up"))
	if code, body, err := h1Get(t, tr, context.Background(), "POST", s.URL+"/", "tiny"); err != nil || code != 200 || body != "small" {
		t.Fatalf("next request: got %d %q %v", code, body, err)
	}
	if got := conns.Load(); got != 2 {
		t.Errorf("connections: got %d, want 2", got)
	}
}

// TestH1TransportBodyReadError: a request body that fails is reported as
// the body's error, not as an upstream failure.
func TestH1TransportBodyReadError(t *testing.T) {
	s, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	tr := newH1(t, TransportOptions{})
	errBody := errors.New("body broke")
	req, _ := http.NewRequest("POST", s.URL+"/", io.MultiReader(strings.NewReader("part"), iotestErr{errBody}))
	req.ContentLength = -1
	if _, err := tr.RoundTrip(req); !errors.Is(err, errBody) {
		t.Fatalf("got %v, want the body's error", err)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

func TestH1TransportResponseHeaderLimit(t *testing.T) {
	addr, _ := rawServer(t, func(c net.Conn, _ int) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		for range 1000 {
			io.WriteString(c, "X-Filler: "+strings.Repeat("f", 100)+"\r\n")
		}
		io.WriteString(c, "Content-Length: 0\r\n\r\n")
	})
	tr := newH1(t, TransportOptions{})
	if _, _, err := h1Get(t, tr, context.Background(), "GET", "http://"+addr+"/", ""); !errors.Is(err, errResponseHeaderTooBig) {
		t.Fatalf("got %v, want errResponseHeaderTooBig", err)
	}
}

func TestH1TransportInformational(t *testing.T) {
	addr, _ := rawServer(t, func(c net.Conn, _ int) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody")
	})
	tr := newH1(t, TransportOptions{})
	var got []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	code, body, err := h1Get(t, tr, ctx, "GET", "http://"+addr+"/", "")
	if err != nil || code != 200 || body != "body" {
		t.Fatalf("got %d %q %v, want 200 \"body\"", code, body, err)
	}
	if want := "103 </s.css>; rel=preload"; len(got) != 1 || got[0] != want {
		t.Errorf("1xx seen: got %q, want [%q]", got, want)
	}
}

// TestH1TransportFraming: bodies framed every way HTTP/1.1 allows, and
// trailers; a connection is reused only after a cleanly framed answer.
func TestH1TransportFraming(t *testing.T) {
	answers := map[string]string{
		"/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n",
		"/length":  "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde",
		"/empty":   "HTTP/1.1 204 No Content\r\n\r\n",
		"/close":   "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabcde",
	}
	addr, accepted := rawServer(t, func(c net.Conn, _ int) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.WriteString(c, answers[req.URL.Path])
			if req.URL.Path == "/close" {
				return
			}
		}
	})
	tr := newH1(t, TransportOptions{})
	for _, tc := range []struct {
		path, body, trailer string
		conns               int64
	}{
		{"/chunked", "abcde", "5", 1},
		{"/length", "abcde", "", 1},
		{"/empty", "", "", 1},
		{"/close", "abcde", "", 1},
		{"/length", "abcde", "", 2},
	} {
		req, _ := http.NewRequest("GET", "http://"+addr+tc.path, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != tc.body || resp.Trailer.Get("X-Sum") != tc.trailer {
			t.Errorf("%s: got %q %v trailer %q, want %q trailer %q", tc.path, b, err, resp.Trailer.Get("X-Sum"), tc.body, tc.trailer)
		}
		if got := accepted.Load(); got != tc.conns {
			t.Errorf("%s: connections so far: got %d, want %d", tc.path, got, tc.conns)
		}
	}
}

// TestH1TransportClose: Close fails later requests and closes a busy
// connection when its request ends.
func TestH1TransportClose(t *testing.T) {
	closed := make(chan struct{})
	addr, _ := rawServer(t, func(c net.Conn, _ int) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		c.Read(make([]byte, 1)) // returns when the transport closes the connection
		close(closed)
	})
	tr := newH1(t, TransportOptions{})
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()
	io.ReadAll(resp.Body)
	resp.Body.Close()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("busy connection still open 10s after its request ended")
	}
	if _, _, err := h1Get(t, tr, context.Background(), "GET", "http://"+addr+"/", ""); !errors.Is(err, errTransportClosed) {
		t.Errorf("after Close: got %v, want errTransportClosed", err)
	}
}

// pipeTransport is an H1Transport whose dials reach serve over net.Pipe.
func pipeTransport(o TransportOptions, serve func(c net.Conn)) (*H1Transport, *atomic.Int64) {
	tr, _ := NewH1Transport(o)
	dials := new(atomic.Int64)
	tr.dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
		dials.Add(1)
		a, b := net.Pipe()
		go func() { defer b.Close(); serve(b) }()
		return a, nil
	}
	return tr, dials
}

func serveOK(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

// TestH1TransportIdleTimeout: an idle connection is closed after
// IdleTimeout, by the sweep or when it is next picked, and an endpoint left
// with no connection is forgotten.
func TestH1TransportIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr, dials := pipeTransport(TransportOptions{IdleTimeout: time.Minute}, serveOK)
		defer tr.Close()
		get := func() {
			if code, _, err := h1Get(t, tr, context.Background(), "GET", "http://up.test/", ""); err != nil || code != 200 {
				t.Fatalf("got %d %v, want 200", code, err)
			}
		}
		get()
		time.Sleep(30 * time.Second)
		get()
		if got := dials.Load(); got != 1 {
			t.Fatalf("dials after a reuse within the idle timeout: got %d, want 1", got)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		tr.mu.Lock()
		h, kept := tr.hosts["up.test"]
		tr.mu.Unlock()
		if kept {
			// The sweep closed its last connection: the endpoint is forgotten.
			t.Fatalf("after the idle timeout: host kept with %d idle, %d open", len(h.idle), h.open)
		}
		get()
		if got := dials.Load(); got != 2 {
			t.Errorf("dials after the idle timeout: got %d, want 2", got)
		}
	})
}

// FuzzH1TransportResponse feeds arbitrary upstream answers to the client.
// It must not panic, and every connection must end up idle or closed.
func FuzzH1TransportResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: <a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nbody until close",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
		"garbage\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		tr, _ := pipeTransport(TransportOptions{}, func(c net.Conn) {
			go io.Copy(io.Discard, c)
			c.Write(answer)
		})
		defer tr.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://up.test/", nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if h := tr.hosts["up.test"]; h != nil && h.open != len(h.idle) {
			t.Fatalf("after the request: %d open, %d idle, want equal", h.open, len(h.idle))
		}
	})
}

// parsedHead writes req with write and parses it back.
func parsedHead(req *http.Request, write func(*bufio.Writer, *http.Request) error) (*http.Request, string, error) {
	var buf strings.Builder
	bw := bufio.NewWriter(&buf)
	if err := write(bw, req); err != nil {
		return nil, "", err
	}
	bw.Flush()
	got, err := http.ReadRequest(bufio.NewReader(strings.NewReader(buf.String())))
	return got, buf.String(), err
}

// checkHeadLikeWrite checks that writeHead, when it takes req, says what
// req.Write says (both pass a control byte in a value through; when
// req.Write's output does not parse, neither does writeHead's).
func checkHeadLikeWrite(t *testing.T, req *http.Request) {
	t.Helper()
	var fast bool
	a, raw, errA := parsedHead(req, func(w *bufio.Writer, r *http.Request) error {
		fast = writeHead(w, r)
		if !fast {
			return r.Write(w)
		}
		return nil
	})
	if !fast {
		return
	}
	b, _, errB := parsedHead(req, func(w *bufio.Writer, r *http.Request) error { return r.Write(w) })
	if errB != nil {
		if errA == nil {
			t.Errorf("writeHead wrote a parsable %q where req.Write did not: %v", raw, errB)
		}
		return
	}
	if errA != nil {
		t.Fatalf("read back %q: %v", raw, errA)
	}
	if a.Method != b.Method || a.RequestURI != b.RequestURI || a.Host != b.Host || a.ContentLength != b.ContentLength || a.Close != b.Close {
		t.Errorf("request line: got %s %s host %q len %d close %v, req.Write says %s %s host %q len %d close %v",
			a.Method, a.RequestURI, a.Host, a.ContentLength, a.Close, b.Method, b.RequestURI, b.Host, b.ContentLength, b.Close)
	}
	if diff := cmp.Diff(b.Header, a.Header); diff != "" {
		t.Errorf("header (-req.Write +writeHead):\n%s", diff)
	}
}

func TestWriteHeadMatchesRequestWrite(t *testing.T) {
	for _, tc := range []struct {
		name, method, url, host string
		header                  http.Header
		close                   bool
	}{
		{"get", "GET", "http://up/a/b?x=1&y=%20", "svc.example", http.Header{"Accept": {"*/*"}, "User-Agent": {"curl/8"}}, false},
		{"no user agent", "GET", "http://up/", "svc", http.Header{"User-Agent": {""}}, false},
		{"delete gets a length", "DELETE", "http://up/item/7", "svc", http.Header{"X-Multi": {"a", "b"}}, false},
		{"post without body", "POST", "http://up/", "svc", http.Header{"Content-Length": {"0"}, "Trailer": {"X"}}, true},
		{"escaped path", "GET", "http://up/a%2Fb/c%20d", "svc:8080", nil, false},
		{"empty query", "GET", "http://up/?", "svc", nil, false},
		{"newline in value", "GET", "http://up/", "svc", http.Header{"X-Bad": {"a\r\nInjected: yes"}, "Bad Name": {"v"}}, false},
		{"ipv6 host", "GET", "http://up/", "[::1]:80", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host, req.Close = tc.host, tc.close
			if tc.header != nil {
				req.Header = tc.header
			}
			if _, ok := req.Header["User-Agent"]; !ok {
				req.Header.Set("User-Agent", "t") // as ReverseProxy: never Go's default
			}
			checkHeadLikeWrite(t, req)
		})
	}
}

func FuzzWriteHead(f *testing.F) {
	f.Add("GET", "/a?b=c", "svc", "X-A", "v")
	f.Add("PATCH", "/%41", "h:1", "User-Agent", "")
	f.Add("GET", "*", "svc", "X", "a\nb")
	f.Fuzz(func(t *testing.T, method, target, host, k, v string) {
		req, err := http.NewRequest(method, "http://up"+target, nil)
		if err != nil || req.URL.Host != "up" {
			return
		}
		req.Host = host
		req.Header = http.Header{"User-Agent": {"f"}, k: {v}}
		var buf strings.Builder
		bw := bufio.NewWriter(&buf)
		if !writeHead(bw, req) {
			return
		}
		bw.Flush()
		var ref strings.Builder
		if req.Write(&ref) != nil {
			t.Fatalf("writeHead took a request that req.Write refuses: %q", buf.String())
		}
		checkHeadLikeWrite(t, req)
	})
}
