package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// base is a minimal valid file that carbon tests extend.
const base = `
[[listeners]]
name = "plain"
address = "127.0.0.1:0"

[[routes]]
name = "r"
cluster = "c"

[[clusters]]
name = "c"
  [[clusters.endpoints]]
  address = "127.0.0.1:1"
  region = "eu-south"
  [[clusters.endpoints]]
  address = "127.0.0.1:2"
  region = "gb"
`

// carbonSection extracts the [carbon] part of the embedded default, so that
// this test does not depend on the rest of the file.
func carbonSection(t *testing.T) string {
	t.Helper()
	text := string(DefaultText())
	i := strings.Index(text, "\n[carbon]")
	if i < 0 {
		t.Fatal("embedded default has no [carbon] section")
	}
	return text[i:]
}

func TestDefaultCarbon(t *testing.T) {
	f, err := Parse("t.toml", []byte(base+carbonSection(t)))
	if err != nil {
		t.Fatalf("default [carbon] section: %v", err)
	}
	c := f.Carbon
	if !c.Enabled() {
		t.Fatal("Enabled: got false, want true")
	}
	var regions []string
	for _, r := range c.Regions {
		regions = append(regions, r.Region)
		if len(r.Chain) != 1 || r.Chain[0].Provider != "demo-trace" || r.Chain[0].Zone != r.Region {
			t.Errorf("region %s chain: got %+v, want demo-trace with zone %s", r.Region, r.Chain, r.Region)
		}
		if r.Static == nil || r.Static.Kind != "average" {
			t.Errorf("region %s static: got %+v, want a value of kind average", r.Region, r.Static)
		}
	}
	if diff := cmp.Diff([]string{"eu-south", "us-west", "sa-east"}, regions); diff != "" {
		t.Errorf("regions (-want +got):\n%s", diff)
	}
	p := c.Provider("demo-trace")
	if p == nil || p.Type != CarbonReplay || p.File != EmbeddedSample || p.Speed != 360 {
		t.Fatalf("demo-trace provider: got %+v", p)
	}
	if got, want := c.ForecastInterval.Duration, time.Minute; got != want {
		t.Errorf("forecast_interval: got %v, want %v", got, want)
	}
	if diff := cmp.Diff([]string{"gb"}, f.CarbonUncoveredRegions()); diff != "" {
		t.Errorf("uncovered regions (-want +got):\n%s", diff)
	}
}

