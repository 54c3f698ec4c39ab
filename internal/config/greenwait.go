package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// GreenWait configures Green-Wait, the durable deferral of non-urgent
// requests to low-carbon windows. It is used only when at least one route
// sets greenwait.enabled; see RouteGreenWait.
type GreenWait struct {
	// StorePath is the bbolt file that holds deferred jobs (default "auto":
	// greenwait.db in the user's cache directory, under "aegis", so that the
	// demo keeps its jobs across restarts).
	StorePath string `toml:"store_path" json:"store_path"`
	// KeyFile holds the master key as hex or base64 (default "": a file
	// named greenwait.key beside the store). It is created with mode 0600
	// and a fresh random key when it does not exist.
	KeyFile string `toml:"key_file" json:"key_file"`
	// KeyEnv names an environment variable holding the master key; when set
	// it is used instead of KeyFile.
	KeyEnv string `toml:"key_env" json:"key_env"`
	// MaxBytes bounds the stored bytes of jobs and results (default 1 GiB;
	// -1 means no limit). Beyond it requests get 503 with Retry-After.
	MaxBytes int64 `toml:"max_bytes" json:"max_bytes"`
	// MaxJobs bounds the stored jobs, finished ones included until purged
	// (default 1000000; -1 means no limit).
	MaxJobs int64 `toml:"max_jobs" json:"max_jobs"`
	// BodyLimit is the default request body limit in bytes (default 1 MiB);
	// larger bodies get 413.
	BodyLimit int64 `toml:"body_limit" json:"body_limit"`
	// ResultLimit caps the stored upstream response body in bytes (default
	// 1 MiB); a longer body is cut and marked Aegis-Result-Truncated.
	ResultLimit int64 `toml:"result_limit" json:"result_limit"`
	// ExpectedDuration is how long a job is expected to run: the length of
	// the low-carbon window sought (default 1m).
	ExpectedDuration Duration `toml:"expected_duration" json:"expected_duration"`
	// MinDeferral: a request whose best window starts sooner than this runs
	// at once (default 1m).
	MinDeferral Duration `toml:"min_deferral" json:"min_deferral"`
	// ReleaseConcurrency bounds concurrent releases per cluster (default 4).
	ReleaseConcurrency int `toml:"release_concurrency" json:"release_concurrency"`
	// ReleaseTimeout bounds one release attempt (default 1m).
	ReleaseTimeout Duration `toml:"release_timeout" json:"release_timeout"`
	// RetryBase and RetryMax shape the jittered exponential backoff between
	// failed release attempts (defaults 1s and 5m).
	RetryBase Duration `toml:"retry_base" json:"retry_base"`
	RetryMax  Duration `toml:"retry_max" json:"retry_max"`
	// RetryGrace is how long after its deadline a job is still retried
	// before it is marked failed (default 15m).
	RetryGrace Duration `toml:"retry_grace" json:"retry_grace"`
	// Retention is how long finished jobs and their results are kept
	// (default 24h); PurgeInterval is how often they are purged (default 1m).
	Retention     Duration `toml:"retention" json:"retention"`
	PurgeInterval Duration `toml:"purge_interval" json:"purge_interval"`
	// JobPathPrefix is the data-plane path of job URLs, served before route
	// matching on every listener (default "/.aegis/jobs/").
	JobPathPrefix string `toml:"job_path_prefix" json:"job_path_prefix"`
	// CallbackKeyEnv names an environment variable holding the HMAC key
	// that signs completion callbacks (default "": callbacks off, and a
	// request with Aegis-Callback gets 400).
	CallbackKeyEnv string `toml:"callback_key_env" json:"callback_key_env"`
	// CallbackHosts lists the hosts callbacks may go to: "name",
	// "*.domain" or an IP address, each with an optional ":port". Empty:
	// any host at a public address.
	CallbackHosts []string `toml:"callback_hosts" json:"callback_hosts"`
	// JobPowerWatts estimates a job's power draw for the carbon-saved
	// estimate (default 10).
	JobPowerWatts float64 `toml:"job_power_watts" json:"job_power_watts"`
}

