package greenwait

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Errors that callers branch on.
var (
	// ErrQueueFull means the store reached its configured maximum bytes or
	// jobs; the request was not accepted.
	ErrQueueFull = errors.New("green-wait queue full")
	// ErrNotFound means no job has the given id.
	ErrNotFound = errors.New("job not found")
	// ErrClosed means the Manager has been closed.
	ErrClosed = errors.New("green-wait closed")
	// ErrConflict means the operation does not apply to the job's current
	// state (cancelling a running or finished job, the result of an
	// unfinished job, retrying a job that is not failed or cancelled).
	ErrConflict = errors.New("operation does not apply to the job's state")
	// ErrCorrupt means a stored record could not be opened or decoded; it
	// has been quarantined.
	ErrCorrupt = errors.New("corrupt job record")
)

var (
	bucketJobs       = []byte("jobs")
	bucketResults    = []byte("results")
	bucketFinished   = []byte("finished") // finished unix nanos (8 bytes BE) || id -> state
	bucketQuarantine = []byte("quarantine")
)

// store is the bbolt-backed, encrypted job store. It is safe for concurrent
// use. Writes that may run concurrently go through DB.Batch so that they
// share one commit and one fsync.
type store struct {
	db       *bolt.DB
	sealer   sealer
	maxBytes int64
	maxJobs  int64

	bytes atomic.Int64 // stored bytes of job and result records
	jobs  atomic.Int64 // job records

	// onQuarantine is called (outside any transaction) for each record
	// moved to quarantine.
	onQuarantine func(key []byte, kind string, reason error)
}

type storeOptions struct {
	path     string
	master   []byte
	maxBytes int64
	maxJobs  int64
	// batchDelay caps how long a write waits for others to share its commit.
	batchDelay time.Duration
}

func openStore(o storeOptions) (*store, error) {
	db, err := bolt.Open(o.path, 0o600, &bolt.Options{
		Timeout:      time.Second,
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db.MaxBatchDelay = o.batchDelay
	db.MaxBatchSize = 2000
	s := &store{db: db, sealer: sealer{master: o.master}, maxBytes: o.maxBytes, maxJobs: o.maxJobs}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketJobs, bucketResults, bucketFinished, bucketQuarantine} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		var n, size int64
		for _, name := range [][]byte{bucketJobs, bucketResults} {
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				size += int64(len(v))
				if name[0] == 'j' {
					n++
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		s.jobs.Store(n)
		s.bytes.Store(size)
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("init store: %w", err)
	}
	return s, nil
}

func (s *store) close() error { return s.db.Close() }

// reserve claims room for one more job of n bytes, or returns ErrQueueFull.
func (s *store) reserve(n int64) error {
	if s.maxJobs > 0 && s.jobs.Add(1) > s.maxJobs {
		s.jobs.Add(-1)
		return ErrQueueFull
	}
	if s.maxBytes > 0 && s.bytes.Add(n) > s.maxBytes {
		s.bytes.Add(-n)
		if s.maxJobs > 0 {
			s.jobs.Add(-1)
		}
		return ErrQueueFull
	}
	if s.maxJobs <= 0 {
		s.jobs.Add(1)
	}
	if s.maxBytes <= 0 {
		s.bytes.Add(n)
	}
	return nil
}

func (s *store) sealRecord(r *record) ([]byte, error) {
	plain, err := r.encode()
	if err != nil {
		return nil, err
	}
	return s.sealer.seal(kindJob, r.ID, plain)
}

// insert durably stores a new job. It returns once the commit is synced.
func (s *store) insert(r *record) error {
	v, err := s.sealRecord(r)
	if err != nil {
		return err
	}
	if err := s.reserve(int64(len(v))); err != nil {
		return err
	}
	err = s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).Put(r.ID[:], v)
	})
	if err != nil {
		s.bytes.Add(-int64(len(v)))
		s.jobs.Add(-1)
		return fmt.Errorf("store job: %w", err)
	}
	return nil
}

