// Package cli is the aegis command line: subcommands and flags only. Each
// subcommand parses its flags and calls into the package that does the work.
//
// [Run] is the whole program: cmd/aegis calls it with the process's
// arguments and exits with its result. It is safe to call from tests, which
// pass their own arguments, writers and context.
package cli
