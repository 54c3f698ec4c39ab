package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash test checks Green-Wait's promise: after a kill -9 at any moment
// no acknowledged job is lost, and a job that was running at the crash runs
// again after restart, at least once, with the same idempotency key.
//
//  1. Start aegis; clients POST deferrable 1 KiB bodies concurrently;
//     SIGKILL it while they are still sending.
//  2. Restart it on the same store; the upstream answers the first releases
//     and then holds the next ones open; SIGKILL it while releases are
//     running (held at the upstream).
//  3. Restart it again; every acknowledged job must finish (status done)
//     and the upstream must have seen each one's exact body under its
//     Idempotency-Key; the jobs held at the second kill must have run again.

const (
	crashBodySize   = 1024
	crashWorkers    = 8
	crashAckTarget  = 200 // acknowledged jobs before the first kill
	crashPassFirst  = 20  // releases answered in phase 2 before the upstream holds them
	crashSpeed      = 1800.0
	crashCleanHour  = 3 // trace hour with low intensity: 6 s after each start at crashSpeed
	crashRelConcurr = 4
)

func TestGreenWaitSurvivesSIGKILL(t *testing.T) {
	t0 := time.Now()
	bin := buildAegis(t)
	t.Logf("built aegis in %v", time.Since(t0).Round(time.Millisecond))
	dir := t.TempDir()
	up := newRecordingUpstream(t)
	trace := writeCleanHourTrace(t, dir)
	cfg := crashConfig{dir: dir, upstream: up.addr(), trace: trace}

	// Phase 1: accept under load, then SIGKILL mid-load.
	p1 := startAegis(t, bin, cfg, 1)
	acked := newAckSet()
	ctx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var unexpected sync.Map
	for range crashWorkers {
		wg.Go(func() { sendDeferrals(ctx, "http://"+p1.plain+"/batch/crash", acked, &unexpected) })
	}
	if !waitFor(20*time.Second, func() bool { return acked.len() >= crashAckTarget }) {
		stopLoad()
		wg.Wait()
		t.Fatalf("phase 1: got %d acknowledgements in 20 s, want %d; log:\n%s", acked.len(), crashAckTarget, p1.logText())
	}
	p1.kill(t) // the workers are still sending
	stopLoad()
	wg.Wait()
	unexpected.Range(func(k, v any) bool {
		t.Errorf("phase 1: got status %v (%v times), want 202, 200 or 503", k, v)
		return true
	})
	n := acked.len()
	t.Logf("phase 1: %d jobs acknowledged before SIGKILL (%v)", n, time.Since(t0).Round(time.Millisecond))

	// Phase 2: restart; SIGKILL while releases are running.
	up.hold(crashPassFirst)
	p2 := startAegis(t, bin, cfg, 2)
	if !waitFor(40*time.Second, func() bool { a, h := up.counts(); return a >= crashPassFirst && h >= 1 }) {
		a, h := up.counts()
		t.Fatalf("phase 2: got %d answered and %d held releases in 40 s, want %d and >= 1; log:\n%s", a, h, crashPassFirst, p2.logText())
	}
	p2.kill(t)
	heldAtKill := up.heldKeys()
	t.Logf("phase 2: SIGKILL with %d releases held at the upstream (%v)", len(heldAtKill), time.Since(t0).Round(time.Millisecond))

	// Phase 3: restart; everything acknowledged completes.
	up.answerAll()
	p3 := startAegis(t, bin, cfg, 3)
	var notDone []string
	if !waitFor(40*time.Second, func() bool {
		done, err := doneJobs(p3.admin)
		if err != nil {
			return false
		}
		notDone = acked.missingFrom(done)
		return len(notDone) == 0
	}) {
		t.Fatalf("phase 3: %d of %d acknowledged jobs not done after 40 s (e.g. %v); log:\n%s",
			len(notDone), n, notDone[:min(3, len(notDone))], p3.logText())
	}

	// Every acknowledged id: status done on the data plane, the upstream saw
	// its exact body under its Idempotency-Key.
	dups := 0
	for id, sum := range acked.all() {
		var st struct {
			State string `json:"state"`
		}
		if code, err := getJSON("http://"+p3.plain+"/.aegis/jobs/"+id, &st); err != nil || code != 200 || st.State != "done" {
			t.Errorf("job %s: got %d %q (%v), want 200 done", id, code, st.State, err)
		}
		seen := up.seen(id)
		if len(seen) == 0 {
			t.Errorf("job %s: the upstream never saw Idempotency-Key %s", id, id)
		}
		for _, s := range seen {
			if s.sum != sum {
				t.Errorf("job %s: upstream got body sha256 %s, want %s", id, s.sum[:12], sum[:12])
			}
		}
		if len(seen) > 1 {
			dups++
		}
	}
	for id := range heldAtKill {
		if !slicesContainPhase(up.seen(id), 3) {
			t.Errorf("job %s was running at the second SIGKILL: got no release after restart, want one with the same Idempotency-Key", id)
		}
	}
	t.Logf("phase 3: %d jobs done, %d ran more than once (at least once delivery) (%v)", n, dups, time.Since(t0).Round(time.Millisecond))
	p3.stop(t)
}

