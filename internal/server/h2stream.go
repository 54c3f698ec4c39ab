package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Stream is one request and its response. It is the handler's
// http.ResponseWriter.
type h2Stream struct {
	c      *h2Conn
	id     uint32
	req    *http.Request
	ctx    context.Context
	cancel context.CancelCauseFunc
	body   h2Body

	// Guarded by c.mu.
	sendWindow   int64
	recvWindow   int32 // what the client may still send
	recvUsed     int32 // consumed by the handler, not yet returned
	remoteClosed bool  // the client ended its side
	localDone    bool  // the handler returned: the final frames are going out
	aborted      bool  // reset by either side, or the connection ended
	abortErr     error

	readTimer, writeTimer *time.Timer // listener read and write timeouts, if set

	// Response state, used by the handler's goroutine only.
	hdr         http.Header
	status      int
	wroteHeader bool
	sentHeader  bool
	buf         []byte  // response bytes not yet framed, in *bufp
	bufp        *[]byte // from chunkBufs, until the stream is done
	written     int64
	declared    int64           // Content-Length the handler set, or -1
	noBody      bool            // HEAD, 204, 304
	trailerKeys map[string]bool // declared in the Trailer header at WriteHeader
	sent100     atomic.Bool     // the body may be read on another goroutine
}

// chunkBufs lends streams their response buffers, h2ChunkSize each: a
// response's bytes wait there until a DATA frame is full or the response
// ends, and a short response would otherwise allocate its own.
var chunkBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, h2ChunkSize)
	return &b
}}

func (st *h2Stream) run(status int) {
	panicked := true
	defer func() {
		if panicked {
			p := recover()
			if p != http.ErrAbortHandler {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				st.c.srv.log.Error("http2 handler panic", "remote", st.c.remoteAddr, "panic", p, "stack", string(buf))
			}
			st.c.resetStream(st.id, http2.ErrCodeInternal)
		}
		st.done()
	}()
	if status != 0 {
		st.Header().Set("Content-Type", "text/plain; charset=utf-8")
		st.WriteHeader(status)
		io.WriteString(st, http.StatusText(status)+"\n")
	} else {
		st.c.handler.ServeHTTP(st, st.req)
	}
	panicked = false
}

// done ends the stream once the handler has returned.
func (st *h2Stream) done() {
	c := st.c
	if st.readTimer != nil {
		st.readTimer.Stop()
	}
	if st.writeTimer != nil {
		st.writeTimer.Stop()
	}
	st.cancel(errH2StreamClosed)
	c.mu.Lock()
	aborted := st.aborted
	st.localDone = true
	c.mu.Unlock()
	if !aborted {
		st.finish()
	}
	if st.bufp != nil {
		chunkBufs.Put(st.bufp)
		st.bufp, st.buf = nil, nil
	}
	c.mu.Lock()
	aborted = st.aborted
	remoteOpen := !st.remoteClosed && !aborted
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
	}
	if remoteOpen {
		c.noteResetLocked(st.id)
	}
	st.aborted = true
	c.active--
	idle := c.active == 0
	closeNow := idle && c.closeWhenIdle
	if idle && !c.goingAway {
		c.armIdleLocked()
	}
	c.mu.Unlock()
	if remoteOpen {
		// The answer is complete; the rest of the request is not wanted
		// (RFC 9113 8.1).
		c.writeCtl(func() error { return c.fr.WriteRSTStream(st.id, http2.ErrCodeNo) })
	}
	if n := st.body.abort(errH2StreamClosed); n > 0 {
		c.returnConnWindow(int32(n))
	}
	if closeNow {
		c.nc.Close()
	}
}

// abort ends the stream early: the handler's context is cancelled, its
// body reads and response writes fail.
func (st *h2Stream) abort(err error) {
	c := st.c
	c.mu.Lock()
	if st.aborted {
		c.mu.Unlock()
		return
	}
	st.aborted, st.abortErr = true, err
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	st.cancel(err)
	if n := st.body.abort(err); n > 0 {
		c.returnConnWindow(int32(n))
	}
}

