package balance

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Errors that callers branch on.
var (
	// ErrNoHealthyEndpoint means no endpoint of the cluster is usable; the
	// proxy answers 503.
	ErrNoHealthyEndpoint = errors.New("no healthy endpoint")
	// ErrCircuitOpen means a circuit breaker limit was reached; the proxy
	// answers 503 without contacting an upstream.
	ErrCircuitOpen = errors.New("circuit breaker open")
)

// Ejection reasons, used as metric label values.
const (
	reasonConnect = "connect_failure"
	reason5xx     = "consecutive_5xx"
	reasonGateway = "gateway_error"
)

// RegionIntensity names a region and its carbon intensity in gCO2eq/kWh
// (0 when unknown).
type RegionIntensity struct {
	Region    string
	Intensity float64
}

// Decision records why a pick went where it did. It is a small value with no
// pointers to per-request data; building it does not allocate.
type Decision struct {
	// Region is the chosen endpoint's region.
	Region string
	// Intensity is the region's intensity in gCO2eq/kWh at decision time
	// (the cluster's snapshot, at most one interval old); 0 when unknown.
	// It is set for every policy whenever the snapshot knows the region's
	// intensity, whether or not the pick compared intensities.
	Intensity float64
	// Kind is the intensity's kind ("average" or "marginal"), empty when
	// unknown.
	Kind string
	// Known says whether Intensity is known. It does not depend on
	// CarbonAware: a least_request fallback still reports its region's
	// intensity.
	Known bool
	// CarbonAware is true when intensities were compared for this pick;
	// false when the policy is not carbon or the carbon policy fell back to
	// least_request (see the package doc).
	CarbonAware bool
	// Best and Worst are the healthy regions with the lowest and highest
	// intensity, set when all healthy regions' intensities are known and of
	// one kind.
	Best, Worst RegionIntensity
	// LeastRequest is the region least_request would have chosen; equal to
	// Region unless CarbonAware.
	LeastRequest RegionIntensity
	// AvoidedGrams is the estimated gCO2eq saved against the least_request
	// choice, from CarbonOptions.RequestJoules (0 when that is 0 or the pick
	// is not CarbonAware). It can be negative for a single request.
	AvoidedGrams float64
}

// Avoided returns the gCO2eq saved against the least_request choice for a
// request that used joules of energy.
func (d Decision) Avoided(joules float64) float64 {
	if !d.CarbonAware {
		return 0
	}
	return joules / 3.6e6 * (d.LeastRequest.Intensity - d.Intensity)
}

// Cluster is a set of endpoints and the policy that picks among them. It is
// safe for concurrent use.
type Cluster struct {
	opts      Options
	log       *slog.Logger
	endpoints []*Endpoint
	regions   []*region
	base      time.Time
	maxReq    int64

	state  atomic.Pointer[state]
	rrNext atomic.Uint64
	active atomic.Int64

	pending atomic.Int64
	conns   atomic.Int64

	randMu sync.Mutex // serialises opts.TestOnlyRand

	m              *Metrics
	openRequests   prometheus.Counter
	openPending    prometheus.Counter
	openConns      prometheus.Counter
	checksPassed   prometheus.Counter
	checksFailed   prometheus.Counter
	running        atomic.Bool
	healthTransp   healthDoer
	ownedTransport interface{ CloseIdleConnections() }

	// Guarded by mu.
	mu       sync.Mutex
	sharesOn bool
	shares   []float64 // applied carbon share per region
	lastStep int64
	lastCand []*Endpoint
	lastRR   []*Endpoint
	// unknownRetry is the delay before the next re-read while some
	// region's intensity is unknown; 0 when all are known.
	unknownRetry time.Duration
}

type region struct {
	name    string
	healthy prometheus.Gauge
	share   prometheus.Gauge
}

// state is an immutable snapshot read by the request path.
type state struct {
	next       int64 // cluster clock when a rebuild is due
	lr         pickSet
	carbon     pickSet
	carbonOn   bool
	rr         []*Endpoint
	regions    []regionState
	comparable bool
	best       RegionIntensity
	worst      RegionIntensity
}

