package balance

// pickSet is an immutable weighted sampling set for power of two choices.
type pickSet struct {
	eps     []*Endpoint
	w       []uint64  // sampling weight per endpoint
	cum     []uint64  // inclusive cumulative weights
	inv     []float64 // 1/w, to compare load per unit of weight
	total   uint64
	uniform bool // all weights equal: sample and compare without the tables
}

// newPickSet builds a set over eps with weights ws, or the endpoints'
// configured weights when ws is nil. The total must stay below 1<<32.
func newPickSet(eps []*Endpoint, ws []uint64) pickSet {
	ps := pickSet{eps: eps, uniform: true}
	if len(eps) == 0 {
		return ps
	}
	ps.w = make([]uint64, len(eps))
	ps.cum = make([]uint64, len(eps))
	ps.inv = make([]float64, len(eps))
	for i, e := range eps {
		w := uint64(e.weight)
		if ws != nil {
			w = ws[i]
		}
		ps.w[i] = w
		ps.total += w
		ps.cum[i] = ps.total
		ps.inv[i] = 1 / float64(w)
		if w != ps.w[0] {
			ps.uniform = false
		}
	}
	return ps
}

// find returns the smallest index whose cumulative weight exceeds x.
func (ps *pickSet) find(x uint64) int {
	lo, hi := 0, len(ps.cum)-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if ps.cum[mid] > x {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// p2c draws two distinct endpoints in proportion to their weights (one
// 64-bit random number, 32 bits per draw) and returns the one with fewer
// active requests per unit of weight; a tie goes to the first draw, so that
// at zero load the choice follows the weights exactly.
func (c *Cluster) p2c(ps *pickSet) *Endpoint {
	n := len(ps.eps)
	if n == 1 {
		return ps.eps[0]
	}
	r := c.rand()
	hi, lo := r>>32, r&0xffffffff
	if ps.uniform {
		i := int((hi * uint64(n)) >> 32)
		j := int((lo * uint64(n-1)) >> 32)
		if j >= i {
			j++
		}
		a, b := ps.eps[i], ps.eps[j]
		if b.active.Load() < a.active.Load() {
			return b
		}
		return a
	}
	i := ps.find((hi * ps.total) >> 32)
	wi := ps.w[i]
	y := (lo * (ps.total - wi)) >> 32
	if y >= ps.cum[i]-wi {
		y += wi // skip i's own interval so the second draw is distinct
	}
	j := ps.find(y)
	a, b := ps.eps[i], ps.eps[j]
	if float64(b.active.Load())*ps.inv[j] < float64(a.active.Load())*ps.inv[i] {
		return b
	}
	return a
}

// maxSchedule bounds the round-robin schedule length; larger weight sums
// are scaled down (weights keep at least 1).
const maxSchedule = 1 << 14

// schedule returns the smooth weighted round-robin sequence over eps: each
// endpoint appears weight/gcd times, interleaved as evenly as possible.
func schedule(eps []*Endpoint) []*Endpoint {
	if len(eps) == 0 {
		return nil
	}
	ws := make([]int, len(eps))
	g := 0
	for i, e := range eps {
		ws[i] = e.weight
		g = gcd(g, e.weight)
	}
	total := 0
	for i := range ws {
		ws[i] /= g
		total += ws[i]
	}
	if total > maxSchedule {
		scale := float64(maxSchedule) / float64(total)
		total = 0
		for i := range ws {
			ws[i] = max(1, int(float64(ws[i])*scale+0.5))
			total += ws[i]
		}
	}
	seq := make([]*Endpoint, 0, total)
	cur := make([]int, len(eps))
	for range total {
		best := 0
		for i := range ws {
			cur[i] += ws[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		seq = append(seq, eps[best])
	}
	return seq
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