// update rewrites a job record. If res is not nil it is stored as the job's
// result. A terminal record is entered in the finished index; a record
// leaving a terminal state (retry) leaves it (prevFinished).
func (s *store) update(r *record, res *resultRecord, prevFinished time.Time) error {
	v, err := s.sealRecord(r)
	if err != nil {
		return err
	}
	var rv []byte
	if res != nil {
		plain, err := res.encode()
		if err != nil {
			return err
		}
		if rv, err = s.sealer.seal(kindResult, r.ID, plain); err != nil {
			return err
		}
	}
	var delta int64
	err = s.db.Batch(func(tx *bolt.Tx) error {
		delta = 0
		jobs := tx.Bucket(bucketJobs)
		old := jobs.Get(r.ID[:])
		if old == nil {
			return ErrNotFound // purged or quarantined meanwhile
		}
		delta += int64(len(v) - len(old))
		if err := jobs.Put(r.ID[:], v); err != nil {
			return err
		}
		if rv != nil {
			results := tx.Bucket(bucketResults)
			delta += int64(len(rv) - len(results.Get(r.ID[:])))
			if err := results.Put(r.ID[:], rv); err != nil {
				return err
			}
		}
		fin := tx.Bucket(bucketFinished)
		if !prevFinished.IsZero() {
			if err := fin.Delete(finishedKey(prevFinished, r.ID)); err != nil {
				return err
			}
		}
		if r.State.Terminal() {
			return fin.Put(finishedKey(r.FinishedAt, r.ID), []byte{byte(r.State)})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update job: %w", err)
	}
	s.bytes.Add(delta)
	return nil
}

func finishedKey(t time.Time, id JobID) []byte {
	k := make([]byte, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(max(t.UnixNano(), 0)))
	copy(k[8:], id[:])
	return k
}

// get returns the job record for id. A corrupt record is quarantined and
// reported as ErrCorrupt.
func (s *store) get(id JobID) (*record, error) {
	var (
		r       *record
		bad     []byte
		openErr error
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketJobs).Get(id[:])
		if v == nil {
			return ErrNotFound
		}
		r, openErr = s.openRecord(id, v)
		if openErr != nil {
			bad = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if openErr != nil {
		s.quarantine(bucketJobs, kindJob, [][2][]byte{{id[:], bad}}, openErr)
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, openErr)
	}
	return r, nil
}

func (s *store) openRecord(id JobID, v []byte) (*record, error) {
	plain, err := s.sealer.open(kindJob, id, v)
	if err != nil {
		return nil, err
	}
	return decodeRecord(plain, id)
}

// result returns the stored result of a job.
func (s *store) result(id JobID) (*resultRecord, error) {
	var (
		res     *resultRecord
		bad     []byte
		openErr error
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketResults).Get(id[:])
		if v == nil {
			return ErrNotFound
		}
		plain, err := s.sealer.open(kindResult, id, v)
		if err == nil {
			res, err = decodeResult(plain)
		}
		if err != nil {
			openErr, bad = err, append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if openErr != nil {
		s.quarantine(bucketResults, kindResult, [][2][]byte{{id[:], bad}}, openErr)
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, openErr)
	}
	return res, nil
}

// scan calls fn for every decodable job record, in id order, until fn
// returns false. Corrupt records are quarantined after the scan.
func (s *store) scan(fn func(*record) bool) error {
	var bad [][2][]byte
	var firstErr error
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketJobs).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var id JobID
			var r *record
			var err error
			if len(k) != len(id) {
				err = fmt.Errorf("%w: key length %d", errDecode, len(k))
			} else {
				copy(id[:], k)
				r, err = s.openRecord(id, v)
			}
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				bad = append(bad, [2][]byte{append([]byte(nil), k...), append([]byte(nil), v...)})
				continue
			}
			if !fn(r) {
				break
			}
		}
		return nil
	})
	if len(bad) > 0 {
		s.quarantine(bucketJobs, kindJob, bad, firstErr)
	}
	if err != nil {
		return fmt.Errorf("scan jobs: %w", err)
	}
	return nil
}

// quarantine moves records from bucket to the quarantine bucket, keyed by
// the bucket's first letter and the original key.
func (s *store) quarantine(bucket []byte, kind string, kvs [][2][]byte, reason error) {
	var delta, jobs int64
	err := s.db.Update(func(tx *bolt.Tx) error {
		delta, jobs = 0, 0
		src, q := tx.Bucket(bucket), tx.Bucket(bucketQuarantine)
		for _, kv := range kvs {
			if src.Get(kv[0]) == nil {
				continue // already moved
			}
			if err := q.Put(append([]byte{bucket[0]}, kv[0]...), kv[1]); err != nil {
				return err
			}
			if err := src.Delete(kv[0]); err != nil {
				return err
			}
			delta += int64(len(kv[1]))
			if bucket[0] == 'j' {
				jobs++
			}
		}
		return nil
	})
	if err == nil {
		s.bytes.Add(-delta)
		s.jobs.Add(-jobs)
	}
	if s.onQuarantine != nil {
		for _, kv := range kvs {
			s.onQuarantine(kv[0], kind, errors.Join(reason, err))
		}
	}
}

// purge deletes terminal jobs finished before cutoff whose state is in
// states (all terminal states if states is empty), with their results. It
// finds them with the finished index in a read transaction, so that an
// idle purge costs no write and no fsync.
func (s *store) purge(cutoff time.Time, states []State) (int, error) {
	const chunk = 10000
	limit := finishedKey(cutoff, JobID{})[:8]
	total := 0
	var after []byte
	for {
		var del [][]byte
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketFinished).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && string(k) == string(after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && string(k[:8]) < string(limit) && len(del) < chunk; k, v = c.Next() {
				if len(states) > 0 && (len(v) != 1 || !containsState(states, State(v[0]))) {
					continue
				}
				del = append(del, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil || len(del) == 0 {
			if err != nil {
				err = fmt.Errorf("purge jobs: %w", err)
			}
			return total, err
		}
		after = del[len(del)-1]
		var delta, jobs int64
		err = s.db.Update(func(tx *bolt.Tx) error {
			delta, jobs = 0, 0
			fin, jb, rb := tx.Bucket(bucketFinished), tx.Bucket(bucketJobs), tx.Bucket(bucketResults)
			for _, k := range del {
				id := k[8:]
				if v := jb.Get(id); v != nil {
					delta += int64(len(v))
					jobs++
					if err := jb.Delete(id); err != nil {
						return err
					}
				}
				if v := rb.Get(id); v != nil {
					delta += int64(len(v))
					if err := rb.Delete(id); err != nil {
						return err
					}
				}
				if err := fin.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("purge jobs: %w", err)
		}
		s.bytes.Add(-delta)
		s.jobs.Add(-jobs)
		total += len(del)
		if len(del) < chunk {
			return total, nil
		}
	}
}

func containsState(ss []State, s State) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