type regionState struct {
	intensity float64
	kind      string
	known     bool
}

// New validates opts and builds a cluster. All endpoints start healthy.
func New(opts Options) (*Cluster, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("configure cluster %q: %w", opts.Name, err)
	}
	c := &Cluster{opts: o, log: o.Logger, m: o.Metrics}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("cluster", o.Name)
	if c.m == nil {
		c.m, _ = NewMetrics(nil)
	}
	c.maxReq = int64(o.Breaker.MaxRequests)
	c.openRequests = c.m.circuitOpen.WithLabelValues(o.Name, "requests")
	c.openPending = c.m.circuitOpen.WithLabelValues(o.Name, "pending")
	c.openConns = c.m.circuitOpen.WithLabelValues(o.Name, "connections")
	c.checksPassed = c.m.healthChecks.WithLabelValues(o.Name, "success")
	c.checksFailed = c.m.healthChecks.WithLabelValues(o.Name, "failure")

	regionIdx := map[string]int{}
	for i, eo := range o.Endpoints {
		ri, ok := regionIdx[eo.Region]
		if !ok {
			ri = len(c.regions)
			regionIdx[eo.Region] = ri
			c.regions = append(c.regions, &region{
				name:    eo.Region,
				healthy: c.m.healthy.WithLabelValues(o.Name, eo.Region),
				share:   c.m.share.WithLabelValues(o.Name, eo.Region),
			})
		}
		c.endpoints = append(c.endpoints, &Endpoint{
			address:  eo.Address,
			region:   eo.Region,
			zone:     eo.Zone,
			weight:   eo.Weight,
			idx:      i,
			reg:      ri,
			c:        c,
			requests: c.m.requests.WithLabelValues(o.Name, eo.Region),
		})
	}
	// Carbon shares start from the least_request split of all endpoints.
	c.shares = make([]float64, len(c.regions))
	var total float64
	for _, e := range c.endpoints {
		c.shares[e.reg] += float64(e.weight)
		total += float64(e.weight)
	}
	for i := range c.shares {
		c.shares[i] /= total
	}
	if o.TestOnlyNow != nil {
		c.base = o.TestOnlyNow()
	} else {
		c.base = time.Now()
	}
	c.initHealthChecks()
	c.mu.Lock()
	c.rebuildLocked(c.now())
	c.mu.Unlock()
	return c, nil
}

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.opts.Name }

// Policy returns the cluster's pick policy.
func (c *Cluster) Policy() Policy { return c.opts.Policy }

// Endpoints returns the cluster's endpoints in configuration order.
func (c *Cluster) Endpoints() []*Endpoint { return append([]*Endpoint(nil), c.endpoints...) }

// now is the cluster clock: nanoseconds since New.
func (c *Cluster) now() int64 {
	if c.opts.TestOnlyNow != nil {
		return int64(c.opts.TestOnlyNow().Sub(c.base))
	}
	return int64(time.Since(c.base))
}

func (c *Cluster) rand() uint64 {
	if c.opts.TestOnlyRand == nil {
		return rand.Uint64()
	}
	c.randMu.Lock()
	v := c.opts.TestOnlyRand.Uint64()
	c.randMu.Unlock()
	return v
}

