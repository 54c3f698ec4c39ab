package greenwait

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestReleaseInCleanWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		env := newTestManager(t, Options{Registerer: reg})
		start := time.Now()
		stop := env.run(t)
		defer stop()
		id := env.submitLow(t, "payload-1")
		if got := testutil.ToFloat64(env.m.met.current[PriorityLow]); got != 1 {
			t.Errorf("deferred jobs current: got %v, want 1", got)
		}

		time.Sleep(3 * time.Hour)
		synctest.Wait()

		rs := env.rel.seen()
		if len(rs) != 1 {
			t.Fatalf("releases: got %v, want 1", rs)
		}
		r := rs[0]
		if got, want := r.at.Sub(start), time.Hour; got != want {
			t.Errorf("released after %v, want %v (start of the clean window)", got, want)
		}
		if r.idempotencyKey != id.String() || r.body != "payload-1" || r.method != http.MethodPost {
			t.Errorf("release: got key %q body %q method %s, want key %s body payload-1 method POST", r.idempotencyKey, r.body, r.method, id)
		}
		if r.url != "http://api.example.test/v1/report?q=1" {
			t.Errorf("release url: got %q", r.url)
		}
		s := mustLookup(t, env.m, id)
		if s.State != StateDone || s.IntensityAtSubmit == nil || *s.IntensityAtSubmit != 400 || s.IntensityAtRun == nil || *s.IntensityAtRun != 100 {
			t.Errorf("status: got %+v, want done with intensities 400 then 100", s)
		}
		if s.CarbonSavedGrams <= 0 {
			t.Errorf("carbon saved: got %v, want > 0", s.CarbonSavedGrams)
		}
		res, err := env.m.JobResult(id)
		if err != nil || res.Status != http.StatusCreated || string(res.Body) != "ran payload-1" || res.Header.Get("X-Upstream") != "yes" {
			t.Errorf("result: got %+v, %v, want 201 \"ran payload-1\"", res, err)
		}
		if got := testutil.ToFloat64(env.m.met.current[PriorityLow]); got != 0 {
			t.Errorf("deferred jobs current after run: got %v, want 0", got)
		}
		if got := testutil.ToFloat64(env.m.met.jobs.WithLabelValues("low", outcomeDone)); got != 1 {
			t.Errorf("jobs_total{done}: got %v, want 1", got)
		}
		if got := testutil.ToFloat64(env.m.met.saved); got <= 0 {
			t.Errorf("carbon saved counter: got %v, want > 0", got)
		}
	})
}

func TestReplanMovesJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		env := newTestManager(t, Options{})
		start := time.Now()
		stop := env.run(t)
		defer stop()
		ids := []JobID{env.submitLow(t, "a"), env.submitLow(t, "b")}
		// The forecast changes: the clean window now starts after 20 min.
		env.fc.set(cleanBetween(start.Add(20*time.Minute), start.Add(40*time.Minute)))
		n, err := env.m.Replan(context.Background(), lowRoute.Region)
		if err != nil || n != 2 {
			t.Fatalf("Replan: got %d, %v, want 2, nil", n, err)
		}
		if n, _ := env.m.Replan(context.Background(), "elsewhere"); n != 0 {
			t.Errorf("Replan of another region: got %d, want 0", n)
		}
		if s := mustLookup(t, env.m, ids[0]); !s.PlannedRelease.Equal(start.Add(20 * time.Minute)) {
			t.Errorf("planned release: got %v, want %v", s.PlannedRelease, start.Add(20*time.Minute))
		}
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		rs := env.rel.seen()
		if len(rs) != 2 {
			t.Fatalf("releases: got %v, want 2", rs)
		}
		for _, r := range rs {
			if got := r.at.Sub(start); got != 20*time.Minute {
				t.Errorf("job %s released after %v, want 20m", r.id, got)
			}
		}
	})
}

func TestRetryThenSucceed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		env := newTestManager(t, Options{})
		env.rel.fail = func(j *Job) int {
			if j.Attempt < 3 {
				return http.StatusServiceUnavailable
			}
			return 0
		}
		stop := env.run(t)
		defer stop()
		id := env.submitLow(t, "x")
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		rs := env.rel.seen()
		if len(rs) != 3 {
			t.Fatalf("attempts: got %d, want 3", len(rs))
		}
		for i, r := range rs {
			if r.idempotencyKey != id.String() || r.attempt != i+1 {
				t.Errorf("attempt %d: got key %q attempt %d, want key %s", i+1, r.idempotencyKey, r.attempt, id)
			}
		}
		if gap := rs[1].at.Sub(rs[0].at); gap < 500*time.Millisecond || gap > time.Second {
			t.Errorf("first backoff: got %v, want within [0.5s, 1s]", gap)
		}
		if s := mustLookup(t, env.m, id); s.State != StateDone || s.Attempts != 3 {
			t.Errorf("status: got state %s attempts %d, want done 3", s.State, s.Attempts)
		}
	})
}

func TestRetryUntilDeadlineThenFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		env := newTestManager(t, Options{RetryGrace: 10 * time.Minute})
		env.rel.fail = func(*Job) int { return -1 }
		start := time.Now()
		stop := env.run(t)
		defer stop()
		id := env.submitLow(t, "x")
		time.Sleep(5 * time.Hour)
		synctest.Wait()
		s := mustLookup(t, env.m, id)
		if s.State != StateFailed {
			t.Fatalf("state: got %s, want failed", s.State)
		}
		rs := env.rel.seen()
		last := rs[len(rs)-1].at
		if deadline := start.Add(2 * time.Hour); last.After(deadline.Add(10*time.Minute)) || last.Before(deadline) {
			t.Errorf("last attempt at +%v, want between deadline (+2h) and deadline+grace", last.Sub(start))
		}
		if s.LastError == "" || s.Attempts != len(rs) {
			t.Errorf("status: got attempts %d last error %q, want %d and an error", s.Attempts, s.LastError, len(rs))
		}
		if got := testutil.ToFloat64(env.m.met.jobs.WithLabelValues("low", outcomeFailed)); got != 1 {
			t.Errorf("jobs_total{failed}: got %v, want 1", got)
		}
	})
}

func TestReleaseConcurrencyBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		env := newTestManager(t, Options{ReleaseConcurrency: 2, ClusterConcurrency: map[string]int{"other": 5}})
		env.rel.hold = time.Minute
		stop := env.run(t)
		defer stop()
		for range 7 {
			env.submitLow(t, "x")
		}
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		if got := len(env.rel.seen()); got != 7 {
			t.Errorf("releases: got %d, want 7", got)
		}
		if env.rel.maxRun != 2 {
			t.Errorf("max concurrent releases: got %d, want 2", env.rel.maxRun)
		}
	})
}

func TestDeadlineNearReleasesEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		env := newTestManager(t, Options{ExpectedDuration: 10 * time.Minute})
		start := time.Now()
		stop := env.run(t)
		defer stop()
		// The clean window starts after 1h; the deadline is 50 min away.
		w, handled := env.submit(t, lowRoute, http.MethodPost, "x", map[string]string{HeaderPriority: "low", HeaderDeadline: "3000"})
		if handled {
			t.Fatalf("flat forecast before deadline: got handled %d, want run at once", w.Code)
		}
		// A window inside the deadline but ending after it: release no
		// later than deadline - expected duration.
		env.fc.set(func(t time.Time) float64 {
			if t.Sub(start) >= 45*time.Minute {
				return 100
			}
			return 400 - t.Sub(start).Minutes()
		})
		w, handled = env.submit(t, lowRoute, http.MethodPost, "x", map[string]string{HeaderPriority: "low", HeaderDeadline: "3000"})
		if !handled || w.Code != http.StatusAccepted {
			t.Fatalf("submit: got %v %d, want 202", handled, w.Code)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		rs := env.rel.seen()
		if len(rs) != 1 || rs[0].at.Sub(start) > 40*time.Minute {
			t.Errorf("releases: got %v, want one by +40m", rs)
		}
	})
}

func TestCancelBeforeRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		env := newTestManager(t, Options{})
		stop := env.run(t)
		defer stop()
		id := env.submitLow(t, "x")
		if err := env.m.Cancel(id); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		if rs := env.rel.seen(); len(rs) != 0 {
			t.Errorf("releases: got %v, want none", rs)
		}
		if s := mustLookup(t, env.m, id); s.State != StateCancelled {
			t.Errorf("state: got %s, want cancelled", s.State)
		}
		if err := env.m.Cancel(id); err == nil {
			t.Error("second Cancel: got nil, want ErrConflict")
		}
		// Retry puts it back; it runs in the next clean window.
		if _, err := env.m.Retry(context.Background(), id); err != nil {
			t.Fatalf("Retry: %v", err)
		}
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		if rs := env.rel.seen(); len(rs) != 1 || rs[0].idempotencyKey != id.String() {
			t.Errorf("releases after retry: got %v, want one with the same key", rs)
		}
	})
}

func TestPurgeAfterRetention(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		env := newTestManager(t, Options{Retention: time.Hour, PurgeInterval: time.Minute})
		stop := env.run(t)
		defer stop()
		id := env.submitLow(t, "x")
		time.Sleep(90 * time.Minute)
		synctest.Wait()
		if s := mustLookup(t, env.m, id); s.State != StateDone {
			t.Fatalf("state: got %s, want done", s.State)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if _, err := env.m.Lookup(id); err == nil {
			t.Error("Lookup after retention: got nil error, want ErrNotFound")
		}
		if got := env.m.st.jobs.Load(); got != 0 {
			t.Errorf("stored jobs: got %d, want 0", got)
		}
	})
}
