package greenwait

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Lookup returns the status of job id, operator fields included.
func (m *Manager) Lookup(id JobID) (*Status, error) {
	rec, err := m.get(id)
	if err != nil {
		return nil, err
	}
	return m.status(rec, m.view(id), true), nil
}

func (m *Manager) get(id JobID) (*record, error) {
	m.closeMu.RLock()
	defer m.closeMu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	return m.st.get(id)
}

// JobResult returns the stored upstream response of a done job; ErrConflict
// when the job is not done.
func (m *Manager) JobResult(id JobID) (*Result, error) {
	rec, err := m.get(id)
	if err != nil {
		return nil, err
	}
	if rec.State != StateDone {
		return nil, fmt.Errorf("result of %s job: %w", rec.State, ErrConflict)
	}
	m.closeMu.RLock()
	defer m.closeMu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	res, err := m.st.result(id)
	if err != nil {
		return nil, err
	}
	return &Result{Status: res.Status, Header: res.Header, Body: res.Body}, nil
}

// Cancel cancels a queued or planned job. It returns ErrConflict for a job
// that is running or finished and ErrNotFound for an unknown one.
func (m *Manager) Cancel(id JobID) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	e := m.idx.byID[id]
	var prev State
	if e != nil {
		if e.state == StateRunning {
			m.mu.Unlock()
			return fmt.Errorf("cancel running job: %w", ErrConflict)
		}
		prev = e.state
		m.idx.remove(e)
		e.state = StateCancelled
	}
	m.mu.Unlock()
	restore := func() {
		if e == nil {
			return
		}
		m.mu.Lock()
		e.state = prev
		m.idx.add(e)
		m.mu.Unlock()
		m.poke()
	}
	rec, err := m.get(id)
	if err != nil {
		restore()
		return err
	}
	if rec.State.Terminal() {
		restore()
		return fmt.Errorf("cancel %s job: %w", rec.State, ErrConflict)
	}
	rec.State, rec.FinishedAt = StateCancelled, time.Now()
	if err := m.update(rec, time.Time{}); err != nil {
		restore()
		return err
	}
	if e != nil {
		m.met.current[rec.Priority].Dec()
	}
	m.met.jobs.WithLabelValues(rec.Priority.String(), outcomeCancelled).Inc()
	return nil
}

func (m *Manager) update(rec *record, prevFinished time.Time) error {
	m.closeMu.RLock()
	defer m.closeMu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	return m.st.update(rec, nil, prevFinished)
}

// Retry queues a failed or cancelled job again with a fresh deadline (now
// plus its maximum wait), planned from the current forecast. Its id, and so
// its Idempotency-Key, stay the same.
func (m *Manager) Retry(ctx context.Context, id JobID) (*Status, error) {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	rec, err := m.get(id)
	if err != nil {
		return nil, err
	}
	if rec.State != StateFailed && rec.State != StateCancelled {
		return nil, fmt.Errorf("retry %s job: %w", rec.State, ErrConflict)
	}
	prevFinished := rec.FinishedAt
	now := time.Now()
	wait := rec.MaxWait
	if wait <= 0 {
		wait = DefaultMaxWait(rec.Priority)
	}
	rec.State, rec.Attempts, rec.LastError = StatePlanned, 0, ""
	rec.StartedAt, rec.FinishedAt = time.Time{}, time.Time{}
	rec.Deadline, rec.DeadlineClamped = now.Add(wait), false
	rec.PlannedAt, err = m.plan(ctx, rec.Region, rec.ExpectedDuration, now, rec.Deadline)
	if err != nil {
		rec.PlannedAt = now
	}
	if err := m.update(rec, prevFinished); err != nil {
		return nil, err
	}
	m.mu.Lock()
	e := m.newEntry(rec)
	m.idx.add(e)
	m.mu.Unlock()
	m.met.current[rec.Priority].Inc()
	m.poke()
	return m.status(rec, m.view(id), true), nil
}

// Purge deletes finished (done, failed, cancelled) jobs that finished more
// than olderThan ago, only those in states when it is not empty, with their
// results. It returns how many it deleted.
func (m *Manager) Purge(olderThan time.Duration, states ...State) (int, error) {
	return m.purge(time.Now().Add(-olderThan), states)
}

// ListFilter selects jobs for List. Zero fields match everything.
type ListFilter struct {
	State    State
	Priority Priority
	Route    string
	// Limit caps the jobs returned (default 100).
	Limit int
}

// List returns the stored jobs that match f, oldest submission first, and
// whether more matched than f.Limit. It reads the whole store: it is for
// operators, not for the request path.
func (m *Manager) List(f ListFilter) ([]*Status, bool, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	m.closeMu.RLock()
	defer m.closeMu.RUnlock()
	if m.closed {
		return nil, false, ErrClosed
	}
	var out []*Status
	more := false
	err := m.st.scan(func(r *record) bool {
		if (f.Priority != PriorityNone && r.Priority != f.Priority) || (f.Route != "" && r.Route != f.Route) {
			return true
		}
		s := m.status(r, m.view(r.ID), true)
		if f.State != 0 && s.State != f.State {
			return true
		}
		out = append(out, s)
		return true
	})
	if err != nil {
		return nil, false, err
	}
	slices.SortFunc(out, func(a, b *Status) int { return a.SubmittedAt.Compare(b.SubmittedAt) })
	if len(out) > f.Limit {
		out, more = out[:f.Limit], true
	}
	return out, more, nil
}
