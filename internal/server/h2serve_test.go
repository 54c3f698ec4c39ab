package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Both HTTP/2 servers run the behaviour tests below; Aegis-Flow's is the
// default.
var h2Servers = []struct {
	name string
	xnet bool
}{{"aegis", false}, {"x/net", true}}

func startH2C(t *testing.T, xnet bool, h http.Handler, mod func(*Options)) string {
	t.Helper()
	o := Options{Name: "h2", Handler: h, Protocols: []string{"h1", "h2c"}}
	o.HTTP2.XNet = xnet
	if mod != nil {
		mod(&o)
	}
	return start(t, o).Addr().String()
}

// TestH2LargeBodiesBothWays moves 1 MiB each way, 16 times the stream
// window, so flow control has to work in both directions.
func TestH2LargeBodiesBothWays(t *testing.T) {
	for _, srv := range h2Servers {
		t.Run(srv.name, func(t *testing.T) {
			addr := startH2C(t, srv.xnet, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h := sha256.New()
				n, err := io.Copy(h, r.Body)
				if err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				w.Header().Set("X-Sum", hex.EncodeToString(h.Sum(nil)))
				w.Header().Set("X-Len", strconv.FormatInt(n, 10))
				w.Write(bytes.Repeat([]byte("0123456789abcdef"), 1<<16))
			}), nil)
			body := bytes.Repeat([]byte("x"), 1<<20)
			resp, err := h2cClient().Post("http://"+addr+"/", "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(body)
			if resp.ProtoMajor != 2 || resp.Header.Get("X-Len") != "1048576" || resp.Header.Get("X-Sum") != hex.EncodeToString(sum[:]) || len(got) != 1<<20 {
				t.Fatalf("got %s, %s bytes up, %d down; want HTTP/2, 1048576 each way", resp.Proto, resp.Header.Get("X-Len"), len(got))
			}
		})
	}
}

// TestH2Trailers: request trailers reach the handler, and declared and
// TrailerPrefix response trailers reach the client.
func TestH2Trailers(t *testing.T) {
	for _, srv := range h2Servers {
		t.Run(srv.name, func(t *testing.T) {
			addr := startH2C(t, srv.xnet, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Trailer", "Grpc-Status")
				w.Header().Set("Content-Type", "application/grpc")
				w.WriteHeader(200)
				w.Write([]byte("payload"))
				w.Header().Set("Grpc-Status", "0")
				w.Header().Set(http.TrailerPrefix+"Grpc-Message", "seen "+r.Trailer.Get("X-Checksum"))
			}), nil)
			req, _ := http.NewRequest("POST", "http://"+addr+"/", nil)
			req.Trailer = http.Header{"X-Checksum": nil}
			req.ContentLength = -1
			req.Body = &trailerBody{r: strings.NewReader("abc"), req: req}
			resp, err := h2cClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "payload" || resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("Grpc-Message") != "seen c0ffee" {
				t.Fatalf("got body %q trailers %v; want payload, Grpc-Status 0, Grpc-Message \"seen c0ffee\"", b, resp.Trailer)
			}
			if resp.Header.Get("Grpc-Status") != "" {
				t.Errorf("the trailer was also sent as a header")
			}
		})
	}
}

// trailerBody sets the request trailer once the body is read, as a
// streaming client does.
type trailerBody struct {
	r   io.Reader
	req *http.Request
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.req.Trailer.Set("X-Checksum", "c0ffee")
	}
	return n, err
}
func (b *trailerBody) Close() error { return nil }

// TestH2AbortedHandler: a handler that aborts mid-response resets its
// stream only; the connection serves the next request.
func TestH2AbortedHandler(t *testing.T) {
	for _, srv := range h2Servers {
		t.Run(srv.name, func(t *testing.T) {
			addr := startH2C(t, srv.xnet, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/abort" {
					w.Write([]byte("partial"))
					http.NewResponseController(w).Flush()
					panic(http.ErrAbortHandler)
				}
				io.WriteString(w, "ok")
			}), nil)
			c := h2cClient()
			resp, err := c.Get("http://" + addr + "/abort")
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil {
				t.Fatal("aborted response read without error")
			}
			if got := fetch(t, c, "http://"+addr+"/"); got != "ok" {
				t.Fatalf("next request: got %q, want ok", got)
			}
		})
	}
}

