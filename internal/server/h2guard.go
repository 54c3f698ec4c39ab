package server

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// HTTP/2 abuse guard.
//
// net/http's HTTP/2 server bounds concurrency but gives no hook to count
// what a client does on a connection. guardConn is a net.Conn wrapper under
// the HTTP/2 server that reads only the 9-byte frame headers of the
// client-to-server stream as they pass (payloads are skipped by length, never
// copied) and keeps a few counters per connection:
//
//   - client RST_STREAM frames against HEADERS frames (Rapid Reset,
//     CVE-2023-44487): at RapidResetThreshold resets, when more than half of
//     the client's streams were reset, the connection ends;
//   - CONTINUATION frames and bytes of the header block being received
//     (CONTINUATION flood, CVE-2024-27316): above MaxContinuationFrames
//     frames or MaxHeaderBlockBytes bytes the connection ends.
//
// Ending means: a GOAWAY(ENHANCE_YOUR_CALM) frame naming the last client
// stream seen is written at the next frame boundary of the server's own
// output (the outbound frame headers are tracked the same way, so the frame
// is never spliced into the middle of one of the server's frames), then the
// connection closes and every later Read fails. Frames may straddle reads:
// the scanner keeps its position (header bytes so far, payload bytes left)
// between calls. Scanning allocates nothing; see BenchmarkFrameScan.

const (
	frameHeaderLen = 9
	prefaceLen     = 24 // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameContinuation = 0x9
	flagEndHeaders    = 0x4

	errCodeEnhanceYourCalm = 0xb
)

// h2Abuse names why a guard ended a connection (a metric label).
type h2Abuse uint8

const (
	abuseNone h2Abuse = iota
	abuseRapidReset
	abuseContinuationFlood
	abuseHeaderBlock
)

func (a h2Abuse) String() string {
	switch a {
	case abuseRapidReset:
		return "rapid_reset"
	case abuseContinuationFlood:
		return "continuation_flood"
	case abuseHeaderBlock:
		return "header_block_too_large"
	}
	return "none"
}

// errH2Abuse is what Read returns once the guard has ended a connection.
var errH2Abuse = errors.New("http2 connection ended by abuse guard")

// h2Limits are a guard's thresholds (all > 0).
type h2Limits struct {
	resets        int // RST_STREAM frames before the ratio check applies
	continuations int // CONTINUATION frames per header block
	blockBytes    int // bytes per header block (HEADERS + CONTINUATION payloads)
}

// frameScanner follows frame boundaries in one direction of an HTTP/2
// connection. The zero value expects a frame header.
type frameScanner struct {
	skip   int                  // preface or payload bytes still to pass
	hdrN   int                  // header bytes gathered in hdr
	hdr    [frameHeaderLen]byte // the header being gathered
	onHead func(typ, flags byte, stream uint32, length int) bool
}

// scan walks p. onHead is called for each complete frame header; when it
// returns false scanning stops and scan returns the offset just past that
// header.
func (s *frameScanner) scan(p []byte) (int, bool) {
	i := 0
	for i < len(p) {
		if s.skip > 0 {
			n := min(s.skip, len(p)-i)
			s.skip -= n
			i += n
			continue
		}
		if s.hdrN == 0 && len(p)-i >= frameHeaderLen {
			// Fast path: the whole header is in p.
			h := p[i : i+frameHeaderLen]
			i += frameHeaderLen
			length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
			s.skip = length
			if !s.onHead(h[3], h[4], binary.BigEndian.Uint32(h[5:9])&(1<<31-1), length) {
				return i, false
			}
			continue
		}
		n := copy(s.hdr[s.hdrN:], p[i:])
		s.hdrN += n
		i += n
		if s.hdrN == frameHeaderLen {
			s.hdrN = 0
			h := &s.hdr
			length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
			s.skip = length
			if !s.onHead(h[3], h[4], binary.BigEndian.Uint32(h[5:9])&(1<<31-1), length) {
				return i, false
			}
		}
	}
	return i, true
}

// atBoundary reports whether the scanner sits between two frames.
func (s *frameScanner) atBoundary() bool { return s.skip == 0 && s.hdrN == 0 }

// guardConn is the HTTP/2 abuse guard around one connection. Read is called
// by the HTTP/2 server's reader goroutine only; Write may be called from any
// goroutine and is serialised by wmu.
type guardConn struct {
	net.Conn
	lim     h2Limits
	onAbuse func(h2Abuse)

	// Read side (reader goroutine only).
	in            frameScanner
	streams       int
	resets        int
	lastStream    uint32
	inBlock       bool
	continuations int
	blockBytes    int
	abuse         h2Abuse

	// Write side.
	wmu     sync.Mutex
	out     frameScanner
	pending bool          // GOAWAY waits for the next outbound frame boundary
	done    chan struct{} // closed once the GOAWAY is written (or abandoned)
	ended   atomic.Bool
}

