package proxy

import (
	"crypto/tls"
	"net/http"
	"sync"

	"github.com/aegis-flow/aegis/internal/pqtls"
)

// recorder notes the status and body size of a response. It exposes the
// underlying writer through Unwrap, so http.ResponseController (which
// ReverseProxy uses to flush and to hijack for upgrades) reaches it.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

func getRecorder(w http.ResponseWriter) *recorder {
	r := recorders.Get().(*recorder)
	*r = recorder{ResponseWriter: w}
	return r
}

func putRecorder(r *recorder) {
	r.ResponseWriter = nil
	recorders.Put(r)
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 || r.status < 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush keeps ReverseProxy's streaming flushes working.
func (r *recorder) Flush() {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	http.NewResponseController(r.ResponseWriter).Flush()
}

func groupName(cs *tls.ConnectionState) string { return pqtls.NegotiatedGroup(cs) }
