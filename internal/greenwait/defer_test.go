package greenwait

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDeferDecision(t *testing.T) {
	withDefault := func(p Priority) RouteOptions { rt := lowRoute; rt.DefaultPriority = p; return rt }
	far := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		name        string
		rt          RouteOptions
		method      string
		body        string
		hdr         map[string]string
		wantHandled bool
		wantCode    int
		wantInBody  string
		wantHeader  map[string]string
	}{
		{name: "no priority", rt: lowRoute, wantHandled: false},
		{name: "route disabled", rt: RouteOptions{}, hdr: map[string]string{HeaderPriority: "low"}, wantHandled: false},
		{name: "critical", rt: lowRoute, hdr: map[string]string{HeaderPriority: "critical"}, wantHandled: false},
		{name: "critical beats route default", rt: withDefault(PriorityLow), hdr: map[string]string{HeaderPriority: "Critical"}, wantHandled: false},
		{name: "unknown priority", rt: lowRoute, hdr: map[string]string{HeaderPriority: "urgent"}, wantHandled: true, wantCode: 400,
			wantInBody: "allowed: critical, high, normal, low, background"},
		{name: "normal: best window is now", rt: lowRoute, hdr: map[string]string{HeaderPriority: "normal"}, wantHandled: false},
		{name: "low deferred", rt: lowRoute, body: "b", hdr: map[string]string{HeaderPriority: "low"}, wantHandled: true, wantCode: 202,
			wantInBody: `"priority":"low"`},
		{name: "background deferred", rt: lowRoute, hdr: map[string]string{HeaderPriority: " BACKGROUND "}, wantHandled: true, wantCode: 202},
		{name: "route default", rt: withDefault(PriorityLow), wantHandled: true, wantCode: 202},
		{name: "prefer respond-async takes route default", rt: withDefault(PriorityLow),
			hdr: map[string]string{"Prefer": "wait=5, respond-async"}, wantHandled: true, wantCode: 202,
			wantHeader: map[string]string{"Preference-Applied": "respond-async"}},
		{name: "prefer respond-async without default is normal", rt: lowRoute, hdr: map[string]string{"Prefer": "respond-async"}, wantHandled: false},
		{name: "deadline shortens", rt: lowRoute, hdr: map[string]string{HeaderPriority: "low", HeaderDeadline: "1800"}, wantHandled: false},
		{name: "deadline in the past", rt: lowRoute, hdr: map[string]string{HeaderPriority: "low", HeaderDeadline: "2001-01-01T00:00:00Z"}, wantHandled: false},
		{name: "deadline clamped", rt: lowRoute, hdr: map[string]string{HeaderPriority: "low", HeaderDeadline: far}, wantHandled: true, wantCode: 202,
			wantInBody: `"deadline_clamped":true`, wantHeader: map[string]string{HeaderDeadlineClamped: "true"}},
		{name: "deadline malformed", rt: lowRoute, hdr: map[string]string{HeaderPriority: "low", HeaderDeadline: "tomorrow"}, wantHandled: true, wantCode: 400},
		{name: "max wait override", rt: RouteOptions{Enabled: true, MaxWait: MaxWaits{Normal: 4 * time.Hour}}, hdr: map[string]string{HeaderPriority: "normal"},
			wantHandled: true, wantCode: 202},
		{name: "body over limit", rt: RouteOptions{Enabled: true, BodyLimit: 4}, body: "12345", hdr: map[string]string{HeaderPriority: "low"},
			wantHandled: true, wantCode: 413},
		{name: "callback without key", rt: lowRoute, hdr: map[string]string{HeaderPriority: "low", HeaderCallback: "https://hooks.example.test/x"},
			wantHandled: true, wantCode: 400},
		{name: "release passes through", rt: lowRoute, hdr: map[string]string{HeaderPriority: "low", "X-Release": "1"}, wantHandled: false},
		{name: "upgrade passes through", rt: lowRoute, hdr: map[string]string{HeaderPriority: "low", "Upgrade": "websocket"}, wantHandled: false},
	}
	env := newTestManager(t, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			var r *http.Request
			r = httptest.NewRequest(method, "http://api.example.test/x", strings.NewReader(tt.body))
			for k, v := range tt.hdr {
				r.Header.Set(k, v)
			}
			if tt.hdr["X-Release"] != "" {
				j := &Job{ID: NewJobID(), Method: method, URL: "http://api.example.test/x", Header: r.Header}
				var err error
				if r, err = j.NewRequest(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			w := httptest.NewRecorder()
			got := env.m.Defer(w, r, tt.rt)
			if got != tt.wantHandled {
				t.Fatalf("handled: got %v, want %v (code %d, body %s)", got, tt.wantHandled, w.Code, w.Body)
			}
			if !got {
				if w.Body.Len() != 0 || len(w.Header()) != 0 {
					t.Errorf("unhandled request wrote a response: %d %v %s", w.Code, w.Header(), w.Body)
				}
				return
			}
			if w.Code != tt.wantCode {
				t.Errorf("code: got %d, want %d (%s)", w.Code, tt.wantCode, w.Body)
			}
			if !strings.Contains(w.Body.String(), tt.wantInBody) {
				t.Errorf("body: got %s, want it to contain %s", w.Body, tt.wantInBody)
			}
			for k, v := range tt.wantHeader {
				if got := w.Header().Get(k); got != v {
					t.Errorf("header %s: got %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestDeferAcceptance(t *testing.T) {
	env := newTestManager(t, Options{})
	before := time.Now()
	w, handled := env.submit(t, lowRoute, http.MethodPut, "body", map[string]string{
		HeaderPriority: "low", "Connection": "X-Hop", "X-Hop": "1", "X-Keep": "2", HeaderIdempotencyKey: "client-key",
	})
	if !handled || w.Code != http.StatusAccepted {
		t.Fatalf("got %v %d, want 202", handled, w.Code)
	}
	var a Acceptance
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	if loc := w.Header().Get("Location"); loc != "/.aegis/jobs/"+a.ID.String() || a.StatusURL != loc {
		t.Errorf("Location %q, status_url %q, want /.aegis/jobs/%s", loc, a.StatusURL, a.ID)
	}
	if d := a.PlannedRelease.Sub(before); d < time.Hour-time.Minute || d > time.Hour+time.Minute {
		t.Errorf("planned release in %v, want about 1h", d)
	}
	if ra := w.Header().Get("Retry-After"); ra < "3500" || len(ra) != 4 {
		t.Errorf("Retry-After: got %q, want about 3600", ra)
	}
	if d := a.Deadline.Sub(before); d < 2*time.Hour || d > 2*time.Hour+time.Minute {
		t.Errorf("deadline in %v, want 2h", d)
	}
	rec, err := env.m.st.get(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantHeader := http.Header{"X-Keep": {"2"}}
	if diff := cmp.Diff(wantHeader, rec.Header); diff != "" {
		t.Errorf("stored header (-want +got):\n%s", diff)
	}
	if j := rec.job(); j.Header.Get(HeaderIdempotencyKey) != a.ID.String() {
		t.Errorf("job Idempotency-Key: got %q, want %s", j.Header.Get(HeaderIdempotencyKey), a.ID)
	}
}

func TestDeferQueueFull(t *testing.T) {
	env := newTestManager(t, Options{MaxJobs: 1})
	env.submitLow(t, "first")
	w, handled := env.submit(t, lowRoute, http.MethodPost, "second", map[string]string{HeaderPriority: "low"})
	if !handled || w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("got %v %d Retry-After %q, want 503 with Retry-After", handled, w.Code, w.Header().Get("Retry-After"))
	}
}

func TestDeferNoForecastRunsNow(t *testing.T) {
	env := newTestManager(t, Options{})
	env.fc.err = errors.New("no forecast")
	if _, handled := env.submit(t, lowRoute, http.MethodPost, "x", map[string]string{HeaderPriority: "low"}); handled {
		t.Error("handled: got true, want false when the forecast is unavailable")
	}
}

func TestDeferChunkedBodyOverLimit(t *testing.T) {
	env := newTestManager(t, Options{BodyLimit: 8})
	r := httptest.NewRequest(http.MethodPost, "http://api.example.test/x", strings.NewReader("0123456789"))
	r.ContentLength = -1
	r.Header.Set(HeaderPriority, "low")
	w := httptest.NewRecorder()
	if !env.m.Defer(w, r, lowRoute) || w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("got %d, want 413", w.Code)
	}
}

func TestDeferCallbackCheck(t *testing.T) {
	env := newTestManager(t, Options{
		CallbackKey: []byte("k"),
		CheckCallback: func(u *url.URL) error {
			if u.Hostname() != "hooks.example.test" {
				return errors.New("host not allowed")
			}
			return nil
		},
	})
	tests := []struct {
		name, callback string
		want           int
	}{
		{"allowed", "https://hooks.example.test/done", 202},
		{"refused by check", "http://169.254.169.254/latest", 400},
		{"not absolute", "/done", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _ := env.submit(t, lowRoute, http.MethodPost, "x", map[string]string{HeaderPriority: "low", HeaderCallback: tt.callback})
			if w.Code != tt.want {
				t.Errorf("got %d %s, want %d", w.Code, w.Body, tt.want)
			}
		})
	}
}

// TestDeferCallbackHosts: the callback host policy applies at submission,
// with the error named in the 400.
func TestDeferCallbackHosts(t *testing.T) {
	tests := []struct {
		name     string
		hosts    []string
		callback string
		want     int
		wantBody string
	}{
		{name: "public name, no list", callback: "https://hooks.example.test/done", want: 202},
		{name: "internal IP, no list", callback: "http://10.0.0.1/done", want: 400, wantBody: "10.0.0.1 is not public"},
		{name: "listed", hosts: []string{"*.example.test"}, callback: "https://hooks.example.test/done", want: 202},
		{name: "not listed", hosts: []string{"*.example.test"}, callback: "https://hooks.example.net/done", want: 400, wantBody: "not in the allowed callback hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestManager(t, Options{CallbackKey: []byte("k"), CallbackHosts: tt.hosts})
			w, _ := env.submit(t, lowRoute, http.MethodPost, "x", map[string]string{HeaderPriority: "low", HeaderCallback: tt.callback})
			if w.Code != tt.want || !strings.Contains(w.Body.String(), tt.wantBody) {
				t.Errorf("got %d %s, want %d containing %q", w.Code, w.Body, tt.want, tt.wantBody)
			}
		})
	}
	if _, err := New(Options{Path: filepath.Join(t.TempDir(), "gw.db"), MasterKey: testKey, Forecaster: &curveForecaster{}, Releaser: &fakeReleaser{}, CallbackHosts: []string{"bad host"}}); err == nil || !strings.Contains(err.Error(), "callback host 0") {
		t.Errorf("New with a bad callback host: got %v, want it named", err)
	}
}

func TestDeferConcurrent(t *testing.T) {
	env := newTestManager(t, Options{})
	var wg sync.WaitGroup
	ids := make(chan JobID, 200)
	for range 20 {
		wg.Go(func() {
			for range 10 {
				w, _ := env.submit(t, lowRoute, http.MethodPost, "concurrent", map[string]string{HeaderPriority: "low"})
				var a Acceptance
				if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || w.Code != http.StatusAccepted {
					t.Errorf("submit: got %d %s, want 202", w.Code, w.Body)
					return
				}
				ids <- a.ID
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := map[JobID]bool{}
	for id := range ids {
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
		if _, err := env.m.st.get(id); err != nil {
			t.Errorf("job %s not stored: %v", id, err)
		}
	}
	if got := len(env.m.idx.byID); got != 200 {
		t.Errorf("indexed jobs: got %d, want 200", got)
	}
}