// crashConfig is what changes between the binary's starts.
type crashConfig struct {
	dir, upstream, trace string
}

func (c crashConfig) text(admin, plain string) string {
	return fmt.Sprintf(`
[admin]
address = %q
[log]
level = "info"
access = "off"
[shutdown]
grace_period = "5s"

[[listeners]]
name = "edge-plain"
address = %q

[[routes]]
name = "batch"
cluster = "up"
  [routes.match]
  path_prefix = "/batch/"
  [routes.greenwait]
  enabled = true
  expected_duration = "2s"
  [routes.greenwait.max_wait]
  low = "5m"

[[clusters]]
name = "up"
  [[clusters.endpoints]]
  address = %q
  region = "r0"

[carbon]
interval = "1s"
forecast_interval = "1s"
[[carbon.providers]]
name = "trace"
type = "replay"
file = %q
speed = %v
[[carbon.regions]]
region = "r0"
chain = [{ provider = "trace" }]

[greenwait]
store_path = %q
key_file = %q
min_deferral = "0s"
release_concurrency = %d
retry_base = "100ms"
retry_max = "1s"
`, admin, plain, c.upstream, c.trace, crashSpeed,
		filepath.Join(c.dir, "store", "jobs.db"), filepath.Join(c.dir, "store", "master.key"), crashRelConcurr)
}

// writeCleanHourTrace writes a replay trace for region r0: 500 gCO2eq/kWh
// except one clean hour at 10, so that jobs wait a few seconds after each
// start and then run.
func writeCleanHourTrace(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("timestamp,region,g_kwh\n")
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for h := range 24 {
		v := 500
		if h == crashCleanHour {
			v = 10
		}
		fmt.Fprintf(&b, "%s,r0,%d\n", start.Add(time.Duration(h)*time.Hour).Format(time.RFC3339), v)
	}
	path := filepath.Join(dir, "trace.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// buildAegis builds ./cmd/aegis into a temporary directory.
func buildAegis(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the aegis binary; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "aegis")
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/aegis-flow/aegis/cmd/aegis")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/aegis: %v\n%s", err, out)
	}
	return bin
}

// aegisProc is one run of the binary.
type aegisProc struct {
	cmd          *exec.Cmd
	admin, plain string
	logPath      string
	done         chan struct{} // closed when the process has exited
}

// startAegis starts the binary on cfg with fresh loopback ports and waits
// for /readyz. The ports are picked free just before; if another process
// takes one in between, it tries again with new ones.
func startAegis(t *testing.T, bin string, cfg crashConfig, run int) *aegisProc {
	t.Helper()
	for attempt := range 3 {
		admin, plain := freePort(t), freePort(t)
		cfgPath := filepath.Join(cfg.dir, "aegis.toml")
		if err := os.WriteFile(cfgPath, []byte(cfg.text(admin, plain)), 0o600); err != nil {
			t.Fatal(err)
		}
		logPath := filepath.Join(cfg.dir, fmt.Sprintf("aegis-%d-%d.log", run, attempt))
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "run", "--config", cfgPath)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.Env = append(os.Environ(), "HOME="+cfg.dir, "XDG_CACHE_HOME="+filepath.Join(cfg.dir, "cache"))
		if err := cmd.Start(); err != nil {
			logf.Close()
			t.Fatalf("start aegis: %v", err)
		}
		logf.Close() // the child has its own descriptor
		p := &aegisProc{cmd: cmd, admin: admin, plain: plain, logPath: logPath, done: make(chan struct{})}
		go func() { // owned by p: kill and stop wait for done
			_ = cmd.Wait()
			close(p.done)
		}()
		t.Cleanup(func() { p.kill(t) })
		if p.waitReady(20 * time.Second) {
			return p
		}
		p.kill(t)
		if log := p.logText(); strings.Contains(log, "address already in use") {
			t.Logf("run %d: a picked port was taken; retrying", run)
			continue
		}
		t.Fatalf("run %d: aegis not ready in 20 s; log:\n%s", run, p.logText())
	}
	t.Fatalf("run %d: no free ports after 3 attempts", run)
	return nil
}

