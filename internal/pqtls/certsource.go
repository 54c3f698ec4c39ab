package pqtls

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// fileStamp identifies one version of a certificate/key file pair on disk.
type fileStamp struct {
	certMod, keyMod   int64 // modification time, Unix nanoseconds
	certSize, keySize int64
}

func statPair(certFile, keyFile string) (fileStamp, error) {
	ci, err := os.Stat(certFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("stat cert file: %w", err)
	}
	ki, err := os.Stat(keyFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("stat key file: %w", err)
	}
	return fileStamp{certMod: ci.ModTime().UnixNano(), keyMod: ki.ModTime().UnixNano(), certSize: ci.Size(), keySize: ki.Size()}, nil
}

// certSource holds the current certificate of a file pair and swaps it
// atomically on reload, so handshakes never block on a reload.
type certSource struct {
	certFile, keyFile string

	cur atomic.Pointer[tls.Certificate]

	mu    sync.Mutex // serializes reloads; guards stamp
	stamp fileStamp  // the files' stamp at the last load attempt
}

// load reads the files and, if they hold a valid pair, makes it current. On
// error the previous certificate stays current.
func (c *certSource) load() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Stat before reading: if the files change while we read, the next
	// poll sees a newer stamp and loads again.
	stamp, statErr := statPair(c.certFile, c.keyFile)
	if statErr == nil {
		c.stamp = stamp
	}
	cert, err := loadKeyPairFiles(c.certFile, c.keyFile, time.Now())
	if err != nil {
		return nil, err
	}
	c.cur.Store(cert)
	return cert, nil
}

// changed reports whether the files on disk differ from the last load
// attempt. A file that cannot be stat'ed counts as unchanged: it is probably
// being replaced, and the current certificate keeps serving.
func (c *certSource) changed() bool {
	stamp, err := statPair(c.certFile, c.keyFile)
	if err != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return stamp != c.stamp
}