// TestH2ServerFrames drives Aegis-Flow's server with raw frames for what a
// normal client does not do.
func TestH2ServerFrames(t *testing.T) {
	var bodyErr atomic.Value
	addr := startH2C(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil && r.Header.Get("X-Test") == "reset" {
			bodyErr.Store(err.Error())
		}
		w.Write(b)
	}), func(o *Options) { o.MaxHeaderBytes = 4 << 10 })

	t.Run("content-length mismatch", func(t *testing.T) {
		c, fr := rawH2C(t, addr)
		defer c.Close()
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: encodeHeaders(t, "POST", "content-length", "5")})
		fr.WriteData(1, true, []byte("abc"))
		if code := readReset(t, c, fr, 1); code != http2.ErrCodeProtocol {
			t.Fatalf("got RST_STREAM %v, want PROTOCOL_ERROR", code)
		}
	})
	t.Run("trailers before the declared length", func(t *testing.T) {
		c, fr := rawH2C(t, addr)
		defer c.Close()
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: encodeHeaders(t, "POST", "content-length", "5")})
		fr.WriteData(1, false, []byte("abc"))
		var tb bytes.Buffer
		hpack.NewEncoder(&tb).WriteField(hpack.HeaderField{Name: "x-t", Value: "1"})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: tb.Bytes()})
		if code := readReset(t, c, fr, 1); code != http2.ErrCodeProtocol {
			t.Fatalf("got RST_STREAM %v, want PROTOCOL_ERROR", code)
		}
	})
	t.Run("header list over the limit", func(t *testing.T) {
		c, fr := rawH2C(t, addr)
		defer c.Close()
		var kv []string
		for range 10 {
			kv = append(kv, "x-big", strings.Repeat("a", 600))
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: encodeHeaders(t, "GET", kv...)})
		if status := readStatus(t, c, fr, 1); status != "431" {
			t.Fatalf("got status %s, want 431", status)
		}
	})
	t.Run("connection-specific header", func(t *testing.T) {
		c, fr := rawH2C(t, addr)
		defer c.Close()
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: encodeHeaders(t, "GET", "connection", "keep-alive")})
		if code := readReset(t, c, fr, 1); code != http2.ErrCodeProtocol {
			t.Fatalf("got RST_STREAM %v, want PROTOCOL_ERROR", code)
		}
	})
	t.Run("one write per short response", func(t *testing.T) {
		c, fr := rawH2C(t, addr)
		defer c.Close()
		// Settle the SETTINGS exchange first.
		readUntil(t, c, fr, func(f http2.Frame) bool { s, ok := f.(*http2.SettingsFrame); return ok && s.IsAck() })
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: encodeHeaders(t, "POST")})
		fr.WriteData(1, true, []byte("hello"))
		// HEADERS and DATA arrive in one read when sent in one write.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64<<10)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		r := http2.NewFramer(nil, bytes.NewReader(buf[:n]))
		var types []string
		for {
			f, err := r.ReadFrame()
			if err != nil {
				break
			}
			types = append(types, f.Header().Type.String())
		}
		if strings.Join(types, ",") != "HEADERS,DATA" {
			t.Fatalf("first read held %v, want HEADERS,DATA", types)
		}
	})
	t.Run("client reset ends the handler's body read", func(t *testing.T) {
		c, fr := rawH2C(t, addr)
		defer c.Close()
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: encodeHeaders(t, "POST", "x-test", "reset")})
		fr.WriteData(1, false, []byte("part"))
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
		deadline := time.Now().Add(5 * time.Second)
		for bodyErr.Load() == nil && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if v, _ := bodyErr.Load().(string); !strings.Contains(v, "reset") {
			t.Fatalf("handler's body read got %q, want a reset error", v)
		}
	})
}

