// Package e2e holds end-to-end tests that build the aegis binary with
// `go build`, run it as a child process on a temporary configuration and
// drive it over loopback sockets: what no in-process test can show, such as
// surviving SIGKILL. It has no non-test code; the tests are skipped with
// -short because they build the binary.
//
// The tests in this package are not parallel: each owns the processes it
// starts and kills them (by their own handle) before it returns.
package e2e
