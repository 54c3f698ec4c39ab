package server

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// Client-gone detection for HTTP/1.1, done lazily.
//
// Once a request's body has been read, net/http reads one more byte from the
// connection in a goroutine of its own, so that a client that closes the
// connection cancels the request's context; when the handler returns it
// cuts that read short with a deadline in the past. Per request that is a
// goroutine parked and woken twice, a read that finds nothing and two
// deadline changes: on small proxied requests about a tenth of the proxy's
// CPU.
//
// An h1Conn answers that read at once with nothing read, and watches the
// connection itself only if the request is still running bgWatchDelay
// later; a shorter request is over before a watch would matter. What the
// watch reads is kept for net/http: the first byte of a pipelined request is
// handed to its next Read, and a read error (the client closed or reset the
// connection) cancels the connection's context, as net/http's own read
// would, and is the next Read's too. net/http's next Read, for the next
// request, ends the watch first, as net/http ends its own.
//
// The answer is given to the first one-byte Read after a request head went
// through the scanner, which is net/http's background read: net/http reads
// requests and bodies through a 4 KiB bufio.Reader. A request that may be
// hijacked (an Upgrade, CONNECT) is never watched, and keeps net/http's own
// read when its handler starts before that read is issued.

// bgWatchDelay is how long a request runs before its connection is watched
// for the client leaving.
const bgWatchDelay = 50 * time.Millisecond

// errClientGone is the cause a watch cancels a connection's context with.
var errClientGone = fmt.Errorf("client closed the connection: %w", context.Canceled)

// aLongTimeAgo is a read deadline that cuts a read short at once.
var aLongTimeAgo = time.Unix(1, 0)

// bgRead is an h1Conn's state for the background read; all but special
// are guarded by the h1Conn's mu.
type bgRead struct {
	special atomic.Bool // Read must look here first

	armed    bool // a head was read: the next one-byte Read is net/http's background read
	answered bool // it was answered: the request's body has been read, the handler runs
	noWatch  bool // the request may be hijacked
	watching bool
	aborting bool
	watchEnd chan struct{}
	timer    *time.Timer

	has    bool  // b is the next byte to read
	b      byte  //
	err    error // the watch's read error, for every later Read
	cancel context.CancelCauseFunc

	// deadline is the read deadline last set through the h1Conn (UnixNano,
	// 0: none), which a watch cut short puts back.
	deadline atomic.Int64
}

// SetReadDeadline sets the read deadline and remembers it for a watch cut
// short to put back.
func (c *h1Conn) SetReadDeadline(t time.Time) error {
	c.bg.remember(t)
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline is SetReadDeadline and SetWriteDeadline.
func (c *h1Conn) SetDeadline(t time.Time) error {
	c.bg.remember(t)
	return c.Conn.SetDeadline(t)
}

func (b *bgRead) remember(t time.Time) {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	b.deadline.Store(ns)
}

func (b *bgRead) lastDeadline() time.Time {
	if ns := b.deadline.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

func (b *bgRead) update() { b.special.Store(b.armed || b.answered || b.has || b.err != nil) }

// headRead arms the background read answer: a request head has been read.
// c.mu is held.
func (c *h1Conn) headRead() {
	c.bg.armed, c.bg.noWatch = true, false
	c.bg.update()
}

// mayHijack marks r's connection as one a handler may take over: the
// background read is left to net/http, and the connection never watched.
func (c *h1Conn) mayHijack(r *http.Request) {
	if r.Method != http.MethodConnect && len(r.Header["Upgrade"]) == 0 {
		return
	}
	c.mu.Lock()
	c.bg.armed, c.bg.noWatch = false, true
	c.bg.update()
	c.mu.Unlock()
}

// specialRead answers a Read that the background read concerns; done is
// false for a Read to pass to the connection.
func (c *h1Conn) specialRead(p []byte) (n int, err error, done bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := &c.bg
	if b.armed && len(p) == 1 {
		b.armed, b.answered = false, true
		if b.timer == nil {
			b.timer = time.AfterFunc(bgWatchDelay, c.watch)
		} else {
			b.timer.Reset(bgWatchDelay)
		}
		b.update()
		return 0, nil, true
	}
	if b.answered {
		// net/http reads again: the request is over.
		b.answered = false
		b.timer.Stop()
		if b.watching {
			b.aborting = true
			end := b.watchEnd
			c.mu.Unlock()
			c.Conn.SetReadDeadline(aLongTimeAgo)
			<-end
			// Put back the deadline net/http set for this Read (idle or
			// header timeout).
			c.Conn.SetReadDeadline(b.lastDeadline())
			c.mu.Lock()
			b.aborting = false
		}
	}
	defer b.update()
	switch {
	case b.has && len(p) > 0:
		p[0] = b.b
		b.has = false
		return 1, nil, true
	case b.err != nil:
		return 0, b.err, true
	}
	return 0, nil, false
}

// watch reads from the connection while a long request runs, until the
// client sends or leaves, or net/http's next Read cuts it short. It runs on
// the timer's goroutine.
func (c *h1Conn) watch() {
	c.mu.Lock()
	b := &c.bg
	if !b.answered || b.noWatch || b.watching || b.has || b.err != nil {
		c.mu.Unlock()
		return
	}
	b.watching = true
	end := make(chan struct{})
	b.watchEnd = end
	c.mu.Unlock()

	var buf [1]byte
	n, err := c.Conn.Read(buf[:])

	c.mu.Lock()
	if n == 1 {
		b.has, b.b = true, buf[0]
		c.scanLocked(buf[:1])
	}
	var cancel context.CancelCauseFunc
	if err != nil && !(b.aborting && isTimeout(err)) {
		b.err, cancel = err, b.cancel
	}
	b.watching = false
	b.update()
	close(end)
	c.mu.Unlock()
	if cancel != nil {
		cancel(errClientGone)
	}
}

// Close closes the connection and ends its context; a watch that was
// due does not start.
func (c *h1Conn) Close() error {
	err := c.Conn.Close()
	c.mu.Lock()
	cancel := c.bg.cancel
	c.bg.answered = false
	if c.bg.timer != nil {
		c.bg.timer.Stop()
	}
	c.bg.update()
	c.mu.Unlock()
	if cancel != nil {
		cancel(nil)
	}
	return err
}