// TestH2LateFramesAndReadTimeout: frames the client sent before it saw a
// reset are ignored, and a body that stalls past the read timeout fails
// the handler's read.
func TestH2LateFramesAndReadTimeout(t *testing.T) {
	readErr := make(chan string, 1)
	addr := startH2C(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test") == "early" {
			io.WriteString(w, "early answer") // the body is not wanted
			return
		}
		_, err := io.ReadAll(r.Body)
		if err != nil {
			readErr <- err.Error()
		}
		io.WriteString(w, "read")
	}), func(o *Options) { o.ReadTimeout = 200 * time.Millisecond })

	c, fr := rawH2C(t, addr)
	defer c.Close()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: encodeHeaders(t, "POST", "x-test", "early")})
	if code := readReset(t, c, fr, 1); code != http2.ErrCodeNo {
		t.Fatalf("early answer: got RST_STREAM %v, want NO_ERROR", code)
	}
	// What the client had in flight: more body, then trailers.
	fr.WriteData(1, false, []byte("late"))
	var tb bytes.Buffer
	hpack.NewEncoder(&tb).WriteField(hpack.HeaderField{Name: "x-trailer", Value: "1"})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: tb.Bytes()})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, EndStream: true, BlockFragment: encodeHeaders(t, "GET")})
	f := readUntil(t, c, fr, func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			return true
		case *http2.RSTStreamFrame:
			return true
		case *http2.DataFrame:
			return f.StreamID == 3 && f.StreamEnded()
		}
		return false
	})
	if d, ok := f.(*http2.DataFrame); !ok || string(d.Data()) != "read" {
		t.Fatalf("after late frames on a reset stream: got %v, want stream 3 answered", f)
	}

	// A body that stalls.
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, EndHeaders: true, BlockFragment: encodeHeaders(t, "POST")})
	fr.WriteData(5, false, []byte("partial"))
	select {
	case err := <-readErr:
		if !strings.Contains(err, "not complete within") {
			t.Fatalf("stalled body: handler read got %q, want the read timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stalled body: the handler's read did not fail")
	}
}

// TestH2FlowControlStall: a client that grants no window is cut after the
// listener's write_idle, like a client that stops reading.
func TestH2FlowControlStall(t *testing.T) {
	addr := startH2C(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "never delivered")
	}), func(o *Options) { o.Limits.WriteIdleTimeout = 200 * time.Millisecond })
	c := dial(t, addr)
	defer c.Close()
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: encodeHeaders(t, "GET")})
	start := time.Now()
	var data int
	f := readUntil(t, c, fr, func(f http2.Frame) bool {
		if d, ok := f.(*http2.DataFrame); ok {
			data += len(d.Data())
		}
		_, ok := f.(*http2.RSTStreamFrame)
		return ok
	})
	if code := f.(*http2.RSTStreamFrame).ErrCode; code != http2.ErrCodeFlowControl || data != 0 {
		t.Fatalf("got RST_STREAM %v after %d data bytes, want FLOW_CONTROL_ERROR and none", code, data)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("reset after %v, before write_idle", d)
	}
}

