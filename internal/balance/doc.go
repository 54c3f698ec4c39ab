// Package balance holds Aegis-Flow's upstream clusters: sets of endpoints,
// each with an address, a region, an optional zone and a weight, plus the
// machinery that decides which endpoint serves the next request.
//
// # Policies
//
//   - round_robin (the default): smooth weighted round robin over healthy
//     endpoints, precomputed as a schedule and walked with one atomic counter.
//   - least_request: power of two choices. Two distinct healthy endpoints are
//     drawn with probability proportional to their weights and the one with
//     fewer active requests per unit of weight wins; a tie goes to the first.
//   - carbon: the same power-of-two-choices step, but endpoints are drawn in
//     proportion to per-region traffic shares that favour regions with low grid
//     carbon intensity, within guardrails (see [CarbonOptions]).
//
// # Carbon-aware routing
//
// Every [CarbonOptions.Interval] the cluster reads each region's intensity
// from its [IntensitySource] and each region's observed latency (an EWMA of
// the latencies reported through [Endpoint.Done]). A region whose latency
// exceeds the fastest healthy region's by more than MaxAddedLatency gets no
// carbon preference, only its minimum share. The other regions are ranked by
// cost = intensity + LatencyCost × added latency in ms, and a region's
// preference decays by a factor e for every IntensityScale g/kWh of cost
// above the cheapest. Target shares are MinShare for every healthy region plus
// the rest split by preference; the applied shares move toward the targets by
// at most MaxShareChange per interval, starting from the least_request split,
// so traffic never herds from one region to another. Health wins over
// smoothing: a region with no usable endpoint loses its share at once (the
// others grow in proportion) and a region that comes back starts at its
// minimum share. When the policy falls back to least_request (below), the
// applied shares follow the least_request split, and carbon routing resumes
// from there.
//
// Every pick's [Decision] carries the chosen region's intensity and kind
// whenever the cluster's snapshot knows them, for every policy and whether
// or not the carbon policy compared intensities, so callers can report the
// intensity of each request. The first snapshot is built in [New]; when the
// source does not know some region yet (a carbon tracker that has not loaded
// its first signal), the first [Cluster.Pick] or tick reads it again and
// later reads follow after 10ms, doubling up to the interval, until every
// region is known.
//
// Shares are sampling targets: the power-of-two-choices step compares
// active requests per unit of share, so under load a slow region (whose
// requests stay in flight longer) receives somewhat less than its share.
//
// Intensities are only ever compared when they are comparable: every healthy
// region must have a known value and all values must be of the same kind
// (average or marginal). When any healthy region's value is unknown, when
// kinds differ, when only one region is healthy or when every intensity is the
// same, the carbon policy makes exactly the choices least_request would make,
// drawing the same random numbers, and the returned [Decision] says so
// (CarbonAware is false).
//
// # Locality
//
// When Options.LocalZone is set and healthy endpoints exist in that zone whose
// observed latency is within MaxAddedLatency of the fastest healthy endpoint,
// round_robin and least_request use only those endpoints, and the carbon
// policy gives the share of their region to them alone.
//
// # Health
//
// An endpoint is usable when its active health check (if configured, see
// [HealthOptions]) says it is up and passive detection has not ejected it.
// Passive detection ejects an endpoint after consecutive connect failures,
// consecutive 5xx responses or consecutive gateway errors (502, 503, 504), for
// a backoff that doubles with each consecutive ejection. Ejections for 5xx and
// gateway errors are capped by MaxEjectionPercent and never eject the last
// usable endpoint; connect-failure ejections are not capped. A successful
// response resets the backoff. Endpoints start up; active checks need
// UnhealthyThreshold failures in a row to mark one down and HealthyThreshold
// passes to mark it up again.
//
// # Concurrency
//
// A [Cluster] is safe for concurrent use. The request path ([Cluster.Pick],
// [Endpoint.Done]) reads an immutable snapshot through an atomic pointer and
// updates atomic counters; it does not allocate. Health changes and the
// periodic recomputation rebuild the snapshot under a mutex; the periodic work
// happens lazily on Pick when due (one caller does it, the others use the old
// snapshot) and also from [Cluster.Run], which owns the active health checks.
package balance
