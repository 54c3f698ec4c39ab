// Package config holds the embedded default configuration, default.toml: the
// demo that `aegis run` uses without --config, and the commented reference for
// every key. Decoding and validation live in internal/config.
package config

import _ "embed"

// Default is the text of default.toml.
//
//go:embed default.toml
var Default []byte
