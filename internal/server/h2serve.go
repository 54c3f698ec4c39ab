package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Server serves HTTP/2 connections (RFC 9113) for a listener generation.
//
// Each connection has one goroutine that reads and acts on the client's
// frames, and each request runs its handler on a goroutine of its own. A
// handler writes its response frames straight into the connection's write
// buffer under the connection's write lock and flushes once when the
// response is complete (or when it calls Flush, or must wait for flow
// control), so a short response goes out in one write(2) with its HEADERS
// and DATA together.
//
// Frame syntax, header-block assembly, HPACK and header-field validity
// are x/net's Framer; stream states, flow control, settings and the
// mapping to net/http are here.
type h2Server struct {
	streamWindow   int32  // receive window per stream
	connWindow     int32  // receive window per connection (at least 65535)
	maxReadFrame   uint32 // largest frame accepted
	maxStreams     uint32
	maxHeaderBytes uint32
	idleTimeout    time.Duration
	readTimeout    time.Duration // a request body must be complete within it (0: none)
	writeTimeout   time.Duration // a response must be complete within it (0: none)
	// stallTimeout bounds a response's wait for flow-control window: a
	// client that stops granting window is a client that stops reading
	// (the listener's write_idle; 0 or less: no bound). onStall counts it.
	stallTimeout time.Duration
	onStall      func()
	// onReadTimeout and onWriteTimeout count a request body not complete
	// within readTimeout and a response not complete within writeTimeout.
	onReadTimeout, onWriteTimeout func()
	log                           *slog.Logger

	mu       sync.Mutex
	conns    map[*h2Conn]struct{}
	shutdown bool

	// Handlers run on pooled goroutines: a goroutine that served a
	// request keeps the stack it grew, which a new goroutine would grow
	// again, copying it two or three times, for every request.
	workersMu sync.Mutex
	idle      []*h2Worker // most recently parked last
	trimTimer *time.Timer
}

// h2Worker is a parked handler goroutine.
type h2Worker struct {
	jobs  chan h2Job
	since time.Time
}

type h2Job struct {
	st     *h2Stream
	status int
}

const (
	h2MaxIdleWorkers = 256
	h2WorkerIdle     = 10 * time.Second // an idle worker older than this exits
)

// dispatch runs the stream's handler on an idle worker, or a new one.
func (s *h2Server) dispatch(j h2Job) {
	s.workersMu.Lock()
	if n := len(s.idle); n > 0 {
		w := s.idle[n-1]
		s.idle[n-1] = nil
		s.idle = s.idle[:n-1]
		s.workersMu.Unlock()
		w.jobs <- j
		return
	}
	s.workersMu.Unlock()
	go s.work(j)
}

func (s *h2Server) work(j h2Job) {
	w := &h2Worker{jobs: make(chan h2Job, 1)}
	for {
		j.st.run(j.status)
		j = h2Job{}
		s.workersMu.Lock()
		if len(s.idle) >= h2MaxIdleWorkers {
			s.workersMu.Unlock()
			return
		}
		w.since = time.Now()
		s.idle = append(s.idle, w)
		if s.trimTimer == nil {
			s.trimTimer = time.AfterFunc(h2WorkerIdle, s.trimIdle)
		}
		s.workersMu.Unlock()
		var ok bool
		if j, ok = <-w.jobs; !ok {
			return
		}
	}
}

// trimIdle ends the workers that have been idle for h2WorkerIdle.
func (s *h2Server) trimIdle() {
	s.workersMu.Lock()
	defer s.workersMu.Unlock()
	cutoff := time.Now().Add(-h2WorkerIdle)
	n := 0
	for n < len(s.idle) && s.idle[n].since.Before(cutoff) {
		close(s.idle[n].jobs)
		n++
	}
	s.idle = append(s.idle[:0], s.idle[n:]...)
	if len(s.idle) > 0 {
		s.trimTimer.Reset(h2WorkerIdle / 2)
	} else {
		s.trimTimer = nil
	}
}

