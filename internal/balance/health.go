package balance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// ErrRunning is returned by a second concurrent call to [Cluster.Run].
var ErrRunning = errors.New("cluster already running")

type healthDoer interface {
	Do(*http.Request) (*http.Response, error)
}

func (c *Cluster) initHealthChecks() {
	h := c.opts.Health
	if h.Path == "" {
		return
	}
	tr := h.Transport
	if tr == nil {
		t := &http.Transport{
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     2 * h.Interval,
			DisableCompression:  true,
		}
		tr = t
		c.ownedTransport = t
	}
	c.healthTransp = &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Run owns the cluster's background work until ctx is done: the periodic
// recomputation (so readmissions and intensity changes show without
// traffic) and, when Health.Path is set, active health checks. It returns
// nil after ctx is done, or ErrRunning if Run is already running.
func (c *Cluster) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer c.running.Store(false)
	var wg sync.WaitGroup
	wg.Go(func() { c.loop(ctx, c.opts.Carbon.Interval, c.tick) })
	if c.healthTransp != nil {
		wg.Go(func() { c.loop(ctx, c.opts.Health.Interval, func() { c.checkAll(ctx) }) })
	}
	wg.Wait()
	if c.ownedTransport != nil {
		c.ownedTransport.CloseIdleConnections()
	}
	return nil
}

// loop calls f now and then every interval until ctx is done. A panic in f
// is logged and ends only this loop.
func (c *Cluster) loop(ctx context.Context, interval time.Duration, f func()) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("balance loop panicked", "panic", fmt.Sprint(r))
		}
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkAll checks every endpoint concurrently and waits for the results.
func (c *Cluster) checkAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, e := range c.endpoints {
		wg.Go(func() {
			ok := c.check(ctx, e)
			if ctx.Err() != nil {
				return // shutting down: not a verdict on the endpoint
			}
			c.recordCheck(e, ok)
		})
	}
	wg.Wait()
}

// check runs one active check and reports whether it passed.
func (c *Cluster) check(ctx context.Context, e *Endpoint) bool {
	h := c.opts.Health
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.Scheme+"://"+e.address+h.Path, nil)
	if err != nil {
		c.log.Debug("health check request invalid", "endpoint", e.address, "error", err)
		return false
	}
	if h.Host != "" {
		req.Host = h.Host
	}
	req.Header.Set("User-Agent", "aegis-health-check")
	resp, err := c.healthTransp.Do(req)
	if err != nil {
		c.log.Debug("health check failed", "endpoint", e.address, "error", err)
		return false
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
	for _, r := range h.ExpectedStatuses {
		if r.Contains(resp.StatusCode) {
			return true
		}
	}
	c.log.Debug("health check failed", "endpoint", e.address, "status", resp.StatusCode)
	return false
}

// recordCheck applies the thresholds to one check result.
func (c *Cluster) recordCheck(e *Endpoint, ok bool) {
	if ok {
		c.checksPassed.Inc()
	} else {
		c.checksFailed.Inc()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.opts.Health
	if ok {
		e.checkFail = 0
		e.checkOK++
		if e.down && e.checkOK >= h.HealthyThreshold {
			c.setDown(e, false)
		}
		return
	}
	e.checkOK = 0
	e.checkFail++
	if !e.down && e.checkFail >= h.UnhealthyThreshold {
		c.setDown(e, true)
	}
}
