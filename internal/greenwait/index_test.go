package greenwait

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestIndexAgainstModel applies random adds, reschedules and removes to an
// index and to a plain map, then checks that popDue returns exactly the
// model's due jobs, earliest first.
func TestIndexAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	x := newIndex(func(string) int { return 1 })
	model := map[JobID]int64{}
	var live []*entry
	for i := range 5000 {
		switch op := r.IntN(10); {
		case op < 5 || len(live) == 0:
			e := &entry{id: NewJobID(), due: r.Int64N(1000), region: x.region([]string{"a", "b"}[i%2]), cluster: x.cluster(""), hidx: -1, prio: PriorityLow}
			x.add(e)
			live = append(live, e)
			model[e.id] = e.due
		case op < 8:
			e := live[r.IntN(len(live))]
			d := r.Int64N(1000)
			x.reschedule(e, d)
			model[e.id] = d
		default:
			k := r.IntN(len(live))
			x.remove(live[k])
			delete(model, live[k].id)
			live = slices.Delete(live, k, k+1)
		}
	}
	if len(x.byID) != len(model) || x.count[PriorityLow] != len(model) {
		t.Fatalf("size: got %d (count %d), want %d", len(x.byID), x.count[PriorityLow], len(model))
	}
	if next, ok := x.next(); ok {
		for _, d := range model {
			if d < next {
				t.Fatalf("next: got %d, but a job is due at %d", next, d)
			}
		}
	}
	got := x.popDue(500, nil)
	var want []int64
	for _, d := range model {
		if d <= 500 {
			want = append(want, d)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("popDue: got %d jobs, want %d", len(got), len(want))
	}
	last := map[*regionQueue]int64{}
	for _, e := range got {
		if e.due > 500 || e.due < last[e.region] || e.hidx != -1 {
			t.Fatalf("popDue: job due %d out of order or still in the heap", e.due)
		}
		last[e.region] = e.due
	}
}