const (
	h2MaxFrame  = 16 << 10 // the protocol's initial SETTINGS_MAX_FRAME_SIZE
	h2ChunkSize = 4 << 10  // response bytes buffered per stream before a DATA frame
	// h2ConnBuffer sizes each connection's read and write buffers: many
	// small frames per system call, 8 KiB per connection in all (larger
	// reads and writes bypass them).
	h2ConnBuffer    = 4 << 10
	h2MaxWindow     = 1<<31 - 1
	h2DefaultWindow = 65535
)

// Why a stream ended early. They are the cause of the request context's
// cancellation and wrap context.Canceled, as a client that went away
// should read to the proxy.
var (
	errH2StreamClosed = fmt.Errorf("http2: stream closed: %w", context.Canceled)
	errH2ConnClosed   = fmt.Errorf("http2: connection closed: %w", context.Canceled)
)

// Shutdown sends GOAWAY to every connection; each closes once its streams
// are done.
func (s *h2Server) Shutdown() {
	s.mu.Lock()
	s.shutdown = true
	conns := make([]*h2Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAway(http2.ErrCodeNo, true)
	}
	s.workersMu.Lock()
	for _, w := range s.idle {
		close(w.jobs)
	}
	s.idle = nil
	s.workersMu.Unlock()
}

// ServeConn serves one connection until it ends. sawPreface says the
// client preface was already read (h2c with prior knowledge, handed over
// by net/http).
func (s *h2Server) ServeConn(ctx context.Context, nc net.Conn, h http.Handler, sawPreface bool) {
	c := &h2Conn{
		srv:            s,
		handler:        h,
		baseCtx:        ctx,
		nc:             nc,
		br:             bufio.NewReaderSize(nc, h2ConnBuffer),
		bw:             bufio.NewWriterSize(nc, h2ConnBuffer),
		streams:        map[uint32]*h2Stream{},
		connSendWindow: h2DefaultWindow,
		peerWindow:     h2DefaultWindow,
		peerMaxFrame:   h2MaxFrame,
		remoteAddr:     nc.RemoteAddr().String(),
	}
	c.cond = sync.NewCond(&c.mu)
	if cs, ok := nc.(interface{ ConnectionState() tls.ConnectionState }); ok {
		st := cs.ConnectionState()
		c.tls = &st
	}
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = s.maxHeaderBytes
	c.fr.SetMaxReadFrameSize(s.maxReadFrame)
	c.henc = hpack.NewEncoder(&c.hbuf)
	// The client's SETTINGS_HEADER_TABLE_SIZE may only shrink our
	// encoder's table below the default, never grow it.
	c.henc.SetMaxDynamicTableSizeLimit(4096)
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if s.conns == nil {
		s.conns = map[*h2Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	c.serve(sawPreface)
}

// h2Conn is one HTTP/2 connection.
type h2Conn struct {
	srv        *h2Server
	handler    http.Handler
	baseCtx    context.Context
	nc         net.Conn
	br         *bufio.Reader
	fr         *http2.Framer // reads on the serve goroutine; writes under wmu
	tls        *tls.ConnectionState
	remoteAddr string

	wmu  sync.Mutex
	bw   *bufio.Writer
	henc *hpack.Encoder
	hbuf bytes.Buffer
	werr error // first write error; every later write fails with it

	mu             sync.Mutex
	cond           *sync.Cond // send-window and stream-state changes
	streams        map[uint32]*h2Stream
	maxClientID    uint32 // highest stream the client opened
	active         int    // streams whose handler still runs
	connSendWindow int64
	peerWindow     int32  // the client's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxFrame   uint32 // the client's SETTINGS_MAX_FRAME_SIZE
	goingAway      bool   // GOAWAY sent or received: new streams are ignored
	closeWhenIdle  bool   // a GOAWAY was received, or ours is written: the last stream's end closes the connection
	closed         bool
	connRecvUsed   int32               // bytes received whose window was not yet returned
	connReturn     int32               // bytes consumed, to return in the next connection WINDOW_UPDATE
	resetIDs       map[uint32]struct{} // streams this side reset: their late frames are ignored
	resetOrder     []uint32            // resetIDs oldest first, to bound it
	sawSettings    bool
	settingsAcked  bool // the client acknowledged our SETTINGS
}

// h2ConnError ends the connection with GOAWAY.
type h2ConnError struct {
	code http2.ErrCode
	why  string
}

func (e h2ConnError) Error() string { return "http2: " + e.code.String() + ": " + e.why }

func connErr(code http2.ErrCode, why string) error { return h2ConnError{code, why} }

func (c *h2Conn) serve(sawPreface bool) {
	defer c.close()
	if !sawPreface {
		c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		var pre [len(http2.ClientPreface)]byte
		if _, err := io.ReadFull(c.br, pre[:]); err != nil || string(pre[:]) != http2.ClientPreface {
			return
		}
	}
	c.wmu.Lock()
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.srv.maxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(c.srv.streamWindow)},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: c.srv.maxReadFrame},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.srv.maxHeaderBytes},
	)
	if inc := c.srv.connWindow - h2DefaultWindow; inc > 0 {
		c.fr.WriteWindowUpdate(0, uint32(inc))
	}
	err := c.bw.Flush()
	c.wmu.Unlock()
	if err != nil {
		return
	}
	c.mu.Lock()
	c.armIdleLocked()
	c.mu.Unlock()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &se):
				c.resetStream(se.StreamID, se.Code)
				continue
			case errors.As(err, &ce):
				c.goAway(http2.ErrCode(ce), false)
				return
			case errors.Is(err, http2.ErrFrameTooLarge):
				c.goAway(http2.ErrCodeFrameSize, false)
				return
			case isTimeout(err) && c.idle():
				c.goAway(http2.ErrCodeNo, false)
				return
			}
			return
		}
		if err := c.process(f); err != nil {
			var ce h2ConnError
			if errors.As(err, &ce) {
				c.srv.log.Debug("http2 connection error", "remote", c.remoteAddr, "err", err)
				c.goAway(ce.code, false)
			}
			return
		}
	}
}

