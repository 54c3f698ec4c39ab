package proxy

import (
	"context"
	"errors"
	"net/http/httptrace"
	"sync/atomic"
	"testing"
	"time"
)

type parentKey struct{}

// closer counts its Close calls.
type closer struct{ n atomic.Int32 }

func (c *closer) Close() error { c.n.Add(1); return nil }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestReqContextValues(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), parentKey{}, "p"))
	defer cancel()
	st := new(reqState)
	rc := newReqContext(parent, st)
	defer rc.finish()
	// As ReverseProxy and the transports see it: under a client trace.
	ctx := httptrace.WithClientTrace(rc, &httptrace.ClientTrace{})
	if got := stateFrom(ctx); got != st {
		t.Errorf("state: got %p, want %p", got, st)
	}
	if got := ctx.Value(parentKey{}); got != "p" {
		t.Errorf("parent value: got %v, want p", got)
	}
	if reqContextOf(ctx) != rc {
		t.Error("reqContextOf does not find the reqContext under a value context")
	}
	child, cancelChild := context.WithCancel(ctx)
	defer cancelChild()
	if reqContextOf(child) != nil {
		t.Error("reqContextOf answered for a context with a cancellation of its own")
	}
	if reqContextOf(parent) != nil {
		t.Error("reqContextOf answered for a context without one")
	}
	if _, ok := rc.Deadline(); ok {
		t.Error("got a deadline the parent does not have")
	}
}

func TestReqContextParentCanceled(t *testing.T) {
	parent, cancel := context.WithCancelCause(context.Background())
	rc := newReqContext(parent, nil)
	var c closer
	h := onCancel(rc, &c)
	if rc.Err() != nil {
		t.Fatal("canceled before its parent")
	}
	gone := errors.New("client gone")
	cancel(gone)
	<-rc.Done()
	if !errors.Is(rc.Err(), context.Canceled) {
		t.Errorf("Err: got %v, want context.Canceled", rc.Err())
	}
	if got := context.Cause(rc); got != gone {
		t.Errorf("Cause: got %v, want the parent's cause", got)
	}
	waitFor(t, "the hooked connection to close", func() bool { return c.n.Load() == 1 })
	if h.release() {
		t.Error("release reported the close as stopped after it happened")
	}
	// A hook added after the end closes at once.
	var late closer
	if onCancel(rc, &late).release() {
		t.Error("release of a hook added after the end reported true")
	}
	waitFor(t, "a late hook to close", func() bool { return late.n.Load() == 1 })
	rc.finish()
}

func TestReqContextDerivedContexts(t *testing.T) {
	rc := newReqContext(context.Background(), nil)
	ctx := httptrace.WithClientTrace(rc, &httptrace.ClientTrace{})
	// A context derived the way net/http's transport or a per-try timeout
	// derives one is canceled with rc, at once, and sees its cause.
	child, cancel := context.WithCancel(ctx)
	defer cancel()
	var after atomic.Bool
	stop := context.AfterFunc(ctx, func() { after.Store(true) })
	defer stop()
	rc.end(errRouteTimeout)
	if child.Err() == nil {
		t.Fatal("a derived context was not canceled with the reqContext")
	}
	if got := context.Cause(child); got != errRouteTimeout {
		t.Errorf("derived Cause: got %v, want %v", got, errRouteTimeout)
	}
	if got := context.Cause(rc); got != errRouteTimeout {
		t.Errorf("Cause: got %v, want %v", got, errRouteTimeout)
	}
	waitFor(t, "context.AfterFunc to run", after.Load)
	// Later ends change nothing.
	rc.end(errors.New("second"))
	rc.finish()
	if got := context.Cause(rc); got != errRouteTimeout {
		t.Errorf("Cause after a second end: got %v", got)
	}
}

func TestReqContextHookRelease(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc := newReqContext(parent, nil)
	var a, b, c closer
	ha, hb := onCancel(rc, &a), onCancel(rc, &b)
	if !ha.release() {
		t.Fatal("release of a live hook reported false")
	}
	if ha.release() {
		t.Error("a second release reported true")
	}
	hc := onCancel(rc, &c) // reuses a's slot, not its id
	if ha.release() {
		t.Error("a stale release removed another hook")
	}
	rc.finish()
	waitFor(t, "the hooks left to close", func() bool { return b.n.Load() == 1 && c.n.Load() == 1 })
	if a.n.Load() != 0 {
		t.Error("a released hook was closed")
	}
	if hb.release() || hc.release() {
		t.Error("release after the close reported true")
	}
	// finish let go of the parent: canceling it now runs nothing.
	cancel()
	time.Sleep(10 * time.Millisecond)
	if b.n.Load() != 1 || c.n.Load() != 1 {
		t.Error("hooks ran twice")
	}
}

func TestOnCancelOtherContexts(t *testing.T) {
	var c closer
	if !onCancel(context.Background(), &c).release() {
		t.Error("the hook of a context never canceled must release as stopped")
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := onCancel(ctx, &c)
	cancel()
	waitFor(t, "the close", func() bool { return c.n.Load() == 1 })
	if h.release() {
		t.Error("release after the close reported true")
	}
}

func TestRouteTimer(t *testing.T) {
	var rt routeTimer
	rc := newReqContext(context.Background(), nil)
	rt.arm(rc, time.Hour)
	if !rt.disarm() {
		t.Fatal("disarming a pending timer reported it may still fire")
	}
	if !rt.disarm() {
		t.Fatal("a second disarm reported it may still fire")
	}
	if rc.Err() != nil {
		t.Fatal("a disarmed timer canceled its context")
	}
	// Re-armed for the next request, it fires for that one.
	next := newReqContext(context.Background(), nil)
	rt.arm(next, time.Millisecond)
	<-next.Done()
	if got := context.Cause(next); got != errRouteTimeout {
		t.Errorf("Cause: got %v, want %v", got, errRouteTimeout)
	}
	if rt.disarm() {
		t.Error("disarm after the timer fired reported it safe to re-arm")
	}
	if rc.Err() != nil {
		t.Error("the timer canceled the earlier request's context")
	}
}

func TestReqStateDropsFiredTimer(t *testing.T) {
	st := &reqState{timer: new(routeTimer)}
	rc := newReqContext(context.Background(), st)
	st.timer.arm(rc, time.Nanosecond)
	<-rc.Done()
	st.stopTimer()
	if st.timer != nil {
		t.Error("a timer that fired was kept for reuse")
	}
	st.stopTimer() // no timer: nothing to do
}
