package greenwait

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash test re-executes the test binary as a child running a Green-Wait
// server (TestCrashChild with these variables set), kills it with SIGKILL
// under load, restarts it, and checks that every acknowledged job reaches
// the upstream intact.
const (
	envCrashChild    = "GREENWAIT_CRASH_CHILD"
	envCrashDB       = "GREENWAIT_CRASH_DB"
	envCrashUpstream = "GREENWAIT_CRASH_UPSTREAM"
)

// upstreamReleaser posts released jobs to a fixed upstream.
type upstreamReleaser struct {
	base   *url.URL
	client *http.Client
}

func (u *upstreamReleaser) Release(ctx context.Context, j *Job) (*Result, error) {
	req, err := j.NewRequest(ctx)
	if err != nil {
		return nil, err
	}
	req.URL.Scheme, req.URL.Host, req.Host = u.base.Scheme, u.base.Host, ""
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, err
	}
	return ResultFromResponse(resp, 1<<20)
}

func TestCrashChild(t *testing.T) {
	if os.Getenv(envCrashChild) != "1" {
		t.Skip("runs only as the child of TestCrashRecovery")
	}
	base, err := url.Parse(os.Getenv(envCrashUpstream))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{
		Path:        os.Getenv(envCrashDB),
		MasterKey:   testKey,
		Forecaster:  &offsetForecaster{offset: 300 * time.Millisecond},
		Releaser:    &upstreamReleaser{base: base, client: &http.Client{Timeout: 5 * time.Second}},
		MinDeferral: time.Millisecond, ExpectedDuration: time.Second,
		ReleaseConcurrency: 8, RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	rt := RouteOptions{Enabled: true, Name: "crash", DefaultPriority: PriorityLow}
	mux := http.NewServeMux()
	mux.Handle(m.JobPathPrefix(), m.JobsHandler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !m.Defer(w, r, rt) {
			http.Error(w, "not deferred", http.StatusInternalServerError)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ADDR %s\n", ln.Addr())
	go m.Run(context.Background())
	http.Serve(ln, mux) // until killed
}

type upstreamLog struct {
	mu    sync.Mutex
	bodys map[string][]byte // Idempotency-Key -> body
	dups  int
}

func (u *upstreamLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	time.Sleep(10 * time.Millisecond) // widen the window in which jobs are running
	key := r.Header.Get(HeaderIdempotencyKey)
	u.mu.Lock()
	if old, ok := u.bodys[key]; ok {
		u.dups++
		if !bytes.Equal(old, b) {
			u.bodys[key] = nil // a different body under one key: fail below
		}
	} else {
		u.bodys[key] = b
	}
	u.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

type child struct {
	cmd  *exec.Cmd
	addr string
}

func startChild(t *testing.T, db, upstream string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashChild+"=1", envCrashDB+"="+db, envCrashUpstream+"="+upstream)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			go io.Copy(io.Discard, out)
			return &child{cmd: cmd, addr: addr}
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	t.Fatalf("child exited without an address: %v", sc.Err())
	return nil
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.cmd.Wait()
}

// load sends deferrals with 1 KiB random bodies from 8 workers until stop
// is closed, recording every acknowledged job.
func load(c *child, acked map[JobID][]byte, mu *sync.Mutex, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				body := make([]byte, 1024)
				rand.Read(body)
				resp, err := client.Post("http://"+c.addr+"/ingest", "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					time.Sleep(time.Millisecond) // the child is gone
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					continue
				}
				var a Acceptance
				if json.Unmarshal(b, &a) == nil {
					mu.Lock()
					acked[a.ID] = body
					mu.Unlock()
				}
			}
		})
	}
	return &wg
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	up := &upstreamLog{bodys: map[string][]byte{}}
	upstream := httptest.NewServer(up)
	defer upstream.Close()
	db := filepath.Join(t.TempDir(), "crash.db")
	acked := map[JobID][]byte{}
	var mu sync.Mutex

	// Cycle 1: kill under accept load. Cycle 2: kill while releases run.
	for cycle, loadFor := range []time.Duration{600 * time.Millisecond, 200 * time.Millisecond} {
		c := startChild(t, db, upstream.URL)
		stop := make(chan struct{})
		wg := load(c, acked, &mu, stop)
		time.Sleep(loadFor)
		c.kill(t)
		close(stop)
		wg.Wait()
		mu.Lock()
		t.Logf("cycle %d: %d jobs acknowledged so far", cycle+1, len(acked))
		mu.Unlock()
	}
	if len(acked) == 0 {
		t.Fatal("no job was acknowledged")
	}

	// The last restart finishes every acknowledged job.
	c := startChild(t, db, upstream.URL)
	defer c.kill(t)
	var missing []JobID
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		missing = missing[:0]
		up.mu.Lock()
		for id := range acked {
			if _, ok := up.bodys[id.String()]; !ok {
				missing = append(missing, id)
			}
		}
		up.mu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged jobs never reached the upstream, e.g. %s", len(missing), len(acked), missing[0])
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for id, body := range acked {
		if got := up.bodys[id.String()]; !bytes.Equal(got, body) {
			t.Errorf("job %s: upstream body differs (%d bytes, want %d)", id, len(got), len(body))
		}
	}
	t.Logf("%d acknowledged jobs all delivered; %d duplicate deliveries (at least once)", len(acked), up.dups)
	// Every acknowledged job reports done through the restarted child.
	n := 0
	for id := range acked {
		if n++; n > 20 {
			break
		}
		var s Status
		for deadline := time.Now().Add(5 * time.Second); s.State != StateDone && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			resp, err := http.Get("http://" + c.addr + "/.aegis/jobs/" + id.String())
			if err != nil {
				t.Fatal(err)
			}
			json.NewDecoder(resp.Body).Decode(&s)
			resp.Body.Close()
		}
		if s.State != StateDone {
			t.Errorf("job %s: state %s, want done", id, s.State)
		}
	}
}