// idle reports whether no stream is in progress.
func (c *h2Conn) idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active == 0
}

// armIdleLocked sets the idle deadline. Callers hold mu and have seen no
// stream in progress, so that a stream that has just started (and cleared
// the deadline under mu) is not cut by it.
func (c *h2Conn) armIdleLocked() {
	if d := c.srv.idleTimeout; d > 0 {
		c.nc.SetReadDeadline(time.Now().Add(d))
	} else {
		c.nc.SetReadDeadline(time.Time{})
	}
}

func (c *h2Conn) process(f http2.Frame) error {
	if !c.sawSettings {
		sf, ok := f.(*http2.SettingsFrame)
		if !ok || sf.IsAck() {
			return connErr(http2.ErrCodeProtocol, "first frame is not SETTINGS")
		}
		c.sawSettings = true
	}
	switch f := f.(type) {
	case *http2.SettingsFrame:
		return c.processSettings(f)
	case *http2.MetaHeadersFrame:
		return c.processHeaders(f)
	case *http2.DataFrame:
		return c.processData(f)
	case *http2.WindowUpdateFrame:
		return c.processWindowUpdate(f)
	case *http2.RSTStreamFrame:
		return c.processReset(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			return c.writeCtl(func() error { return c.fr.WritePing(true, f.Data) })
		}
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			c.resetStream(f.StreamID, http2.ErrCodeProtocol)
		}
	case *http2.GoAwayFrame:
		c.mu.Lock()
		c.goingAway, c.closeWhenIdle = true, true
		c.mu.Unlock()
	case *http2.PushPromiseFrame:
		return connErr(http2.ErrCodeProtocol, "client sent PUSH_PROMISE")
	}
	return nil
}

