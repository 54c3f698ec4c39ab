package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// H1Transport is the transport of an h1 cluster: an HTTP/1.1 client with a
// keep-alive pool per endpoint address.
//
// A request is written and its response read on the caller's goroutine; a
// request body is written by one extra goroutine, so that an answer can
// start before the body ends. (net/http's Transport hands every request to
// a read and a write goroutine of the connection, which costs more CPU per
// request than the rest of the proxy path.) An idle connection is not
// watched; one that the endpoint closed while idle is noticed when it is
// next used: a request without a body, of an idempotent method, that got no
// byte back on such a connection is sent again on a new one, and a request
// with a body first checks that its connection is still open.
//
// It is safe for concurrent use.
type H1Transport struct {
	dial           func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle        int
	maxConns       int
	idleTimeout    time.Duration
	maxHeaderBytes int64
	acquire        func() error
	release        func()
	acquirePending func() error
	releasePending func()

	mu     sync.Mutex
	hosts  map[string]*h1Host
	sweep  *time.Timer // closes connections idle for longer than idleTimeout
	closed bool
}

var _ http.RoundTripper = (*H1Transport)(nil)

// h1Host is the pool of one endpoint address. Hosts are never dropped: a
// cluster's endpoints are fixed for the life of its transport.
type h1Host struct {
	addr    string
	idle    []*h1Conn      // most recently used last
	open    int            // connections open or being dialed
	waiters []chan *h1Conn // requests waiting for a connection; nil sent: dial one
}

// Limits of the HTTP/1.1 client.
const (
	h1ReadBuffer  = 8 << 10
	h1WriteBuffer = 4 << 10
	// max1xx bounds the informational responses before the final one.
	max1xx = 8
	// defaultMaxResponseHeaderBytes bounds an upstream's response head.
	defaultMaxResponseHeaderBytes = 64 << 10
)

var (
	errTransportClosed      = errors.New("transport closed")
	errResponseHeaderTooBig = errors.New("response header too large")
	errTooMany1xx           = errors.New("too many 1xx responses")
	errConnClosedIdle       = errors.New("connection closed by the endpoint while idle")
)

// NewH1Transport returns the transport of an h1 cluster. ConnectTimeout
// bounds dialing; MaxIdlePerEndpoint, MaxConnsPerEndpoint and IdleTimeout
// size the pool; AcquireConn and ReleaseConn admit and release each
// connection; AcquirePending and ReleasePending admit each request that has
// to wait for a connection (none idle: a dial, or a wait at
// MaxConnsPerEndpoint).
func NewH1Transport(o TransportOptions) (*H1Transport, error) {
	if o.Protocol != "" && o.Protocol != ProtoH1 {
		return nil, fmt.Errorf("transport: NewH1Transport got protocol %q", o.Protocol)
	}
	o = o.withDefaults()
	d := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
	return &H1Transport{
		dial:           d.DialContext,
		maxIdle:        o.MaxIdlePerEndpoint,
		maxConns:       o.MaxConnsPerEndpoint,
		idleTimeout:    o.IdleTimeout,
		maxHeaderBytes: defaultMaxResponseHeaderBytes,
		acquire:        o.AcquireConn,
		release:        o.ReleaseConn,
		acquirePending: o.AcquirePending,
		releasePending: o.ReleasePending,
		hosts:          make(map[string]*h1Host),
	}, nil
}

// metersPending tells the proxy that this transport applies the cluster's
// max_pending itself (see attempt in retry.go for the other transports).
func (t *H1Transport) metersPending() bool { return true }

// RoundTrip sends req to the endpoint in req.URL.Host and returns its
// response. The response body must be read to its end or closed; the
// connection goes back to the pool at the end of the body.
func (t *H1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	hasBody := req.Body != nil && req.Body != http.NoBody
	if req.URL == nil || req.URL.Scheme != "http" || req.URL.Host == "" {
		closeBody(req)
		return nil, errors.New("h1 transport: request URL must be http://host")
	}
	ctx := req.Context()
	fresh := false
	for {
		pc, err := t.getConn(ctx, req.URL.Host, fresh, hasBody)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := pc.roundTrip(ctx, req, hasBody)
		if err == nil {
			return resp, nil
		}
		// An endpoint may close an idle connection just as it is reused: a
		// request that could not have been processed (nothing came back) and
		// may be sent twice goes again, once, on a new connection.
		if !fresh && pc.reused && pc.nread == 0 && !hasBody && idempotent(req.Method) && ctx.Err() == nil {
			fresh = true
			continue
		}
		return nil, err
	}
}

