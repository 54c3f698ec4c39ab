package telemetry

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	tests := []struct {
		name, level, format string
		wantErr             bool
		wantJSON            bool
	}{
		{name: "defaults", wantJSON: false},
		{name: "json debug", level: "debug", format: "json", wantJSON: true},
		{name: "bad level", level: "loud", wantErr: true},
		{name: "bad format", format: "xml", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := NewLogger(LogOptions{Level: tt.level, Format: tt.format, Writer: &buf})
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			log.Info("hello", "k", "v")
			if got := json.Valid(bytes.TrimSpace(buf.Bytes())); got != tt.wantJSON {
				t.Errorf("JSON output: got %v, want %v (%q)", got, tt.wantJSON, buf.String())
			}
		})
	}
}

func TestOpenAccessLog(t *testing.T) {
	var out, errw bytes.Buffer
	l, c, err := OpenAccessLog("off", &out, &errw)
	if l != nil || c != nil || err != nil {
		t.Fatalf("off: got %v %v %v, want nils", l, c, err)
	}
	l, _, err = OpenAccessLog("stdout", &out, &errw)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("request", "status", 200)
	if !strings.Contains(out.String(), `"status":200`) {
		t.Errorf("stdout access log: got %q", out.String())
	}
	path := filepath.Join(t.TempDir(), "access.log")
	l, c, err = OpenAccessLog(path, &out, &errw)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("request")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !json.Valid(bytes.TrimSpace(b)) {
		t.Errorf("file access log is not JSON: %q", b)
	}
}

func TestNewRegistry(t *testing.T) {
	mfs, err := NewRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sawGo bool
	for _, mf := range mfs {
		if mf.GetName() == "go_goroutines" {
			sawGo = true
		}
	}
	if !sawGo {
		t.Error("go collector not registered")
	}
}
