package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2cClient opens a raw h2c connection: preface and SETTINGS written.
func rawH2C(t *testing.T, addr string) (net.Conn, *http2.Framer) {
	t.Helper()
	c := dial(t, addr)
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.AllowIllegalWrites = true
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c, fr
}

func headerBlock(t *testing.T, extra int) []byte {
	t.Helper()
	var buf bytes.Buffer
	e := hpack.NewEncoder(&buf)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", "x"}} {
		e.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := range extra {
		e.WriteField(hpack.HeaderField{Name: "x-pad", Value: strings.Repeat("a", 100+i%7)})
	}
	return buf.Bytes()
}

// readGoAway reads frames until a GOAWAY, then expects the connection to
// close; it returns the GOAWAY's error code.
func readGoAway(t *testing.T, c net.Conn, fr *http2.Framer) http2.ErrCode {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY before the connection ended: %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			code := ga.ErrCode
			for {
				if _, err := fr.ReadFrame(); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatal("connection still open after GOAWAY")
					}
					return code
				}
			}
		}
	}
}

func TestH2RapidResetEndsInGoAway(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	addr, m := startGuarded(t, Options{HTTP2: HTTP2Limits{RapidResetThreshold: 20}}, h)
	c, fr := rawH2C(t, addr)
	block := headerBlock(t, 0)
	go func() {
		for id := uint32(1); id < 2000; id += 2 {
			if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}) != nil ||
				fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}()
	if code := readGoAway(t, c, fr); code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("got GOAWAY %v, want ENHANCE_YOUR_CALM", code)
	}
	if got := testutil.ToFloat64(m.h2Abuse.WithLabelValues("test", "rapid_reset")); got != 1 {
		t.Errorf("got rapid_reset count %v, want 1", got)
	}
}

func TestH2FewResetsAreFine(t *testing.T) {
	addr, m := startGuarded(t, Options{HTTP2: HTTP2Limits{RapidResetThreshold: 20}},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	c, fr := rawH2C(t, addr)
	block := headerBlock(t, 0)
	// 30 streams, 15 reset: at the threshold count but not more than half.
	for id := uint32(1); id < 60; id += 2 {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true})
		if id%4 == 1 {
			fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
	}
	fr.WritePing(false, [8]byte{1})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("connection ended: %v", err)
		}
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
			break
		}
		if _, ok := f.(*http2.GoAwayFrame); ok {
			t.Fatal("got GOAWAY for a client under the reset threshold")
		}
	}
	if got := testutil.ToFloat64(m.h2Abuse.WithLabelValues("test", "rapid_reset")); got != 0 {
		t.Errorf("got rapid_reset count %v, want 0", got)
	}
}

func TestH2ContinuationFloodEndsConnection(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frag   []byte
		reason string
	}{
		{"many empty frames", nil, "continuation_flood"},
		// The HTTP/2 server may end this one first (its own header list
		// bound); any GOAWAY passes, TestGuardBounds checks the guard's.
		{"large block", bytes.Repeat([]byte{0x40, 0x01, 'a', 0x7f}, 1000), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, m := startGuarded(t, Options{}, http.NotFoundHandler())
			c, fr := rawH2C(t, addr)
			block := headerBlock(t, 0)
			go func() {
				if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:2], EndStream: true}) != nil {
					return
				}
				for range 100000 {
					if fr.WriteContinuation(1, false, tc.frag) != nil {
						return
					}
				}
			}()
			code := readGoAway(t, c, fr)
			if tc.reason == "" {
				return
			}
			if code != http2.ErrCodeEnhanceYourCalm {
				t.Errorf("got GOAWAY %v, want ENHANCE_YOUR_CALM", code)
			}
			if got := testutil.ToFloat64(m.h2Abuse.WithLabelValues("test", tc.reason)); got != 1 {
				t.Errorf("got %s count %v, want 1", tc.reason, got)
			}
		})
	}
}

func TestH2HPACKBombIsBounded(t *testing.T) {
	addr, _ := startGuarded(t, Options{MaxHeaderBytes: 16 << 10}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	c, fr := rawH2C(t, addr)
	// One 4000-byte field in the dynamic table, then referenced by its
	// one-byte index thousands of times: ~16 KiB on the wire, ~16 MiB decoded.
	var buf bytes.Buffer
	e := hpack.NewEncoder(&buf)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", "x"}} {
		e.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	e.WriteField(hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("b", 4000)})
	block := append(buf.Bytes(), bytes.Repeat([]byte{0xbe}, 4000)...) // index 62
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:4000], EndStream: true})
	fr.WriteContinuation(1, true, block[4000:])
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return // connection ended: bounded
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			d := hpack.NewDecoder(4096, nil)
			fields, _ := d.DecodeFull(f.HeaderBlockFragment())
			if len(fields) == 0 || fields[0].Value != "431" {
				t.Fatalf("got response %v, want :status 431", fields)
			}
			return
		case *http2.GoAwayFrame, *http2.RSTStreamFrame:
			return
		}
	}
}

// frame builds a frame header and payload.
func frame(typ, flags byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	h := []byte{byte(n >> 16), byte(n >> 8), byte(n), typ, flags, byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}
	return append(h, payload...)
}

