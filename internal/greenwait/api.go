package greenwait

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

var (
	_ http.Handler = (*jobsHandler)(nil)
	_ http.Handler = (*http.ServeMux)(nil)
)

// JobPathPrefix returns the data-plane path prefix of job URLs; the proxy
// sends requests under it to JobsHandler before route matching.
func (m *Manager) JobPathPrefix() string { return m.opts.JobPathPrefix }

// JobsHandler returns the data-plane job API, for requests whose path
// starts with JobPathPrefix:
//
//	GET    {prefix}{id}         the job's Status (JSON)
//	GET    {prefix}{id}/result  the stored upstream response, once done (409 before)
//	DELETE {prefix}{id}         cancels a queued or planned job (409 if running or finished)
//
// Unknown and malformed ids both get 404. Jobs are never listed here: an id
// is a capability.
func (m *Manager) JobsHandler() http.Handler { return (*jobsHandler)(m) }

type jobsHandler Manager

func (h *jobsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := (*Manager)(h)
	rest, ok := strings.CutPrefix(r.URL.Path, m.opts.JobPathPrefix)
	if !ok {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	idText, sub, _ := strings.Cut(rest, "/")
	id, err := ParseJobID(idText)
	if err != nil || (sub != "" && sub != "result") {
		writeError(w, http.StatusNotFound, "job not found")
		return
	}
	switch {
	case sub == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		rec, err := m.get(id)
		if err != nil {
			writeError(w, statusFor(err), clientText(err))
			return
		}
		writeJSON(w, http.StatusOK, m.status(rec, m.view(id), false))
	case sub == "" && r.Method == http.MethodDelete:
		if err := m.Cancel(id); err != nil {
			writeError(w, statusFor(err), clientText(err))
			return
		}
		rec, err := m.get(id)
		if err != nil {
			writeError(w, statusFor(err), clientText(err))
			return
		}
		writeJSON(w, http.StatusOK, m.status(rec, nil, false))
	case sub == "result" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		m.serveResult(w, id)
	default:
		allow := "GET, HEAD, DELETE"
		if sub != "" {
			allow = "GET, HEAD"
		}
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

func (m *Manager) serveResult(w http.ResponseWriter, id JobID) {
	res, err := m.JobResult(id)
	if err != nil {
		if v := m.view(id); v != nil {
			w.Header().Set("Retry-After", strconv.FormatInt(int64(max(time.Until(v.due), time.Second)/time.Second), 10))
		}
		writeError(w, statusFor(err), clientText(err))
		return
	}
	h := w.Header()
	for k, vs := range storedHeader(res.Header, false) {
		h[k] = vs
	}
	h.Set(HeaderJobID, id.String())
	h.Set("Content-Length", strconv.Itoa(len(res.Body)))
	w.WriteHeader(res.Status)
	_, _ = w.Write(res.Body) // the client may be gone; nothing to do
}

// AdminHandler returns the operator job API, for the admin listener:
//
//	GET    /jobs?state=&priority=&route=&limit=  list (JSON {"jobs": [...], "truncated": bool}); limit default 100, max 10000
//	GET    /jobs/{id}                            one job's Status, with route, cluster, region, method, URL and last error
//	POST   /jobs/{id}/cancel  (or DELETE /jobs/{id})  cancel a queued or planned job
//	POST   /jobs/{id}/retry                      queue a failed or cancelled job again
//	POST   /jobs/purge?state=&older_than=        delete finished jobs (all terminal states, or one;
//	                                             finished more than older_than ago, a Go duration, default 0)
//
// Errors are JSON {"error": "..."}: 400 bad parameters, 404 unknown job,
// 409 wrong state, 503 store unavailable.
func (m *Manager) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jobs", m.adminList)
	mux.HandleFunc("GET /jobs/{id}", m.adminJob(func(w http.ResponseWriter, r *http.Request, id JobID) {
		s, err := m.Lookup(id)
		if err != nil {
			writeError(w, statusFor(err), clientText(err))
			return
		}
		writeJSON(w, http.StatusOK, s)
	}))
	cancel := m.adminJob(func(w http.ResponseWriter, r *http.Request, id JobID) {
		if err := m.Cancel(id); err != nil {
			writeError(w, statusFor(err), clientText(err))
			return
		}
		s, err := m.Lookup(id)
		if err != nil {
			writeError(w, statusFor(err), clientText(err))
			return
		}
		writeJSON(w, http.StatusOK, s)
	})
	mux.HandleFunc("POST /jobs/{id}/cancel", cancel)
	mux.HandleFunc("DELETE /jobs/{id}", cancel)
	mux.HandleFunc("POST /jobs/{id}/retry", m.adminJob(func(w http.ResponseWriter, r *http.Request, id JobID) {
		s, err := m.Retry(r.Context(), id)
		if err != nil {
			writeError(w, statusFor(err), clientText(err))
			return
		}
		writeJSON(w, http.StatusOK, s)
	}))
	mux.HandleFunc("POST /jobs/purge", m.adminPurge)
	return mux
}

func (m *Manager) adminJob(fn func(http.ResponseWriter, *http.Request, JobID)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := ParseJobID(r.PathValue("id"))
		if err != nil {
			writeError(w, http.StatusNotFound, "job not found")
			return
		}
		fn(w, r, id)
	}
}

func (m *Manager) adminList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f ListFilter
	var problems []string
	if v := q.Get("state"); v != "" {
		s, err := ParseState(v)
		if err != nil {
			problems = append(problems, "state: "+err.Error())
		}
		f.State = s
	}
	if v := q.Get("priority"); v != "" {
		p, err := ParsePriority(v)
		if err != nil {
			problems = append(problems, "priority: "+err.Error())
		}
		f.Priority = p
	}
	f.Route = q.Get("route")
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			problems = append(problems, "limit: must be an integer from 1 to 10000")
		}
		f.Limit = n
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, strings.Join(problems, "; "))
		return
	}
	jobs, more, err := m.List(f)
	if err != nil {
		writeError(w, statusFor(err), clientText(err))
		return
	}
	if jobs == nil {
		jobs = []*Status{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": jobs, "truncated": more})
}

func (m *Manager) adminPurge(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var states []State
	var problems []string
	if v := q.Get("state"); v != "" {
		s, err := ParseState(v)
		if err != nil || !s.Terminal() {
			problems = append(problems, "state: must be done, failed or cancelled")
		}
		states = append(states, s)
	}
	var older time.Duration
	if v := q.Get("older_than"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			problems = append(problems, "older_than: must be a non-negative duration such as 24h")
		}
		older = d
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, strings.Join(problems, "; "))
		return
	}
	n, err := m.Purge(older, states...)
	if err != nil {
		m.log.Warn("greenwait purge failed", "err", err)
		writeError(w, statusFor(err), clientText(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"purged": n})
}