// CloseIdleConnections closes the connections that carry no request.
func (t *H1Transport) CloseIdleConnections() {
	t.mu.Lock()
	var idle []*h1Conn
	for _, h := range t.hosts {
		idle = append(idle, h.idle...)
		h.open -= len(h.idle)
		h.idle = h.idle[:0]
		t.grantLocked(h)
	}
	t.mu.Unlock()
	for _, pc := range idle {
		pc.closeSocket()
	}
}

// Close closes idle connections and makes every later request fail;
// connections in use close when their request ends.
func (t *H1Transport) Close() error {
	t.mu.Lock()
	t.closed = true
	if t.sweep != nil {
		t.sweep.Stop()
	}
	t.mu.Unlock()
	t.CloseIdleConnections()
	return nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// getConn returns an idle connection to addr, a new one, or waits for one
// when the endpoint is at its connection cap. fresh skips idle connections;
// check makes sure an idle one is still open.
func (t *H1Transport) getConn(ctx context.Context, addr string, fresh, check bool) (*h1Conn, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, errTransportClosed
	}
	h := t.hosts[addr]
	if h == nil {
		h = &h1Host{addr: addr}
		t.hosts[addr] = h
	}
	var stale []*h1Conn
	defer func() {
		for _, pc := range stale {
			pc.closeSocket()
		}
	}()
	if !fresh {
		now := time.Now()
		for n := len(h.idle); n > 0; n = len(h.idle) {
			pc := h.idle[n-1]
			h.idle[n-1] = nil
			h.idle = h.idle[:n-1]
			if t.idleTimeout > 0 && now.Sub(pc.idleAt) >= t.idleTimeout {
				h.open--
				stale = append(stale, pc)
				continue
			}
			t.mu.Unlock()
			if check && !pc.alive() {
				pc.discard()
				t.mu.Lock()
				continue
			}
			return pc, nil
		}
	}
	// None idle: the request waits for a connection.
	if t.acquirePending != nil {
		if err := t.acquirePending(); err != nil {
			t.grantLocked(h)
			t.mu.Unlock()
			return nil, err
		}
		defer t.releasePending()
	}
	if t.maxConns <= 0 || h.open < t.maxConns {
		h.open++
		t.mu.Unlock()
		return t.dialConn(ctx, h)
	}
	ch := make(chan *h1Conn, 1)
	h.waiters = append(h.waiters, ch)
	t.mu.Unlock()
	select {
	case pc := <-ch:
		if pc == nil {
			return t.dialConn(ctx, h) // a slot was counted for us
		}
		return pc, nil
	case <-ctx.Done():
		t.mu.Lock()
		if i := slices.Index(h.waiters, ch); i >= 0 {
			h.waiters = slices.Delete(h.waiters, i, i+1)
			t.mu.Unlock()
			return nil, context.Cause(ctx)
		}
		t.mu.Unlock()
		if pc := <-ch; pc != nil {
			t.putIdle(pc)
		} else {
			t.dropSlot(h)
		}
		return nil, context.Cause(ctx)
	}
}

// dialConn dials a connection for h, whose open count already includes it.
func (t *H1Transport) dialConn(ctx context.Context, h *h1Host) (*h1Conn, error) {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		t.dropSlot(h)
		return nil, errTransportClosed
	}
	if t.acquire != nil {
		if err := t.acquire(); err != nil {
			t.dropSlot(h)
			return nil, err
		}
	}
	c, err := t.dial(ctx, "tcp", h.addr)
	if err != nil {
		if t.release != nil {
			t.release()
		}
		t.dropSlot(h)
		return nil, err
	}
	pc := &h1Conn{t: t, host: h, conn: c, writec: make(chan error, 1), limit: math.MaxInt64}
	pc.br = bufio.NewReaderSize(h1ConnReader{pc}, h1ReadBuffer)
	pc.bw = bufio.NewWriterSize(c, h1WriteBuffer)
	return pc, nil
}

// dropSlot gives back the open-connection slot of a connection that closed
// or was never made, and lets a waiter dial in its place.
func (t *H1Transport) dropSlot(h *h1Host) {
	t.mu.Lock()
	h.open--
	t.grantLocked(h)
	t.mu.Unlock()
}

