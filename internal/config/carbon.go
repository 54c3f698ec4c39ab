package config

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Carbon configures carbon intelligence: where the grid carbon intensity of
// each region comes from, how often it is refreshed, and what is used when
// providers fail. An empty Regions list switches carbon data off.
type Carbon struct {
	// Interval is how often a region's current intensity is refreshed when
	// its provider gives no validity, and the longest gap between refreshes
	// (default 5m, minimum 1s).
	Interval Duration `toml:"interval" json:"interval"`
	// ForecastInterval is how often forecasts are refreshed (default 30m,
	// minimum 1s).
	ForecastInterval Duration `toml:"forecast_interval" json:"forecast_interval"`
	// MaxStaleness is how long the last known good value is used after its
	// providers started failing (default 1h). After it the region's static
	// value is used, then "unknown" (carbon-neutral routing).
	MaxStaleness Duration `toml:"max_staleness" json:"max_staleness"`
	// Timeout bounds each provider call, retries excluded (default 10s).
	Timeout Duration `toml:"timeout" json:"timeout"`
	// MaxAttempts is how many times one refresh calls a failing provider
	// before moving down the chain (default 3, 1 to 10).
	MaxAttempts int `toml:"max_attempts" json:"max_attempts"`
	// RetryBackoff is the wait before the first retry, doubled for each
	// further one (default 1s).
	RetryBackoff Duration `toml:"retry_backoff" json:"retry_backoff"`
	// Providers are the data sources that regions refer to by name.
	Providers []CarbonProvider `toml:"providers" json:"providers"`
	// Regions map Aegis-Flow region names to provider chains.
	Regions []CarbonRegion `toml:"regions" json:"regions"`
}

// Carbon provider types.
const (
	CarbonElectricityMaps = "electricitymaps"
	CarbonWattTime        = "watttime"
	CarbonUKGrid          = "ukgrid"
	CarbonStatic          = "static"
	CarbonReplay          = "replay"
)

// EmbeddedSample is the replay file value that selects the trace bundled in
// the binary (regions eu-south, us-west and sa-east).
const EmbeddedSample = "embedded:sample"

// Allowed carbon values, for validation and messages.
var (
	CarbonProviderTypes = []string{CarbonElectricityMaps, CarbonWattTime, CarbonUKGrid, CarbonStatic, CarbonReplay}
	CarbonKinds         = []string{"average", "marginal"}
	EmissionFactors     = []string{"lifecycle", "direct"}
	ReplayFormats       = []string{"auto", "aegis", "electricitymaps"}
	ReplayColumns       = []string{"direct", "lca"}
)

// Carbon defaults.
const (
	DefaultCarbonInterval         = 5 * time.Minute
	DefaultCarbonForecastInterval = 30 * time.Minute
	DefaultCarbonMaxStaleness     = time.Hour
	DefaultCarbonTimeout          = 10 * time.Second
	DefaultCarbonMaxAttempts      = 3
	DefaultCarbonRetryBackoff     = time.Second
	DefaultCarbonKind             = "average"
	DefaultEmissionFactor         = "lifecycle"
	DefaultReplayFormat           = "auto"
	DefaultReplayColumn           = "direct"
	DefaultReplaySpeed            = 1.0
	DefaultReplayHorizon          = 24 * time.Hour
)