// RouteGreenWait is a route's Green-Wait settings.
type RouteGreenWait struct {
	// Enabled turns deferral on for the route (default false).
	Enabled bool `toml:"enabled" json:"enabled"`
	// DefaultPriority applies to requests without Aegis-Priority: "" (only
	// requests that ask are deferred; Prefer: respond-async then means
	// normal), critical, high, normal, low or background.
	DefaultPriority string `toml:"default_priority" json:"default_priority"`
	// Region is the region whose forecast plans the route's jobs (default:
	// the region of the cluster's first endpoint).
	Region string `toml:"region" json:"region"`
	// MaxWait is the longest wait per priority.
	MaxWait MaxWait `toml:"max_wait" json:"max_wait"`
	// BodyLimit overrides greenwait.body_limit (default 0: that value).
	BodyLimit int64 `toml:"body_limit" json:"body_limit"`
	// ExpectedDuration overrides greenwait.expected_duration (default 0:
	// that value).
	ExpectedDuration Duration `toml:"expected_duration" json:"expected_duration"`
}

// MaxWait holds the maximum wait of each deferrable priority. An
// Aegis-Deadline header may shorten it, never lengthen it.
type MaxWait struct {
	High       Duration `toml:"high" json:"high"`             // default 5m
	Normal     Duration `toml:"normal" json:"normal"`         // default 30m
	Low        Duration `toml:"low" json:"low"`               // default 2h
	Background Duration `toml:"background" json:"background"` // default 24h
}

// Green-Wait defaults.
const (
	GreenWaitAutoPath                = "auto"
	DefaultGreenWaitMaxBytes         = 1 << 30
	DefaultGreenWaitMaxJobs          = 1_000_000
	DefaultGreenWaitBodyLimit        = 1 << 20
	DefaultGreenWaitResultLimit      = 1 << 20
	DefaultGreenWaitExpectedDuration = time.Minute
	DefaultGreenWaitMinDeferral      = time.Minute
	DefaultGreenWaitConcurrency      = 4
	DefaultGreenWaitReleaseTimeout   = time.Minute
	DefaultGreenWaitRetryBase        = time.Second
	DefaultGreenWaitRetryMax         = 5 * time.Minute
	DefaultGreenWaitRetryGrace       = 15 * time.Minute
	DefaultGreenWaitRetention        = 24 * time.Hour
	DefaultGreenWaitPurgeInterval    = time.Minute
	DefaultGreenWaitJobPathPrefix    = "/.aegis/jobs/"
	DefaultGreenWaitJobPowerWatts    = 10.0
	DefaultMaxWaitHigh               = 5 * time.Minute
	DefaultMaxWaitNormal             = 30 * time.Minute
	DefaultMaxWaitLow                = 2 * time.Hour
	DefaultMaxWaitBackground         = 24 * time.Hour
	// MaxGreenWaitWait is the longest max_wait accepted.
	MaxGreenWaitWait = 7 * 24 * time.Hour
)

// GreenWaitPriorities are the values allowed in default_priority ("" too).
var GreenWaitPriorities = []string{"critical", "high", "normal", "low", "background"}

// GreenWaitEnabled reports whether any route enables Green-Wait.
func (f *File) GreenWaitEnabled() bool {
	return slices.ContainsFunc(f.Routes, func(r Route) bool { return r.GreenWait.Enabled })
}