func (st *h2Stream) Header() http.Header {
	if st.hdr == nil {
		st.hdr = make(http.Header)
	}
	return st.hdr
}

func (st *h2Stream) WriteHeader(code int) {
	if st.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	st.Header()
	if code >= 100 && code <= 199 {
		if code == http.StatusSwitchingProtocols {
			return // no upgrades in HTTP/2
		}
		if code == http.StatusContinue {
			st.sent100.Store(true)
		}
		st.writeHeaders(code, st.hdr, false, true)
		return
	}
	st.wroteHeader, st.status = true, code
	st.declared = -1
	if v := st.hdr.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			st.declared = n
		} else {
			st.hdr.Del("Content-Length")
		}
	}
	st.noBody = st.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	for _, v := range st.hdr["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
				if st.trailerKeys == nil {
					st.trailerKeys = map[string]bool{}
				}
				st.trailerKeys[k] = true
			}
		}
	}
}

func (st *h2Stream) Write(p []byte) (int, error) {
	if !st.wroteHeader {
		st.WriteHeader(http.StatusOK)
	}
	if st.noBody {
		if st.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if st.declared >= 0 && st.written+int64(len(p)) > st.declared {
		return 0, http.ErrContentLength
	}
	if err := st.alive(); err != nil {
		return 0, err
	}
	st.written += int64(len(p))
	n := len(p)
	for len(p) > 0 {
		if len(st.buf) == 0 && len(p) >= h2ChunkSize {
			// Large writes go out directly.
			if err := st.sendData(p, false); err != nil {
				return n - len(p), err
			}
			return n, nil
		}
		if st.bufp == nil {
			st.bufp = chunkBufs.Get().(*[]byte)
			st.buf = (*st.bufp)[:0]
		}
		k := min(len(p), h2ChunkSize-len(st.buf))
		st.buf = append(st.buf, p[:k]...)
		p = p[k:]
		if len(st.buf) == h2ChunkSize {
			if err := st.sendData(st.buf, false); err != nil {
				return n - len(p), err
			}
			st.buf = st.buf[:0]
		}
	}
	return n, nil
}

func (st *h2Stream) Flush() { st.FlushError() }

// FlushError sends the response head and what is buffered.
func (st *h2Stream) FlushError() error {
	if !st.wroteHeader {
		st.WriteHeader(http.StatusOK)
	}
	if err := st.alive(); err != nil {
		return err
	}
	if !st.sentHeader {
		if err := st.writeHeaders(st.status, st.hdr, false, false); err != nil {
			return err
		}
	}
	if len(st.buf) > 0 {
		err := st.sendData(st.buf, false)
		st.buf = st.buf[:0]
		if err != nil {
			return err
		}
	}
	return st.c.flush()
}

// SetReadDeadline and SetWriteDeadline serve http.ResponseController.
// Stream reads and writes are bounded by the request context and the
// connection's write-idle deadline; per-stream deadlines are not offered.
func (st *h2Stream) SetReadDeadline(time.Time) error  { return http.ErrNotSupported }
func (st *h2Stream) SetWriteDeadline(time.Time) error { return http.ErrNotSupported }

func (st *h2Stream) alive() error {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	if st.aborted {
		return st.abortErr
	}
	return nil
}

// finish ends the response after the handler returned: head, buffered
// body and trailers, with END_STREAM on the last frame, in one flush.
func (st *h2Stream) finish() {
	if !st.wroteHeader {
		st.WriteHeader(http.StatusOK)
	}
	trailers := st.trailers()
	if !st.sentHeader {
		if st.declared < 0 && !st.noBody && trailers == nil {
			// The whole body is here: say how long it is.
			st.hdr.Set("Content-Length", strconv.Itoa(len(st.buf)))
		}
		end := (len(st.buf) == 0 || st.noBody) && trailers == nil
		if st.writeHeaders(st.status, st.hdr, end, false) != nil || end {
			st.c.flush()
			return
		}
	}
	if trailers == nil {
		st.sendData(st.buf, true)
	} else {
		if len(st.buf) > 0 && st.sendData(st.buf, false) != nil {
			return
		}
		st.writeHeaders(0, trailers, true, false)
	}
	st.buf = nil
	st.c.flush()
}

// trailers collects the values of declared trailers and of TrailerPrefix
// keys, or nil when there are none.
func (st *h2Stream) trailers() http.Header {
	var tr http.Header
	for k := range st.trailerKeys {
		if vv, ok := st.hdr[k]; ok {
			if tr == nil {
				tr = http.Header{}
			}
			tr[k] = vv
		}
	}
	for k, vv := range st.hdr {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			if tr == nil {
				tr = http.Header{}
			}
			tr[http.CanonicalHeaderKey(name)] = vv
		}
	}
	return tr
}