// CarbonProvider is one data source. Which keys apply depends on Type; a key
// set for a type that does not use it is a problem. Credentials are never
// written in the file: the *_env keys name environment variables and the
// *_file keys name files (first line, trimmed) that hold them, read by the
// daemon at start and on reload.
type CarbonProvider struct {
	// Name identifies the provider in regions' chains and in metrics.
	// Required, unique.
	Name string `toml:"name" json:"name"`
	// Type is electricitymaps, watttime, ukgrid, static or replay.
	Type string `toml:"type" json:"type"`
	// BaseURL overrides the API root of an HTTP provider (default: the
	// provider's public API).
	BaseURL string `toml:"base_url" json:"base_url,omitempty"`
	// Timeout bounds one HTTP request of an HTTP provider (default 10s).
	Timeout Duration `toml:"timeout" json:"timeout"`

	// TokenEnv or TokenFile holds the Electricity Maps API token (one of
	// them is required for electricitymaps).
	TokenEnv  string `toml:"token_env" json:"token_env,omitempty"`
	TokenFile string `toml:"token_file" json:"token_file,omitempty"`
	// UsernameEnv or UsernameFile, and PasswordEnv or PasswordFile, hold the
	// WattTime account (required for watttime).
	UsernameEnv  string `toml:"username_env" json:"username_env,omitempty"`
	UsernameFile string `toml:"username_file" json:"username_file,omitempty"`
	PasswordEnv  string `toml:"password_env" json:"password_env,omitempty"`
	PasswordFile string `toml:"password_file" json:"password_file,omitempty"`
	// EmissionFactor is lifecycle (default) or direct, for electricitymaps.
	EmissionFactor string `toml:"emission_factor" json:"emission_factor,omitempty"`

	// Values maps a zone to its fixed intensity in gCO2eq/kWh, for static.
	Values map[string]float64 `toml:"values" json:"values,omitempty"`
	// Kind is what static or replay values measure: average (default) or
	// marginal.
	Kind string `toml:"kind" json:"kind,omitempty"`

	// File is the replay trace: a CSV file path, or "embedded:sample" for
	// the trace bundled in the binary. Required for replay.
	File string `toml:"file" json:"file,omitempty"`
	// Format is the trace layout: auto (default, from the header), aegis
	// (timestamp,region,g_kwh) or electricitymaps (data-portal export).
	Format string `toml:"format" json:"format,omitempty"`
	// Column picks the Electricity Maps export column: direct (default) or
	// lca.
	Column string `toml:"column" json:"column,omitempty"`
	// Speed is trace seconds per wall second (default 1; 360 plays one
	// trace hour every 10 seconds).
	Speed float64 `toml:"speed" json:"speed,omitempty"`
	// Start is the trace time (RFC 3339) replayed when the provider starts
	// (default: the trace's first timestamp).
	Start string `toml:"start" json:"start,omitempty"`
	// Horizon is how far ahead, in trace time, replay forecasts reach
	// (default 24h).
	Horizon Duration `toml:"horizon" json:"horizon"`
}

// CarbonRegion maps one Aegis-Flow region to its carbon data.
type CarbonRegion struct {
	// Region is the Aegis-Flow region name, as in clusters' endpoints.
	// Required, unique.
	Region string `toml:"region" json:"region"`
	// Zone is the default provider zone for the chain's links (default: the
	// region name).
	Zone string `toml:"zone" json:"zone"`
	// Chain is the ordered list of providers asked on each refresh until
	// one answers. It may be empty when Static is set.
	Chain []CarbonLink `toml:"chain" json:"chain"`
	// Static is the value used when no provider has a usable value; absent
	// means none (the region then becomes unknown: carbon-neutral routing).
	Static *CarbonStaticValue `toml:"static" json:"static,omitempty"`
}

// CarbonLink is one provider in a region's chain.
type CarbonLink struct {
	// Provider names a [[carbon.providers]] entry. Required.
	Provider string `toml:"provider" json:"provider"`
	// Zone is the provider's zone code for the region, such as "DE"
	// (Electricity Maps), "CAISO_NORTH" (WattTime), "national" or "13"
	// (UK grid) (default: the region's zone).
	Zone string `toml:"zone" json:"zone"`
}

// CarbonStaticValue is a region's fixed fallback intensity.
type CarbonStaticValue struct {
	// Value is in gCO2eq/kWh (finite, not negative).
	Value float64 `toml:"value" json:"value"`
	// Kind is average (default) or marginal.
	Kind string `toml:"kind" json:"kind"`
}

// Enabled reports whether carbon data is configured (at least one region).
func (c *Carbon) Enabled() bool { return len(c.Regions) > 0 }

// Provider returns the provider named name, or nil.
func (c *Carbon) Provider(name string) *CarbonProvider {
	for i := range c.Providers {
		if c.Providers[i].Name == name {
			return &c.Providers[i]
		}
	}
	return nil
}

