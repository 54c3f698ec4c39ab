package pqtls

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"testing"
	"time"
)

// The X25519MLKEM768 benchmarks measure the two halves of the hybrid key
// exchange as TLS 1.3 runs them (draft-ietf-tls-ecdhe-mlkem), with
// crypto/mlkem and crypto/ecdh: the client generates both keys and sends
// their public halves; the server parses them, encapsulates to the ML-KEM
// key and runs X25519 with a fresh key; the client decapsulates and runs
// X25519. Wire encoding is included, the final concatenation is not.

func BenchmarkX25519MLKEM768(b *testing.B) {
	// Fixed inputs for the server and client halves.
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		b.Fatal(err)
	}
	clientX, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	clientShareMLKEM := dk.EncapsulationKey().Bytes()
	clientShareX := clientX.PublicKey().Bytes()
	_, ciphertext := dk.EncapsulationKey().Encapsulate()
	serverX, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	serverShareX := serverX.PublicKey().Bytes()

	b.Run("keygen", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			dk, err := mlkem.GenerateKey768()
			if err != nil {
				b.Fatal(err)
			}
			x, err := ecdh.X25519().GenerateKey(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			_ = dk.EncapsulationKey().Bytes()
			_ = x.PublicKey().Bytes()
		}
	})
	b.Run("encapsulate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ek, err := mlkem.NewEncapsulationKey768(clientShareMLKEM)
			if err != nil {
				b.Fatal(err)
			}
			mlkemSecret, ct := ek.Encapsulate()
			x, err := ecdh.X25519().GenerateKey(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			peer, err := ecdh.X25519().NewPublicKey(clientShareX)
			if err != nil {
				b.Fatal(err)
			}
			xSecret, err := x.ECDH(peer)
			if err != nil {
				b.Fatal(err)
			}
			_, _, _ = mlkemSecret, ct, xSecret
			_ = x.PublicKey().Bytes()
		}
	})
	b.Run("decapsulate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			mlkemSecret, err := dk.Decapsulate(ciphertext)
			if err != nil {
				b.Fatal(err)
			}
			peer, err := ecdh.X25519().NewPublicKey(serverShareX)
			if err != nil {
				b.Fatal(err)
			}
			xSecret, err := clientX.ECDH(peer)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = mlkemSecret, xSecret
		}
	})
}

// BenchmarkX25519 is the classical exchange on its own, for comparison:
// keygen is one side's key generation, ecdh one side's shared secret.
func BenchmarkX25519(b *testing.B) {
	peer, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	peerShare := peer.PublicKey().Bytes()
	b.Run("keygen", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			x, err := ecdh.X25519().GenerateKey(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			_ = x.PublicKey().Bytes()
		}
	})
	b.Run("ecdh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			pub, err := ecdh.X25519().NewPublicKey(peerShare)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := peer.ECDH(pub); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkHandshake runs complete in-process TLS 1.3 handshakes (server and
// client over net.Pipe, ECDSA P-256 certificate verified by the client, no
// resumption, no session tickets) per key exchange group. The ratio of
// X25519MLKEM768 to X25519 is the post-quantum overhead of a new
// connection. pqtls_prefer runs the same PQ handshake through
// Server.TLSConfig (per-connection config, accounting hook).
func BenchmarkHandshake(b *testing.B) {
	cert, err := newDevCert(nil, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	plainServer := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*cert}, SessionTicketsDisabled: true}
	s, err := NewServer(ServerOptions{Metrics: NewMetrics(nil)})
	if err != nil {
		b.Fatal(err)
	}
	s.devCert = cert // same certificate as the plain server
	pqtlsServer := s.TLSConfig().Clone()
	pqtlsServer.SessionTicketsDisabled = true

	tests := []struct {
		name   string
		server *tls.Config
		group  tls.CurveID
	}{
		{name: "X25519", server: plainServer, group: tls.X25519},
		{name: "X25519MLKEM768", server: plainServer, group: tls.X25519MLKEM768},
		{name: "pqtls_prefer", server: pqtlsServer, group: tls.X25519MLKEM768},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			client := &tls.Config{
				MinVersion:       tls.VersionTLS13,
				RootCAs:          roots,
				ServerName:       "localhost",
				CurvePreferences: []tls.CurveID{tt.group},
			}
			b.ReportAllocs()
			for b.Loop() {
				if got := benchHandshake(b, tt.server, client); got != tt.group {
					b.Fatalf("got group %s, want %s", GroupName(got), GroupName(tt.group))
				}
			}
		})
	}
}

func benchHandshake(b *testing.B, server, client *tls.Config) tls.CurveID {
	cc, sc := net.Pipe()
	var serverErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		serverErr = tls.Server(sc, server).Handshake()
		sc.Close()
	})
	tc := tls.Client(cc, client)
	err := tc.Handshake()
	cc.Close()
	wg.Wait()
	if err != nil || serverErr != nil {
		b.Fatalf("handshake: client %v, server %v", err, serverErr)
	}
	return tc.ConnectionState().CurveID
}

// BenchmarkHKDF derives one 32-byte key with HKDF-SHA256 (extract and
// expand), as for a per-session traffic key.
func BenchmarkHKDF(b *testing.B) {
	secret := make([]byte, 32)
	salt := make([]byte, 32)
	_, _ = rand.Read(secret)
	_, _ = rand.Read(salt)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := hkdf.Key(sha256.New, secret, salt, "aegis-flow bench", 32); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAES256GCM seals and opens records of 1 KiB and 16 KiB (the TLS
// maximum record size). The nonce is fixed because the output is discarded;
// real code never reuses a nonce with a key.
func BenchmarkAES256GCM(b *testing.B) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	ad := make([]byte, 13) // TLS 1.3 record header size
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"16KiB", 16 << 10}} {
		plaintext := make([]byte, size.n)
		_, _ = rand.Read(plaintext)
		buf := make([]byte, 0, size.n+aead.Overhead())
		sealed := aead.Seal(nil, nonce, plaintext, ad)
		b.Run("seal/"+size.name, func(b *testing.B) {
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				buf = aead.Seal(buf[:0], nonce, plaintext, ad)
			}
		})
		b.Run("open/"+size.name, func(b *testing.B) {
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := aead.Open(buf[:0], nonce, sealed, ad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConfigForClient is the per-connection cost Server adds to a
// handshake: cloning the template config for the remote address.
func BenchmarkConfigForClient(b *testing.B) {
	s, err := NewServer(ServerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	hello := &tls.ClientHelloInfo{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.configForClient(hello); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyConnection is the per-handshake accounting hook.
func BenchmarkVerifyConnection(b *testing.B) {
	s, err := NewServer(ServerOptions{Policy: PolicyAudit, Metrics: NewMetrics(nil)})
	if err != nil {
		b.Fatal(err)
	}
	cs := tls.ConnectionState{CurveID: tls.X25519MLKEM768}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.verifyConnection(cs, "127.0.0.1:1"); err != nil {
			b.Fatal(err)
		}
	}
}
