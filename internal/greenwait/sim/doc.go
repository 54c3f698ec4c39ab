// Package sim is the simulation core of `aegis simulate greenwait`: it
// replays an hourly carbon-intensity series for one region against a
// synthetic arrival pattern and priority mix, and reports, per priority
// tier, the carbon of running every job at once, of Green-Wait's plan
// from a forecast with a given error, and of perfect foresight.
//
// Everything here is a pure function of its input: the same Input (and
// Seed) gives the same Report. The package holds no state and is safe for
// concurrent use.
package sim
