package greenwait

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// recordVersion is the version of the plaintext record layout.
const recordVersion = 1

// errDecode marks a plaintext record that does not decode.
var errDecode = errors.New("decode record")

// record is the persisted form of a job. Its plaintext encoding is a 4-byte
// big-endian length, that many bytes of JSON metadata, then the request
// body.
type record struct {
	V                int           `json:"v"`
	ID               JobID         `json:"id"`
	State            State         `json:"state"`
	Priority         Priority      `json:"priority"`
	Route            string        `json:"route,omitempty"`
	Cluster          string        `json:"cluster,omitempty"`
	Region           string        `json:"region,omitempty"`
	Method           string        `json:"method"`
	URL              string        `json:"url"`
	Host             string        `json:"host,omitempty"`
	Header           http.Header   `json:"header,omitempty"`
	Callback         string        `json:"callback,omitempty"`
	SubmittedAt      time.Time     `json:"submitted_at"`
	Deadline         time.Time     `json:"deadline"`
	DeadlineClamped  bool          `json:"deadline_clamped,omitempty"`
	MaxWait          time.Duration `json:"max_wait"`
	ExpectedDuration time.Duration `json:"expected_duration"`
	PlannedAt        time.Time     `json:"planned_at"`
	StartedAt        time.Time     `json:"started_at,omitzero"`
	FinishedAt       time.Time     `json:"finished_at,omitzero"`
	Attempts         int           `json:"attempts,omitempty"`
	LastError        string        `json:"last_error,omitempty"`
	IntensitySubmit  *float64      `json:"intensity_submit,omitempty"`
	IntensityRun     *float64      `json:"intensity_run,omitempty"`
	SavedGrams       float64       `json:"saved_grams,omitempty"`
	HasBody          bool          `json:"has_body,omitempty"`

	Body []byte `json:"-"`
}

// encode returns the plaintext encoding of r.
func (r *record) encode() ([]byte, error) {
	r.V = recordVersion
	r.HasBody = r.Body != nil
	return encodeFramed(r, r.Body)
}

func encodeFramed(meta any, body []byte) ([]byte, error) {
	m, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	out := make([]byte, 4, 4+len(m)+len(body))
	binary.BigEndian.PutUint32(out, uint32(len(m)))
	out = append(out, m...)
	return append(out, body...), nil
}

func splitFramed(b []byte) (meta, body []byte, err error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%w: short frame", errDecode)
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, fmt.Errorf("%w: metadata length %d beyond record", errDecode, n)
	}
	return b[4 : 4+n], b[4+n:], nil
}

// decodeRecord parses and validates a plaintext job record stored under id.
func decodeRecord(b []byte, id JobID) (*record, error) {
	meta, body, err := splitFramed(b)
	if err != nil {
		return nil, err
	}
	r := new(record)
	if err := json.Unmarshal(meta, r); err != nil {
		return nil, fmt.Errorf("%w: %v", errDecode, err)
	}
	switch {
	case r.V != recordVersion:
		return nil, fmt.Errorf("%w: version %d", errDecode, r.V)
	case r.ID != id:
		return nil, fmt.Errorf("%w: id mismatch", errDecode)
	case r.State < StateQueued || r.State > StateCancelled:
		return nil, fmt.Errorf("%w: bad state", errDecode)
	case !r.Priority.Deferrable():
		return nil, fmt.Errorf("%w: bad priority", errDecode)
	case !validMethod(r.Method):
		return nil, fmt.Errorf("%w: bad method", errDecode)
	case r.SubmittedAt.IsZero() || r.Deadline.IsZero():
		return nil, fmt.Errorf("%w: missing times", errDecode)
	case r.ExpectedDuration < 0 || r.MaxWait < 0:
		return nil, fmt.Errorf("%w: negative duration", errDecode)
	case !r.HasBody && len(body) > 0:
		return nil, fmt.Errorf("%w: unexpected body", errDecode)
	}
	if u, err := url.Parse(r.URL); err != nil || !u.IsAbs() {
		return nil, fmt.Errorf("%w: bad url", errDecode)
	}
	if r.HasBody {
		r.Body = body
	}
	return r, nil
}

func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// resultRecord is the persisted upstream response of a done job.
type resultRecord struct {
	V      int         `json:"v"`
	Status int         `json:"status"`
	Header http.Header `json:"header,omitempty"`

	Body []byte `json:"-"`
}

func (r *resultRecord) encode() ([]byte, error) {
	r.V = recordVersion
	return encodeFramed(r, r.Body)
}

func decodeResult(b []byte) (*resultRecord, error) {
	meta, body, err := splitFramed(b)
	if err != nil {
		return nil, err
	}
	r := new(resultRecord)
	if err := json.Unmarshal(meta, r); err != nil {
		return nil, fmt.Errorf("%w: %v", errDecode, err)
	}
	if r.V != recordVersion || r.Status < 100 || r.Status > 999 {
		return nil, fmt.Errorf("%w: bad result", errDecode)
	}
	r.Body = body
	return r, nil
}
