package greenwait

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// MinMasterKeyLen is the minimum length of a master key in bytes.
const MinMasterKeyLen = 32

// ErrBadMasterKey is returned for a master key that is too short or not
// hex or base64 text.
var ErrBadMasterKey = errors.New("master key must be at least 32 bytes, as hex or base64")

// ParseMasterKey decodes a master key given as text: hex (64 or more
// digits) or standard or URL-safe base64, padded or not. Surrounding white
// space is ignored. It is how a key file's content or an environment value
// is turned into Options.MasterKey.
func ParseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) >= MinMasterKeyLen {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) >= MinMasterKeyLen {
			return b, nil
		}
	}
	return nil, ErrBadMasterKey
}

// LoadOrCreateKeyFile reads a master key from path (see ParseMasterKey).
// If the file does not exist it creates it, with mode 0600, holding 32
// fresh random bytes as hex. created reports whether it did.
func LoadOrCreateKeyFile(path string) (key []byte, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, 32)
		rand.Read(key)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) { // lost a race with another creator
			return LoadOrCreateKeyFile(path)
		}
		if err != nil {
			return nil, false, fmt.Errorf("create key file: %w", err)
		}
		_, werr := f.WriteString(hex.EncodeToString(key) + "\n")
		if werr == nil {
			werr = f.Sync()
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, false, fmt.Errorf("write key file: %w", werr)
		}
		return key, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read key file: %w", err)
	}
	key, err = ParseMasterKey(string(b))
	if err != nil {
		return nil, false, fmt.Errorf("read key file: %w", err)
	}
	return key, false, nil
}

// Record kinds, part of the key derivation info and of the AEAD's
// additional data so that a record cannot be opened as another kind or
// under another job's id.
const (
	kindJob    = "job"
	kindResult = "result"
)

const (
	sealVersion  = 1
	nonceLen     = 12
	sealOverhead = 1 + nonceLen + 16
)

var errOpen = errors.New("open sealed record")

// sealer encrypts records with per-job keys derived from the master key.
type sealer struct {
	master []byte
}

func (s *sealer) aead(kind string, id JobID) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, s.master, nil, "aegis-flow greenwait v1 "+kind+" "+id.String(), 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func additionalData(kind string, id JobID) []byte {
	return append([]byte(kind), id[:]...)
}

// seal returns version || nonce || ciphertext.
func (s *sealer) seal(kind string, id JobID, plain []byte) ([]byte, error) {
	a, err := s.aead(kind, id)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	out := make([]byte, 1+nonceLen, sealOverhead+len(plain))
	out[0] = sealVersion
	rand.Read(out[1:])
	return a.Seal(out, out[1:1+nonceLen], plain, additionalData(kind, id)), nil
}

// open reverses seal. Any failure wraps errOpen.
func (s *sealer) open(kind string, id JobID, sealed []byte) ([]byte, error) {
	if len(sealed) < sealOverhead || sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w: bad header", errOpen)
	}
	a, err := s.aead(kind, id)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errOpen, err)
	}
	plain, err := a.Open(nil, sealed[1:1+nonceLen], sealed[1+nonceLen:], additionalData(kind, id))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errOpen, err)
	}
	return plain, nil
}