func (c *h2Conn) processSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		c.mu.Lock()
		c.settingsAcked = true
		c.mu.Unlock()
		return nil
	}
	// Values apply in order; of several INITIAL_WINDOW_SIZE values in one
	// frame only the last reaches the streams, so that a frame full of
	// them costs one pass over the streams, not one per value.
	var ferr error
	window, newWindow := uint32(0), false
	f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			code := http2.ErrCodeProtocol
			if ce, ok := err.(http2.ConnectionError); ok {
				code = http2.ErrCode(ce)
			}
			ferr = connErr(code, "bad SETTINGS value")
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			window, newWindow = s.Val, true
		case http2.SettingMaxFrameSize:
			c.mu.Lock()
			c.peerMaxFrame = s.Val
			c.mu.Unlock()
		case http2.SettingHeaderTableSize:
			c.wmu.Lock()
			c.henc.SetMaxDynamicTableSize(s.Val)
			c.wmu.Unlock()
		}
		return nil
	})
	if ferr != nil {
		return ferr
	}
	if newWindow {
		c.mu.Lock()
		delta := int64(window) - int64(c.peerWindow)
		c.peerWindow = int32(window)
		for _, st := range c.streams {
			st.sendWindow += delta
			if st.sendWindow > h2MaxWindow {
				ferr = connErr(http2.ErrCodeFlowControl, "stream window overflow")
			}
		}
		c.cond.Broadcast()
		c.mu.Unlock()
		if ferr != nil {
			return ferr
		}
	}
	return c.writeCtl(c.fr.WriteSettingsAck)
}

// idleStream reports whether a stream id without a live stream was never
// opened (idle), as opposed to closed. Callers hold mu.
func (c *h2Conn) idleStream(id uint32) bool { return id > c.maxClientID }

func (c *h2Conn) processHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return connErr(http2.ErrCodeProtocol, "even stream id from client")
	}
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		closed := st.remoteClosed && st.localDone
		c.mu.Unlock()
		if closed {
			// Both sides ended; the stream leaves the table a moment after
			// its last frame, which the client may have seen already.
			return connErr(http2.ErrCodeStreamClosed, "HEADERS on a closed stream")
		}
		return c.processTrailers(st, f)
	}
	if id <= c.maxClientID {
		reset := c.wasResetLocked(id)
		c.mu.Unlock()
		if reset {
			return nil // trailers the client sent before it saw our reset
		}
		return connErr(http2.ErrCodeProtocol, "HEADERS on a closed or lower stream")
	}
	c.maxClientID = id
	if c.goingAway {
		c.mu.Unlock()
		return nil
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		c.mu.Unlock()
		c.resetStream(id, http2.ErrCodeProtocol)
		return nil
	}
	if uint32(c.active) >= c.srv.maxStreams {
		c.mu.Unlock()
		c.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	c.mu.Unlock()
	ctx, cancel := context.WithCancelCause(c.baseCtx)
	req, status, err := c.newRequest(ctx, f)
	if err != nil {
		cancel(nil)
		c.resetStream(id, http2.ErrCodeProtocol)
		return nil
	}
	st := &h2Stream{c: c, id: id, req: req, ctx: ctx, cancel: cancel}
	st.body.cond.L = &st.body.mu
	st.body.st = st
	st.body.declared = req.ContentLength
	if f.StreamEnded() {
		st.remoteClosed = true
		st.req.Body = http.NoBody
	} else {
		st.req.Body = &st.body
	}
	c.mu.Lock()
	st.sendWindow = int64(c.peerWindow)
	st.recvWindow = c.srv.streamWindow
	c.streams[id] = st
	c.active++
	if c.active == 1 && c.srv.idleTimeout > 0 {
		c.nc.SetReadDeadline(time.Time{})
	}
	c.mu.Unlock()
	if d := c.srv.readTimeout; d > 0 && !f.StreamEnded() {
		st.readTimer = time.AfterFunc(d, func() {
			if st.body.fail(fmt.Errorf("http2: request body not complete within %v: %w", d, os.ErrDeadlineExceeded)) && c.srv.onReadTimeout != nil {
				c.srv.onReadTimeout()
			}
		})
	}
	if d := c.srv.writeTimeout; d > 0 {
		st.writeTimer = time.AfterFunc(d, func() {
			if c.srv.onWriteTimeout != nil {
				c.srv.onWriteTimeout()
			}
			c.resetStream(id, http2.ErrCodeInternal)
		})
	}
	c.srv.dispatch(h2Job{st: st, status: status})
	return nil
}

