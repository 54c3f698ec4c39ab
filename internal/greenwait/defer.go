package greenwait

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"
)

// RouteOptions are a route's Green-Wait settings, passed to Defer with each
// request. Zero values are defaults.
type RouteOptions struct {
	// Enabled turns Green-Wait on for the route; when false Defer returns
	// false at once.
	Enabled bool
	// Name names the route, for the admin API's filter and logs.
	Name string
	// Cluster names the upstream cluster; releases are bounded per cluster.
	Cluster string
	// Region is the region whose forecast plans the route's jobs.
	Region string
	// DefaultPriority applies to requests without Aegis-Priority. When it
	// is PriorityNone, only requests that ask (Aegis-Priority or Prefer:
	// respond-async, which then means normal) are deferred.
	DefaultPriority Priority
	// MaxWait overrides the built-in maximum waits per priority.
	MaxWait MaxWaits
	// BodyLimit overrides Options.BodyLimit (bytes); larger bodies get 413.
	BodyLimit int64
	// ExpectedDuration overrides Options.ExpectedDuration.
	ExpectedDuration time.Duration
}

// MaxWaits are maximum waits per priority; zero means the built-in value
// (see DefaultMaxWait).
type MaxWaits struct {
	High, Normal, Low, Background time.Duration
}

func (w MaxWaits) of(p Priority) time.Duration {
	var d time.Duration
	switch p {
	case PriorityHigh:
		d = w.High
	case PriorityNormal:
		d = w.Normal
	case PriorityLow:
		d = w.Low
	case PriorityBackground:
		d = w.Background
	}
	if d > 0 {
		return d
	}
	return DefaultMaxWait(p)
}

// Acceptance is the JSON body of a 202 Accepted.
type Acceptance struct {
	ID              JobID     `json:"id"`
	State           State     `json:"state"`
	Priority        Priority  `json:"priority"`
	Deadline        time.Time `json:"deadline"`
	DeadlineClamped bool      `json:"deadline_clamped,omitempty"`
	PlannedRelease  time.Time `json:"planned_release"`
	StatusURL       string    `json:"status_url"`
}

// Defer is the proxy's Green-Wait hook. The proxy calls it for each
// request on a route, after routing and before proxying, with the route's
// options. The contract:
//
//   - handled == false: Defer wrote nothing to w and did not read r.Body;
//     the proxy serves the request normally. This happens when the route is
//     not enabled, the request is a release (IsRelease), a CONNECT or an
//     upgrade, it has no priority or is critical, its deadline has already
//     passed, no forecast is available, or the best window before its
//     deadline starts within Options.MinDeferral (it runs now).
//   - handled == true: Defer wrote a complete response and the proxy must
//     not touch w or r.Body again. The response is 202 Accepted once the
//     job is durable (with Location, Retry-After, Preference-Applied when
//     Prefer: respond-async was sent, Aegis-Deadline-Clamped when the
//     deadline was shortened, and an Acceptance JSON body); 400 for an
//     unknown Aegis-Priority (listing the allowed values), a malformed
//     Aegis-Deadline or Aegis-Callback; 413 for a body over the route's
//     limit; 503 with Retry-After when the queue is full or the store is
//     unavailable.
//
// The priority comes from Aegis-Priority; else, with Prefer: respond-async,
// from the route's default priority (normal when it has none); else from
// the route's default priority. The deadline is now plus the priority's
// maximum wait, shortened by Aegis-Deadline (delta-seconds or RFC 3339)
// but never lengthened: a later deadline is clamped and the response says
// so. Defer is safe for concurrent use.
func (m *Manager) Defer(w http.ResponseWriter, r *http.Request, rt RouteOptions) (handled bool) {
	if !rt.Enabled || IsRelease(r.Context()) || r.Method == http.MethodConnect || r.Header.Get("Upgrade") != "" {
		return false
	}
	prio, async, err := requestPriority(r.Header, rt.DefaultPriority)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return true
	}
	if !prio.Deferrable() {
		return false
	}
	now := time.Now()
	maxWait := rt.MaxWait.of(prio)
	deadline, clamped := now.Add(maxWait), false
	if v := r.Header.Get(HeaderDeadline); v != "" {
		d, err := parseDeadline(v, now)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return true
		}
		if !d.After(now) {
			return false
		}
		if d.After(deadline) {
			clamped = true
		} else {
			deadline = d
		}
	}
	var callback string
	if v := r.Header.Get(HeaderCallback); v != "" {
		if m.opts.CallbackKey == nil {
			writeError(w, http.StatusBadRequest, "Aegis-Callback is not enabled on this server")
			return true
		}
		u, err := parseCallback(v)
		if err == nil {
			err = m.callbacks.check(u)
		}
		if err == nil && m.opts.CheckCallback != nil {
			err = m.opts.CheckCallback(u)
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, HeaderCallback+": "+err.Error())
			return true
		}
		callback = u.String()
	}
	limit := rt.BodyLimit
	if limit <= 0 {
		limit = m.opts.BodyLimit
	}
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, "request body exceeds "+strconv.FormatInt(limit, 10)+" bytes")
		m.met.jobs.WithLabelValues(prio.String(), outcomeRejected).Inc()
		return true
	}
	dur := rt.ExpectedDuration
	if dur <= 0 {
		dur = m.opts.ExpectedDuration
	}
	planned, err := m.plan(r.Context(), rt.Region, dur, now, deadline)
	if err != nil {
		m.log.Debug("greenwait no plan, running now", "route", rt.Name, "region", rt.Region, "err", err)
		return false
	}
	if planned.Sub(now) < m.opts.MinDeferral {
		return false
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, "request body exceeds "+strconv.FormatInt(limit, 10)+" bytes")
			m.met.jobs.WithLabelValues(prio.String(), outcomeRejected).Inc()
		} else {
			writeError(w, http.StatusBadRequest, "reading request body")
		}
		return true
	}
	rec := &record{
		ID:               NewJobID(),
		State:            StatePlanned,
		Priority:         prio,
		Route:            rt.Name,
		Cluster:          rt.Cluster,
		Region:           rt.Region,
		Method:           r.Method,
		URL:              requestURL(r),
		Host:             r.Host,
		Header:           storedHeader(r.Header, async),
		Callback:         callback,
		SubmittedAt:      now,
		Deadline:         deadline,
		DeadlineClamped:  clamped,
		MaxWait:          maxWait,
		ExpectedDuration: dur,
		PlannedAt:        planned,
		Body:             body,
	}
	if v, ok := m.opts.Forecaster.Intensity(rt.Region); ok {
		rec.IntensitySubmit = &v
	}
	if err := m.accept(rec); err != nil {
		m.met.jobs.WithLabelValues(prio.String(), outcomeRejected).Inc()
		if !errors.Is(err, ErrQueueFull) {
			m.log.Error("greenwait job not stored", "route", rt.Name, "err", err)
		}
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusServiceUnavailable, clientText(err))
		return true
	}
	loc := m.opts.JobPathPrefix + rec.ID.String()
	h := w.Header()
	h.Set("Location", loc)
	h.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(max(planned.Sub(time.Now()), time.Second).Seconds())), 10))
	if async {
		h.Set("Preference-Applied", "respond-async")
	}
	if clamped {
		h.Set(HeaderDeadlineClamped, "true")
	}
	writeJSON(w, http.StatusAccepted, &Acceptance{
		ID: rec.ID, State: StatePlanned, Priority: prio, Deadline: deadline.UTC(), DeadlineClamped: clamped,
		PlannedRelease: planned.UTC(), StatusURL: loc,
	})
	return true
}

