package greenwait

import (
	"time"
)

// Status is the JSON view of a job served by the job and admin APIs and
// sent to callbacks.
type Status struct {
	ID              JobID     `json:"id"`
	State           State     `json:"state"`
	Priority        Priority  `json:"priority"`
	SubmittedAt     time.Time `json:"submitted_at"`
	Deadline        time.Time `json:"deadline"`
	DeadlineClamped bool      `json:"deadline_clamped,omitempty"`
	PlannedRelease  time.Time `json:"planned_release"`
	StartedAt       time.Time `json:"started_at,omitzero"`
	FinishedAt      time.Time `json:"finished_at,omitzero"`
	Attempts        int       `json:"attempts"`
	// IntensityAtSubmit and IntensityAtRun are in gCO2eq/kWh; absent when
	// unknown.
	IntensityAtSubmit *float64 `json:"intensity_at_submit_g_kwh,omitempty"`
	IntensityAtRun    *float64 `json:"intensity_at_run_g_kwh,omitempty"`
	// CarbonSavedGrams is the estimated CO2eq saved against running at
	// submission time (negative when the job ran dirtier).
	CarbonSavedGrams float64 `json:"estimated_carbon_saved_g"`
	// ResultURL is set once the job is done.
	ResultURL string `json:"result_url,omitempty"`

	// Operator-only fields, filled by the admin API.
	Route     string `json:"route,omitempty"`
	Cluster   string `json:"cluster,omitempty"`
	Region    string `json:"region,omitempty"`
	Method    string `json:"method,omitempty"`
	URL       string `json:"url,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// status builds the Status of rec, overlaid with the live state of its
// index entry when it has one (e may be nil).
func (m *Manager) status(rec *record, e *entryView, admin bool) *Status {
	s := &Status{
		ID: rec.ID, State: rec.State, Priority: rec.Priority,
		SubmittedAt: rec.SubmittedAt, Deadline: rec.Deadline, DeadlineClamped: rec.DeadlineClamped,
		PlannedRelease: rec.PlannedAt, StartedAt: rec.StartedAt, FinishedAt: rec.FinishedAt,
		Attempts: rec.Attempts, IntensityAtSubmit: rec.IntensitySubmit, IntensityAtRun: rec.IntensityRun,
		CarbonSavedGrams: rec.SavedGrams,
	}
	if e != nil {
		s.State, s.PlannedRelease = e.state, e.due
	}
	if s.State == StateDone {
		s.ResultURL = m.opts.JobPathPrefix + rec.ID.String() + "/result"
	}
	if admin {
		s.Route, s.Cluster, s.Region, s.Method, s.URL, s.LastError = rec.Route, rec.Cluster, rec.Region, rec.Method, rec.URL, rec.LastError
	}
	return s
}

// entryView is a copy of an index entry's live fields.
type entryView struct {
	state State
	due   time.Time
}

// view returns the live state of job id, if it is active.
func (m *Manager) view(id JobID) *entryView {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.idx.byID[id]
	if e == nil || e.state == StateCancelled {
		return nil
	}
	st := e.state
	if e.pending {
		st = StatePlanned
	}
	return &entryView{state: st, due: time.Unix(0, e.due).UTC()}
}
