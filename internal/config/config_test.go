package config

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestDefaultIsValid(t *testing.T) {
	f, err := Default()
	if err != nil {
		t.Fatalf("embedded default.toml: %v", err)
	}
	if got, want := f.Admin.Address, "127.0.0.1:9901"; got != want {
		t.Errorf("admin.address: got %q, want %q", got, want)
	}
	var addrs []string
	for _, l := range f.Listeners {
		addrs = append(addrs, l.Address)
	}
	if diff := cmp.Diff([]string{"127.0.0.1:8443", "127.0.0.1:8080"}, addrs); diff != "" {
		t.Errorf("listener addresses (-want +got):\n%s", diff)
	}
	if got := f.Listeners[0].TLS.PQ; got != "prefer" {
		t.Errorf("edge TLS pq: got %q, want prefer", got)
	}
	if got := f.Listeners[0].Timeouts.Write.Duration; got != 0 {
		t.Errorf("explicit write = \"0s\": got %v, want 0", got)
	}
}

// TestInvalidGolden decodes every file in testdata/invalid and compares the
// full list of problems with its .golden file. Refresh with -update.
func TestInvalidGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".toml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(filepath.Base(path), data)
			if err == nil {
				t.Fatalf("Parse(%s): got no error, want problems", path)
			}
			var lines []string
			for _, p := range Problems(err) {
				lines = append(lines, p.Error())
			}
			got := strings.Join(lines, "\n") + "\n"
			golden := strings.TrimSuffix(path, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("problems differ from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

// TestAllProblemsTogether checks that one file with many kinds of problem
// reports each of them, not only the first.
func TestAllProblemsTogether(t *testing.T) {
	data, err := os.ReadFile("testdata/invalid/everything.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("everything.toml", data)
	got := map[string]bool{}
	for _, p := range Problems(err) {
		got[p.Path] = true
		if p.Line == 0 {
			t.Errorf("problem %q has no line", p)
		}
	}
	for _, path := range []string{
		"admin.address", "admin.colour", "log.level",
		"listeners[0].protocols[1]", "listeners[0].protocols[2]", "listeners[0].tls.pq", "listeners[0].tls",
		"listeners[0].timeouts.idle", "listeners[1].name", "listeners[1].address",
		"routes[0].cluster", "routes[0].match.path_prefix", "routes[0].match.methods[0]",
		"routes[0].request_headers.set.Connection",
		"clusters[0].policy", "clusters[0].tls", "clusters[0].endpoints[0].address",
		"clusters[0].endpoints[0].region",
	} {
		if !got[path] {
			t.Errorf("no problem reported at %s", path)
		}
	}
}

func TestProblemsHaveLines(t *testing.T) {
	data := []byte("[[listeners]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n\n[[routes]]\nname = \"r\"\ncluster = \"x\"\n\n[[clusters]]\nname = \"c\"\n  [[clusters.endpoints]]\n  address = \"127.0.0.1:2\"\n  region = \"r\"\n  [[clusters.endpoints]]\n  address = \"127.0.0.1:3\"\n  region = \"r\"\n  weight = 5000\n")
	_, err := Parse("t.toml", data)
	ps := Problems(err)
	want := []*Problem{
		{File: "t.toml", Line: 7, Path: "routes[0].cluster", Msg: `"x" is not defined in [[clusters]]`},
		{File: "t.toml", Line: 17, Path: "clusters[0].endpoints[1].weight", Msg: "5000 is outside 1..1000"},
	}
	if diff := cmp.Diff(want, ps); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestDefaults(t *testing.T) {
	f, err := Parse("t.toml", []byte(`
[[listeners]]
name = "tls"
address = "127.0.0.1:0"
[listeners.tls]

[[routes]]
name = "r"
cluster = "c"

[[clusters]]
name = "c"
protocol = "https"
[clusters.tls]
cert_file = "c.pem"
key_file = "k.pem"
[[clusters.endpoints]]
address = "127.0.0.1:1"
region = "r"
`))
	if err != nil {
		t.Fatal(err)
	}
	l := f.Listeners[0]
	if diff := cmp.Diff([]string{"h1", "h2"}, l.Protocols); diff != "" {
		t.Errorf("TLS listener default protocols (-want +got):\n%s", diff)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listener pq", l.TLS.PQ, "prefer"},
		{"min version", l.TLS.MinVersion, "1.3"},
		{"read_header", l.Timeouts.ReadHeader.Duration, 10 * time.Second},
		{"h2 streams", l.HTTP2.MaxConcurrentStreams, 100},
		{"h2 frame", l.HTTP2.MaxReadFrameSize, 16384},
		{"route timeout", f.Routes[0].Timeout.Duration, 30 * time.Second},
		{"path prefix", f.Routes[0].Match.PathPrefix, "/"},
		{"mesh pq with client cert", f.Clusters[0].TLS.PQ, "require"},
		{"policy", f.Clusters[0].Policy, "round_robin"},
		{"weight", f.Clusters[0].Endpoints[0].Weight, 1},
		{"grace", f.Shutdown.GracePeriod.Duration, 30 * time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

type secretHolder struct {
	Token string `toml:"token" json:"token" secret:"true"`
	Plain string `toml:"plain" json:"plain"`
}

func TestRedact(t *testing.T) {
	v := struct {
		S  secretHolder    `json:"s"`
		SS []*secretHolder `json:"ss"`
	}{S: secretHolder{Token: "hunter2", Plain: "p"}, SS: []*secretHolder{{Token: "t2"}}}
	redact(reflectValue(&v))
	b, _ := json.Marshal(v)
	if strings.Contains(string(b), "hunter2") || strings.Contains(string(b), "t2\"") {
		t.Errorf("secret survived redaction: %s", b)
	}
	if !strings.Contains(string(b), `"plain":"p"`) {
		t.Errorf("plain field lost: %s", b)
	}
}

func TestMarshalJSON(t *testing.T) {
	f, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("JSON of config does not parse: %v", err)
	}
	if !strings.Contains(string(b), `"grace_period":"30s"`) {
		t.Errorf("durations should be strings in JSON: %s", b)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want a not-exist error", err)
	}
}

func TestLoadTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.toml")
	if err := os.WriteFile(path, []byte(strings.Repeat("#\n", MaxFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("got %v, want a size error", err)
	}
}

// FuzzParse feeds arbitrary text to the decoder: it must never panic, and
// every error must be made of Problems with a message.
func FuzzParse(f *testing.F) {
	f.Add(DefaultText())
	for _, p := range must(filepath.Glob("testdata/invalid/*.toml")) {
		f.Add(must(os.ReadFile(p)))
	}
	f.Add([]byte("[[clusters]]\n[[clusters.endpoints]]\n[[clusters.endpoints]]\naddress=1"))
	f.Add([]byte("listeners = 5"))
	f.Add([]byte("[routes]\nx=1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.toml", data)
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without error")
			}
			if _, err := json.Marshal(cfg); err != nil {
				t.Fatalf("valid config does not marshal: %v", err)
			}
			return
		}
		for _, p := range Problems(err) {
			if p.Msg == "" {
				t.Fatalf("problem without a message: %#v", p)
			}
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
