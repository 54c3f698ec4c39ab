package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// checkSimpleLikeReadResponse reads raw with readSimpleResponse (through a
// buffer of size bufSize) and with http.ReadResponse, and fails when they
// disagree: on the head, on the body bytes, or on failing. It reports
// whether the simple reader took the response.
func checkSimpleLikeReadResponse(t *testing.T, raw []byte, method string, bufSize int) bool {
	t.Helper()
	req, _ := http.NewRequest(method, "http://up.test/", nil)
	br := bufio.NewReaderSize(bytes.NewReader(raw), bufSize)
	got, ok := readSimpleResponse(br, req)
	want, wantErr := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), req)
	switch {
	case !ok:
		// Nothing may be consumed: the general reader gets every byte.
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(rest, raw) {
			t.Fatalf("%q: declined but consumed %d bytes", raw, len(raw)-len(rest))
		}
		return false
	}
	if wantErr != nil {
		t.Fatalf("%q: readSimpleResponse took what http.ReadResponse refuses (%v)", raw, wantErr)
	}
	if got.Status != want.Status || got.StatusCode != want.StatusCode || got.Proto != want.Proto ||
		got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor ||
		got.ContentLength != want.ContentLength || got.Close != want.Close || got.Request != req {
		t.Fatalf("%q: got %q %d %s len %d close %v, http.ReadResponse says %q %d %s len %d close %v", raw,
			got.Status, got.StatusCode, got.Proto, got.ContentLength, got.Close,
			want.Status, want.StatusCode, want.Proto, want.ContentLength, want.Close)
	}
	if diff := cmp.Diff(want.Header, got.Header); diff != "" {
		t.Fatalf("%q: header (-http.ReadResponse +readSimpleResponse):\n%s", raw, diff)
	}
	if len(want.TransferEncoding) != 0 || len(want.Trailer) != 0 || want.Uncompressed {
		t.Fatalf("%q: took a response with transfer coding or trailers", raw)
	}
	wantBody, wantBodyErr := io.ReadAll(want.Body)
	gotBody, gotBodyErr := io.ReadAll(io.LimitReader(br, got.ContentLength))
	if int64(len(gotBody)) < got.ContentLength {
		gotBodyErr = io.ErrUnexpectedEOF
	}
	if !bytes.Equal(gotBody, wantBody) || (gotBodyErr == nil) != (wantBodyErr == nil) {
		t.Fatalf("%q: body %q (%v), http.ReadResponse's %q (%v)", raw, gotBody, gotBodyErr, wantBody, wantBodyErr)
	}
	return true
}

