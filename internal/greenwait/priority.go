package greenwait

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Priority is how urgent a request is. The zero value means none was given.
type Priority uint8

// Priorities, from most to least urgent. Critical requests are never
// deferred.
const (
	PriorityNone Priority = iota
	PriorityCritical
	PriorityHigh
	PriorityNormal
	PriorityLow
	PriorityBackground
)

// deferrable lists the priorities that can be deferred, in label order.
var deferrable = []Priority{PriorityHigh, PriorityNormal, PriorityLow, PriorityBackground}

var priorityNames = [...]string{"", "critical", "high", "normal", "low", "background"}

// ErrUnknownPriority is returned by ParsePriority for a name that is not
// one of critical, high, normal, low or background.
var ErrUnknownPriority = errors.New("unknown priority (allowed: critical, high, normal, low, background)")

// String returns the priority's lowercase name ("" for PriorityNone).
func (p Priority) String() string {
	if int(p) < len(priorityNames) {
		return priorityNames[p]
	}
	return fmt.Sprintf("priority(%d)", uint8(p))
}

// MarshalText implements encoding.TextMarshaler.
func (p Priority) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Priority) UnmarshalText(b []byte) error {
	q, err := ParsePriority(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// ParsePriority parses a priority name, ignoring case and surrounding
// space. It returns an error wrapping ErrUnknownPriority for anything else,
// including the empty string.
func ParsePriority(s string) (Priority, error) {
	s = strings.TrimSpace(s)
	for i := PriorityCritical; int(i) < len(priorityNames); i++ {
		if strings.EqualFold(s, priorityNames[i]) {
			return i, nil
		}
	}
	return PriorityNone, ErrUnknownPriority
}

// Deferrable reports whether requests of this priority may be deferred.
func (p Priority) Deferrable() bool { return p >= PriorityHigh && p <= PriorityBackground }

// DefaultMaxWait returns the built-in maximum wait of a deferrable priority:
// high 5 min, normal 30 min, low 2 h, background 24 h; 0 for the others.
func DefaultMaxWait(p Priority) time.Duration {
	switch p {
	case PriorityHigh:
		return 5 * time.Minute
	case PriorityNormal:
		return 30 * time.Minute
	case PriorityLow:
		return 2 * time.Hour
	case PriorityBackground:
		return 24 * time.Hour
	}
	return 0
}

// State is where a job is in its life.
type State uint8

// Job states. Done, Failed and Cancelled are terminal.
const (
	StateQueued State = iota + 1
	StatePlanned
	StateRunning
	StateDone
	StateFailed
	StateCancelled
)

var stateNames = [...]string{"", "queued", "planned", "running", "done", "failed", "cancelled"}

// String returns the state's lowercase name.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseState parses a state name as returned by String.
func ParseState(s string) (State, error) {
	for i := StateQueued; int(i) < len(stateNames); i++ {
		if strings.EqualFold(strings.TrimSpace(s), stateNames[i]) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown state %q (allowed: queued, planned, running, done, failed, cancelled)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Terminal reports whether the state is final (done, failed or cancelled).
func (s State) Terminal() bool { return s >= StateDone && s <= StateCancelled }
