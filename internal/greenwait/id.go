package greenwait

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
)

// JobID identifies a job. It is 128 random bits from crypto/rand and acts
// as a capability: whoever knows it may read the job's result or cancel it,
// so ids are never listed on the data plane.
type JobID [16]byte

// ErrBadJobID is returned by ParseJobID for text that is not 32 lowercase
// or uppercase hex digits.
var ErrBadJobID = errors.New("malformed job id")

// NewJobID returns a fresh random id.
func NewJobID() JobID {
	var id JobID
	rand.Read(id[:]) // never returns an error; it crashes the program instead
	return id
}

// String returns the id as 32 lowercase hex digits.
func (id JobID) String() string { return hex.EncodeToString(id[:]) }

// ParseJobID parses the form returned by String.
func ParseJobID(s string) (JobID, error) {
	var id JobID
	if len(s) != 2*len(id) {
		return id, ErrBadJobID
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, ErrBadJobID
	}
	return id, nil
}

// MarshalText implements encoding.TextMarshaler.
func (id JobID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *JobID) UnmarshalText(b []byte) error {
	v, err := ParseJobID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
