package ukgrid

import (
	"encoding/json"

	"github.com/aegis-flow/aegis/internal/carbon/internal/apiclient"
)

// statusError maps a non-2xx answer to an error wrapping a carbon sentinel.
func statusError(status int, body []byte) error {
	return apiclient.StatusError(status, detail(body), "region")
}

// apiError is the API's error body: {"error":{"code":"...","message":"..."}}.
type apiError struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// detail returns a short, printable summary of an error body.
func detail(body []byte) string {
	var e apiError
	if json.Unmarshal(body, &e) != nil || e.Error == nil {
		return ""
	}
	s := e.Error.Code
	if e.Error.Message != "" {
		if s != "" {
			s += ": "
		}
		s += e.Error.Message
	}
	return apiclient.Clean(s)
}
