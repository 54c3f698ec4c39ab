package server

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestShutdownClosesIdleH2 checks that Shutdown sends GOAWAY to an idle HTTP/2
// connection and returns promptly instead of waiting for the client to leave.
func TestShutdownClosesIdleH2(t *testing.T) {
	s, err := New(Options{Address: "127.0.0.1:0", Handler: text("x"), TLS: testTLS(t)})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	resp, err := c.Get("https://" + s.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	err = s.Shutdown(ctx)
	if d := time.Since(start); d > 3*time.Second || err != nil {
		t.Errorf("Shutdown with an idle HTTP/2 connection took %v (err %v)", d, err)
	}
}