func TestSimpleResponseMatchesReadResponse(t *testing.T) {
	long := "HTTP/1.1 200 OK\r\nX-Filler: " + strings.Repeat("f", 300) + "\r\nContent-Length: 2\r\n\r\nok"
	for _, tc := range []struct {
		name, raw string
		method    string
		bufSize   int
		simple    bool
	}{
		{"plain", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", "GET", 0, true},
		{"no reason", "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", "GET", 0, true},
		{"odd reason", "HTTP/1.1 503 Try\tLater é\r\nContent-Length: 0\r\n\r\n", "GET", 0, true},
		{"lower-case names", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-custom-thing: a\r\nSERVER: up\r\n\r\nok", "GET", 0, true},
		{"repeated fields", "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nVary: A\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n", "GET", 0, true},
		{"spaces around values", "HTTP/1.1 200 OK\r\nX-A:   spaced \t \r\nX-Empty:\r\nContent-Length:  2 \r\n\r\nok", "GET", 0, true},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok", "GET", 0, true},
		{"connection keep-alive", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", "GET", 0, true},
		{"pragma", "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n", "GET", 0, true},
		{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "GET", 0, true},
		{"head spans reads", long, "GET", 64, false},
		{"head fits a small buffer", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET", 64, true},

		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "GET", 0, false},
		{"close-delimited", "HTTP/1.1 200 OK\r\n\r\nuntil close", "GET", 0, false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", "GET", 0, false},
		{"signed length", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", "GET", 0, false},
		{"trailer", "HTTP/1.1 200 OK\r\nTrailer: X\r\nContent-Length: 2\r\n\r\nok", "GET", 0, false},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET", 0, false},
		{"informational", "HTTP/1.1 103 Early Hints\r\nLink: <a>\r\n\r\n", "GET", 0, false},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", "GET", 0, false},
		{"not modified", "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", "GET", 0, false},
		{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", "HEAD", 0, false},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "GET", 0, false},
		{"bare LF in a field", "HTTP/1.1 200 OK\r\nX: a\nContent-Length: 2\r\n\r\nok", "GET", 0, false},
		{"folded line", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok", "GET", 0, false},
		{"space before colon", "HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 2\r\n\r\nok", "GET", 0, false},
		{"control in value", "HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 2\r\n\r\nok", "GET", 0, false},
		{"bad status", "HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok", "GET", 0, false},
		{"garbage", "garbage\r\n\r\n", "GET", 0, false},
		{"cut head", "HTTP/1.1 200 OK\r\nContent-Len", "GET", 0, false},
		{"head ends by LF CR LF", "HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok", "GET", 0, false},
		{"CR CR in the empty line", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\r\nX: y\r\n\r\nok", "GET", 0, false},
		{"empty", "", "GET", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size := tc.bufSize
			if size == 0 {
				size = h1ReadBuffer
			}
			if got := checkSimpleLikeReadResponse(t, []byte(tc.raw), tc.method, size); got != tc.simple {
				t.Errorf("taken by the simple reader: got %v, want %v", got, tc.simple)
			}
		})
	}
}

// TestH1TransportTruncatedBody: a body of known length that the endpoint
// cuts short fails with io.ErrUnexpectedEOF, and its connection is not
// reused.
func TestH1TransportTruncatedBody(t *testing.T) {
	addr, accepted := rawServer(t, func(c net.Conn, n int) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.URL.Path == "/cut" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	tr := newH1(t, TransportOptions{})
	_, body, err := h1Get(t, tr, context.Background(), "GET", "http://"+addr+"/cut", "")
	if body != "short" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut body: got %q %v, want \"short\" and io.ErrUnexpectedEOF", body, err)
	}
	if code, body, err := h1Get(t, tr, context.Background(), "GET", "http://"+addr+"/", ""); err != nil || code != 200 || body != "ok" {
		t.Fatalf("next request: got %d %q %v, want 200 \"ok\"", code, body, err)
	}
	if got := accepted.Load(); got != 2 {
		t.Errorf("connections: got %d, want 2 (the cut one is not reused)", got)
	}
}

// FuzzSimpleResponse: whatever the simple reader takes, http.ReadResponse
// reads the same way; whatever it declines, it leaves unread.
func FuzzSimpleResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: close\r\nPragma: no-cache\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nSet-Cookie: a\r\nset-cookie: b\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 301 Moved\r\nLocation: /x\r\nContent-Length: 3\r\nX-Weird_Name: v\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
	} {
		f.Add([]byte(s), false, false)
	}
	f.Fuzz(func(t *testing.T, raw []byte, head, small bool) {
		method, size := "GET", h1ReadBuffer
		if head {
			method = "HEAD"
		}
		if small {
			size = 64
		}
		checkSimpleLikeReadResponse(t, raw, method, size)
	})
}

var benchResponse = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Thu, 26 Nov 2026 06:00:00 GMT\r\n" +
	"Content-Length: 1024\r\nCache-Control: no-store\r\nX-Request-Id: 4bf92f3577b34da6a3ce929d0e0e4736\r\n\r\n")

// BenchmarkResponseHead: reading a typical response head, simple reader
// against http.ReadResponse.
func BenchmarkResponseHead(b *testing.B) {
	req, _ := http.NewRequest("GET", "http://up.test/", nil)
	rd := bytes.NewReader(benchResponse)
	br := bufio.NewReaderSize(rd, h1ReadBuffer)
	b.Run("simple", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(benchResponse)
			br.Reset(rd)
			if _, ok := readSimpleResponse(br, req); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("net-http", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(benchResponse)
			br.Reset(rd)
			if _, err := http.ReadResponse(br, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