// requestPriority returns the priority a request asks for and whether it
// sent Prefer: respond-async.
func requestPriority(h http.Header, def Priority) (Priority, bool, error) {
	async := prefersRespondAsync(h.Values("Prefer"))
	vs := h.Values(HeaderPriority)
	switch {
	case len(vs) > 1:
		return 0, async, fmt.Errorf("%s given more than once", HeaderPriority)
	case len(vs) == 1:
		p, err := ParsePriority(vs[0])
		if err != nil {
			return 0, async, fmt.Errorf("%s: %w", HeaderPriority, err)
		}
		return p, async, nil
	case async && def == PriorityNone:
		return PriorityNormal, async, nil
	}
	return def, async, nil
}

func requestURL(r *http.Request) string {
	if r.URL.IsAbs() {
		return r.URL.String()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}

// hopHeaders are not stored: they concern the client's connection.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect", "Content-Length",
	HeaderPriority, HeaderDeadline, HeaderCallback, HeaderIdempotencyKey,
}

// storedHeader returns the end-to-end headers of a deferred request,
// without Green-Wait's control headers. Prefer is dropped when it asked for
// respond-async: the release must be served synchronously.
func storedHeader(in http.Header, async bool) http.Header {
	h := in.Clone()
	for _, f := range h.Values("Connection") {
		for _, name := range splitList(f) {
			h.Del(name)
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
	if async {
		h.Del("Prefer")
	}
	return h
}

func splitList(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if f := trimOWS(s[start:i]); f != "" {
				out = append(out, f)
			}
			start = i + 1
		}
	}
	return out
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// accept stores rec durably and enters it into the scheduler.
func (m *Manager) accept(rec *record) error {
	m.closeMu.RLock()
	if m.closed {
		m.closeMu.RUnlock()
		return ErrClosed
	}
	err := m.st.insert(rec)
	m.closeMu.RUnlock()
	if err != nil {
		return err
	}
	m.mu.Lock()
	e := m.newEntry(rec)
	m.idx.add(e)
	m.mu.Unlock()
	m.met.current[rec.Priority].Inc()
	m.met.jobs.WithLabelValues(rec.Priority.String(), outcomeAccepted).Inc()
	m.poke()
	return nil
}

// clientText maps an internal error to client-safe text; file paths and
// store details stay in the logs.
func clientText(err error) string {
	switch {
	case errors.Is(err, ErrQueueFull):
		return "deferred-request queue is full"
	case errors.Is(err, ErrNotFound):
		return "job not found"
	case errors.Is(err, ErrConflict):
		return "operation does not apply to the job's state"
	case errors.Is(err, ErrClosed):
		return "service shutting down"
	case errors.Is(err, ErrCorrupt):
		return "job record unreadable"
	}
	return "job store unavailable"
}

// statusFor maps an error from the job store or operations to an HTTP
// status.
func statusFor(err error) int {
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrCorrupt):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	}
	return http.StatusServiceUnavailable
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// DeferFunc returns Defer bound to one route's options, for a proxy that
// keeps a plain hook function per route and so need not import this
// package.
func (m *Manager) DeferFunc(rt RouteOptions) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool { return m.Defer(w, r, rt) }
}
