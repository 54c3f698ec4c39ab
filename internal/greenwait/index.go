package greenwait

import (
	"container/heap"
	"time"
)

// entry is the in-memory index entry of an active (queued, planned or
// running) job. It is kept small: one exists per queued job.
type entry struct {
	id       JobID
	due      int64 // unix nanos at which to release
	deadline int64 // unix nanos
	dur      time.Duration
	region   *regionQueue
	cluster  *clusterQueue
	hidx     int32 // index in region.h, -1 when not in the heap
	prio     Priority
	state    State // queued, planned or running; cancelled when withdrawn
	retrying bool  // waiting for a retry: Replan leaves it alone
	pending  bool  // due, waiting for a release slot of its cluster
}

// regionQueue is a min-heap of a region's waiting entries keyed by due.
// Each slot carries a copy of its entry's due time so that sifting
// compares within the slice and only touches an entry to update its
// position: at a million jobs that halves the cache misses.
type regionQueue struct {
	name string
	h    []slot
}

type slot struct {
	due int64
	e   *entry
}

func (q *regionQueue) Len() int           { return len(q.h) }
func (q *regionQueue) Less(i, j int) bool { return q.h[i].due < q.h[j].due }
func (q *regionQueue) Swap(i, j int) {
	q.h[i], q.h[j] = q.h[j], q.h[i]
	q.h[i].e.hidx = int32(i)
	q.h[j].e.hidx = int32(j)
}
func (q *regionQueue) Push(x any) {
	e := x.(*entry)
	e.hidx = int32(len(q.h))
	q.h = append(q.h, slot{e.due, e})
}
func (q *regionQueue) Pop() any {
	n := len(q.h) - 1
	e := q.h[n].e
	q.h[n] = slot{}
	q.h = q.h[:n]
	e.hidx = -1
	return e
}

// clusterQueue bounds the concurrent releases of one cluster.
type clusterQueue struct {
	name    string
	limit   int
	running int
	pending []*entry // FIFO of due entries waiting for a slot
}

// index holds every active job. It is not safe for concurrent use; the
// Manager guards it with its mutex. Every operation on one job costs
// O(log n) in the number of jobs of its region.
type index struct {
	byID     map[JobID]*entry
	regions  map[string]*regionQueue
	clusters map[string]*clusterQueue
	limit    func(cluster string) int
	count    [PriorityBackground + 1]int // active jobs per priority
}

func newIndex(limit func(string) int) *index {
	return &index{
		byID:     make(map[JobID]*entry),
		regions:  make(map[string]*regionQueue),
		clusters: make(map[string]*clusterQueue),
		limit:    limit,
	}
}

func (x *index) region(name string) *regionQueue {
	q := x.regions[name]
	if q == nil {
		q = &regionQueue{name: name}
		x.regions[name] = q
	}
	return q
}

func (x *index) cluster(name string) *clusterQueue {
	c := x.clusters[name]
	if c == nil {
		c = &clusterQueue{name: name, limit: max(x.limit(name), 1)}
		x.clusters[name] = c
	}
	return c
}

// add enters a new entry into its region's heap.
func (x *index) add(e *entry) {
	x.byID[e.id] = e
	x.count[e.prio]++
	heap.Push(e.region, e)
}

// reschedule moves a heap entry to a new due time.
func (x *index) reschedule(e *entry, due int64) {
	e.due = due
	if e.hidx >= 0 {
		e.region.h[e.hidx].due = due
		heap.Fix(e.region, int(e.hidx))
	} else {
		heap.Push(e.region, e)
	}
}

// remove withdraws an entry from the index wherever it is.
func (x *index) remove(e *entry) {
	if x.byID[e.id] != e {
		return
	}
	delete(x.byID, e.id)
	x.count[e.prio]--
	if e.hidx >= 0 {
		heap.Remove(e.region, int(e.hidx))
	}
	if e.pending {
		c := e.cluster
		for i, p := range c.pending {
			if p == e {
				c.pending = append(c.pending[:i], c.pending[i+1:]...)
				break
			}
		}
		e.pending = false
	}
}

// popDue removes and returns the entries due at or before now, earliest
// first within a region.
func (x *index) popDue(now int64, out []*entry) []*entry {
	for _, q := range x.regions {
		for len(q.h) > 0 && q.h[0].due <= now {
			out = append(out, heap.Pop(q).(*entry))
		}
	}
	return out
}

// next returns the earliest due time of any waiting entry.
func (x *index) next() (int64, bool) {
	var best int64
	ok := false
	for _, q := range x.regions {
		if len(q.h) > 0 && (!ok || q.h[0].due < best) {
			best, ok = q.h[0].due, true
		}
	}
	return best, ok
}