// h2SkipHeaders are fields never sent in an HTTP/2 response.
var h2SkipHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Transfer-Encoding": true,
	"Upgrade": true,
}

// writeHeaders encodes and writes a HEADERS frame (with CONTINUATIONs if
// needed). status 0 writes trailers. flush sends it at once (1xx).
func (st *h2Stream) writeHeaders(status int, h http.Header, end, flush bool) error {
	c := st.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if err := st.alive(); err != nil {
		return err
	}
	c.hbuf.Reset()
	if status != 0 {
		c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(status)})
		if status >= 200 {
			st.sentHeader = true
		}
	}
	hasDate, hasType := false, false
	for k, vv := range h {
		if h2SkipHeaders[k] || strings.HasPrefix(k, http.TrailerPrefix) || status >= 200 && st.trailerKeys[k] {
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		switch k {
		case "Date":
			hasDate = true
		case "Content-Type":
			hasType = true
		case "Te":
			continue
		}
		name := lowerHeader(k)
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				continue
			}
			c.henc.WriteField(hpack.HeaderField{Name: name, Value: v})
		}
	}
	if status >= 200 {
		if !hasDate {
			c.henc.WriteField(hpack.HeaderField{Name: "date", Value: httpDate()})
		}
		if !hasType && !st.noBody && len(st.buf) > 0 {
			c.henc.WriteField(hpack.HeaderField{Name: "content-type", Value: http.DetectContentType(st.buf)})
		}
	}
	block := c.hbuf.Bytes()
	c.mu.Lock()
	max := int(c.peerMaxFrame)
	c.mu.Unlock()
	first := true
	for first || len(block) > 0 {
		n := min(len(block), max)
		frag := block[:n]
		block = block[n:]
		var err error
		if first {
			err = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = c.fr.WriteContinuation(st.id, len(block) == 0, frag)
		}
		if err != nil {
			c.failLocked(err)
			return err
		}
	}
	if flush {
		if err := c.bw.Flush(); err != nil {
			c.failLocked(err)
			return err
		}
	}
	return nil
}

// sendData writes p as DATA frames within the flow-control windows,
// waiting for window when there is none. end sets END_STREAM on the last.
func (st *h2Stream) sendData(p []byte, end bool) error {
	c := st.c
	if !st.sentHeader {
		if err := st.writeHeaders(st.status, st.hdr, false, false); err != nil {
			return err
		}
	}
	for {
		n := 0
		if len(p) > 0 {
			var err error
			if n, err = st.reserve(len(p)); err != nil {
				return err
			}
		}
		last := n == len(p)
		c.wmu.Lock()
		if c.werr != nil {
			c.wmu.Unlock()
			return c.werr
		}
		err := c.fr.WriteData(st.id, end && last, p[:n])
		if err != nil {
			c.failLocked(err)
		}
		c.wmu.Unlock()
		if err != nil {
			return err
		}
		p = p[n:]
		if last {
			return nil
		}
	}
}

