package proxy

import (
	"context"
	"io"
	"sync"
	"time"
)

// reqContext is a proxied request's context from the listener handler on.
// It carries the request's state, is canceled with a cause by the route
// timeout, by the server's request context ending (the client left) and by
// the end of the request, and lets the proxy's own transports close their
// connection on cancellation without a context of their own.
//
// It stands in for a context.WithValue, a context.WithCancelCause and a
// time.AfterFunc per request, and for a context.AfterFunc per upstream
// round trip, which together were most of the proxy's allocations.
//
// For the context package it is a cancelCtx: the embedded Context is a
// context.WithCancelCause of Background, and Value hands out that
// cancelCtx, so contexts derived from a reqContext (net/http's transport,
// a try with a per-try timeout) hang on it directly, are canceled at once
// with it and see its cause. The server's context is joined by
// context.AfterFunc, so its cancellation reaches a reqContext from a
// goroutine of its own, a moment later.
type reqContext struct {
	context.Context // context.WithCancelCause(context.Background())

	parent     context.Context
	st         *reqState
	cancel     context.CancelCauseFunc
	stopParent func() bool

	mu     sync.Mutex
	ended  bool
	nextID uint64
	hooks  []closeHook
	inline [2]closeHook
}

// closeHook is a connection to close when its reqContext is canceled.
type closeHook struct {
	id uint64
	c  io.Closer
}

// reqContextKey finds a reqContext through the contexts wrapped around it.
type reqContextKey struct{}

// newReqContext returns the context for a request whose server context is
// parent and whose state is st.
func newReqContext(parent context.Context, st *reqState) *reqContext {
	rc := &reqContext{parent: parent, st: st}
	rc.Context, rc.cancel = context.WithCancelCause(context.Background())
	rc.hooks = rc.inline[:0]
	if parent.Done() != nil {
		rc.stopParent = context.AfterFunc(parent, rc.parentDone)
	}
	return rc
}

// Deadline is the server context's.
func (rc *reqContext) Deadline() (time.Time, bool) { return rc.parent.Deadline() }

// Value answers the request state and the reqContext itself, the embedded
// cancelCtx's own key, and asks the server context the rest.
func (rc *reqContext) Value(key any) any {
	switch key.(type) {
	case stateKey:
		return rc.st
	case reqContextKey:
		return rc
	}
	if v := rc.Context.Value(key); v != nil {
		return v
	}
	return rc.parent.Value(key)
}

func (rc *reqContext) String() string { return "proxy.reqContext" }

func (rc *reqContext) parentDone() { rc.end(context.Cause(rc.parent)) }

// end cancels rc with cause (nil: context.Canceled), and closes the
// connections hooked to it. Only the first call counts.
func (rc *reqContext) end(cause error) {
	rc.cancel(cause)
	rc.mu.Lock()
	if rc.ended {
		rc.mu.Unlock()
		return
	}
	rc.ended = true
	hooks := rc.hooks
	rc.hooks = nil
	rc.mu.Unlock()
	for _, h := range hooks {
		go h.c.Close()
	}
}

// finish ends rc when its request is done, and lets go of the server
// context.
func (rc *reqContext) finish() {
	if rc.stopParent != nil {
		rc.stopParent()
	}
	rc.end(nil)
}

// reqContextOf returns the reqContext ctx is, or wraps without a
// cancellation of its own; nil when there is none.
func reqContextOf(ctx context.Context) *reqContext {
	rc, ok := ctx.Value(reqContextKey{}).(*reqContext)
	if !ok || ctx.Done() != rc.Done() {
		return nil
	}
	return rc
}

// cancelHook undoes what onCancel arranged.
type cancelHook struct {
	rc   *reqContext
	id   uint64
	stop func() bool
}

// onCancel arranges for c to be closed when ctx is canceled, as
// context.AfterFunc would, without allocating when ctx is a reqContext.
// It returns the zero cancelHook when ctx is never canceled.
func onCancel(ctx context.Context, c io.Closer) cancelHook {
	if rc := reqContextOf(ctx); rc != nil {
		return rc.hook(c)
	}
	if ctx.Done() == nil {
		return cancelHook{}
	}
	return cancelHook{stop: context.AfterFunc(ctx, func() { c.Close() })}
}

func (rc *reqContext) hook(c io.Closer) cancelHook {
	rc.mu.Lock()
	if rc.ended {
		rc.mu.Unlock()
		go c.Close()
		return cancelHook{rc: rc} // id 0: release reports false
	}
	rc.nextID++
	id := rc.nextID
	rc.hooks = append(rc.hooks, closeHook{id: id, c: c})
	rc.mu.Unlock()
	return cancelHook{rc: rc, id: id}
}

// release stops the close from happening. It reports false when the close
// has happened or is under way; true also for the zero cancelHook.
func (h cancelHook) release() bool {
	switch {
	case h.stop != nil:
		return h.stop()
	case h.rc == nil:
		return true
	}
	rc := h.rc
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i, e := range rc.hooks {
		if e.id == h.id {
			rc.hooks = append(rc.hooks[:i], rc.hooks[i+1:]...)
			return true
		}
	}
	return false
}

// routeTimer ends a request's reqContext with errRouteTimeout when its
// route timeout passes. It is kept with the pooled reqState and re-armed
// for the next request, unless a firing raced its disarming.
type routeTimer struct {
	t     *time.Timer
	armed bool

	mu sync.Mutex
	rc *reqContext
}

func (rt *routeTimer) arm(rc *reqContext, d time.Duration) {
	rt.mu.Lock()
	rt.rc = rc
	rt.mu.Unlock()
	rt.armed = true
	if rt.t == nil {
		rt.t = time.AfterFunc(d, rt.fire)
		return
	}
	rt.t.Reset(d)
}

func (rt *routeTimer) fire() {
	rt.mu.Lock()
	rc := rt.rc
	rt.rc = nil
	rt.mu.Unlock()
	if rc != nil {
		rc.end(errRouteTimeout)
	}
}

// disarm stops the timer. It reports false when the timer may still fire,
// after which rt must not be armed again.
func (rt *routeTimer) disarm() bool {
	if !rt.armed {
		return true
	}
	rt.armed = false
	stopped := rt.t.Stop()
	rt.mu.Lock()
	rt.rc = nil
	rt.mu.Unlock()
	return stopped
}
