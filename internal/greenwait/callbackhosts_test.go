package greenwait

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func TestParseCallbackHost(t *testing.T) {
	tests := []struct {
		in      string
		want    hostPattern
		wantErr string
	}{
		{in: "hooks.example.com", want: hostPattern{host: "hooks.example.com"}},
		{in: "Hooks.Example.COM.", want: hostPattern{host: "hooks.example.com"}},
		{in: "*.example.com", want: hostPattern{host: "example.com", wildcard: true}},
		{in: "hooks.example.com:8443", want: hostPattern{host: "hooks.example.com", port: "8443"}},
		{in: "10.0.0.7", want: hostPattern{host: "10.0.0.7"}},
		{in: "10.0.0.7:9000", want: hostPattern{host: "10.0.0.7", port: "9000"}},
		{in: "[fd00::7]", want: hostPattern{host: "fd00::7"}},
		{in: "[fd00::7]:443", want: hostPattern{host: "fd00::7", port: "443"}},
		{in: "::ffff:10.0.0.7", want: hostPattern{host: "10.0.0.7"}},
		{in: "", wantErr: "want a host name"},
		{in: "*", wantErr: "want a host name"},
		{in: "a.*.example.com", wantErr: "want a host name"},
		{in: "https://hooks.example.com", wantErr: "port"},
		{in: "hooks.example.com:0", wantErr: "port \"0\""},
		{in: "hooks.example.com:65536", wantErr: "port"},
		{in: "hooks.example.com:+80", wantErr: "port"},
		{in: "-bad.example.com", wantErr: "want a host name"},
		{in: "bad..example.com", wantErr: "want a host name"},
		{in: "hooks.example.com/path", wantErr: "want a host name"},
		{in: "[fe80::1%eth0]", wantErr: "zone"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseHostPattern(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func FuzzParseCallbackHost(f *testing.F) {
	for _, s := range []string{"hooks.example.com", "*.example.com:443", "10.0.0.7", "[fd00::7]:80", "a..b", "[::1%lo]", ":80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseHostPattern(s)
		if err != nil {
			return
		}
		// An accepted pattern is canonical: the host it keeps parses to
		// itself, and a plain pattern admits its own host at any port.
		if p.host == "" {
			t.Fatalf("%q: accepted with an empty host", s)
		}
		if !p.wildcard && !p.match(canonHost(p.host), cmpOr(p.port, "80")) {
			t.Fatalf("%q: pattern %+v does not admit its own host", s, p)
		}
		if p.wildcard && p.match(p.host, cmpOr(p.port, "80")) {
			t.Fatalf("%q: wildcard %+v admits the bare domain", s, p)
		}
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestPublicAddr(t *testing.T) {
	tests := map[string]bool{
		"93.184.215.14":   true,
		"2606:4700::1111": true,
		"127.0.0.1":       false,
		"::1":             false,
		"10.1.2.3":        false,
		"172.16.0.1":      false,
		"192.168.1.1":     false,
		"169.254.169.254": false,
		"100.64.0.1":      false,
		"0.0.0.0":         false,
		"0.1.2.3":         false,
		"224.0.0.1":       false,
		"255.255.255.255": false,
		"fd00::7":         false,
		"fe80::1":         false,
		"::":              false,
		"::ffff:10.0.0.1": false,
		"::ffff:8.8.8.8":  true,
	}
	for in, want := range tests {
		if got := publicAddr(netip.MustParseAddr(in)); got != want {
			t.Errorf("publicAddr(%s): got %v, want %v", in, got, want)
		}
	}
}

func TestCallbackPolicyCheck(t *testing.T) {
	tests := []struct {
		name    string
		hosts   []string
		url     string
		wantErr string
	}{
		{name: "any public name", url: "https://hooks.example.com/done"},
		{name: "public IP", url: "http://93.184.215.14/done"},
		{name: "loopback IP", url: "http://127.0.0.1:9901/config", wantErr: "127.0.0.1 is not public"},
		{name: "metadata IP", url: "http://169.254.169.254/latest", wantErr: "not public"},
		{name: "mapped private IP", url: "http://[::ffff:10.0.0.1]/", wantErr: "10.0.0.1 is not public"},
		{name: "listed", hosts: []string{"hooks.example.com"}, url: "https://HOOKS.example.com./done"},
		{name: "wildcard", hosts: []string{"*.example.com"}, url: "https://a.b.example.com/done"},
		{name: "wildcard is not the domain", hosts: []string{"*.example.com"}, url: "https://example.com/done", wantErr: "not in the allowed"},
		{name: "not listed", hosts: []string{"hooks.example.com"}, url: "https://evil.example.net/", wantErr: "evil.example.net (port 443) is not in the allowed"},
		{name: "port listed", hosts: []string{"hooks.example.com:8443"}, url: "https://hooks.example.com:8443/"},
		{name: "other port", hosts: []string{"hooks.example.com:8443"}, url: "https://hooks.example.com/", wantErr: "port 443"},
		{name: "listed private IP", hosts: []string{"10.0.0.7"}, url: "http://10.0.0.7:8080/hook"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp, err := newCallbackPolicy(tt.hosts)
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			err = cp.check(u)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("check(%s): got %v, want error containing %q", tt.url, err, tt.wantErr)
			}
		})
	}
	if _, err := newCallbackPolicy([]string{"ok.example", "bad host", "x:99999"}); err == nil ||
		!strings.Contains(err.Error(), "callback host 1") || !strings.Contains(err.Error(), "callback host 2") {
		t.Errorf("two bad patterns: got %v, want both named", err)
	}
}

// TestCallbackClientDialGuard sends real callbacks over loopback: the
// default client connects to an internal address only when the host is
// listed, checked on the resolved address.
func TestCallbackClientDialGuard(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer hook.Close()
	port := hook.URL[strings.LastIndex(hook.URL, ":")+1:]
	tests := []struct {
		name    string
		hosts   []string
		url     string
		wantErr string
	}{
		{name: "loopback not listed", url: hook.URL, wantErr: "127.0.0.1 is not public"},
		{name: "name resolving to loopback", url: "http://localhost:" + port, wantErr: "is not public"},
		{name: "loopback listed", hosts: []string{"127.0.0.1"}, url: hook.URL},
		{name: "loopback listed with its port", hosts: []string{"127.0.0.1:" + port}, url: hook.URL},
		{name: "list without it", hosts: []string{"hooks.example.com"}, url: hook.URL, wantErr: "not in the allowed callback hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp, err := newCallbackPolicy(tt.hosts)
			if err != nil {
				t.Fatal(err)
			}
			c := newCallbackClient(cp)
			defer c.CloseIdleConnections()
			resp, err := c.Post(tt.url, "application/json", bytes.NewReader([]byte("{}")))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want the callback delivered", err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					t.Fatalf("got %d, want 204", resp.StatusCode)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("got %d, want refused (%s)", resp.StatusCode, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