// TestH2TrailersWhileHandlerRuns: trailers that arrive while the handler
// is looking at its request (as ReverseProxy clones it) reach the request
// only when its body is read to the end, so there is no data race (run
// with -race).
func TestH2TrailersWhileHandlerRuns(t *testing.T) {
	got := make(chan string, 1)
	addr := startH2C(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 200 {
			_ = r.Clone(r.Context())
		}
		io.Copy(io.Discard, r.Body)
		got <- r.Trailer.Get("X-Sum")
	}), nil)
	c, fr := rawH2C(t, addr)
	defer c.Close()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: encodeHeaders(t, "POST", "trailer", "x-sum")})
	fr.WriteData(1, false, []byte("body"))
	var tb bytes.Buffer
	hpack.NewEncoder(&tb).WriteField(hpack.HeaderField{Name: "x-sum", Value: "42"})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: tb.Bytes()})
	select {
	case v := <-got:
		if v != "42" {
			t.Fatalf("handler saw trailer X-Sum %q, want 42", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not finish")
	}
}

// TestH2IdleAndShutdown: an idle connection gets GOAWAY(NO_ERROR) after
// the idle timeout, and Shutdown lets an in-flight stream finish.
func TestH2IdleAndShutdown(t *testing.T) {
	addr := startH2C(t, false, text("x"), func(o *Options) { o.IdleTimeout = 200 * time.Millisecond })
	c, fr := rawH2C(t, addr)
	defer c.Close()
	if code := readGoAway(t, c, fr); code != http2.ErrCodeNo {
		t.Fatalf("idle: got GOAWAY %v, want NO_ERROR", code)
	}

	release := make(chan struct{})
	started := make(chan struct{})
	s := start(t, Options{Name: "h2", Protocols: []string{"h1", "h2c"}, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "finished")
	})})
	got := make(chan string, 1)
	go func() { got <- fetch(t, h2cClient(), "http://"+s.Addr().String()+"/") }()
	<-started
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	time.Sleep(50 * time.Millisecond)
	close(release)
	if body := <-got; body != "finished" {
		t.Fatalf("in-flight request during Shutdown: got %q", body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func encodeHeaders(t *testing.T, method string, kv ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	e := hpack.NewEncoder(&buf)
	for _, f := range [][2]string{{":method", method}, {":scheme", "http"}, {":path", "/"}, {":authority", "x"}} {
		e.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := 0; i+1 < len(kv); i += 2 {
		e.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return buf.Bytes()
}

func readUntil(t *testing.T, c net.Conn, fr *http2.Framer, match func(http2.Frame) bool) http2.Frame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames: %v", err)
		}
		if match(f) {
			return f
		}
	}
}

func readReset(t *testing.T, c net.Conn, fr *http2.Framer, id uint32) http2.ErrCode {
	t.Helper()
	f := readUntil(t, c, fr, func(f http2.Frame) bool {
		r, ok := f.(*http2.RSTStreamFrame)
		return ok && r.StreamID == id
	})
	return f.(*http2.RSTStreamFrame).ErrCode
}

func readStatus(t *testing.T, c net.Conn, fr *http2.Framer, id uint32) string {
	t.Helper()
	dec := hpack.NewDecoder(4096, nil)
	f := readUntil(t, c, fr, func(f http2.Frame) bool {
		h, ok := f.(*http2.HeadersFrame)
		return ok && h.StreamID == id
	})
	fields, err := dec.DecodeFull(f.(*http2.HeadersFrame).HeaderBlockFragment())
	if err != nil {
		t.Fatal(err)
	}
	for _, hf := range fields {
		if hf.Name == ":status" {
			return hf.Value
		}
	}
	return ""
}

// FuzzH2Server feeds arbitrary bytes after a valid preface and SETTINGS.
// The server must not panic, must end when the client goes, and must leave
// no stream behind.
func FuzzH2Server(f *testing.F) {
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	var hb bytes.Buffer
	e := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/"}, {":authority", "x"}, {"content-length", "3"}} {
		e.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: hb.Bytes()})
	fr.WriteData(1, true, []byte("abc"))
	fr.WriteWindowUpdate(0, 1000)
	fr.WritePing(false, [8]byte{1})
	fr.WriteRSTStream(3, http2.ErrCodeCancel)
	f.Add(seed.Bytes())
	f.Add([]byte{0, 0, 0, 4, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &h2Server{streamWindow: 1 << 16, connWindow: 1 << 20, maxReadFrame: 16 << 10, maxStreams: 8, maxHeaderBytes: 8 << 10,
			log: slog.New(slog.DiscardHandler)}
		cli, srv := net.Pipe()
		done := make(chan struct{})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Trailer", "X-T")
			w.Write(b)
			w.Header().Set("X-T", "1")
		})
		go func() {
			defer close(done)
			s.ServeConn(context.Background(), srv, h, false)
		}()
		go io.Copy(io.Discard, cli)
		var pre bytes.Buffer
		pre.WriteString(http2.ClientPreface)
		http2.NewFramer(&pre, nil).WriteSettings()
		cli.SetWriteDeadline(time.Now().Add(2 * time.Second))
		cli.Write(pre.Bytes())
		cli.Write(in)
		cli.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("server did not end after the client closed")
		}
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d connections still registered", n)
		}
	})
}

