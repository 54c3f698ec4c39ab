package pqtls

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestCheckPQ(t *testing.T) {
	t.Parallel()
	if err := CheckPQ(t.Context()); err != nil {
		t.Fatalf("got %v, want nil (X25519MLKEM768 negotiated)", err)
	}
}

func TestCheckPQClassicalClient(t *testing.T) {
	t.Parallel()
	err := checkPQ(t.Context(), []tls.CurveID{tls.X25519})
	if !errors.Is(err, ErrPQUnavailable) {
		t.Fatalf("got %v, want ErrPQUnavailable", err)
	}
	if !strings.Contains(err.Error(), "negotiated X25519") {
		t.Errorf("got %q, want the negotiated group named", err)
	}
}

func TestCheckPQCanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := CheckPQ(ctx)
	if err == nil || errors.Is(err, ErrPQUnavailable) {
		t.Fatalf("got %v, want a handshake error", err)
	}
}

// TestCheckPQGodebugOff re-runs this test binary with GODEBUG=tlsmlkem=0,
// the switch that turns X25519MLKEM768 off process-wide, and expects
// CheckPQ to report it.
func TestCheckPQGodebugOff(t *testing.T) {
	if os.Getenv("AEGIS_PQTLS_CHILD") == "1" {
		err := CheckPQ(context.Background())
		if !errors.Is(err, ErrPQUnavailable) {
			t.Fatalf("got %v, want ErrPQUnavailable", err)
		}
		return
	}
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), exe, "-test.run=^TestCheckPQGodebugOff$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "AEGIS_PQTLS_CHILD=1", "GODEBUG=tlsmlkem=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("got child error %v, want success; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestCheckPQGodebugOff") {
		t.Fatalf("got child output %s, want the test to pass", out)
	}
}