func setGreenWaitDefaults(f *File) {
	g := &f.GreenWait
	str(&g.StorePath, GreenWaitAutoPath)
	num64(&g.MaxBytes, DefaultGreenWaitMaxBytes)
	num64(&g.MaxJobs, DefaultGreenWaitMaxJobs)
	num64(&g.BodyLimit, DefaultGreenWaitBodyLimit)
	num64(&g.ResultLimit, DefaultGreenWaitResultLimit)
	dur(&g.ExpectedDuration, DefaultGreenWaitExpectedDuration)
	dur(&g.MinDeferral, DefaultGreenWaitMinDeferral)
	num(&g.ReleaseConcurrency, DefaultGreenWaitConcurrency)
	dur(&g.ReleaseTimeout, DefaultGreenWaitReleaseTimeout)
	dur(&g.RetryBase, DefaultGreenWaitRetryBase)
	dur(&g.RetryMax, DefaultGreenWaitRetryMax)
	dur(&g.RetryGrace, DefaultGreenWaitRetryGrace)
	dur(&g.Retention, DefaultGreenWaitRetention)
	dur(&g.PurgeInterval, DefaultGreenWaitPurgeInterval)
	str(&g.JobPathPrefix, DefaultGreenWaitJobPathPrefix)
	if g.JobPowerWatts == 0 {
		g.JobPowerWatts = DefaultGreenWaitJobPowerWatts
	}
	for i := range f.Routes {
		w := &f.Routes[i].GreenWait.MaxWait
		dur(&w.High, DefaultMaxWaitHigh)
		dur(&w.Normal, DefaultMaxWaitNormal)
		dur(&w.Low, DefaultMaxWaitLow)
		dur(&w.Background, DefaultMaxWaitBackground)
	}
}

func num64(p *int64, v int64) {
	if *p == 0 {
		*p = v
	}
}

func (v *validator) greenwait() {
	g := &v.f.GreenWait
	const p = "greenwait"
	if strings.ContainsRune(g.StorePath, 0) {
		v.add(p+".store_path", "must not contain NUL")
	}
	if g.KeyEnv != "" && g.KeyFile != "" {
		v.add(p+".key_env", "set key_env or key_file, not both")
	}
	if g.KeyEnv != "" && !envName(g.KeyEnv) {
		v.add(p+".key_env", "%q is not an environment variable name", g.KeyEnv)
	}
	if g.CallbackKeyEnv != "" && !envName(g.CallbackKeyEnv) {
		v.add(p+".callback_key_env", "%q is not an environment variable name", g.CallbackKeyEnv)
	}
	for i, h := range g.CallbackHosts {
		if msg := checkHostPattern(h); msg != "" {
			v.add(fmt.Sprintf("%s.callback_hosts[%d]", p, i), "%q: %s", h, msg)
		}
	}
	if g.MaxBytes < -1 || g.MaxBytes > 0 && g.MaxBytes < 1<<20 {
		v.add(p+".max_bytes", "%d: want at least 1048576 (1 MiB), or -1 for no limit", g.MaxBytes)
	}
	if g.MaxJobs < -1 {
		v.add(p+".max_jobs", "%d: want a positive count, or -1 for no limit", g.MaxJobs)
	}
	v.size(p+".body_limit", g.BodyLimit)
	v.size(p+".result_limit", g.ResultLimit)
	v.positive(p+".expected_duration", g.ExpectedDuration)
	v.positive(p+".release_timeout", g.ReleaseTimeout)
	v.positive(p+".retry_base", g.RetryBase)
	if !g.RetryBase.invalid && !g.RetryMax.invalid && g.RetryMax.Duration < g.RetryBase.Duration {
		v.add(p+".retry_max", "%s is shorter than retry_base %s", g.RetryMax.Duration, g.RetryBase.Duration)
	}
	v.positive(p+".retention", g.Retention)
	if !g.PurgeInterval.invalid && g.PurgeInterval.Duration < time.Second {
		v.add(p+".purge_interval", "%s is below the minimum 1s", g.PurgeInterval.Duration)
	}
	v.between(p+".release_concurrency", g.ReleaseConcurrency, 1, 10000)
	if pp := g.JobPathPrefix; len(pp) < 3 || !strings.HasPrefix(pp, "/") || !strings.HasSuffix(pp, "/") ||
		strings.ContainsAny(pp, " ?#%\t\r\n") {
		v.add(p+".job_path_prefix", "%q must start and end with '/', have a name between, and contain no spaces, '?', '#' or '%%'", pp)
	}
	if math.IsNaN(g.JobPowerWatts) || math.IsInf(g.JobPowerWatts, 0) || g.JobPowerWatts <= 0 || g.JobPowerWatts > 1e6 {
		v.add(p+".job_power_watts", "%v is outside (0, 1e6] watts", g.JobPowerWatts)
	}

	for i, r := range v.f.Routes {
		rp := fmt.Sprintf("routes[%d].greenwait", i)
		w := r.GreenWait
		if w.DefaultPriority != "" && !slices.Contains(GreenWaitPriorities, w.DefaultPriority) {
			v.add(rp+".default_priority", "%q is not one of \"\", %s", w.DefaultPriority, strings.Join(GreenWaitPriorities, ", "))
		}
		for _, mw := range []struct {
			name string
			d    Duration
		}{{"high", w.MaxWait.High}, {"normal", w.MaxWait.Normal}, {"low", w.MaxWait.Low}, {"background", w.MaxWait.Background}} {
			if !mw.d.invalid && (mw.d.Duration <= 0 || mw.d.Duration > MaxGreenWaitWait) {
				v.add(rp+".max_wait."+mw.name, "%s is outside (0s, %s]", mw.d.Duration, MaxGreenWaitWait)
			}
		}
		if w.BodyLimit != 0 {
			v.size(rp+".body_limit", w.BodyLimit)
		}
		if w.Region != "" && r.Cluster != "" {
			if regions := v.clusterRegions(r.Cluster); regions != nil && !slices.Contains(regions, w.Region) {
				v.add(rp+".region", "%q is not a region of cluster %q's endpoints (%s)", w.Region, r.Cluster, strings.Join(regions, ", "))
			}
		}
	}
}

