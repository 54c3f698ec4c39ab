package watttime

import (
	"encoding/json"
	"strings"

	"github.com/aegis-flow/aegis/internal/carbon/internal/apiclient"
)

// statusError maps a non-2xx answer to an error wrapping a carbon sentinel.
func statusError(status int, body []byte) error {
	return apiclient.StatusError(status, detail(body), "region")
}

// apiError is a WattTime error body: {"error": "...", "message": "..."} or
// {"detail": "..."}.
type apiError struct {
	Error   json.RawMessage `json:"error"`
	Message string          `json:"message"`
	Detail  json.RawMessage `json:"detail"`
}

// detail returns a short, printable summary of an error body.
func detail(body []byte) string {
	var e apiError
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	var parts []string
	for _, raw := range []json.RawMessage{e.Error, e.Detail} {
		var s string
		if len(raw) > 0 && json.Unmarshal(raw, &s) == nil && s != "" {
			parts = append(parts, s)
		}
	}
	if e.Message != "" {
		parts = append(parts, e.Message)
	}
	return apiclient.Clean(strings.Join(parts, ": "))
}
