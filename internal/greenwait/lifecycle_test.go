package greenwait

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"
)

func TestRestartRerunsRunningJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gw.db")
		env := newTestManager(t, Options{Path: path})
		start := time.Now()
		planned := env.submitLow(t, "planned")
		running := env.submitLow(t, "running")
		// Mark one as running in the store, as if the process died mid-release.
		rec, err := env.m.st.get(running)
		if err != nil {
			t.Fatal(err)
		}
		rec.State, rec.Attempts = StateRunning, 1
		if err := env.m.st.update(rec, nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := env.m.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}

		reg := prometheus.NewPedanticRegistry()
		env2 := newTestManager(t, Options{Path: path, Registerer: reg})
		if got := testutil.ToFloat64(env2.m.met.current[PriorityLow]); got != 2 {
			t.Errorf("deferred jobs current after load: got %v, want 2", got)
		}
		stop := env2.run(t)
		defer stop()
		synctest.Wait()
		rs := env2.rel.seen()
		if len(rs) != 1 || rs[0].id != running || rs[0].idempotencyKey != running.String() || rs[0].body != "running" {
			t.Fatalf("releases right after restart: got %v, want the running job again", rs)
		}
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		rs = env2.rel.seen()
		if len(rs) != 2 || rs[1].id != planned || rs[1].at.Sub(start) != time.Hour {
			t.Errorf("releases: got %v, want the planned job at +1h", rs)
		}
	})
}

func TestLoadQuarantinesCorruptRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.db")
	env := newTestManager(t, Options{Path: path})
	good, bad := env.submitLow(t, "good"), env.submitLow(t, "bad")
	env.m.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		if err := b.Put(bad[:], []byte("garbage")); err != nil {
			return err
		}
		return b.Put([]byte("short-key"), []byte("x"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	env2 := newTestManager(t, Options{Path: path, Registerer: reg})
	if got := testutil.ToFloat64(env2.m.met.quarantined.WithLabelValues(kindJob)); got != 2 {
		t.Errorf("quarantined: got %v, want 2", got)
	}
	if _, err := env2.m.Lookup(good); err != nil {
		t.Errorf("good job: got %v, want it kept", err)
	}
	if _, err := env2.m.Lookup(bad); !errors.Is(err, ErrNotFound) {
		t.Errorf("bad job: got %v, want ErrNotFound", err)
	}
	if got := testutil.ToFloat64(env2.m.met.current[PriorityLow]); got != 1 {
		t.Errorf("deferred jobs current: got %v, want 1", got)
	}
}

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	env := newTestManager(t, Options{Registerer: reg})
	env.submitLow(t, "x")
	env.m.met.wait.WithLabelValues("low").Observe(1)
	env.m.met.quarantined.WithLabelValues(kindJob)
	env.m.met.callbacks.WithLabelValues("ok")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{
		"aegis_deferred_jobs_current", "aegis_greenwait_jobs_total", "aegis_greenwait_wait_seconds",
		"aegis_greenwait_carbon_saved_grams_total", "aegis_greenwait_store_bytes",
		"aegis_greenwait_quarantined_records_total", "aegis_greenwait_callbacks_total", "aegis_greenwait_panics_total",
	} {
		if !got[name] {
			t.Errorf("metric %s not registered", name)
		}
	}
	if v := testutil.ToFloat64(env.m.met.jobs.WithLabelValues("low", outcomeAccepted)); v != 1 {
		t.Errorf("jobs_total{accepted}: got %v, want 1", v)
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Options{MasterKey: []byte("short"), JobPathPrefix: "jobs"})
	if err == nil {
		t.Fatal("New: got nil error, want problems")
	}
	for _, want := range []string{"path: required", "master key", "forecaster: required", "releaser: required", "job path prefix"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	k1, created, err := LoadOrCreateKeyFile(path)
	if err != nil || !created || len(k1) != 32 {
		t.Fatalf("create: got %d bytes, created %v, %v", len(k1), created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: got %v, %v, want 0600", fi.Mode().Perm(), err)
	}
	k2, created, err := LoadOrCreateKeyFile(path)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Errorf("reload: got created %v, same %v, %v", created, bytes.Equal(k1, k2), err)
	}
	// A Manager with a key file reopens its own store.
	dir := t.TempDir()
	env := newTestManager(t, Options{Path: filepath.Join(dir, "gw.db"), KeyFile: filepath.Join(dir, "k")})
	id := env.submitLow(t, "x")
	env.m.Close()
	env2 := newTestManager(t, Options{Path: filepath.Join(dir, "gw.db"), KeyFile: filepath.Join(dir, "k")})
	if _, err := env2.m.Lookup(id); err != nil {
		t.Errorf("Lookup after reopen with key file: %v", err)
	}
}

func TestParseMasterKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, 32)
	tests := []struct {
		name, in string
		wantErr  bool
	}{
		{"hex", strings.Repeat("ab", 32), false},
		{"hex with newline", strings.Repeat("AB", 32) + "\n", false},
		{"base64", "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=", false},
		{"base64 raw", "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s", false},
		{"too short", "abcd", true},
		{"not a key", strings.Repeat("!", 64), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMasterKey(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err: got %v, want error %v", err, tt.wantErr)
			}
			if err == nil && !bytes.Equal(got, key) {
				t.Errorf("got %x, want %x", got, key)
			}
		})
	}
}

func TestDeferAfterClose(t *testing.T) {
	env := newTestManager(t, Options{})
	env.m.Close()
	w, handled := env.submit(t, lowRoute, "POST", "x", map[string]string{HeaderPriority: "low"})
	if !handled || w.Code != 503 {
		t.Errorf("got %v %d, want 503", handled, w.Code)
	}
	if _, err := env.m.Replan(context.Background(), "eu-west"); err != nil {
		t.Errorf("Replan after close: %v", err)
	}
}
