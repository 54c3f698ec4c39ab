package greenwait

import (
	"bytes"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

var testKey = bytes.Repeat([]byte{7}, 32)

func newTestStore(t testing.TB, maxBytes, maxJobs int64) *store {
	t.Helper()
	s, err := openStore(storeOptions{
		path:     filepath.Join(t.TempDir(), "gw.db"),
		master:   testKey,
		maxBytes: maxBytes,
		maxJobs:  maxJobs,
	})
	if err != nil {
		t.Fatalf("openStore: %v", err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

func testRecord(body []byte) *record {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &record{
		ID:               NewJobID(),
		State:            StatePlanned,
		Priority:         PriorityLow,
		Route:            "api",
		Method:           http.MethodPost,
		URL:              "http://example.test/v1/report?x=1",
		Header:           http.Header{"Content-Type": {"application/json"}},
		SubmittedAt:      now,
		Deadline:         now.Add(2 * time.Hour),
		MaxWait:          2 * time.Hour,
		ExpectedDuration: time.Minute,
		PlannedAt:        now.Add(time.Hour),
		Body:             body,
	}
}

func TestStoreRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		body []byte
	}{
		{"no body", nil},
		{"empty body", []byte{}},
		{"1 KiB", bytes.Repeat([]byte("x"), 1024)},
	}
	s := newTestStore(t, 0, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRecord(tt.body)
			if err := s.insert(r); err != nil {
				t.Fatalf("insert: %v", err)
			}
			got, err := s.get(r.ID)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if diff := cmp.Diff(r, got); diff != "" {
				t.Errorf("record mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := s.get(NewJobID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("get unknown: got %v, want ErrNotFound", err)
	}
}

func TestStoreQueueFull(t *testing.T) {
	tests := []struct {
		name              string
		maxBytes, maxJobs int64
		wantOK            int
	}{
		{"max jobs", 0, 3, 3},
		{"max bytes", 3000, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t, tt.maxBytes, tt.maxJobs)
			ok := 0
			for range 5 {
				err := s.insert(testRecord(bytes.Repeat([]byte("y"), 1024)))
				if err == nil {
					ok++
					continue
				}
				if !errors.Is(err, ErrQueueFull) {
					t.Fatalf("insert: got %v, want ErrQueueFull", err)
				}
			}
			if ok != tt.wantOK {
				t.Errorf("accepted: got %d, want %d", ok, tt.wantOK)
			}
		})
	}
}

func TestStoreQuarantine(t *testing.T) {
	s := newTestStore(t, 0, 0)
	var quarantined []string
	s.onQuarantine = func(key []byte, kind string, err error) { quarantined = append(quarantined, kind) }
	good, bad := testRecord([]byte("good")), testRecord([]byte("bad"))
	for _, r := range []*record{good, bad} {
		if err := s.insert(r); err != nil {
			t.Fatal(err)
		}
	}
	// Flip one ciphertext byte of the bad record.
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		v := append([]byte(nil), b.Get(bad.ID[:])...)
		v[len(v)-1] ^= 1
		return b.Put(bad.ID[:], v)
	})
	if err != nil {
		t.Fatal(err)
	}
	var seen []JobID
	if err := s.scan(func(r *record) bool { seen = append(seen, r.ID); return true }); err != nil {
		t.Fatalf("scan: %v", err)
	}
	if diff := cmp.Diff([]JobID{good.ID}, seen); diff != "" {
		t.Errorf("scanned ids (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{kindJob}, quarantined); diff != "" {
		t.Errorf("quarantined (-want +got):\n%s", diff)
	}
	if _, err := s.get(bad.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("get quarantined: got %v, want ErrNotFound", err)
	}
	if got := s.jobs.Load(); got != 1 {
		t.Errorf("job count: got %d, want 1", got)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketQuarantine).Get(append([]byte{'j'}, bad.ID[:]...)) == nil {
			t.Error("quarantine bucket lacks the bad record")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestStoreWrongKeyIsCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.db")
	s, err := openStore(storeOptions{path: path, master: testKey})
	if err != nil {
		t.Fatal(err)
	}
	r := testRecord([]byte("b"))
	if err := s.insert(r); err != nil {
		t.Fatal(err)
	}
	s.close()
	s, err = openStore(storeOptions{path: path, master: bytes.Repeat([]byte{8}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if _, err := s.get(r.ID); !errors.Is(err, ErrCorrupt) {
		t.Errorf("get under another key: got %v, want ErrCorrupt", err)
	}
}

func TestStorePurge(t *testing.T) {
	s := newTestStore(t, 0, 0)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []JobID
	for i, st := range []State{StateDone, StateFailed, StateCancelled, StateDone} {
		r := testRecord([]byte("z"))
		if err := s.insert(r); err != nil {
			t.Fatal(err)
		}
		r.State, r.FinishedAt, r.Body = st, base.Add(time.Duration(i)*time.Hour), nil
		var res *resultRecord
		if st == StateDone {
			res = &resultRecord{Status: 200, Body: []byte("ok")}
		}
		if err := s.update(r, res, time.Time{}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	active := testRecord(nil)
	if err := s.insert(active); err != nil {
		t.Fatal(err)
	}
	n, err := s.purge(base.Add(150*time.Minute), []State{StateDone})
	if err != nil || n != 1 {
		t.Fatalf("purge done: got %d, %v, want 1, nil", n, err)
	}
	if _, err := s.result(ids[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("result after purge: got %v, want ErrNotFound", err)
	}
	n, err = s.purge(base.Add(10*time.Hour), nil)
	if err != nil || n != 3 {
		t.Fatalf("purge all: got %d, %v, want 3, nil", n, err)
	}
	if got := s.jobs.Load(); got != 1 {
		t.Errorf("jobs left: got %d, want 1", got)
	}
	if _, err := s.get(active.ID); err != nil {
		t.Errorf("active job: got %v, want it kept", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	r := testRecord([]byte("hello"))
	plain, err := r.encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(plain)
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	res, _ := (&resultRecord{Status: 200, Header: http.Header{"A": {"b"}}, Body: []byte("x")}).encode()
	f.Add(res)
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, err := decodeRecord(b, r.ID); err == nil {
			// A record that decodes must encode and decode to itself.
			again, err := got.encode()
			if err != nil {
				t.Fatalf("encode decoded record: %v", err)
			}
			if _, err := decodeRecord(again, r.ID); err != nil {
				t.Fatalf("decode re-encoded record: %v", err)
			}
		}
		decodeResult(b)
	})
}

func FuzzOpenRecord(f *testing.F) {
	sl := sealer{master: testKey}
	r := testRecord([]byte("hello"))
	plain, _ := r.encode()
	sealed, err := sl.seal(kindJob, r.ID, plain)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Add([]byte{1})
	f.Add(make([]byte, sealOverhead))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := sl.open(kindJob, r.ID, b)
		if err != nil {
			if !errors.Is(err, errOpen) {
				t.Fatalf("open error %v does not wrap errOpen", err)
			}
			return
		}
		decodeRecord(p, r.ID)
	})
}
