// Package simulate replays multi-region carbon-intensity series against a
// synthetic request stream and compares routing policies: least_request,
// the carbon policy of package balance, and an oracle that always picks the
// cleanest region. It is the core of `aegis simulate routing`.
//
// A run is pure and deterministic: the same Options (including Seed) give
// the same Result. It drives real balance.Cluster values on a simulated
// clock, so the figures reflect the production pick code, its guardrails
// and its latency feedback.
//
// Run is safe for concurrent use; a single run uses one goroutine.
package simulate