func (p *aegisProc) waitReady(d time.Duration) bool {
	c := &http.Client{Timeout: time.Second}
	return waitFor(d, func() bool {
		select {
		case <-p.done:
			return true // reported by the caller through exited
		default:
		}
		resp, err := c.Get("http://" + p.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) && !p.exited()
}

func (p *aegisProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone. It is
// idempotent.
func (p *aegisProc) kill(t *testing.T) {
	t.Helper()
	if !p.exited() {
		_ = p.cmd.Process.Kill()
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("aegis (pid %d) did not exit after SIGKILL", p.cmd.Process.Pid)
	}
}

// stop sends SIGTERM and expects a clean exit.
func (p *aegisProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code after SIGTERM: got %d, want 0; log:\n%s", code, p.logText())
		}
	case <-time.After(20 * time.Second):
		t.Errorf("aegis did not stop within 20 s of SIGTERM")
	}
}

func (p *aegisProc) logText() string {
	b, _ := os.ReadFile(p.logPath)
	const max = 8 << 10
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	return string(b)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// sendDeferrals POSTs fresh random 1 KiB bodies with Aegis-Priority: low
// until ctx is done, recording every 202's job id with its body's hash.
func sendDeferrals(ctx context.Context, url string, acked *ackSet, unexpected *sync.Map) {
	c := &http.Client{Timeout: 10 * time.Second}
	body := make([]byte, crashBodySize)
	for ctx.Err() == nil {
		_, _ = rand.Read(body)
		sum := sha256.Sum256(body)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(body)))
		if err != nil {
			return
		}
		req.Header.Set("Aegis-Priority", "low")
		resp, err := c.Do(req)
		if err != nil {
			time.Sleep(5 * time.Millisecond) // the process is gone: wait for ctx
			continue
		}
		var acc struct {
			ID string `json:"id"`
		}
		decErr := json.NewDecoder(resp.Body).Decode(&acc)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusAccepted && decErr == nil && len(acc.ID) == 32:
			acked.add(acc.ID, hex.EncodeToString(sum[:]))
		case resp.StatusCode == http.StatusAccepted && errors.Is(decErr, io.ErrUnexpectedEOF):
			// Cut by the kill while the body was read: not acknowledged.
		case resp.StatusCode == http.StatusOK, resp.StatusCode == http.StatusServiceUnavailable:
			// Ran at once (no forecast yet) or the queue was full.
		default:
			v, _ := unexpected.LoadOrStore(resp.StatusCode, new(int))
			*(v.(*int))++
		}
	}
}

// ackSet is the acknowledged jobs: id -> hex sha256 of the body sent.
type ackSet struct {
	mu sync.Mutex
	m  map[string]string
}

func newAckSet() *ackSet { return &ackSet{m: map[string]string{}} }

func (a *ackSet) add(id, sum string) {
	a.mu.Lock()
	a.m[id] = sum
	a.mu.Unlock()
}

func (a *ackSet) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.m)
}

func (a *ackSet) all() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]string, len(a.m))
	for k, v := range a.m {
		out[k] = v
	}
	return out
}

func (a *ackSet) missingFrom(done map[string]bool) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for id := range a.m {
		if !done[id] {
			out = append(out, id)
		}
	}
	return out
}

// doneJobs lists the done jobs through the admin API.
func doneJobs(admin string) (map[string]bool, error) {
	var l struct {
		Jobs []struct {
			ID string `json:"id"`
		} `json:"jobs"`
	}
	code, err := getJSON("http://"+admin+"/jobs?state=done&limit=10000", &l)
	if err != nil || code != 200 {
		return nil, fmt.Errorf("admin /jobs: %d %v", code, err)
	}
	out := make(map[string]bool, len(l.Jobs))
	for _, j := range l.Jobs {
		out[j.ID] = true
	}
	return out, nil
}

func getJSON(url string, v any) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recordingUpstream records every request's Idempotency-Key and body hash,
// per phase. In hold mode it answers the first few requests and then holds
// the rest open until the client goes away.
type recordingUpstream struct {
	srv  *httptest.Server
	stop chan struct{}

	mu        sync.Mutex
	phase     int
	holding   bool
	passFirst int
	answered  int // in the current phase
	held      map[string]bool
	records   map[string][]sighting
}

type sighting struct {
	sum   string
	phase int
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{stop: make(chan struct{}), phase: 1, held: map[string]bool{}, records: map[string][]sighting{}}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	t.Cleanup(func() { close(u.stop) }) // runs first: frees held handlers
	return u
}

func (u *recordingUpstream) addr() string { return u.srv.Listener.Addr().String() }

func (u *recordingUpstream) serve(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	sum := sha256.Sum256(b)
	key := r.Header.Get("Idempotency-Key")
	u.mu.Lock()
	u.records[key] = append(u.records[key], sighting{sum: hex.EncodeToString(sum[:]), phase: u.phase})
	hold := u.holding && u.answered >= u.passFirst
	if hold {
		u.held[key] = true
	} else {
		u.answered++
	}
	u.mu.Unlock()
	if hold {
		select {
		case <-r.Context().Done():
		case <-u.stop:
		}
		return
	}
	fmt.Fprint(w, "ok")
}

// hold starts phase 2: answer pass requests, hold the rest.
func (u *recordingUpstream) hold(pass int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.phase, u.holding, u.passFirst, u.answered = 2, true, pass, 0
}

// answerAll starts phase 3: answer everything.
func (u *recordingUpstream) answerAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.phase, u.holding, u.answered = 3, false, 0
}

func (u *recordingUpstream) counts() (answered, held int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.answered, len(u.held)
}

func (u *recordingUpstream) heldKeys() map[string]bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]bool, len(u.held))
	for k := range u.held {
		out[k] = true
	}
	return out
}

func (u *recordingUpstream) seen(key string) []sighting {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]sighting(nil), u.records[key]...)
}

func slicesContainPhase(s []sighting, phase int) bool {
	for _, x := range s {
		if x.phase == phase {
			return true
		}
	}
	return false
}