// clusterRegions returns the distinct endpoint regions of the named
// cluster, or nil when it is not defined.
func (v *validator) clusterRegions(name string) []string {
	for _, c := range v.f.Clusters {
		if c.Name != name {
			continue
		}
		out := []string{}
		for _, e := range c.Endpoints {
			if !slices.Contains(out, e.Region) {
				out = append(out, e.Region)
			}
		}
		return out
	}
	return nil
}

func (v *validator) size(path string, n int64) {
	if n < 1 || n > 1<<30 {
		v.add(path, "%d is outside 1..1073741824 bytes", n)
	}
}

func (v *validator) positive(path string, d Duration) {
	if !d.invalid && d.Duration <= 0 {
		v.add(path, "must be greater than zero")
	}
}

// envName reports whether s is a portable environment variable name.
func envName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// checkHostPattern checks the syntax of a callback host pattern (the
// Green-Wait manager parses it again and is the authority): a host name,
// "*." and a domain, or an IP address (IPv6 in brackets when a port
// follows), each with an optional ":port". It returns "" or the problem.
func checkHostPattern(s string) string {
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
			return "the port must be a number from 1 to 65535"
		}
		host = h
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "an address with a zone is not allowed"
		}
		return ""
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "*."), ".")
	if host == "" || len(host) > 253 {
		return `want a host name, "*." and a domain, or an IP address, each with an optional ":port"`
	}
	for label := range strings.SplitSeq(host, ".") {
		ok := label != "" && len(label) <= 63 && label[0] != '-' && label[len(label)-1] != '-'
		for i := 0; ok && i < len(label); i++ {
			c := label[i] | 0x20 // ASCII lower case; digits, '-' and '_' are unchanged
			ok = 'a' <= c && c <= 'z' || '0' <= label[i] && label[i] <= '9' || label[i] == '-' || label[i] == '_'
		}
		if !ok {
			return `want a host name, "*." and a domain, or an IP address, each with an optional ":port"`
		}
	}
	return ""
}