// CarbonUncoveredRegions returns, sorted, the endpoint regions that have no
// [[carbon.regions]] entry while carbon data is configured. They are not a
// validation problem (routing is simply carbon-neutral for them), but the
// daemon logs them as a warning, because a typo in a region name would
// otherwise go unnoticed.
func (f *File) CarbonUncoveredRegions() []string {
	if !f.Carbon.Enabled() {
		return nil
	}
	have := map[string]bool{}
	for _, r := range f.Carbon.Regions {
		have[r.Region] = true
	}
	var out []string
	for _, c := range f.Clusters {
		for _, e := range c.Endpoints {
			if e.Region != "" && !have[e.Region] && !slices.Contains(out, e.Region) {
				out = append(out, e.Region)
			}
		}
	}
	slices.Sort(out)
	return out
}

func setCarbonDefaults(f *File) {
	c := &f.Carbon
	dur(&c.Interval, DefaultCarbonInterval)
	dur(&c.ForecastInterval, DefaultCarbonForecastInterval)
	dur(&c.MaxStaleness, DefaultCarbonMaxStaleness)
	dur(&c.Timeout, DefaultCarbonTimeout)
	num(&c.MaxAttempts, DefaultCarbonMaxAttempts)
	dur(&c.RetryBackoff, DefaultCarbonRetryBackoff)
	for i := range c.Providers {
		p := &c.Providers[i]
		switch p.Type {
		case CarbonElectricityMaps, CarbonWattTime, CarbonUKGrid:
			dur(&p.Timeout, DefaultCarbonTimeout)
			if p.Type == CarbonElectricityMaps {
				str(&p.EmissionFactor, DefaultEmissionFactor)
			}
		case CarbonStatic:
			str(&p.Kind, DefaultCarbonKind)
		case CarbonReplay:
			str(&p.Kind, DefaultCarbonKind)
			str(&p.Format, DefaultReplayFormat)
			str(&p.Column, DefaultReplayColumn)
			if p.Speed == 0 {
				p.Speed = DefaultReplaySpeed
			}
			dur(&p.Horizon, DefaultReplayHorizon)
		}
	}
	for i := range c.Regions {
		r := &c.Regions[i]
		str(&r.Zone, r.Region)
		for j := range r.Chain {
			str(&r.Chain[j].Zone, r.Zone)
		}
		if r.Static != nil {
			str(&r.Static.Kind, DefaultCarbonKind)
		}
	}
}

func (v *validator) carbon() {
	c := &v.f.Carbon
	if c.Interval.Duration < time.Second && !c.Interval.invalid {
		v.add("carbon.interval", "%s is below the minimum 1s", c.Interval.Duration)
	}
	if c.ForecastInterval.Duration < time.Second && !c.ForecastInterval.invalid {
		v.add("carbon.forecast_interval", "%s is below the minimum 1s", c.ForecastInterval.Duration)
	}
	if c.MaxStaleness.Duration <= 0 && !c.MaxStaleness.invalid {
		v.add("carbon.max_staleness", "must be greater than zero")
	}
	if c.Timeout.Duration <= 0 && !c.Timeout.invalid {
		v.add("carbon.timeout", "must be greater than zero")
	}
	v.between("carbon.max_attempts", c.MaxAttempts, 1, 10)

	providers := map[string]string{}
	types := map[string]*CarbonProvider{}
	for i := range c.Providers {
		p := &c.Providers[i]
		path := fmt.Sprintf("carbon.providers[%d]", i)
		v.name(path+".name", p.Name, providers)
		if !v.oneOf(path+".type", p.Type, CarbonProviderTypes) {
			continue
		}
		if p.Name != "" && types[p.Name] == nil {
			types[p.Name] = p
		}
		v.carbonProvider(path, p)
	}

	regions := map[string]string{}
	for i, r := range c.Regions {
		path := fmt.Sprintf("carbon.regions[%d]", i)
		switch {
		case r.Region == "":
			v.add(path+".region", "is required (an Aegis-Flow region name, as in clusters' endpoints)")
		case !validName(r.Region):
			v.add(path+".region", "%q: use letters, digits, '-', '_' and '.'", r.Region)
		default:
			if prev, ok := regions[r.Region]; ok {
				v.add(path+".region", "%q is already used by %s", r.Region, prev)
			} else {
				regions[r.Region] = path
			}
		}
		if len(r.Chain) == 0 && r.Static == nil && !underAny(path+".chain", v.f.badPaths) && !underAny(path+".static", v.f.badPaths) {
			v.add(path, "needs a provider chain, a static value, or both")
		}
		used := map[string]string{}
		for j, l := range r.Chain {
			lp := fmt.Sprintf("%s.chain[%d]", path, j)
			if l.Provider == "" {
				v.add(lp+".provider", "is required (a [[carbon.providers]] name)")
				continue
			}
			p, ok := types[l.Provider]
			if !ok {
				if _, named := providers[l.Provider]; !named {
					v.add(lp+".provider", "%q is not defined in [[carbon.providers]]", l.Provider)
				}
				continue
			}
			if prev, ok := used[l.Provider]; ok {
				v.add(lp+".provider", "%q is already in this chain at %s", l.Provider, prev)
				continue
			}
			used[l.Provider] = lp
			v.carbonZone(lp+".zone", l.Zone, p)
		}
		if s := r.Static; s != nil {
			v.intensity(path+".static.value", s.Value)
			v.oneOf(path+".static.kind", s.Kind, CarbonKinds)
		}
	}
}

