// Package config defines the Aegis-Flow configuration file: its TOML schema,
// its defaults, strict decoding and validation.
//
// A configuration is loaded in three steps, all done by [Load] or [Parse]:
// the TOML text is decoded strictly (an unknown key is an error), defaults are
// filled in by [SetDefaults], and [Validate] checks the result. Every problem
// found on the way is reported, not just the first: the returned error is an
// errors.Join of [*Problem] values, each naming the key path (for example
// routes[1].cluster) and, where known, the line.
//
// Durations are strings such as "250ms" or "1h30m". Secrets never appear in the
// file itself: the file names an environment variable or a file that holds
// them, and [File.Redacted] hides even those names' values before printing.
//
// A *File is plain data. After Load returns it is never modified, so it may be
// shared between goroutines freely.
package config
