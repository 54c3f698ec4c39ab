// Package greenwait is Aegis-Flow's Green-Wait: the durable deferral of
// non-urgent HTTP requests to low-carbon windows.
//
// A proxy calls [Manager.Defer] for each request on a Green-Wait route. When
// the request asks for deferral (an Aegis-Priority header, Prefer:
// respond-async, or the route's default priority) and a cleaner window lies
// before its deadline, Defer stores the request encrypted in a bbolt file,
// commits it with fsync, and answers 202 Accepted with the job's URL. The
// scheduler started by [Manager.Run] releases each job at the start of the
// best window before its deadline (the plan is redone by [Manager.Replan]
// when a forecast changes) through a [Releaser], retries failures with
// jittered backoff until the deadline plus a grace period, and keeps the
// upstream response, encrypted, for a retention period. [Manager.JobsHandler]
// serves the job status, result and cancel endpoints on the data plane;
// [Manager.AdminHandler] serves the operator endpoints under /jobs.
//
// # Durability
//
// A job is acknowledged only after the bbolt transaction that holds it has
// been committed and synced. Concurrent acceptances share one commit (bbolt's
// DB.Batch), so many requests pay for one fsync. Jobs that were running when
// the process died run again after restart: delivery is at least once, and
// every release carries the header Idempotency-Key set to the job id so that
// upstreams can drop duplicates. Completion callbacks are best effort and are
// not retried after a restart.
//
// # Encryption
//
// Every stored record (request and result) is sealed with AES-256-GCM under a
// key derived with HKDF-SHA256 from the master key, with the job id and the
// record kind as the info string. A record that cannot be opened or decoded
// is moved to a quarantine bucket, logged and counted; the other jobs go on.
//
// # Concurrency
//
// A Manager is safe for concurrent use by multiple goroutines. Run must be
// called at most once; Close should be called after Run has returned. Jobs
// are released in order of their planned release time within a region;
// releases on one cluster are bounded by a concurrency limit, and release
// order between regions and clusters is not defined.
package greenwait
