package greenwait

import (
	"testing"
	"time"
)

func TestPrefersRespondAsync(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want bool
	}{
		{"plain", []string{"respond-async"}, true},
		{"case", []string{"Respond-Async"}, true},
		{"in list", []string{"wait=10, respond-async"}, true},
		{"with params", []string{"return=minimal; foo=bar,respond-async;x"}, true},
		{"second header", []string{"return=minimal", "respond-async"}, true},
		{"inside quotes", []string{`foo="a, respond-async"`}, false},
		{"as a value", []string{"handling=respond-async"}, false},
		{"prefix only", []string{"respond-asyncx"}, false},
		{"none", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := prefersRespondAsync(tt.in); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseDeadline(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		in      string
		want    time.Time
		wantErr bool
	}{
		{"delta seconds", "90", now.Add(90 * time.Second), false},
		{"zero", "0", now, false},
		{"rfc3339", "2026-05-01T13:00:00Z", now.Add(time.Hour), false},
		{"rfc3339 offset", "2026-05-01T15:00:00+02:00", now.Add(time.Hour), false},
		{"huge delta", "99999999999999999999", now.Add(100 * 365 * 24 * time.Hour), false},
		{"negative", "-5", time.Time{}, true},
		{"http date", "Fri, 01 May 2026 13:00:00 GMT", time.Time{}, true},
		{"empty", " ", time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDeadline(tt.in, now)
			if (err != nil) != tt.wantErr || !got.Equal(tt.want) {
				t.Errorf("got %v, %v, want %v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseCallback(t *testing.T) {
	for in, ok := range map[string]bool{
		"https://hooks.example.test/x?y=1": true,
		"http://10.0.0.1:8080/":            true,
		"ftp://hooks.example.test/":        false,
		"/relative":                        false,
		"https://user:pw@hooks.example/":   false,
		"https:opaque":                     false,
		"":                                 false,
	} {
		if _, err := parseCallback(in); (err == nil) != ok {
			t.Errorf("parseCallback(%q): got %v, want ok %v", in, err, ok)
		}
	}
}

func TestJobIDRoundTrip(t *testing.T) {
	id := NewJobID()
	got, err := ParseJobID(id.String())
	if err != nil || got != id {
		t.Errorf("got %v, %v, want %v", got, err, id)
	}
	if id == NewJobID() {
		t.Error("two ids are equal")
	}
	for _, bad := range []string{"", "zz", id.String()[:31], id.String() + "0"} {
		if _, err := ParseJobID(bad); err == nil {
			t.Errorf("ParseJobID(%q): got nil error", bad)
		}
	}
}

func FuzzPrefer(f *testing.F) {
	for _, s := range []string{"respond-async", `a="x,\"respond-async", respond-async`, "wait=1;q", `"`, `\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		prefersRespondAsync([]string{s})
	})
}

func FuzzHeaders(f *testing.F) {
	for _, s := range []string{"90", "2026-05-01T13:00:00Z", "low", "https://x.test/", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := parseDeadline(s, now); err == nil && allDigits(s) && d.Before(now) {
			t.Errorf("delta-seconds %q gave %v, before now", s, d)
		}
		if p, err := ParsePriority(s); err == nil {
			if q, err := ParsePriority(p.String()); err != nil || q != p {
				t.Errorf("priority %q does not round-trip", s)
			}
		}
		parseCallback(s)
		if id, err := ParseJobID(s); err == nil {
			if _, err := ParseJobID(id.String()); err != nil {
				t.Errorf("id %q does not round-trip", s)
			}
		}
	})
}