// grantLocked lets the first waiter of h dial when h is under its cap.
func (t *H1Transport) grantLocked(h *h1Host) {
	for len(h.waiters) > 0 && (t.maxConns <= 0 || h.open < t.maxConns) {
		ch := h.waiters[0]
		h.waiters = slices.Delete(h.waiters, 0, 1)
		h.open++
		ch <- nil
	}
}

// putIdle hands a reusable connection to a waiter or keeps it idle.
func (t *H1Transport) putIdle(pc *h1Conn) {
	h := pc.host
	t.mu.Lock()
	if len(h.waiters) > 0 {
		ch := h.waiters[0]
		h.waiters = slices.Delete(h.waiters, 0, 1)
		t.mu.Unlock()
		pc.reused = true
		ch <- pc
		return
	}
	if t.closed || len(h.idle) >= t.maxIdle {
		h.open--
		t.grantLocked(h)
		t.mu.Unlock()
		pc.closeSocket()
		return
	}
	pc.reused = true
	pc.idleAt = time.Now()
	h.idle = append(h.idle, pc)
	if t.idleTimeout > 0 {
		if t.sweep == nil {
			t.sweep = time.AfterFunc(t.idleTimeout, t.sweepIdle)
		} else if len(h.idle) == 1 {
			t.sweep.Reset(t.idleTimeout)
		}
	}
	t.mu.Unlock()
}

// sweepIdle closes connections idle for longer than idleTimeout, and runs
// again while any connection is idle.
func (t *H1Transport) sweepIdle() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	now := time.Now()
	var old []*h1Conn
	next := time.Duration(0)
	for addr, h := range t.hosts {
		keep := h.idle[:0]
		for _, pc := range h.idle {
			if age := now.Sub(pc.idleAt); age >= t.idleTimeout {
				old = append(old, pc)
				h.open--
			} else {
				keep = append(keep, pc)
				if wait := t.idleTimeout - age; next == 0 || wait < next {
					next = wait
				}
			}
		}
		clear(h.idle[len(keep):])
		h.idle = keep
		t.grantLocked(h)
		if h.open == 0 && len(h.waiters) == 0 {
			delete(t.hosts, addr) // nothing left of it: an endpoint gone stays gone
		}
	}
	if next > 0 {
		t.sweep.Reset(next)
	}
	t.mu.Unlock()
	for _, pc := range old {
		pc.closeSocket()
	}
}

// h1Conn is one upstream connection. Between getConn and the end of its
// response it belongs to one request.
type h1Conn struct {
	t      *H1Transport
	host   *h1Host
	conn   net.Conn
	br     *bufio.Reader // reads through h1ConnReader
	bw     *bufio.Writer
	writec chan error // the request writer's result, when it runs apart
	reused bool
	idleAt time.Time
	limit  int64 // bytes the reader may still take (the header limit)
	nread  int64 // bytes read for the current request
}

// h1ConnReader reads the connection under the response header limit and
// counts what the current request got back.
type h1ConnReader struct{ pc *h1Conn }

func (r h1ConnReader) Read(p []byte) (int, error) {
	pc := r.pc
	if pc.limit <= 0 {
		return 0, errResponseHeaderTooBig
	}
	if int64(len(p)) > pc.limit {
		p = p[:pc.limit]
	}
	n, err := pc.conn.Read(p)
	pc.limit -= int64(n)
	pc.nread += int64(n)
	return n, err
}

// closeSocket closes the connection and releases its breaker slot; the
// caller has already taken it off the open count.
func (pc *h1Conn) closeSocket() {
	pc.conn.Close()
	if pc.t.release != nil {
		pc.t.release()
	}
}

// discard closes a connection that is out of the pool.
func (pc *h1Conn) discard() {
	pc.closeSocket()
	pc.t.dropSlot(pc.host)
}