// reserve takes up to want bytes of send window (stream and connection)
// and at most one frame's worth, waiting while there is none.
func (st *h2Stream) reserve(want int) (int, error) {
	c := st.c
	var stall *time.Timer
	stalled := false // guarded by c.mu
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if st.aborted {
			return 0, st.abortErr
		}
		if c.closed {
			return 0, errH2ConnClosed
		}
		n := min(int64(want), st.sendWindow, c.connSendWindow, int64(c.peerMaxFrame))
		if n > 0 {
			st.sendWindow -= n
			c.connSendWindow -= n
			return int(n), nil
		}
		// Out of window: what is buffered must reach the client before
		// it can grant more.
		c.mu.Unlock()
		err := c.flush()
		c.mu.Lock()
		if err != nil {
			return 0, err
		}
		if st.sendWindow > 0 && c.connSendWindow > 0 || st.aborted || c.closed {
			continue
		}
		if d := c.srv.stallTimeout; d > 0 {
			if stall == nil {
				stall = time.AfterFunc(d, func() {
					c.mu.Lock()
					stalled = true
					c.cond.Broadcast()
					c.mu.Unlock()
				})
				defer stall.Stop()
			}
			if stalled {
				c.mu.Unlock()
				if c.srv.onStall != nil {
					c.srv.onStall()
				}
				c.resetStream(st.id, http2.ErrCodeFlowControl)
				c.mu.Lock()
				return 0, errH2Stalled
			}
		}
		c.cond.Wait()
	}
}

// errH2Stalled: the client granted no flow-control window for the
// listener's write_idle.
var errH2Stalled = errors.New("http2: no flow-control window from the client within write_idle")

// flush writes out the connection's buffer.
func (c *h2Conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if err := c.bw.Flush(); err != nil {
		c.failLocked(err)
		return err
	}
	return nil
}

// failLocked records a write error and closes the socket, which ends the
// reader and with it every stream. Callers hold wmu.
func (c *h2Conn) failLocked(err error) {
	if c.werr == nil {
		c.werr = err
		c.nc.Close()
	}
}

// h2Body is a request body: DATA frames queued by the reader goroutine,
// read by the handler, with the flow-control window returned as it reads.
type h2Body struct {
	st       *h2Stream
	mu       sync.Mutex
	cond     sync.Cond // L is &mu
	buf      bytes.Buffer
	err      error // io.EOF once complete, or why the stream ended
	declared int64 // content-length, or -1
	received int64
	closed   bool        // the handler closed the body
	trailer  http.Header // received trailers, for the request at EOF
}

// write queues p; end marks the body complete. It reports false when the
// data contradicts the declared content-length.
func (b *h2Body) write(p []byte, end bool) bool {
	b.mu.Lock()
	if b.err != nil && !b.closed {
		// Failed (read timeout) or already complete: nobody reads this.
		b.mu.Unlock()
		if len(p) > 0 {
			b.st.c.returnWindow(b.st, int32(len(p)))
		}
		return true
	}
	b.received += int64(len(p))
	if b.declared >= 0 && (b.received > b.declared || end && b.received != b.declared) {
		b.err = errors.New("http2: request body does not match its content-length")
		b.cond.Broadcast()
		b.mu.Unlock()
		return false
	}
	ret := 0
	if b.closed {
		ret = len(p) // nobody will read it: the window goes back now
	} else {
		b.buf.Write(p)
		if end {
			b.err = io.EOF
		}
		b.cond.Broadcast()
	}
	b.mu.Unlock()
	if ret > 0 {
		b.st.c.returnWindow(b.st, int32(ret))
	}
	return true
}