// carbonProvider checks one provider's type-specific keys.
func (v *validator) carbonProvider(path string, p *CarbonProvider) {
	type key struct {
		name string
		set  bool
	}
	keys := []key{
		{"base_url", p.BaseURL != ""},
		{"timeout", p.Timeout.Duration != 0 || p.Timeout.text != ""},
		{"token_env", p.TokenEnv != ""}, {"token_file", p.TokenFile != ""},
		{"username_env", p.UsernameEnv != ""}, {"username_file", p.UsernameFile != ""},
		{"password_env", p.PasswordEnv != ""}, {"password_file", p.PasswordFile != ""},
		{"emission_factor", p.EmissionFactor != ""},
		{"values", p.Values != nil}, {"kind", p.Kind != ""},
		{"file", p.File != ""}, {"format", p.Format != ""}, {"column", p.Column != ""},
		{"speed", p.Speed != 0}, {"start", p.Start != ""},
		{"horizon", p.Horizon.Duration != 0 || p.Horizon.text != ""},
	}
	applies := map[string][]string{
		CarbonElectricityMaps: {"base_url", "timeout", "token_env", "token_file", "emission_factor"},
		CarbonWattTime:        {"base_url", "timeout", "username_env", "username_file", "password_env", "password_file"},
		CarbonUKGrid:          {"base_url", "timeout"},
		CarbonStatic:          {"values", "kind"},
		CarbonReplay:          {"file", "format", "column", "speed", "start", "horizon", "kind"},
	}[p.Type]
	for _, k := range keys {
		if k.set && !slices.Contains(applies, k.name) {
			v.add(path+"."+k.name, "does not apply to type %q (it takes %s)", p.Type, strings.Join(applies, ", "))
		}
	}
	oneSource := func(what, envKey, env, fileKey, file string) {
		switch {
		case env == "" && file == "":
			v.add(path, "type %q needs the %s: set %s (an environment variable name) or %s (a file path)", p.Type, what, envKey, fileKey)
		case env != "" && file != "":
			v.add(path+"."+fileKey, "set %s or %s, not both", envKey, fileKey)
		case env != "" && !validEnvName(env):
			v.add(path+"."+envKey, "%q is not an environment variable name (letters, digits and '_'; not starting with a digit)", env)
		}
	}
	switch p.Type {
	case CarbonElectricityMaps:
		oneSource("API token", "token_env", p.TokenEnv, "token_file", p.TokenFile)
		v.oneOf(path+".emission_factor", p.EmissionFactor, EmissionFactors)
	case CarbonWattTime:
		oneSource("account username", "username_env", p.UsernameEnv, "username_file", p.UsernameFile)
		oneSource("account password", "password_env", p.PasswordEnv, "password_file", p.PasswordFile)
	case CarbonStatic:
		if len(p.Values) == 0 {
			v.add(path+".values", "type \"static\" needs at least one zone value, e.g. values = { \"eu-south\" = 250.0 }")
		}
		for _, zone := range sortedFloatKeys(p.Values) {
			v.intensity(path+".values."+zone, p.Values[zone])
		}
		v.oneOf(path+".kind", p.Kind, CarbonKinds)
	case CarbonReplay:
		if p.File == "" {
			v.add(path+".file", "is required for type \"replay\": a CSV trace path or %q", EmbeddedSample)
		} else if strings.HasPrefix(p.File, "embedded:") && p.File != EmbeddedSample {
			v.add(path+".file", "%q: the only embedded trace is %q", p.File, EmbeddedSample)
		}
		v.oneOf(path+".format", p.Format, ReplayFormats)
		v.oneOf(path+".column", p.Column, ReplayColumns)
		if !(p.Speed > 0) || math.IsInf(p.Speed, 1) {
			v.add(path+".speed", "%v must be a positive number (trace seconds per wall second)", p.Speed)
		}
		if p.Start != "" {
			if _, err := time.Parse(time.RFC3339, p.Start); err != nil {
				v.add(path+".start", "%q is not an RFC 3339 time such as \"2023-06-17T00:00:00Z\"", p.Start)
			}
		}
		v.oneOf(path+".kind", p.Kind, CarbonKinds)
	}
	if p.Type == CarbonElectricityMaps || p.Type == CarbonWattTime || p.Type == CarbonUKGrid {
		if p.BaseURL != "" {
			if u, err := url.Parse(p.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.add(path+".base_url", "%q is not an http or https URL", p.BaseURL)
			} else if u.User != nil {
				v.add(path+".base_url", "must not hold credentials: use the *_env or *_file keys")
			}
		}
		if p.Timeout.Duration <= 0 && !p.Timeout.invalid {
			v.add(path+".timeout", "must be greater than zero")
		}
	}
}