// alive reports whether an idle connection is still open and quiet: the
// endpoint neither closed it nor sent anything unasked.
func (pc *h1Conn) alive() bool {
	if pc.br.Buffered() > 0 {
		return false
	}
	sc, ok := pc.conn.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, errno := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = n < 0 && (errno == syscall.EAGAIN || errno == syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && ok
}

// roundTrip sends req on pc and reads the response head. On error pc is
// closed.
func (pc *h1Conn) roundTrip(ctx context.Context, req *http.Request, hasBody bool) (*http.Response, error) {
	stop := onCancel(ctx, pc.conn)
	pc.nread = 0
	fail := func(op string, err error) (*http.Response, error) {
		stop.release()
		pc.discard()
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, fmt.Errorf("upstream %s: %w", op, err)
	}
	if hasBody {
		go pc.writeAsync(req)
	} else if err := pc.writeRequest(req); err != nil {
		return fail("write", err)
	}
	resp, err := pc.readResponse(ctx, req)
	if err != nil {
		if hasBody {
			select {
			case werr := <-pc.writec:
				if werr != nil {
					return fail("write", werr)
				}
			default:
			}
		}
		return fail("read", err)
	}
	reuse := !resp.Close && !req.Close
	if resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = &h1Upgraded{pc: pc, stop: stop}
		return resp, nil
	}
	if resp.Body == nil && resp.ContentLength > 0 {
		// The simple shape (h1resp.go): the body is the next ContentLength bytes.
		resp.Body = &h1Body{pc: pc, remain: resp.ContentLength, stop: stop, reuse: reuse, hasBody: hasBody}
		return resp, nil
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		resp.Body = http.NoBody
		pc.finish(reuse, hasBody, stop)
		return resp, nil
	}
	resp.Body = &h1Body{pc: pc, body: resp.Body, stop: stop, reuse: reuse, hasBody: hasBody}
	return resp, nil
}

func (pc *h1Conn) writeRequest(req *http.Request) error {
	if !writeHead(pc.bw, req) {
		if err := req.Write(pc.bw); err != nil {
			return err
		}
	}
	return pc.bw.Flush()
}

// reqWriteSkip are the header fields writeHead writes itself or never.
var reqWriteSkip = map[string]bool{
	"Host": true, "User-Agent": true, "Content-Length": true, "Transfer-Encoding": true, "Trailer": true,
}

// writeHead writes a request without a body the way req.Write would, minus
// its header sorting and allocations: request line, Host, the header
// fields (an invalid name is dropped, a CR or LF in a value becomes a
// space), Content-Length: 0 for POST, PUT and PATCH, and Connection: close
// for req.Close. It writes nothing and returns false for what it does
// not cover (a body, trailers, an opaque or non-ASCII target or host), which
// req.Write then handles.
func writeHead(w *bufio.Writer, req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody || len(req.Trailer) > 0 || len(req.TransferEncoding) > 0 ||
		req.ContentLength != 0 || req.URL.Opaque != "" {
		return false
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !isToken(method) || !plainASCII(host) || !httpguts.ValidHostHeader(host) || strings.IndexByte(host, '%') >= 0 ||
		!plainASCII(path) || !plainASCII(req.URL.RawQuery) {
		return false
	}
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(path)
	if req.URL.ForceQuery || req.URL.RawQuery != "" {
		w.WriteByte('?')
		w.WriteString(req.URL.RawQuery)
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	if ua := req.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		writeField(w, "User-Agent", ua[0])
	}
	if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		w.WriteString("Content-Length: 0\r\n") // many servers want one for these
	}
	if req.Close && !httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close") {
		w.WriteString("Connection: close\r\n")
	}
	for k, vs := range req.Header {
		if reqWriteSkip[k] || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vs {
			writeField(w, k, v)
		}
	}
	w.WriteString("\r\n")
	return true
}

func writeField(w *bufio.Writer, k, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	w.WriteString(k)
	w.WriteString(": ")
	w.WriteString(textproto.TrimString(v))
	w.WriteString("\r\n")
}

// plainASCII reports whether s is printable ASCII without spaces (a request
// target or host that needs no encoding).
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 9110 token (a method name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !httpguts.IsTokenRune(rune(s[i])) {
			return false
		}
	}
	return true
}

// writeAsync writes a request with a body. A failure to read the body is
// reported as such (it is the client's, say a *BodyError, not the
// endpoint's). On error it closes the connection, which ends the response
// read too, after posting the error so that the reader finds it.
func (pc *h1Conn) writeAsync(req *http.Request) {
	rb := &h1ReqBody{rc: req.Body}
	out := *req
	out.Body = rb
	err := pc.writeRequest(&out)
	if rb.err != nil {
		err = rb.err
	}
	pc.writec <- err
	if err != nil {
		pc.conn.Close()
	}
}