func (c *h2Conn) processTrailers(st *h2Stream, f *http2.MetaHeadersFrame) error {
	st.c.mu.Lock()
	closed := st.remoteClosed
	st.c.mu.Unlock()
	if closed {
		c.resetStream(st.id, http2.ErrCodeStreamClosed)
		return nil
	}
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
		c.resetStream(st.id, http2.ErrCodeProtocol)
		return nil
	}
	tr := http.Header{}
	for _, hf := range f.RegularFields() {
		tr.Add(http.CanonicalHeaderKey(hf.Name), hf.Value)
	}
	c.mu.Lock()
	st.remoteClosed = true
	c.mu.Unlock()
	if !st.body.finish(tr) {
		c.resetStream(st.id, http2.ErrCodeProtocol) // content-length mismatch
	}
	return nil
}

// connection-specific fields a request must not carry (RFC 9113 8.2.2).
var h2ConnHeaders = []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}

// newRequest maps a request head to an *http.Request. A non-zero status
// is an answer the server gives itself (431 for a header list over the
// limit); an error is a malformed request (stream error PROTOCOL_ERROR).
func (c *h2Conn) newRequest(ctx context.Context, f *http2.MetaHeadersFrame) (*http.Request, int, error) {
	method, scheme, path, authority := f.PseudoValue("method"), f.PseudoValue("scheme"), f.PseudoValue("path"), f.PseudoValue("authority")
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method", ":scheme", ":path", ":authority":
		default:
			return nil, 0, errors.New("unknown pseudo-header " + hf.Name)
		}
	}
	if method == "CONNECT" {
		if scheme != "" || path != "" || authority == "" {
			return nil, 0, errors.New("malformed CONNECT")
		}
	} else if method == "" || scheme == "" || path == "" || (path[0] != '/' && !(path == "*" && method == "OPTIONS")) {
		return nil, 0, errors.New("missing or bad pseudo-header")
	}
	if !httpguts.ValidHeaderFieldName(method) {
		return nil, 0, errors.New("bad method")
	}
	regular := f.RegularFields()
	h := make(http.Header, len(regular))
	// The first value of each field comes from one array, capped so that
	// a further value (or a handler's append) copies instead of overwriting.
	vals := make([]string, 0, len(regular))
	var cookies []string
	for _, hf := range regular {
		for _, bad := range h2ConnHeaders {
			if hf.Name == bad {
				return nil, 0, errors.New("connection-specific header " + hf.Name)
			}
		}
		if hf.Name == "te" && hf.Value != "trailers" {
			return nil, 0, errors.New("te other than trailers")
		}
		if hf.Name == "cookie" {
			cookies = append(cookies, hf.Value)
			continue
		}
		k := http.CanonicalHeaderKey(hf.Name)
		if vv, ok := h[k]; ok {
			h[k] = append(vv, hf.Value)
			continue
		}
		vals = append(vals, hf.Value)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if len(cookies) > 0 {
		h["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	status := 0
	if f.Truncated {
		status = http.StatusRequestHeaderFieldsTooLarge
	}
	if authority == "" {
		authority = h.Get("Host")
	}
	var u *url.URL
	var err error
	if method == "CONNECT" {
		u = &url.URL{Host: authority}
		path = authority
	} else if path == "*" {
		u = &url.URL{Path: "*"}
	} else if u, err = url.ParseRequestURI(path); err != nil {
		return nil, 0, err
	}
	cl := int64(-1)
	if f.StreamEnded() {
		cl = 0
	}
	if vv := h["Content-Length"]; len(vv) > 0 {
		if len(vv) > 1 {
			return nil, 0, errors.New("repeated content-length")
		}
		n, err := strconv.ParseUint(vv[0], 10, 63)
		if err != nil {
			return nil, 0, errors.New("bad content-length")
		}
		if f.StreamEnded() && n != 0 {
			return nil, 0, errors.New("content-length without a body")
		}
		cl = int64(n)
	}
	var trailer http.Header
	for _, v := range h["Trailer"] {
		for key := range strings.SplitSeq(v, ",") {
			key = http.CanonicalHeaderKey(strings.TrimSpace(key))
			switch key {
			case "", "Transfer-Encoding", "Trailer", "Content-Length":
				continue
			}
			if trailer == nil {
				trailer = http.Header{}
			}
			trailer[key] = nil
		}
	}
	delete(h, "Trailer")
	req := (&http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		ContentLength: cl,
		Host:          authority,
		RemoteAddr:    c.remoteAddr,
		RequestURI:    path,
		TLS:           c.tls,
		Trailer:       trailer,
	}).WithContext(ctx)
	return req, status, nil
}

func (c *h2Conn) processData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int32(f.Length) // counts padding too
	c.mu.Lock()
	// Connection-level flow control first: every DATA frame counts.
	c.connRecvUsed += n
	if c.connRecvUsed > max(c.srv.connWindow, h2DefaultWindow) {
		c.mu.Unlock()
		return connErr(http2.ErrCodeFlowControl, "connection receive window exceeded")
	}
	st := c.streams[id]
	if st == nil {
		idle, reset := c.idleStream(id), c.wasResetLocked(id)
		c.mu.Unlock()
		c.returnConnWindow(n)
		switch {
		case idle:
			return connErr(http2.ErrCodeProtocol, "DATA on an idle stream")
		case !reset:
			c.resetStream(id, http2.ErrCodeStreamClosed)
		}
		return nil
	}
	if st.remoteClosed {
		c.mu.Unlock()
		c.returnConnWindow(n)
		c.resetStream(id, http2.ErrCodeStreamClosed)
		return nil
	}
	st.recvWindow -= n
	// Until the client acknowledges our SETTINGS it may still count on
	// the protocol's initial 65535 bytes, if our window is smaller.
	floor := int32(0)
	if !c.settingsAcked && c.srv.streamWindow < h2DefaultWindow {
		floor = c.srv.streamWindow - h2DefaultWindow
	}
	if st.recvWindow < floor {
		c.mu.Unlock()
		c.returnConnWindow(n)
		c.resetStream(id, http2.ErrCodeFlowControl)
		return nil
	}
	if f.StreamEnded() {
		st.remoteClosed = true
	}
	c.mu.Unlock()
	data := f.Data()
	// Padding is returned at once; the data when the handler reads it.
	if pad := n - int32(len(data)); pad > 0 {
		c.returnWindow(st, pad)
	}
	if !st.body.write(data, f.StreamEnded()) {
		c.resetStream(id, http2.ErrCodeProtocol) // content-length mismatch
	}
	return nil
}

