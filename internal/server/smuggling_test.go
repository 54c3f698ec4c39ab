package server

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSmugglingRefused(t *testing.T) {
	var seen atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		io.Copy(io.Discard, r.Body)
	})
	addr, m := startGuarded(t, Options{}, h)
	for _, tc := range []struct {
		name, raw string
		want      int
		reached   int32
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400, 0},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n", 400, 0},
		{"duplicate CL same value", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400, 0},
		{"duplicate CL other value", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, 0},
		{"obsolete line folding", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400, 0},
		{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", 400, 0},
		{"TE twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, 0},
		{"TE not chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, 0},
		{"space before colon", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc", 400, 0},
		{"chunked then pipelined", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, 2},
		{"CL body then pipelined", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\nGET /x HTTP/1.1\r\nTransfer-Encoding: ab\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen.Store(0)
			c := dial(t, addr)
			io.WriteString(c, tc.raw)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != tc.want {
				t.Errorf("got %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.reached == 2 {
				resp2, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("second response: %v", err)
				}
				resp2.Body.Close()
			}
			closedWithin(t, c, 5*time.Second)
			if got := seen.Load(); got != tc.reached {
				t.Errorf("got %d requests at the handler, want %d", got, tc.reached)
			}
		})
	}
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("test", "smuggling")); got != 5 {
		t.Errorf("got smuggling rejections %v, want 5 (Go refuses differing lengths itself)", got)
	}
}

func TestScannerSplitInvariant(t *testing.T) {
	raw := []byte("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"POST /b HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi" +
		"GET /c HTTP/1.0\r\nX: a\r\n\tb\r\n\r\n")
	want := []uint8{0, smugDupCL, smugObsFold}
	for split := 0; split <= len(raw); split++ {
		var s h1Scanner
		s.scan(raw[:split])
		s.scan(raw[split:])
		for i, w := range want {
			if got := s.pop(); got != w {
				t.Fatalf("split %d, head %d: got %b, want %b", split, i, got, w)
			}
		}
	}
}

// FuzzRequestFraming parses a request with Go's parser, re-serialises it,
// and parses again: the second parse must agree with the first, and the
// scanner must find the re-serialised request well framed.
func FuzzRequestFraming(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var s h1Scanner
		s.scan(raw) // must not panic on anything
		r1, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		b1, err := io.ReadAll(r1.Body)
		if err != nil {
			return
		}
		var out bytes.Buffer
		r1.Body = io.NopCloser(bytes.NewReader(b1))
		if err := r1.Write(&out); err != nil {
			return
		}
		r2, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(out.Bytes())))
		if err != nil {
			t.Fatalf("re-serialised request does not parse: %v\n%q", err, out.Bytes())
		}
		b2, _ := io.ReadAll(r2.Body)
		if r1.Method != r2.Method || r1.URL.String() != r2.URL.String() || !bytes.Equal(b1, b2) {
			t.Fatalf("got %s %s %q after a round trip, want %s %s %q", r2.Method, r2.URL, b2, r1.Method, r1.URL, b1)
		}
		var s2 h1Scanner
		s2.scan(out.Bytes())
		if v := s2.pop(); v != 0 && !strings.Contains(out.String(), "\n ") && !strings.Contains(out.String(), "\n\t") {
			t.Fatalf("got verdict %s for a re-serialised request\n%q", smugglingReason(v), out.Bytes())
		}
	})
}

func BenchmarkH1Scan(b *testing.B) {
	// A typical request head plus a 1 KiB chunked body, read in one piece.
	raw := []byte("POST /api/v1/items?id=42 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench/1.0\r\n" +
		"Accept: */*\r\nAccept-Encoding: gzip\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n" +
		"X-Request-Id: 0123456789abcdef\r\n\r\n400\r\n" + strings.Repeat("a", 1024) + "\r\n0\r\n\r\n")
	var s h1Scanner
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		s.scan(raw)
		s.pop()
	}
}
