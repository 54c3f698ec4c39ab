package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// The common upstream answer is an HTTP/1.1 final response with one
// Content-Length and a short head. readSimpleResponse reads exactly that
// shape, with one string allocation for the whole head; everything else
// (1xx, 204, 304, HEAD, chunked or close-delimited bodies, obsolete line
// folding, bare LF, a head longer than the read buffer, any byte that
// net/http might treat differently) is left unread for http.ReadResponse,
// so that the accepted subset is parsed exactly as net/http parses it.
// FuzzSimpleResponse holds the two to the same answer.

// commonResponseFields interns the canonical names of the header fields
// most responses carry, under their canonical and lower-case spellings.
var commonResponseFields = func() map[string]string {
	names := []string{
		"Accept-Ranges", "Access-Control-Allow-Origin", "Age", "Alt-Svc", "Cache-Control",
		"Connection", "Content-Disposition", "Content-Encoding", "Content-Language",
		"Content-Length", "Content-Range", "Content-Security-Policy", "Content-Type", "Date",
		"Etag", "Expires", "Keep-Alive", "Last-Modified", "Link", "Location", "Pragma",
		"Referrer-Policy", "Retry-After", "Server", "Set-Cookie", "Strict-Transport-Security",
		"Trailer", "Transfer-Encoding", "Vary", "Via", "Www-Authenticate",
		"X-Content-Type-Options", "X-Frame-Options", "X-Request-Id",
	}
	m := make(map[string]string, 2*len(names))
	for _, n := range names {
		m[n] = n
		m[strings.ToLower(n)] = n
	}
	return m
}()

// readSimpleResponse reads a response head of the simple shape from br,
// reading more into br's buffer as needed. It returns ok false, having
// consumed nothing, when the response is of another shape or reading failed
// first: http.ReadResponse then reads it from the same bytes (a failed
// read fails the same way again). The body, if any, is left in br;
// resp.Body is nil and resp.ContentLength says how much follows.
func readSimpleResponse(br *bufio.Reader, req *http.Request) (resp *http.Response, ok bool) {
	if req.Method == http.MethodHead || req.Method == http.MethodConnect {
		return nil, false
	}
	from := 0 // where the search for the head's end goes on
	for {
		buf, _ := br.Peek(br.Buffered())
		for {
			// The head ends at its first empty line, as textproto reads
			// lines: LF or CR LF right after an LF.
			i := bytes.IndexByte(buf[from:], '\n')
			if i < 0 {
				from = len(buf)
				break
			}
			i += from
			if i+1 == len(buf) || buf[i+1] == '\r' && i+2 == len(buf) {
				from = i // undecided until more arrives
				break
			}
			if buf[i+1] == '\n' {
				return nil, false // ended by a bare LF
			}
			if buf[i+1] == '\r' && buf[i+2] == '\n' {
				if i == 0 || buf[i-1] != '\r' {
					return nil, false
				}
				head := buf[:i+3]
				resp, ok = parseSimpleResponse(head, req)
				if ok {
					br.Discard(len(head))
				}
				return resp, ok
			}
			from = i + 1
		}
		if len(buf) >= br.Size() {
			return nil, false // longer than the buffer
		}
		if _, err := br.Peek(len(buf) + 1); err != nil && err != bufio.ErrBufferFull { //nolint:errorlint // bufio returns its sentinels unwrapped
			return nil, false
		}
	}
}

// parseSimpleResponse parses head, a response head that ends in CRLF CRLF,
// when it is of the simple shape.
func parseSimpleResponse(head []byte, req *http.Request) (*http.Response, bool) {
	// Status line: "HTTP/1.1 " 3DIGIT [ " " reason ] CRLF.
	const proto = "HTTP/1.1 "
	if len(head) < len(proto)+3+2 || string(head[:len(proto)]) != proto {
		return nil, false
	}
	eol := bytes.IndexByte(head, '\n')
	if eol < 0 || head[eol-1] != '\r' {
		return nil, false
	}
	code := 0
	for _, c := range head[len(proto) : len(proto)+3] {
		if c < '0' || c > '9' {
			return nil, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil, false
	}
	statusEnd := eol - 1
	if statusEnd > len(proto)+3 {
		if head[len(proto)+3] != ' ' {
			return nil, false
		}
		for _, c := range head[len(proto)+4 : statusEnd] {
			if !fieldValueByte(c) {
				return nil, false
			}
		}
	}

	// Header fields: count them first, so that their values share one
	// slice, and check every byte; then build the map from one string.
	n := 0
	for p := eol + 1; ; {
		e := bytes.IndexByte(head[p:], '\n') + p
		if e == p+1 && head[p] == '\r' {
			break // the empty line
		}
		line := head[p:e]
		if len(line) < 2 || line[len(line)-1] != '\r' {
			return nil, false
		}
		line = line[:len(line)-1]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, false
		}
		for _, c := range line[:colon] {
			if !httpguts.IsTokenRune(rune(c)) {
				return nil, false
			}
		}
		for _, c := range line[colon+1:] {
			if !fieldValueByte(c) {
				return nil, false
			}
		}
		n++
		p = e + 1
	}

	s := string(head)
	h := make(http.Header, n)
	vals := make([]string, n)
	p := eol + 1
	for i := range n {
		e := p + strings.IndexByte(s[p:], '\n')
		line := s[p : e-1]
		p = e + 1
		colon := strings.IndexByte(line, ':')
		name := line[:colon]
		key, ok := commonResponseFields[name]
		if !ok {
			key = textproto.CanonicalMIMEHeaderKey(name)
		}
		v := textproto.TrimString(line[colon+1:])
		if old, dup := h[key]; dup {
			h[key] = append(old, v)
			continue
		}
		vals[i] = v
		h[key] = vals[i : i+1 : i+1]
	}

	if _, ok := h["Transfer-Encoding"]; ok {
		return nil, false
	}
	if _, ok := h["Trailer"]; ok {
		return nil, false
	}
	cl := h["Content-Length"]
	if len(cl) != 1 {
		return nil, false // none (close-delimited), or several
	}
	length, ok := parseDigits(cl[0])
	if !ok {
		return nil, false
	}
	resp := &http.Response{
		Status:        s[len(proto):statusEnd],
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: length,
		Request:       req,
	}
	if conn, ok := h["Connection"]; ok && httpguts.HeaderValuesContainsToken(conn, "close") {
		resp.Close = true
		delete(h, "Connection")
	}
	if pragma := h["Pragma"]; len(pragma) > 0 && pragma[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	return resp, true
}

// fieldValueByte reports whether c may appear in a field value (or a
// reason phrase): anything but controls other than HTAB, and DEL.
func fieldValueByte(c byte) bool {
	return c >= ' ' && c != 0x7f || c == '\t'
}

// parseDigits parses a Content-Length: 1 to 18 ASCII digits.
func parseDigits(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
