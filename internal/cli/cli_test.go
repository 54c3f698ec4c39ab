package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func run(args ...string) (int, string, string) {
	var out, errw bytes.Buffer
	code := Run(context.Background(), args, &out, &errw)
	return code, out.String(), errw.String()
}

func TestValidateReportsEveryProblem(t *testing.T) {
	code, _, stderr := run("validate", "--config", "testdata/bad.toml")
	if code != ExitError {
		t.Errorf("exit code: got %d, want %d", code, ExitError)
	}
	want := []string{
		"testdata/bad.toml:3: admin.colour: unknown key",
		`testdata/bad.toml:8: listeners[0].protocols[1]: "h9" is not one of`,
		`testdata/bad.toml:12: routes[0].cluster: "nope" is not defined in [[clusters]]`,
		"aegis validate: 3 problem(s)",
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("output lacks %q:\n%s", w, stderr)
		}
	}
}

func TestValidateGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "good.toml")
	if err := os.WriteFile(path, []byte(`
[[listeners]]
name = "a"
address = "127.0.0.1:0"
[[routes]]
name = "r"
cluster = "c"
[[clusters]]
name = "c"
[[clusters.endpoints]]
address = "127.0.0.1:1"
region = "x"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := run("validate", "--config", path)
	if code != ExitOK || !strings.Contains(out, ": ok (1 listeners, 1 routes, 1 clusters)") {
		t.Errorf("got %d %q %q", code, out, stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"unknown command", []string{"frobnicate"}, ExitUsage},
		{"validate without config", []string{"validate"}, ExitUsage},
		{"bad flag", []string{"run", "--nope"}, ExitUsage},
		{"missing file", []string{"validate", "--config", "does-not-exist.toml"}, ExitError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, _, _ := run(tt.args...); code != tt.code {
				t.Errorf("exit code: got %d, want %d", code, tt.code)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run("version")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, out)
	}
	if !strings.HasPrefix(out, "aegis ") || !strings.Contains(out, "X25519MLKEM768 available") {
		t.Errorf("version output: %q", out)
	}
}

// TestRunStopsCleanly runs `aegis run --config` and stops it through its
// context, as a SIGTERM would: exit code 0.
func TestRunStopsCleanly(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }))
	defer up.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	path := filepath.Join(t.TempDir(), "run.toml")
	os.WriteFile(path, []byte(fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"
[[listeners]]
name = "a"
address = %q
[[routes]]
name = "r"
cluster = "c"
[[clusters]]
name = "c"
[[clusters.endpoints]]
address = %q
region = "x"
`, addr, up.Listener.Addr().String())), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errw syncBuf
	done := make(chan int, 1)
	go func() { done <- Run(ctx, []string{"run", "--config", path}, &out, &errw) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "hi" {
				t.Errorf("proxied: got %q", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never served: %v\n%s", err, errw.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("exit code after stop: got %d, want 0\n%s", code, errw.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop")
	}
	if !strings.Contains(out.String(), `"msg":"request"`) {
		t.Errorf("no access log line on stdout: %q", out.String())
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
