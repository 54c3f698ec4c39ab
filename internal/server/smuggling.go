package server

import (
	"net"
	"sync"
)

// HTTP/1.1 request-smuggling guard.
//
// Go's parser rejects many ambiguous messages itself (differing duplicate
// Content-Length values, unknown or repeated Transfer-Encoding, bad
// Content-Length syntax, whitespace before a colon), but it silently
// normalises three shapes that a front proxy should refuse, because a
// different parser behind or in front of it may frame them differently:
// Content-Length together with Transfer-Encoding (Go drops the length),
// identical duplicate Content-Length fields (Go keeps one) and obsolete line
// folding (Go joins the lines). After parsing, none of them leaves a trace in
// the *http.Request, so h1Scanner reads the raw bytes as they pass to the
// server: it follows HTTP/1.1 framing (request heads, then Content-Length or
// chunked bodies) without copying anything and queues one verdict per
// request head. The request handler takes the verdict of its request first
// thing and answers a flagged request with 400 and "Connection: close".
//
// The scanner frames exactly as Go does for the messages Go accepts (TE wins
// over CL; TE is ignored on HTTP/1.0, which is flagged too). Should the two
// ever disagree — a body the scanner cannot parse as chunked — the
// connection is marked desynchronised and every later request on it is
// refused: a split of opinion about framing is the smuggling attack itself.

// Smuggling verdict flags.
const (
	smugCLAndTE  uint8 = 1 << iota // Content-Length and Transfer-Encoding
	smugDupCL                      // more than one Content-Length field
	smugObsFold                    // obsolete line folding
	smugTE10                       // Transfer-Encoding on HTTP/1.0
	smugDesync                     // the scanner lost the framing
	smugOverflow                   // too many pipelined heads queued
)

// smugglingReason names the first flag set (a log value).
func smugglingReason(f uint8) string {
	switch {
	case f&smugCLAndTE != 0:
		return "content_length_and_transfer_encoding"
	case f&smugDupCL != 0:
		return "duplicate_content_length"
	case f&smugObsFold != 0:
		return "obsolete_line_folding"
	case f&smugTE10 != 0:
		return "transfer_encoding_on_http10"
	case f&smugDesync != 0:
		return "framing_desync"
	case f&smugOverflow != 0:
		return "pipeline_overflow"
	}
	return ""
}

type h1State uint8

const (
	stLineStart   h1State = iota // at the start of a line in the head
	stRequestLine                // inside the request line
	stField                      // inside a header field line
	stBody                       // skipping a Content-Length body
	stChunkSize                  // chunk-size digits
	stChunkExt                   // chunk extension, to end of line
	stChunkSizeLF                // after CR of the chunk-size line
	stChunkData                  // chunk data
	stChunkDataCR                // CR after chunk data
	stChunkDataLF                // LF after chunk data
	stTrailer                    // trailer section, line by line
	stDead                       // desynchronised: stop scanning
)

// fieldKind is what the current header line is.
type fieldKind uint8

const (
	fieldOther fieldKind = iota
	fieldCL
	fieldTE
)

const maxQueued = 16

// http10Tail is "HTTP/1.0" as the last 8 bytes of a request line.
const http10Tail = 0x485454502f312e30

// h1Scanner follows HTTP/1.1 request framing over a byte stream. Its
// zero value expects the start of a request.
type h1Scanner struct {
	st        h1State
	head      bool   // a request line has been seen in this head
	lineLen   int    // bytes in the current line (CR excluded)
	tail      uint64 // last 8 bytes of the request line, for the version
	name      [18]byte
	kind      fieldKind
	inValue   bool
	valDigits bool
	valBad    bool
	cl        int64
	te        [8]byte
	teN       int
	teOK      bool // value so far equals a prefix of "chunked"
	clCount   int
	teCount   int
	firstCL   int64
	flags     uint8
	http10    bool
	remaining int64 // body or chunk bytes left
	chunkSize int64
	trailerLn int // length of the current trailer line

	queue [maxQueued]uint8
	qHead int
	qLen  int
	desyn bool
	heads int // request heads ended so far
}