func TestGuardBounds(t *testing.T) {
	lim := h2Limits{resets: 4, continuations: 3, blockBytes: 100}
	for _, tc := range []struct {
		name   string
		frames [][]byte
		want   h2Abuse
	}{
		{"ordinary", [][]byte{frame(1, 4, 1, make([]byte, 20)), frame(0, 1, 1, make([]byte, 50)), frame(3, 0, 1, make([]byte, 4))}, abuseNone},
		{"block bytes", [][]byte{frame(1, 0, 1, make([]byte, 60)), frame(9, 0, 1, make([]byte, 60))}, abuseHeaderBlock},
		{"continuations", [][]byte{frame(1, 0, 1, nil), frame(9, 0, 1, nil), frame(9, 0, 1, nil), frame(9, 0, 1, nil), frame(9, 0, 1, nil)}, abuseContinuationFlood},
		{"block ends in time", [][]byte{frame(1, 0, 1, nil), frame(9, 0, 1, nil), frame(9, 4, 1, nil), frame(1, 0, 3, nil), frame(9, 4, 3, nil)}, abuseNone},
		{"resets", [][]byte{frame(1, 5, 1, nil), frame(3, 0, 1, nil), frame(1, 5, 3, nil), frame(3, 0, 3, nil), frame(1, 5, 5, nil), frame(3, 0, 5, nil), frame(1, 5, 7, nil), frame(3, 0, 7, nil)}, abuseRapidReset},
		{"resets under half", [][]byte{frame(1, 5, 1, nil), frame(1, 5, 3, nil), frame(1, 5, 5, nil), frame(1, 5, 7, nil), frame(1, 5, 9, nil), frame(1, 5, 11, nil), frame(1, 5, 13, nil), frame(1, 5, 15, nil),
			frame(3, 0, 1, nil), frame(3, 0, 3, nil), frame(3, 0, 5, nil), frame(3, 0, 7, nil)}, abuseNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := bytes.Join(tc.frames, nil)
			// Every split point must give the same answer.
			for split := 0; split <= len(stream); split++ {
				g := newGuardConn(nil, lim, false, nil)
				_, ok := g.in.scan(stream[:split])
				if ok {
					g.in.scan(stream[split:])
				}
				if g.abuse != tc.want {
					t.Fatalf("split %d: got %v, want %v", split, g.abuse, tc.want)
				}
			}
		})
	}
}

func BenchmarkFrameScan(b *testing.B) {
	// 64 KiB of mixed frames, read in 4 KiB chunks as a server would.
	var stream []byte
	for i := uint32(1); len(stream) < 64<<10; i += 2 {
		stream = append(stream, frame(1, 4, i, make([]byte, 30))...)
		stream = append(stream, frame(0, 1, i, make([]byte, 1000))...)
	}
	g := newGuardConn(nil, h2Limits{resets: 1 << 30, continuations: 32, blockBytes: 1 << 20}, false, nil)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		for p := stream; len(p) > 0; {
			n := min(4096, len(p))
			g.in.scan(p[:n])
			p = p[n:]
		}
	}
}

func FuzzFrameScan(f *testing.F) {
	f.Add(frame(1, 0, 1, []byte("abc")), 2)
	f.Add(append(frame(3, 0, 1, nil), frame(9, 4, 1, nil)...), 10)
	f.Fuzz(func(t *testing.T, stream []byte, split int) {
		lim := h2Limits{resets: 3, continuations: 2, blockBytes: 50}
		whole := newGuardConn(nil, lim, false, nil)
		whole.in.scan(stream)
		parts := newGuardConn(nil, lim, false, nil)
		if split < 0 {
			split = -split
		}
		split %= len(stream) + 1
		if _, ok := parts.in.scan(stream[:split]); ok {
			parts.in.scan(stream[split:])
		}
		if whole.abuse != parts.abuse {
			t.Fatalf("got %v in parts, %v whole", parts.abuse, whole.abuse)
		}
	})
}

func TestH2ShutdownAndIdle(t *testing.T) {
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	t.Run("idle connection closes", func(t *testing.T) {
		addr, _ := startGuarded(t, Options{IdleTimeout: 300 * time.Millisecond}, h)
		c, fr := rawH2C(t, addr)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(t, 0), EndStream: true, EndHeaders: true})
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, err := fr.ReadFrame(); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("idle h2 connection still open after 5s, want closed after 300ms")
				}
				return
			}
		}
	})
	t.Run("shutdown sends GOAWAY and drains", func(t *testing.T) {
		m, _ := NewMetrics(nil)
		s, err := New(Options{Name: "t", Address: "127.0.0.1:0", Handler: h, Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); s.Serve() }()
		defer func() { s.Close(); <-done }()
		c, fr := rawH2C(t, s.Addr().String())
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(t, 0), EndStream: true, EndHeaders: true})
		time.Sleep(100 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Shutdown took %v with one idle h2 connection, want a quick drain", d)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal("connection ended without GOAWAY")
			}
			if _, ok := f.(*http2.GoAwayFrame); ok {
				return
			}
		}
	})
}