// carbonZone checks the zone rules that need no provider data. Zones of a
// replay trace are checked by the daemon, which reads the trace.
func (v *validator) carbonZone(path, zone string, p *CarbonProvider) {
	if zone == "" {
		v.add(path, "is required")
		return
	}
	switch p.Type {
	case CarbonUKGrid:
		if !validUKGridZone(zone) {
			v.add(path, "%q is not a UK grid zone: use \"national\" (or \"GB\") or a regional id from 1 to 17", zone)
		}
	case CarbonStatic:
		if _, ok := p.Values[zone]; !ok && len(p.Values) > 0 {
			v.add(path, "%q has no value in static provider %q (zones: %s)", zone, p.Name, strings.Join(sortedFloatKeys(p.Values), ", "))
		}
	case CarbonReplay:
		if p.File == EmbeddedSample && !slices.Contains(sampleZones, zone) {
			v.add(path, "%q is not in the embedded sample trace (zones: %s)", zone, strings.Join(sampleZones, ", "))
		}
	}
}

// sampleZones are the zones of the embedded replay trace
// (internal/carbon/replay/sample.csv); the daemon checks them again against
// the trace itself.
var sampleZones = []string{"eu-south", "sa-east", "us-west"}

// validUKGridZone mirrors ukgrid.ParseZone: config is a leaf and may not
// import the provider.
func validUKGridZone(zone string) bool {
	if strings.EqualFold(zone, "national") || strings.EqualFold(zone, "GB") {
		return true
	}
	n, err := strconv.Atoi(zone)
	return err == nil && n >= 1 && n <= 17 && strconv.Itoa(n) == zone
}

func (v *validator) intensity(path string, val float64) {
	if math.IsNaN(val) || math.IsInf(val, 0) || val < 0 {
		v.add(path, "%v is not a finite, non-negative intensity in gCO2eq/kWh", val)
	}
}

func validEnvName(s string) bool {
	for i, c := range s {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

func sortedFloatKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