// scan consumes p.
func (s *h1Scanner) scan(p []byte) {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch s.st {
		case stDead:
			return
		case stBody:
			n := int64(len(p) - i)
			if n > s.remaining {
				n = s.remaining
			}
			s.remaining -= n
			i += int(n) - 1
			if s.remaining == 0 {
				s.st = stLineStart
			}
		case stChunkData:
			n := int64(len(p) - i)
			if n > s.remaining {
				n = s.remaining
			}
			s.remaining -= n
			i += int(n) - 1
			if s.remaining == 0 {
				s.st = stChunkDataCR
			}
		case stChunkDataCR:
			switch c {
			case '\r':
				s.st = stChunkDataLF
			case '\n':
				s.st = stChunkSize
				s.chunkSize, s.lineLen = 0, 0
			default:
				s.desync()
			}
		case stChunkDataLF:
			if c != '\n' {
				s.desync()
				break
			}
			s.st = stChunkSize
			s.chunkSize, s.lineLen = 0, 0
		case stChunkSize:
			switch {
			case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
				if s.chunkSize > 1<<40 {
					s.desync()
					break
				}
				s.chunkSize = s.chunkSize<<4 | int64(hexVal(c))
				s.lineLen++
			case c == ';' || c == ' ' || c == '\t':
				if s.lineLen == 0 {
					s.desync()
					break
				}
				s.st = stChunkExt
			case c == '\r':
				s.st = stChunkSizeLF
			case c == '\n':
				s.endChunkSize()
			default:
				s.desync()
			}
		case stChunkExt:
			switch c {
			case '\r':
				s.st = stChunkSizeLF
			case '\n':
				s.endChunkSize()
			}
		case stChunkSizeLF:
			if c != '\n' {
				s.desync()
				break
			}
			s.endChunkSize()
		case stTrailer:
			switch c {
			case '\r':
			case '\n':
				if s.trailerLn == 0 {
					s.st = stLineStart
				}
				s.trailerLn = 0
			default:
				s.trailerLn++
			}
		case stLineStart:
			switch c {
			case '\r':
				continue
			case '\n':
				if s.head {
					s.endHead()
				}
				// Blank lines before a request line are skipped.
				continue
			}
			if !s.head {
				s.st = stRequestLine
				s.tail = uint64(c)
				continue
			}
			if c == ' ' || c == '\t' {
				s.flags |= smugObsFold
			}
			s.st = stField
			s.lineLen, s.kind, s.inValue = 0, fieldOther, false
			s.fieldByte(c)
		case stRequestLine:
			if c == '\n' {
				s.head = true
				s.st = stLineStart
				s.http10 = s.tail == http10Tail
				continue
			}
			if c != '\r' {
				s.tail = s.tail<<8 | uint64(c)
			}
		case stField:
			if c == '\n' {
				s.endField()
				s.st = stLineStart
				continue
			}
			s.fieldByte(c)
		}
	}
}