// newGuardConn wraps c. preface says whether the client preface is still to
// come on c (false when the server already consumed it).
func newGuardConn(c net.Conn, lim h2Limits, preface bool, onAbuse func(h2Abuse)) *guardConn {
	g := &guardConn{Conn: c, lim: lim, onAbuse: onAbuse, done: make(chan struct{})}
	if preface {
		g.in.skip = prefaceLen
	}
	g.in.onHead = g.inbound
	g.out.onHead = func(byte, byte, uint32, int) bool { return true }
	return g
}

// inbound inspects one client frame header; false ends the connection.
func (g *guardConn) inbound(typ, flags byte, stream uint32, length int) bool {
	switch typ {
	case frameHeaders:
		if stream > g.lastStream {
			g.lastStream = stream
			g.streams++
		}
		if flags&flagEndHeaders == 0 {
			g.inBlock, g.continuations, g.blockBytes = true, 0, length
			if g.blockBytes > g.lim.blockBytes {
				g.abuse = abuseHeaderBlock
				return false
			}
		}
	case frameContinuation:
		g.continuations++
		g.blockBytes += length
		switch {
		case g.continuations > g.lim.continuations:
			g.abuse = abuseContinuationFlood
			return false
		case g.blockBytes > g.lim.blockBytes:
			g.abuse = abuseHeaderBlock
			return false
		}
		if flags&flagEndHeaders != 0 {
			g.inBlock = false
		}
	case frameRSTStream:
		g.resets++
		if g.resets >= g.lim.resets && 2*g.resets > g.streams {
			g.abuse = abuseRapidReset
			return false
		}
	}
	return true
}

func (g *guardConn) Read(p []byte) (int, error) {
	if g.ended.Load() {
		return 0, errH2Abuse
	}
	n, err := g.Conn.Read(p)
	if n > 0 {
		if _, ok := g.in.scan(p[:n]); !ok {
			g.end()
			return 0, errH2Abuse
		}
	}
	return n, err
}

// end sends GOAWAY(ENHANCE_YOUR_CALM) at the next outbound frame boundary
// and closes the connection. It runs on the reader goroutine.
func (g *guardConn) end() {
	if g.onAbuse != nil {
		g.onAbuse(g.abuse)
	}
	g.wmu.Lock()
	g.ended.Store(true)
	if g.out.atBoundary() {
		g.writeGoAwayLocked()
		g.wmu.Unlock()
	} else {
		// The server is inside a frame: the next Write completes it and
		// then sends the GOAWAY. A server stuck mid-frame (a client that
		// does not read) is cut after a short wait.
		g.pending = true
		g.wmu.Unlock()
		t := time.NewTimer(time.Second)
		select {
		case <-g.done:
		case <-t.C:
		}
		t.Stop()
	}
	g.Conn.Close()
}

func (g *guardConn) writeGoAwayLocked() {
	var f [frameHeaderLen + 8]byte
	f[2] = 8   // length
	f[3] = 0x7 // GOAWAY
	binary.BigEndian.PutUint32(f[9:13], g.lastStream)
	binary.BigEndian.PutUint32(f[13:17], errCodeEnhanceYourCalm)
	g.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	g.Conn.Write(f[:])
	g.pending = false
	close(g.done)
}

func (g *guardConn) Write(p []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.ended.Load() && !g.pending {
		return 0, net.ErrClosed
	}
	if !g.pending {
		n, err := g.Conn.Write(p)
		g.out.scan(p[:n])
		return n, err
	}
	// Finish the frame in progress, then GOAWAY; drop the rest.
	total := 0
	for !g.out.atBoundary() && len(p) > 0 {
		k := g.out.skip
		if k == 0 {
			k = frameHeaderLen - g.out.hdrN
		}
		k = min(k, len(p))
		n, err := g.Conn.Write(p[:k])
		g.out.scan(p[:n])
		total += n
		if err != nil {
			return total, err
		}
		p = p[k:]
	}
	if g.out.atBoundary() {
		g.writeGoAwayLocked()
	}
	return total, net.ErrClosed
}

// guardTLSConn is a guardConn over a *tls.Conn. The HTTP/2 server looks for
// ConnectionState to fill Request.TLS and check the negotiated suite.
type guardTLSConn struct {
	*guardConn
	tc *tls.Conn
}

func (g guardTLSConn) ConnectionState() tls.ConnectionState { return g.tc.ConnectionState() }
