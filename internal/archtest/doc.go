// Package archtest holds tests of Aegis-Flow's structure: the dependency
// rules between internal packages and the rule that every package has a doc
// comment. It has no code of its own.
package archtest