// Pick chooses an endpoint for one request and admits the request against
// the MaxRequests limit. On success the caller must call [Endpoint.Done]
// exactly once. It returns ErrNoHealthyEndpoint when no endpoint is usable
// and ErrCircuitOpen when the cluster has MaxRequests active requests.
func (c *Cluster) Pick() (*Endpoint, Decision, error) {
	st := c.state.Load()
	if now := c.now(); now >= st.next {
		st = c.refresh(now)
	}
	if len(st.lr.eps) == 0 {
		return nil, Decision{}, ErrNoHealthyEndpoint
	}
	if c.active.Add(1) > c.maxReq {
		c.active.Add(-1)
		c.openRequests.Inc()
		return nil, Decision{}, ErrCircuitOpen
	}
	var ep, lr *Endpoint
	switch {
	case c.opts.Policy == RoundRobin:
		ep = st.rr[(c.rrNext.Add(1)-1)%uint64(len(st.rr))]
	case c.opts.Policy == Carbon && st.carbonOn:
		ep = c.p2c(&st.carbon)
		lr = c.p2c(&st.lr)
	default:
		ep = c.p2c(&st.lr)
	}
	ep.active.Add(1)
	ep.requests.Inc()

	rs := &st.regions[ep.reg]
	d := Decision{
		Region:    ep.region,
		Intensity: rs.intensity,
		Kind:      rs.kind,
		Known:     rs.known,
	}
	if st.comparable {
		d.Best, d.Worst = st.best, st.worst
	}
	if lr == nil {
		d.LeastRequest = RegionIntensity{Region: ep.region, Intensity: rs.intensity}
	} else {
		d.CarbonAware = true
		d.LeastRequest = RegionIntensity{Region: lr.region, Intensity: st.regions[lr.reg].intensity}
		if j := c.opts.Carbon.RequestJoules; j > 0 {
			d.AvoidedGrams = j / 3.6e6 * (d.LeastRequest.Intensity - d.Intensity)
		}
	}
	return ep, d, nil
}

// refresh rebuilds the snapshot if no other goroutine is doing so.
func (c *Cluster) refresh(now int64) *state {
	if c.mu.TryLock() {
		if now >= c.state.Load().next {
			c.rebuildLocked(now)
		}
		c.mu.Unlock()
	}
	return c.state.Load()
}