// BenchmarkH2Server: one loopback h2c GET of 1 KiB through each server,
// x/net's HTTP/2 client on the other end.
func BenchmarkH2Server(b *testing.B) {
	body := bytes.Repeat([]byte("a"), 1024)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	for _, srv := range h2Servers {
		b.Run(strings.ReplaceAll(srv.name, "/", ""), func(b *testing.B) {
			o := Options{Name: "bench", Address: "127.0.0.1:0", Handler: h, Protocols: []string{"h1", "h2c"}}
			o.HTTP2.XNet = srv.xnet
			s, err := New(o)
			if err != nil {
				b.Fatal(err)
			}
			go s.Serve()
			defer s.Close()
			c := h2cClient()
			url := "http://" + s.Addr().String() + "/"
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, err := c.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// TestH2HeadersOnClosedStream sends HEADERS again on a stream whose answer
// it has seen end: a connection error (RFC 9113 5.1), every time. The
// stream leaves the server's table a moment after its last frame, and a
// quick client used to meet it there and get a stream reset instead; or the
// stream's end closed the connection under the GOAWAY being written.
func TestH2HeadersOnClosedStream(t *testing.T) {
	addr := startH2C(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), nil)
	block := headerBlock(t, 0)
	for i := range 100 {
		c, fr := rawH2C(t, addr)
		hp := http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true, EndHeaders: true}
		if err := fr.WriteHeaders(hp); err != nil {
			t.Fatal(err)
		}
		readUntil(t, c, fr, func(f http2.Frame) bool {
			return f.Header().StreamID == 1 && f.Header().Flags.Has(http2.FlagDataEndStream)
		})
		if err := fr.WriteHeaders(hp); err != nil {
			t.Fatal(err)
		}
		f := readUntil(t, c, fr, func(f http2.Frame) bool {
			switch f.(type) {
			case *http2.GoAwayFrame, *http2.RSTStreamFrame:
				return true
			}
			return false
		})
		if _, ok := f.(*http2.GoAwayFrame); !ok {
			t.Fatalf("try %d: got %v, want a connection error (GOAWAY)", i, f)
		}
		c.Close()
	}
}

// TestH2RequestHeaderValues checks repeated fields and that the values,
// which share one array, stay apart when a handler appends to one.
func TestH2RequestHeaderValues(t *testing.T) {
	got := make(chan string, 1)
	addr := startH2C(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Add("X-B", "added")
		r.Header["X-C"] = append(r.Header["X-C"], "appended")
		got <- fmt.Sprint(r.Header["X-A"], r.Header["X-B"], r.Header["X-C"], r.Header["X-D"])
	}), nil)
	c, fr := rawH2C(t, addr)
	block := encodeHeaders(t, "GET", "x-a", "1", "x-b", "2", "x-a", "3", "x-c", "4", "x-d", "5")
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if s := readStatus(t, c, fr, 1); s != "200" {
		t.Fatalf("status %s", s)
	}
	if g, w := <-got, "[1 3] [2 added] [4 appended] [5]"; g != w {
		t.Errorf("got %s, want %s", g, w)
	}
}

// TestH2TimeoutsCounted checks that HTTP/2 request bodies cut by the read
// timeout and responses cut by the write timeout are counted.
func TestH2TimeoutsCounted(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			io.ReadAll(r.Body)
			return
		}
		<-r.Context().Done() // never answers: the write timeout resets it
	})
	o := Options{Protocols: []string{"h1", "h2c"}, ReadTimeout: 100 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}
	addr, m := startGuarded(t, o, h)
	count := func(dir string) float64 { return testutil.ToFloat64(m.timeouts.WithLabelValues("test", dir)) }
	c, fr := rawH2C(t, addr)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: encodeHeaders(t, "POST")})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, EndStream: true, BlockFragment: encodeHeaders(t, "GET")})
	if code := readReset(t, c, fr, 3); code != http2.ErrCodeInternal {
		t.Fatalf("unanswered stream: got RST_STREAM %v, want INTERNAL_ERROR", code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for count("read") < 1 || count("write") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("got read %v, write %v timeouts, want 1 each", count("read"), count("write"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