func TestCarbonDefaults(t *testing.T) {
	f, err := Parse("t.toml", []byte(base+`
[[carbon.providers]]
name = "em"
type = "electricitymaps"
token_env = "EM_TOKEN"

[[carbon.providers]]
name = "trace"
type = "replay"
file = "trace.csv"

[[carbon.regions]]
region = "eu-south"
zone = "ES"
chain = [{ provider = "em" }, { provider = "trace", zone = "eu-south" }]
static = { value = 120 }
`))
	if err != nil {
		t.Fatal(err)
	}
	c := f.Carbon
	em, tr, r := c.Providers[0], c.Providers[1], c.Regions[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"interval", c.Interval.Duration, 5 * time.Minute},
		{"forecast_interval", c.ForecastInterval.Duration, 30 * time.Minute},
		{"max_staleness", c.MaxStaleness.Duration, time.Hour},
		{"timeout", c.Timeout.Duration, 10 * time.Second},
		{"max_attempts", c.MaxAttempts, 3},
		{"retry_backoff", c.RetryBackoff.Duration, time.Second},
		{"em timeout", em.Timeout.Duration, 10 * time.Second},
		{"em emission_factor", em.EmissionFactor, "lifecycle"},
		{"em kind", em.Kind, ""},
		{"replay speed", tr.Speed, 1.0},
		{"replay format", tr.Format, "auto"},
		{"replay column", tr.Column, "direct"},
		{"replay horizon", tr.Horizon.Duration, 24 * time.Hour},
		{"replay kind", tr.Kind, "average"},
		{"replay timeout", tr.Timeout.Duration, time.Duration(0)},
		{"link zone from region zone", r.Chain[0].Zone, "ES"},
		{"explicit link zone", r.Chain[1].Zone, "eu-south"},
		{"static value (integer in TOML)", r.Static.Value, 120.0},
		{"static kind", r.Static.Kind, "average"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if !f.Carbon.Enabled() {
		t.Error("Enabled: got false, want true")
	}
}

func TestCarbonOffByDefault(t *testing.T) {
	f, err := Parse("t.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if f.Carbon.Enabled() {
		t.Error("Enabled without regions: got true, want false")
	}
	if got := f.CarbonUncoveredRegions(); got != nil {
		t.Errorf("uncovered regions without carbon: got %v, want none", got)
	}
}

// TestCarbonConfigShowsNoSecrets checks that /config's JSON carries only
// where credentials live, never credentials.
func TestCarbonConfigShowsNoSecrets(t *testing.T) {
	f, err := Parse("t.toml", []byte(base+`
[[carbon.providers]]
name = "wt"
type = "watttime"
username_env = "WT_USER"
password_file = "/run/secrets/wt-password"

[[carbon.regions]]
region = "eu-south"
chain = [{ provider = "wt", zone = "CAISO_NORTH" }]
`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"username_env":"WT_USER"`, `"password_file":"/run/secrets/wt-password"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/config JSON lacks %s: %s", want, b)
		}
	}
}

func TestCarbonProblems(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string // "path: message" prefixes, in line order
	}{
		{
			name: "unknown provider in chain",
			toml: "[[carbon.regions]]\nregion = \"eu-south\"\nchain = [{ provider = \"nope\" }]\n",
			want: []string{`carbon.regions[0].chain[0].provider: "nope" is not defined in [[carbon.providers]]`},
		},
		{
			name: "region without chain or static",
			toml: "[[carbon.regions]]\nregion = \"eu-south\"\n",
			want: []string{"carbon.regions[0]: needs a provider chain, a static value, or both"},
		},
		{
			name: "ukgrid zone",
			toml: "[[carbon.providers]]\nname = \"uk\"\ntype = \"ukgrid\"\n[[carbon.regions]]\nregion = \"gb\"\nchain = [{ provider = \"uk\", zone = \"18\" }]\n",
			want: []string{`carbon.regions[0].chain[0].zone: "18" is not a UK grid zone`},
		},
		{
			name: "ukgrid zones accepted",
			toml: "[[carbon.providers]]\nname = \"uk\"\ntype = \"ukgrid\"\n[[carbon.regions]]\nregion = \"gb\"\nchain = [{ provider = \"uk\", zone = \"GB\" }]\n[[carbon.regions]]\nregion = \"scotland\"\nchain = [{ provider = \"uk\", zone = \"16\" }]\n",
		},
		{
			name: "electricitymaps without token",
			toml: "[[carbon.providers]]\nname = \"em\"\ntype = \"electricitymaps\"\n",
			want: []string{`carbon.providers[0]: type "electricitymaps" needs the API token`},
		},
		{
			name: "both env and file",
			toml: "[[carbon.providers]]\nname = \"em\"\ntype = \"electricitymaps\"\ntoken_env = \"T\"\ntoken_file = \"/t\"\n",
			want: []string{"carbon.providers[0].token_file: set token_env or token_file, not both"},
		},
		{
			name: "key for another type",
			toml: "[[carbon.providers]]\nname = \"s\"\ntype = \"static\"\nvalues = { a = 1.0 }\ntoken_env = \"T\"\n",
			want: []string{`carbon.providers[0].token_env: does not apply to type "static"`},
		},
		{
			name: "bad env name and url",
			toml: "[[carbon.providers]]\nname = \"em\"\ntype = \"electricitymaps\"\ntoken_env = \"$TOKEN\"\nbase_url = \"ftp://x\"\n",
			want: []string{
				`carbon.providers[0].token_env: "$TOKEN" is not an environment variable name`,
				`carbon.providers[0].base_url: "ftp://x" is not an http or https URL`,
			},
		},
		{
			name: "static zone without value",
			toml: "[[carbon.providers]]\nname = \"s\"\ntype = \"static\"\nvalues = { a = 1.0 }\n[[carbon.regions]]\nregion = \"eu-south\"\nchain = [{ provider = \"s\" }]\n",
			want: []string{`carbon.regions[0].chain[0].zone: "eu-south" has no value in static provider "s" (zones: a)`},
		},
		{
			name: "replay options",
			toml: "[[carbon.providers]]\nname = \"r\"\ntype = \"replay\"\nfile = \"embedded:other\"\nspeed = -2.0\nstart = \"yesterday\"\nformat = \"xml\"\n",
			want: []string{
				`carbon.providers[0].file: "embedded:other": the only embedded trace is "embedded:sample"`,
				"carbon.providers[0].speed: -2 must be a positive number",
				`carbon.providers[0].start: "yesterday" is not an RFC 3339 time`,
				`carbon.providers[0].format: "xml" is not one of auto, aegis, electricitymaps`,
			},
		},
		{
			name: "sample zone",
			toml: "[[carbon.providers]]\nname = \"r\"\ntype = \"replay\"\nfile = \"embedded:sample\"\n[[carbon.regions]]\nregion = \"eu-west\"\nchain = [{ provider = \"r\" }]\n",
			want: []string{`carbon.regions[0].chain[0].zone: "eu-west" is not in the embedded sample trace`},
		},
		{
			name: "intervals and attempts",
			toml: "[carbon]\ninterval = \"100ms\"\nmax_staleness = \"0s\"\nmax_attempts = 11\n",
			want: []string{
				"carbon.interval: 100ms is below the minimum 1s",
				"carbon.max_staleness: must be greater than zero",
				"carbon.max_attempts: 11 is outside 1..10",
			},
		},
		{
			name: "static fallback",
			toml: "[[carbon.regions]]\nregion = \"eu-south\"\nstatic = { value = -1.0, kind = \"median\" }\n",
			want: []string{
				"carbon.regions[0].static.value: -1 is not a finite, non-negative intensity",
				`carbon.regions[0].static.kind: "median" is not one of average, marginal`,
			},
		},
		{
			name: "duplicate names",
			toml: "[[carbon.providers]]\nname = \"s\"\ntype = \"static\"\nvalues = { eu-south = 1.0 }\n[[carbon.providers]]\nname = \"s\"\ntype = \"ukgrid\"\n[[carbon.regions]]\nregion = \"eu-south\"\nchain = [{ provider = \"s\" }, { provider = \"s\" }]\n[[carbon.regions]]\nregion = \"eu-south\"\nstatic = { value = 1.0 }\n",
			want: []string{
				`carbon.providers[1].name: "s" is already used by carbon.providers[0]`,
				`carbon.regions[0].chain[1].provider: "s" is already in this chain at carbon.regions[0].chain[0]`,
				`carbon.regions[1].region: "eu-south" is already used by carbon.regions[0]`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(base+tt.toml))
			var got []string
			for _, p := range Problems(err) {
				got = append(got, p.Path+": "+p.Msg)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("problems: got %d %q, want %d %q", len(got), got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("problem %d: got %q, want prefix %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}