func (c *h2Conn) processWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		if inc == 0 {
			return connErr(http2.ErrCodeProtocol, "zero WINDOW_UPDATE")
		}
		c.connSendWindow += inc
		if c.connSendWindow > h2MaxWindow {
			return connErr(http2.ErrCodeFlowControl, "connection send window overflow")
		}
		c.cond.Broadcast()
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		if c.idleStream(f.StreamID) {
			return connErr(http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream")
		}
		return nil
	}
	if inc == 0 {
		c.mu.Unlock()
		c.resetStream(f.StreamID, http2.ErrCodeProtocol)
		c.mu.Lock()
		return nil
	}
	st.sendWindow += inc
	if st.sendWindow > h2MaxWindow {
		c.mu.Unlock()
		c.resetStream(f.StreamID, http2.ErrCodeFlowControl)
		c.mu.Lock()
		return nil
	}
	c.cond.Broadcast()
	return nil
}

func (c *h2Conn) processReset(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	st := c.streams[f.StreamID]
	idle := c.idleStream(f.StreamID)
	c.mu.Unlock()
	if st == nil {
		if idle {
			return connErr(http2.ErrCodeProtocol, "RST_STREAM on an idle stream")
		}
		return nil
	}
	st.abort(fmt.Errorf("http2: client reset stream (%v): %w", f.ErrCode, context.Canceled))
	return nil
}