// tick runs the periodic rebuild from Run even without traffic.
func (c *Cluster) tick() {
	now := c.now()
	if now < c.state.Load().next {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if now >= c.state.Load().next {
		c.rebuildLocked(now)
	}
}

// eject takes e out of rotation for a backoff, unless the outlier limits
// forbid it.
func (c *Cluster) eject(e *Endpoint, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.ejected {
		return
	}
	if reason != reasonConnect {
		ejected, usable := 0, 0
		for _, x := range c.endpoints {
			if x.ejected {
				ejected++
			} else if !x.down {
				usable++
			}
		}
		allowed := len(c.endpoints) * c.opts.Outlier.MaxEjectionPercent / 100
		if ejected+1 > allowed || (!e.down && usable <= 1) {
			e.resetFailures()
			c.log.Debug("endpoint ejection skipped", "endpoint", e.address, "region", e.region,
				"reason", reason, "ejected", ejected)
			return
		}
	}
	k := e.ejections.Add(1)
	d := c.opts.Outlier.MaxEjectionTime
	if k <= 30 {
		d = min(d, c.opts.Outlier.BaseEjectionTime<<(k-1))
	}
	now := c.now()
	e.ejected = true
	e.ejectedUntil = now + int64(d)
	e.resetFailures()
	c.m.ejections.WithLabelValues(c.opts.Name, reason).Inc()
	c.log.Warn("endpoint ejected", "endpoint", e.address, "region", e.region,
		"reason", reason, "ejection_time", d, "consecutive_ejections", k)
	c.rebuildLocked(now)
}

// setDown records an active health transition.
func (c *Cluster) setDown(e *Endpoint, down bool) {
	e.down = down
	if down {
		c.log.Warn("endpoint marked down", "endpoint", e.address, "region", e.region, "fails", e.checkFail)
	} else {
		c.log.Info("endpoint marked up", "endpoint", e.address, "region", e.region, "passes", e.checkOK)
	}
	c.rebuildLocked(c.now())
}

// firstUnknownRetry is the first delay before re-reading intensities
// after a read that found some region unknown; the snapshot built at
// construction is re-read at once, on the first Pick or tick.
const firstUnknownRetry = 10 * time.Millisecond

// rebuildLocked readmits expired ejections and publishes a new snapshot.
// c.mu must be held.
func (c *Cluster) rebuildLocked(now int64) {
	interval := int64(c.opts.Carbon.Interval)
	next := now + interval
	healthy := make([]*Endpoint, 0, len(c.endpoints))
	for _, e := range c.endpoints {
		if e.ejected {
			if now >= e.ejectedUntil {
				e.ejected = false
				e.resetFailures()
				c.log.Info("endpoint readmitted", "endpoint", e.address, "region", e.region)
			} else {
				next = min(next, e.ejectedUntil)
			}
		}
		if !e.ejected && !e.down {
			healthy = append(healthy, e)
		}
	}

	st := &state{regions: make([]regionState, len(c.regions))}
	missing := false
	for i, r := range c.regions {
		if c.opts.Intensity == nil {
			continue
		}
		v, kind, ok := c.opts.Intensity.Intensity(r.name)
		if ok && v >= 0 && !math.IsInf(v, 0) {
			st.regions[i] = regionState{intensity: v, kind: kind, known: true}
		} else {
			missing = true
		}
	}
	// A source that does not know a region yet (typically the carbon
	// tracker before its first signal) is asked again soon, with a delay
	// that doubles up to the interval, so that the first requests after
	// it learns the value already carry it.
	if missing {
		next = min(next, now+int64(c.unknownRetry))
		c.unknownRetry = min(max(2*c.unknownRetry, firstUnknownRetry), c.opts.Carbon.Interval)
	} else {
		c.unknownRetry = 0
	}
	st.next = next

	cand := c.localCandidates(healthy)
	st.lr = newPickSet(cand, nil)
	if !slicesEqual(cand, c.lastCand) || c.lastRR == nil {
		c.lastCand = cand
		c.lastRR = schedule(cand)
	}
	st.rr = c.lastRR

	// Per-region healthy weight and latency.
	nreg := len(c.regions)
	weight := make([]float64, nreg)
	latSum := make([]float64, nreg)
	latW := make([]float64, nreg)
	count := make([]int, nreg)
	var total float64
	for _, e := range healthy {
		count[e.reg]++
		weight[e.reg] += float64(e.weight)
		total += float64(e.weight)
		if l := e.latencyNanos(); l > 0 {
			latSum[e.reg] += l * float64(e.weight)
			latW[e.reg] += float64(e.weight)
		}
	}
	neutral := make([]float64, nreg)
	healthyRegions := 0
	for i, r := range c.regions {
		r.healthy.Set(float64(count[i]))
		if count[i] > 0 {
			healthyRegions++
			neutral[i] = weight[i] / total
		}
	}

	// Comparability: every healthy region known and of one kind.
	st.comparable = healthyRegions > 0
	kind, first := "", true
	allEqual := true
	for i := range c.regions {
		if count[i] == 0 {
			continue
		}
		rs := st.regions[i]
		if !rs.known || (!first && rs.kind != kind) {
			st.comparable = false
			break
		}
		if first {
			kind, first = rs.kind, false
			st.best = RegionIntensity{c.regions[i].name, rs.intensity}
			st.worst = st.best
			continue
		}
		if rs.intensity != st.best.Intensity || rs.intensity != st.worst.Intensity {
			allEqual = false
		}
		if rs.intensity < st.best.Intensity {
			st.best = RegionIntensity{c.regions[i].name, rs.intensity}
		}
		if rs.intensity > st.worst.Intensity {
			st.worst = RegionIntensity{c.regions[i].name, rs.intensity}
		}
	}
	if !st.comparable {
		st.best, st.worst = RegionIntensity{}, RegionIntensity{}
	}

	st.carbonOn = c.opts.Policy == Carbon && st.comparable && healthyRegions >= 2 && !allEqual
	if !st.carbonOn {
		// Traffic follows the least_request split; carbon resumes from it.
		c.sharesOn = false
		copy(c.shares, neutral)
		for i, r := range c.regions {
			r.share.Set(neutral[i])
		}
	} else {
		lat := make([]float64, nreg)
		for i := range lat {
			if latW[i] > 0 {
				lat[i] = latSum[i] / latW[i]
			}
		}
		c.stepShares(now, count, neutral, lat, st.regions)
		st.carbon = c.carbonSet(healthy, cand)
		for i, r := range c.regions {
			r.share.Set(c.shares[i])
		}
	}
	c.state.Store(st)
}

// localCandidates applies locality: the healthy endpoints in the local zone
// when there are some within the latency budget, else all healthy endpoints.
func (c *Cluster) localCandidates(healthy []*Endpoint) []*Endpoint {
	if c.opts.LocalZone == "" {
		return healthy
	}
	var local []*Endpoint
	fastest, localFastest := math.Inf(1), math.Inf(1)
	for _, e := range healthy {
		l := e.latencyNanos()
		if l > 0 {
			fastest = min(fastest, l)
		}
		if e.zone == c.opts.LocalZone {
			local = append(local, e)
			if l <= 0 {
				l = 0 // unknown: assume within budget until measured
			}
			localFastest = min(localFastest, l)
		}
	}
	if len(local) == 0 {
		return healthy
	}
	if !math.IsInf(fastest, 1) && localFastest-fastest > float64(c.opts.Carbon.MaxAddedLatency) {
		return healthy
	}
	return local
}

// stepShares moves the applied carbon shares toward their targets. c.mu must
// be held.
func (c *Cluster) stepShares(now int64, count []int, neutral, lat []float64, rs []regionState) {
	co := c.opts.Carbon
	nreg := len(c.regions)
	healthyRegions := 0
	fastest := math.Inf(1)
	for i := range nreg {
		if count[i] == 0 {
			continue
		}
		healthyRegions++
		if lat[i] > 0 {
			fastest = min(fastest, lat[i])
		}
	}
	m := co.MinShare
	if m*float64(healthyRegions) > 1 {
		m = 1 / float64(healthyRegions)
	}
	budget := float64(co.MaxAddedLatency)
	cost := make([]float64, nreg)
	inBudget := make([]bool, nreg)
	minCost := math.Inf(1)
	for i := range nreg {
		if count[i] == 0 {
			continue
		}
		added := 0.0
		if lat[i] > 0 && !math.IsInf(fastest, 1) {
			added = lat[i] - fastest
		}
		inBudget[i] = added <= budget
		cost[i] = rs[i].intensity + co.LatencyCost*added/float64(time.Millisecond)
		if inBudget[i] {
			minCost = min(minCost, cost[i])
		}
	}
	target := make([]float64, nreg)
	var prefSum float64
	for i := range nreg {
		if inBudget[i] {
			target[i] = neutral[i] * math.Exp(-(cost[i]-minCost)/co.IntensityScale)
			prefSum += target[i]
		}
	}
	for i := range nreg {
		if count[i] == 0 {
			target[i] = 0
			continue
		}
		target[i] = m + (1-float64(healthyRegions)*m)*target[i]/prefSum
	}

	// Health wins over smoothing: drop unhealthy regions and admit returning
	// ones at their minimum share, then renormalise. c.shares holds the split
	// in effect until now (the least_request split if carbon was off).
	var kept, admitted float64
	isNew := make([]bool, nreg)
	for i := range nreg {
		switch {
		case count[i] == 0:
			c.shares[i] = 0
		case c.shares[i] == 0:
			isNew[i] = true
			c.shares[i] = min(m, target[i])
			admitted += c.shares[i]
		default:
			kept += c.shares[i]
		}
	}
	if kept <= 0 {
		copy(c.shares, neutral)
	} else {
		for i := range nreg {
			if !isNew[i] {
				c.shares[i] *= (1 - admitted) / kept
			}
		}
	}
	if !c.sharesOn {
		c.sharesOn = true
		c.lastStep = now
		return
	}
	steps := (now - c.lastStep) / int64(co.Interval)
	if steps < 1 {
		return
	}
	c.lastStep = now
	maxStep := min(1, co.MaxShareChange*float64(steps))
	var maxDiff float64
	for i := range nreg {
		maxDiff = max(maxDiff, math.Abs(target[i]-c.shares[i]))
	}
	theta := 1.0
	if maxDiff > maxStep {
		theta = maxStep / maxDiff
	}
	for i := range nreg {
		c.shares[i] += theta * (target[i] - c.shares[i])
	}
}

// carbonScale is the integer resolution of carbon sampling weights.
const carbonScale = 1 << 24

// carbonSet builds the carbon sampling set from the applied shares: each
// region's share is split among its healthy endpoints (its local-zone ones
// when locality applies) in proportion to their weights.
func (c *Cluster) carbonSet(healthy, cand []*Endpoint) pickSet {
	nreg := len(c.regions)
	localIn := make([]bool, nreg)
	if len(cand) != len(healthy) {
		for _, e := range cand {
			localIn[e.reg] = true
		}
	}
	member := func(e *Endpoint) bool {
		return !localIn[e.reg] || e.zone == c.opts.LocalZone
	}
	regW := make([]float64, nreg)
	for _, e := range healthy {
		if member(e) {
			regW[e.reg] += float64(e.weight)
		}
	}
	var eps []*Endpoint
	var ws []uint64
	for _, e := range healthy {
		s := c.shares[e.reg]
		if !member(e) || s <= 0 {
			continue
		}
		w := uint64(math.Round(s * float64(e.weight) / regW[e.reg] * carbonScale))
		eps = append(eps, e)
		ws = append(ws, max(w, 1))
	}
	return newPickSet(eps, ws)
}

// Shares returns the target traffic share per region as of the last
// recomputation: the applied carbon shares when the carbon policy is
// comparing intensities, else the split by weight of healthy endpoints.
func (c *Cluster) Shares() map[string]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]float64, len(c.regions))
	for i, r := range c.regions {
		out[r.name] += c.shares[i]
	}
	return out
}

