package greenwait

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Sign returns the Aegis-Signature value of a callback body under key:
// "sha256=" followed by the hex HMAC-SHA256 of body. Receivers recompute it
// and compare with hmac.Equal.
func Sign(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// callback POSTs the job's status to its callback URL, if any, signed with
// the callback key. It tries three times; failures are logged and counted.
func (m *Manager) callback(ctx context.Context, rec *record) {
	if rec.Callback == "" || m.opts.CallbackKey == nil {
		return
	}
	body, err := json.Marshal(m.status(rec, nil, false))
	if err != nil {
		return
	}
	sig := Sign(m.opts.CallbackKey, body)
	for attempt := 1; ; attempt++ {
		err = m.postCallback(ctx, rec, body, sig)
		if err == nil {
			m.met.callbacks.WithLabelValues("ok").Inc()
			return
		}
		if attempt == 3 || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(m.backoff(attempt))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	m.met.callbacks.WithLabelValues("error").Inc()
	m.log.Warn("greenwait callback failed", "job", rec.ID.String(), "err", err)
}

func (m *Manager) postCallback(ctx context.Context, rec *record, body []byte, sig string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rec.Callback, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build callback: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderSignature, sig)
	req.Header.Set(HeaderJobID, rec.ID.String())
	resp, err := m.opts.CallbackClient.Do(req)
	if err != nil {
		return fmt.Errorf("post callback: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("post callback: status %d", resp.StatusCode)
	}
	return nil
}