// finish ends the body with trailers. It reports false when the body
// fell short of its declared content-length.
func (b *h2Body) finish(tr http.Header) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return true
	}
	ok := b.declared < 0 || b.received == b.declared
	if !ok {
		b.err = errors.New("http2: request body does not match its content-length")
	} else {
		// Handed to the request by the reader of the body at EOF: the
		// handler's goroutine may be reading req.Trailer now (a request
		// clone), the body's reader is the one that waits for it.
		b.trailer = tr
		b.err = io.EOF
	}
	b.cond.Broadcast()
	return ok
}

func (b *h2Body) Read(p []byte) (int, error) {
	st := b.st
	if !st.sent100.Load() && st.req.Header.Get("Expect") == "100-continue" && !st.sent100.Swap(true) {
		st.writeHeaders(http.StatusContinue, nil, false, true)
	}
	b.mu.Lock()
	for b.buf.Len() == 0 && b.err == nil {
		b.cond.Wait()
	}
	if b.buf.Len() == 0 {
		err := b.err
		if err == io.EOF && b.trailer != nil {
			// Declared trailers only, as their keys are already in the
			// request's map (RFC 9110 6.5.1); the map itself is not replaced.
			for k := range st.req.Trailer {
				if vv, ok := b.trailer[k]; ok {
					st.req.Trailer[k] = vv
				}
			}
			b.trailer = nil
		}
		b.mu.Unlock()
		return 0, err
	}
	n, _ := b.buf.Read(p)
	b.mu.Unlock()
	st.c.returnWindow(st, int32(n))
	return n, nil
}

func (b *h2Body) Close() error {
	b.mu.Lock()
	b.closed = true
	n := b.buf.Len()
	b.buf.Reset()
	if b.err == nil {
		b.err = errors.New("http: read on closed request body")
	}
	b.cond.Broadcast()
	b.mu.Unlock()
	if n > 0 {
		b.st.c.returnWindow(b.st, int32(n))
	}
	return nil
}

// fail ends a body that is not yet complete with err (the read timeout),
// and reports whether it did.
func (b *h2Body) fail(err error) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return false
	}
	b.err = err
	b.cond.Broadcast()
	return true
}

// abort ends the body with err and reports how many unread bytes it
// dropped (their connection window is the caller's to return).
func (b *h2Body) abort(err error) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.buf.Len()
	b.buf.Reset()
	if b.err == nil || b.err == io.EOF && n > 0 {
		b.err = err
	}
	b.closed = true
	b.cond.Broadcast()
	return n
}

// lowerNames holds the lower-case forms of common response header names,
// so that encoding them allocates nothing.
var lowerNames = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept-Ranges", "Access-Control-Allow-Origin", "Age", "Cache-Control", "Content-Disposition",
		"Content-Encoding", "Content-Language", "Content-Length", "Content-Location", "Content-Range",
		"Content-Type", "Date", "Etag", "Expires", "Grpc-Message", "Grpc-Status", "Last-Modified", "Link",
		"Location", "Retry-After", "Server", "Set-Cookie", "Strict-Transport-Security", "Trailer",
		"Vary", "Via", "Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options", "X-Request-Id",
		"Aegis-Demo-Region", "Aegis-Region", "Aegis-Carbon-Intensity",
	} {
		m[k] = strings.ToLower(k)
	}
	return m
}()

func lowerHeader(k string) string {
	if v, ok := lowerNames[k]; ok {
		return v
	}
	return strings.ToLower(k)
}

func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 304:
		return "304"
	case 404:
		return "404"
	}
	return strconv.Itoa(code)
}

// httpDate is the Date header value, formatted once a second.
func httpDate() string {
	now := time.Now()
	sec := now.Unix()
	if d := cachedDate.Load(); d != nil && d.sec == sec {
		return d.text
	}
	d := &dateText{sec: sec, text: now.UTC().Format(http.TimeFormat)}
	cachedDate.Store(d)
	return d.text
}

type dateText struct {
	sec  int64
	text string
}

var cachedDate atomic.Pointer[dateText]