// Stats is a point-in-time view of a cluster's counters.
type Stats struct {
	// Endpoints is the number of configured endpoints.
	Endpoints int
	// Healthy is the number of usable endpoints.
	Healthy int
	// Ejected is the number of passively ejected endpoints.
	Ejected int
	// Down is the number of endpoints failing active checks (an endpoint
	// can be both down and ejected).
	Down int
	// ActiveRequests, PendingRequests and Connections are the breaker's
	// counters.
	ActiveRequests, PendingRequests, Connections int64
}

// Stats returns the cluster's current counters.
func (c *Cluster) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{
		Endpoints:       len(c.endpoints),
		ActiveRequests:  c.active.Load(),
		PendingRequests: c.pending.Load(),
		Connections:     c.conns.Load(),
	}
	for _, e := range c.endpoints {
		if e.ejected {
			s.Ejected++
		}
		if e.down {
			s.Down++
		}
		if !e.ejected && !e.down {
			s.Healthy++
		}
	}
	return s
}

// Healthy reports whether the endpoint is currently usable (up by active
// checks and not ejected).
func (e *Endpoint) Healthy() bool {
	e.c.mu.Lock()
	defer e.c.mu.Unlock()
	return !e.ejected && !e.down
}

// AcquireConn admits a new upstream connection against MaxConnections. The
// transport calls it before dialing and [Cluster.ReleaseConn] when the
// connection closes.
func (c *Cluster) AcquireConn() error {
	if c.conns.Add(1) > int64(c.opts.Breaker.MaxConnections) {
		c.conns.Add(-1)
		c.openConns.Inc()
		return ErrCircuitOpen
	}
	return nil
}

// ReleaseConn records a closed upstream connection.
func (c *Cluster) ReleaseConn() { c.conns.Add(-1) }

// AcquirePending admits a request that must wait for a connection against
// MaxPending; [Cluster.ReleasePending] ends the wait.
func (c *Cluster) AcquirePending() error {
	if c.pending.Add(1) > int64(c.opts.Breaker.MaxPending) {
		c.pending.Add(-1)
		c.openPending.Inc()
		return ErrCircuitOpen
	}
	return nil
}

// ReleasePending records the end of a wait for a connection.
func (c *Cluster) ReleasePending() { c.pending.Add(-1) }

func slicesEqual(a, b []*Endpoint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