// resetStream sends RST_STREAM and ends the stream, if it is live.
func (c *h2Conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	st := c.streams[id]
	c.noteResetLocked(id)
	c.mu.Unlock()
	if st != nil {
		st.abort(fmt.Errorf("http2: stream reset (%v): %w", code, context.Canceled))
	}
	c.writeCtl(func() error { return c.fr.WriteRSTStream(id, code) })
}

// maxResetIDs bounds how many reset streams are remembered.
const maxResetIDs = 256

// noteResetLocked remembers that this side reset stream id: frames the
// client sent before it saw the RST_STREAM are then ignored (RFC 9113
// 5.4.2), not answered with another reset or a connection error.
func (c *h2Conn) noteResetLocked(id uint32) {
	if c.resetIDs == nil {
		c.resetIDs = map[uint32]struct{}{}
	}
	if _, ok := c.resetIDs[id]; ok {
		return
	}
	if len(c.resetOrder) == maxResetIDs {
		delete(c.resetIDs, c.resetOrder[0])
		c.resetOrder = append(c.resetOrder[:0], c.resetOrder[1:]...)
	}
	c.resetIDs[id] = struct{}{}
	c.resetOrder = append(c.resetOrder, id)
}

// wasResetLocked reports whether this side reset stream id. Callers hold mu.
func (c *h2Conn) wasResetLocked(id uint32) bool {
	_, ok := c.resetIDs[id]
	return ok
}

// writeCtl writes a control frame and flushes.
func (c *h2Conn) writeCtl(write func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if err := write(); err != nil {
		c.failLocked(err)
		return err
	}
	if err := c.bw.Flush(); err != nil {
		c.failLocked(err)
		return err
	}
	return nil
}

// goAway sends GOAWAY. A graceful one (Shutdown) lets the streams finish
// and closes the connection after the last; otherwise the connection
// closes at once.
func (c *h2Conn) goAway(code http2.ErrCode, graceful bool) {
	c.mu.Lock()
	if c.goingAway && graceful {
		c.mu.Unlock()
		return
	}
	c.goingAway = true
	last := c.maxClientID
	c.mu.Unlock()
	c.writeCtl(func() error { return c.fr.WriteGoAway(last, code, nil) })
	// Only now may the last stream's end close the connection: before, it
	// could close it under the GOAWAY.
	c.mu.Lock()
	c.closeWhenIdle = true
	idle := c.active == 0
	c.mu.Unlock()
	if !graceful || idle {
		c.nc.Close()
	}
}

// close ends every stream and the connection.
func (c *h2Conn) close() {
	c.mu.Lock()
	c.closed = true
	streams := make([]*h2Stream, 0, len(c.streams))
	for _, st := range c.streams {
		streams = append(streams, st)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	for _, st := range streams {
		st.abort(errH2ConnClosed)
	}
	c.nc.Close()
}

// returnConnWindow gives n bytes of connection window back to the client.
func (c *h2Conn) returnConnWindow(n int32) { c.returnWindow(nil, n) }

// returnWindow gives n consumed bytes of window back, to st (nil: only the
// connection) and to the connection, once a quarter of a window has
// gathered, so that a large upload costs few updates.
func (c *h2Conn) returnWindow(st *h2Stream, n int32) {
	c.mu.Lock()
	var sInc, cInc int32
	if st != nil {
		st.recvUsed += n
		if !st.remoteClosed && st.recvUsed >= c.srv.streamWindow/4 {
			sInc, st.recvUsed = st.recvUsed, 0
			st.recvWindow += sInc
		}
	}
	c.connReturn += n
	if c.connReturn >= c.srv.connWindow/4 {
		cInc, c.connReturn = c.connReturn, 0
		c.connRecvUsed -= cInc
	}
	c.mu.Unlock()
	if sInc == 0 && cInc == 0 {
		return
	}
	c.writeCtl(func() error {
		if cInc > 0 {
			if err := c.fr.WriteWindowUpdate(0, uint32(cInc)); err != nil {
				return err
			}
		}
		if sInc > 0 {
			return c.fr.WriteWindowUpdate(st.id, uint32(sInc))
		}
		return nil
	})
}