func hexVal(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// fieldByte takes one byte of a header line.
func (s *h1Scanner) fieldByte(c byte) {
	if !s.inValue {
		if c == ':' {
			s.inValue = true
			switch {
			case s.lineLen == len("content-length") && equalFoldASCII(s.name[:s.lineLen], "content-length"):
				s.kind = fieldCL
				s.cl, s.valDigits, s.valBad = 0, false, false
			case s.lineLen == len("transfer-encoding") && equalFoldASCII(s.name[:s.lineLen], "transfer-encoding"):
				s.kind = fieldTE
				s.teN, s.teOK = 0, true
			}
			return
		}
		if s.lineLen < len(s.name) {
			s.name[s.lineLen] = c
		}
		s.lineLen++
		return
	}
	switch s.kind {
	case fieldCL:
		switch {
		case c >= '0' && c <= '9' && !s.valBad:
			if s.cl > 1<<50 {
				s.valBad = true
				return
			}
			s.cl = s.cl*10 + int64(c-'0')
			s.valDigits = true
		case c == ' ' || c == '\t' || c == '\r':
		default:
			s.valBad = true
		}
	case fieldTE:
		if c == ' ' || c == '\t' || c == '\r' {
			return
		}
		const chunked = "chunked"
		if s.teN < len(chunked) && c|0x20 == chunked[s.teN] {
			s.teN++
		} else {
			s.teOK = false
		}
	}
}

func (s *h1Scanner) endField() {
	switch s.kind {
	case fieldCL:
		if s.clCount == 0 {
			s.firstCL = s.cl
		}
		s.clCount++
	case fieldTE:
		s.teCount++
	}
}

// endHead closes a request head: it queues the verdict and picks the body
// framing the way Go's server does.
func (s *h1Scanner) endHead() {
	f := s.flags
	if s.clCount > 0 && s.teCount > 0 {
		f |= smugCLAndTE
	}
	if s.clCount > 1 {
		f |= smugDupCL
	}
	if s.teCount > 0 && s.http10 {
		f |= smugTE10
	}
	if s.desyn {
		f |= smugDesync
	}
	s.push(f)
	s.heads++
	switch {
	case s.teCount > 0 && !s.http10:
		s.st = stChunkSize
		s.chunkSize, s.lineLen = 0, 0
	case s.clCount > 0 && s.firstCL > 0:
		s.st = stBody
		s.remaining = s.firstCL
	default:
		s.st = stLineStart
	}
	s.head, s.flags, s.clCount, s.teCount, s.http10, s.tail = false, 0, 0, 0, false, 0
}

func (s *h1Scanner) endChunkSize() {
	s.lineLen = 0
	if s.chunkSize == 0 {
		s.st = stTrailer
		s.trailerLn = 0
		return
	}
	s.st = stChunkData
	s.remaining = s.chunkSize
}

func (s *h1Scanner) desync() {
	s.desyn = true
	s.st = stDead
}

func (s *h1Scanner) push(f uint8) {
	if s.qLen == maxQueued {
		s.queue[(s.qHead+s.qLen-1)%maxQueued] |= smugOverflow
		return
	}
	s.queue[(s.qHead+s.qLen)%maxQueued] = f
	s.qLen++
}

// pop returns the verdict of the oldest queued head. A request whose head
// was not seen (which cannot happen while the framing is followed) is
// treated as desynchronised.
func (s *h1Scanner) pop() uint8 {
	if s.qLen == 0 {
		return smugDesync
	}
	f := s.queue[s.qHead]
	s.qHead = (s.qHead + 1) % maxQueued
	s.qLen--
	if s.desyn {
		f |= smugDesync
	}
	return f
}

func equalFoldASCII(b []byte, lower string) bool {
	for i := range b {
		if b[i]|0x20 != lower[i] {
			return false
		}
	}
	return true
}

// h1Conn is a connection whose reads pass through an h1Scanner. net/http
// reads from one goroutine, but a handler takes its verdict from another, so
// the scanner is guarded by a mutex (uncontended: one lock per read and one
// per request).
type h1Conn struct {
	net.Conn
	mu  sync.Mutex
	s   h1Scanner
	off bool // HTTP/2 took the connection over

	bg bgRead // net/http's background read, answered lazily (bgread.go)
}

func (c *h1Conn) Read(p []byte) (int, error) {
	if c.bg.special.Load() {
		if n, err, done := c.specialRead(p); done {
			return n, err
		}
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.scanLocked(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// scanLocked passes p through the scanner, unless HTTP/2 took the
// connection over, and arms the background read answer when a request
// head ends. c.mu is held.
func (c *h1Conn) scanLocked(p []byte) {
	if c.off {
		return
	}
	heads := c.s.heads
	c.s.scan(p)
	if c.s.heads != heads {
		c.headRead()
	}
}

// verdict returns the flags of the next request's head.
func (c *h1Conn) verdict() uint8 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.pop()
}

// stop ends scanning (the connection now speaks HTTP/2).
func (c *h1Conn) stop() {
	c.mu.Lock()
	c.off = true
	c.bg.armed = false // nor a background read to answer
	c.bg.update()
	c.mu.Unlock()
}
