package electricitymaps

import (
	"encoding/json"

	"github.com/aegis-flow/aegis/internal/carbon/internal/apiclient"
)

// statusError maps a non-2xx answer to an error wrapping a carbon sentinel.
func statusError(status int, body []byte) error {
	return apiclient.StatusError(status, detail(body), "zone")
}

// apiError is the error body Electricity Maps sends, in either of its shapes:
// {"error": "...", "message": "..."} or {"status": "error", "message": "..."}.
type apiError struct {
	Error   json.RawMessage `json:"error"`
	Message string          `json:"message"`
}

// detail returns a short, printable summary of an error body.
func detail(body []byte) string {
	var e apiError
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	var s string
	if len(e.Error) > 0 {
		var short string
		if json.Unmarshal(e.Error, &short) == nil {
			s = short
		}
	}
	if e.Message != "" {
		if s != "" {
			s += ": "
		}
		s += e.Message
	}
	return apiclient.Clean(s)
}
