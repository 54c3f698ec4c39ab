package greenwait

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// offsetForecaster plans every job offset after its earliest start.
type offsetForecaster struct {
	mu     sync.Mutex
	offset time.Duration
}

func (f *offsetForecaster) set(d time.Duration) { f.mu.Lock(); f.offset = d; f.mu.Unlock() }

func (f *offsetForecaster) BestWindow(_ context.Context, _ string, _ time.Duration, earliest, _ time.Time) (time.Time, float64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return earliest.Add(f.offset), 100, nil
}

func (f *offsetForecaster) Intensity(string) (float64, bool) { return 300, true }

type callbackSink struct {
	mu   sync.Mutex
	got  []*http.Request
	body [][]byte
}

func (c *callbackSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.got = append(c.got, r)
	c.body = append(c.body, b)
	c.mu.Unlock()
}

func do(t *testing.T, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func waitState(t *testing.T, m *Manager, id JobID, want State) *Status {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		s := mustLookup(t, m, id)
		if s.State == want {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: state %s, want %s", id, s.State, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestJobAndAdminAPI(t *testing.T) {
	fc := &offsetForecaster{offset: time.Hour}
	callbackKey := []byte("callback-secret")
	// The hook listens on loopback, which callbacks reach only when listed.
	env := newTestManager(t, Options{Forecaster: fc, CallbackKey: callbackKey, CallbackHosts: []string{"127.0.0.1"}})
	sink := &callbackSink{}
	hooks := httptest.NewServer(sink)
	defer hooks.Close()

	rt := RouteOptions{Enabled: true, Name: "reports", Region: "eu-west"}
	mux := http.NewServeMux()
	mux.Handle(env.m.JobPathPrefix(), env.m.JobsHandler())
	hook := env.m.DeferFunc(rt)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !hook(w, r) {
			w.WriteHeader(http.StatusTeapot)
		}
	})
	data := httptest.NewServer(mux)
	defer data.Close()
	admin := httptest.NewServer(env.m.AdminHandler())
	defer admin.Close()
	stop := env.run(t)
	defer stop()

	if resp, _ := do(t, http.MethodPost, data.URL+"/r", nil); resp.StatusCode != http.StatusTeapot {
		t.Fatalf("plain request: got %d, want it proxied (418)", resp.StatusCode)
	}
	submit := func(hdr map[string]string) (JobID, string) {
		resp, b := do(t, http.MethodPost, data.URL+"/r?a=1", hdr)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("submit: got %d %s, want 202", resp.StatusCode, b)
		}
		var a Acceptance
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatal(err)
		}
		return a.ID, resp.Header.Get("Location")
	}
	idA, locA := submit(map[string]string{HeaderPriority: "low", HeaderCallback: hooks.URL + "/done"})

	resp, b := do(t, http.MethodGet, data.URL+locA, nil)
	var s Status
	if err := json.Unmarshal(b, &s); err != nil || resp.StatusCode != 200 || s.State != StatePlanned || s.URL != "" {
		t.Errorf("GET status: got %d %s, want 200 planned without operator fields", resp.StatusCode, b)
	}
	if resp, _ := do(t, http.MethodGet, data.URL+locA+"/result", nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("GET result before done: got %d, want 409", resp.StatusCode)
	}

	fc.set(0)
	if _, err := env.m.Replan(context.Background(), "eu-west"); err != nil {
		t.Fatal(err)
	}
	waitState(t, env.m, idA, StateDone)
	resp, b = do(t, http.MethodGet, data.URL+locA+"/result", nil)
	if resp.StatusCode != http.StatusCreated || string(b) != "ran payload" || resp.Header.Get("X-Upstream") != "yes" || resp.Header.Get(HeaderJobID) != idA.String() {
		t.Errorf("GET result: got %d %q %v, want 201 \"ran payload\" with X-Upstream", resp.StatusCode, b, resp.Header)
	}

	// The callback is signed over its body.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		sink.mu.Lock()
		n := len(sink.got)
		sink.mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
	}
	sink.mu.Lock()
	if len(sink.got) != 1 {
		t.Errorf("callbacks: got %d, want 1", len(sink.got))
	} else {
		r, body := sink.got[0], sink.body[0]
		if !hmac.Equal([]byte(r.Header.Get(HeaderSignature)), []byte(Sign(callbackKey, body))) || r.URL.Path != "/done" || r.Header.Get(HeaderJobID) != idA.String() {
			t.Errorf("callback: got path %s signature %q job %q", r.URL.Path, r.Header.Get(HeaderSignature), r.Header.Get(HeaderJobID))
		}
		if !strings.Contains(string(body), `"state":"done"`) {
			t.Errorf("callback body: got %s, want state done", body)
		}
	}
	sink.mu.Unlock()

	fc.set(time.Hour)
	idC, locC := submit(map[string]string{HeaderPriority: "background"})
	if resp, b := do(t, http.MethodDelete, data.URL+locC, nil); resp.StatusCode != 200 || !strings.Contains(string(b), `"state":"cancelled"`) {
		t.Errorf("DELETE: got %d %s, want 200 cancelled", resp.StatusCode, b)
	}
	tests := []struct {
		name, method, path string
		want               int
	}{
		{"cancel twice", http.MethodDelete, locC, 409},
		{"unknown id", http.MethodGet, env.m.JobPathPrefix() + NewJobID().String(), 404},
		{"malformed id", http.MethodGet, env.m.JobPathPrefix() + "zz", 404},
		{"bad sub-resource", http.MethodGet, locA + "/other", 404},
		{"method not allowed", http.MethodPost, locA, 405},
		{"no listing", http.MethodGet, env.m.JobPathPrefix(), 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if resp, b := do(t, tt.method, data.URL+tt.path, nil); resp.StatusCode != tt.want {
				t.Errorf("got %d %s, want %d", resp.StatusCode, b, tt.want)
			}
		})
	}

	// Admin API.
	list := func(query string) ([]Status, int) {
		resp, b := do(t, http.MethodGet, admin.URL+"/jobs"+query, nil)
		var out struct{ Jobs []Status }
		json.Unmarshal(b, &out)
		return out.Jobs, resp.StatusCode
	}
	if jobs, code := list("?state=done&priority=low&route=reports"); code != 200 || len(jobs) != 1 || jobs[0].ID != idA || jobs[0].Method != "POST" {
		t.Errorf("list done: got %d %+v, want idA with operator fields", code, jobs)
	}
	if jobs, code := list("?state=cancelled"); code != 200 || len(jobs) != 1 || jobs[0].ID != idC {
		t.Errorf("list cancelled: got %d %+v, want idC", code, jobs)
	}
	if jobs, code := list("?limit=1"); code != 200 || len(jobs) != 1 {
		t.Errorf("list limit 1: got %d, %d jobs", code, len(jobs))
	}
	for _, q := range []string{"?state=weird", "?priority=urgent", "?limit=0", "?limit=x"} {
		if _, code := list(q); code != 400 {
			t.Errorf("list %s: got %d, want 400", q, code)
		}
	}
	if resp, b := do(t, http.MethodGet, admin.URL+"/jobs/"+idA.String(), nil); resp.StatusCode != 200 || !strings.Contains(string(b), `"route":"reports"`) {
		t.Errorf("show: got %d %s", resp.StatusCode, b)
	}
	if resp, b := do(t, http.MethodPost, admin.URL+"/jobs/"+idC.String()+"/retry", nil); resp.StatusCode != 200 || !strings.Contains(string(b), `"state":"planned"`) {
		t.Errorf("retry: got %d %s, want 200 planned", resp.StatusCode, b)
	}
	if resp, _ := do(t, http.MethodPost, admin.URL+"/jobs/"+idA.String()+"/retry", nil); resp.StatusCode != 409 {
		t.Errorf("retry done job: got %d, want 409", resp.StatusCode)
	}
	if resp, b := do(t, http.MethodPost, admin.URL+"/jobs/"+idC.String()+"/cancel", nil); resp.StatusCode != 200 || !strings.Contains(string(b), `"state":"cancelled"`) {
		t.Errorf("admin cancel: got %d %s", resp.StatusCode, b)
	}
	if resp, _ := do(t, http.MethodPost, admin.URL+"/jobs/purge?state=running", nil); resp.StatusCode != 400 {
		t.Errorf("purge running: got %d, want 400", resp.StatusCode)
	}
	if resp, b := do(t, http.MethodPost, admin.URL+"/jobs/purge?state=cancelled", nil); resp.StatusCode != 200 || string(b) != "{\"purged\":1}\n" {
		t.Errorf("purge cancelled: got %d %s, want 1", resp.StatusCode, b)
	}
	if resp, _ := do(t, http.MethodGet, admin.URL+"/jobs/"+idC.String(), nil); resp.StatusCode != 404 {
		t.Errorf("show purged: got %d, want 404", resp.StatusCode)
	}
	if resp, _ := do(t, http.MethodGet, data.URL+locA, nil); resp.StatusCode != 200 {
		t.Errorf("done job kept: got %d, want 200", resp.StatusCode)
	}
}
