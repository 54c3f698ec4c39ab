package pqtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ErrPQUnavailable is returned (wrapped) by CheckPQ when this binary does
// not negotiate X25519MLKEM768.
var ErrPQUnavailable = errors.New("post-quantum key exchange X25519MLKEM768 unavailable (check GODEBUG tlsmlkem and the go line of go.mod)")

// CheckPQ proves that this binary negotiates X25519MLKEM768: it runs one
// TLS 1.3 handshake between an in-process client and server, both under
// PolicyPrefer, over an in-memory pipe. It returns an error wrapping
// ErrPQUnavailable when another group was negotiated (GODEBUG=tlsmlkem=0, or
// a go.mod go line older than 1.24 baked into the binary), or the handshake
// error. It takes a few milliseconds.
func CheckPQ(ctx context.Context) error {
	return checkPQ(ctx, PolicyPrefer.clientGroups())
}

// checkPQ is CheckPQ with the client's groups as a parameter, so that tests
// can force a classical client.
func checkPQ(ctx context.Context, clientGroups []tls.CurveID) error {
	cert, err := newDevCert(nil, time.Now())
	if err != nil {
		return fmt.Errorf("check pq: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	serverConf := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: PolicyPrefer.serverGroups(),
		Certificates:     []tls.Certificate{*cert},
	}
	clientConf := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: clientGroups,
		RootCAs:          roots,
		ServerName:       "localhost",
	}
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	client := tls.Client(cc, clientConf)
	server := tls.Server(sc, serverConf)

	var serverErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		serverErr = server.HandshakeContext(ctx)
		if serverErr != nil {
			_ = sc.Close() // unblock the client
		}
	})
	clientErr := client.HandshakeContext(ctx)
	if clientErr != nil {
		_ = cc.Close() // unblock the server
	}
	wg.Wait()
	if err := errors.Join(clientErr, serverErr); err != nil {
		return fmt.Errorf("check pq: handshake: %w", err)
	}
	if got := server.ConnectionState().CurveID; got != tls.X25519MLKEM768 {
		return fmt.Errorf("check pq: negotiated %s: %w", GroupName(got), ErrPQUnavailable)
	}
	return nil
}