// h1ReqBody remembers the error of a request body's Read.
type h1ReqBody struct {
	rc  io.ReadCloser
	err error
}

func (b *h1ReqBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (b *h1ReqBody) Close() error { return b.rc.Close() }

// readResponse reads the final response head, passing informational
// responses other than 100 Continue to the request's trace.
func (pc *h1Conn) readResponse(ctx context.Context, req *http.Request) (*http.Response, error) {
	pc.limit = pc.t.maxHeaderBytes
	defer func() { pc.limit = math.MaxInt64 }()
	for range max1xx {
		if resp, ok := readSimpleResponse(pc.br, req); ok {
			return resp, nil
		}
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			if pc.limit <= 0 {
				err = fmt.Errorf("%w (limit %d bytes)", errResponseHeaderTooBig, pc.t.maxHeaderBytes)
			}
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if resp.StatusCode == http.StatusContinue {
			continue // the body is already on its way
		}
		if tr := httptrace.ContextClientTrace(ctx); tr != nil && tr.Got1xxResponse != nil {
			if err := tr.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
	return nil, errTooMany1xx
}

// finish ends a request on pc: the connection goes back to the pool when
// reuse holds, the request was fully written and the context did not close
// it; otherwise it is closed.
func (pc *h1Conn) finish(reuse, hasBody bool, stop cancelHook) {
	if !stop.release() {
		reuse = false // the context closed the connection
	}
	if reuse && hasBody {
		reuse = pc.wroteRequest()
	}
	if reuse && pc.br.Buffered() > 0 {
		reuse = false // bytes past the response: the framing is off
	}
	if !reuse {
		pc.discard()
		return
	}
	pc.t.putIdle(pc)
}

// maxWriteWait is how long a finished response waits for its request's
// writer before the connection is given up instead of reused.
const maxWriteWait = 50 * time.Millisecond

// wroteRequest reports whether the request writer finished without error,
// waiting for it a little: the writer may not have posted its result yet,
// or the endpoint answered before the body was sent.
func (pc *h1Conn) wroteRequest() bool {
	select {
	case err := <-pc.writec:
		return err == nil
	default:
	}
	tm := time.NewTimer(maxWriteWait)
	defer tm.Stop()
	select {
	case err := <-pc.writec:
		return err == nil
	case <-tm.C:
		return false
	}
}

// h1Body is a response body; its end returns the connection. It reads
// body, the body http.ReadResponse made, or when that is nil the next
// remain bytes of the connection.
type h1Body struct {
	pc      *h1Conn
	body    io.ReadCloser
	remain  int64
	stop    cancelHook
	reuse   bool
	hasBody bool
	done    bool
}

func (b *h1Body) Read(p []byte) (n int, err error) {
	if b.done {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.body != nil {
		n, err = b.body.Read(p)
	} else {
		n, err = b.readFixed(p)
	}
	if err != nil {
		b.done = true
		b.pc.finish(b.reuse && err == io.EOF, b.hasBody, b.stop)
	}
	return n, err
}

// readFixed reads the rest of a body of known length, reporting io.EOF
// with its last bytes, and io.ErrUnexpectedEOF when the connection ends
// first.
func (b *h1Body) readFixed(p []byte) (int, error) {
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.pc.br.Read(p)
	b.remain -= int64(n)
	switch {
	case b.remain == 0:
		return n, io.EOF
	case err == io.EOF: //nolint:errorlint // bufio returns io.EOF unwrapped
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// Close closes the connection when the body was not read to its end
// (draining an unknown rest could take long).
func (b *h1Body) Close() error {
	if !b.done {
		b.done = true
		b.pc.finish(false, b.hasBody, b.stop)
	}
	return nil
}

// h1Upgraded is the connection after 101 Switching Protocols, as
// ReverseProxy wants it: read, write, close.
type h1Upgraded struct {
	pc     *h1Conn
	stop   cancelHook
	closed sync.Once
}

func (u *h1Upgraded) Read(p []byte) (int, error)  { return u.pc.br.Read(p) }
func (u *h1Upgraded) Write(p []byte) (int, error) { return u.pc.conn.Write(p) }

func (u *h1Upgraded) Close() error {
	u.closed.Do(func() {
		u.stop.release()
		u.pc.discard()
	})
	return nil
}
