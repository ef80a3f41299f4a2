package policy

// sweptMap is a map whose stale entries are dropped a few at a time: each sweep call examines
// the next few keys of a round-robin over all of them. It replaces a full scan of the map every
// N calls, which held the mutex (and so every send behind it) for as long as the map was big: with
// a per-recipient limit of an hour and distinct recipients, that is every recipient of the last
// hour. Callers hold their own lock around every method.
//
// If each write is followed by sweep(2, ...), a key that went stale is examined within len/2
// writes, so the map holds at most about twice the keys that are live (TestSweptMapStaysBounded).
type sweptMap[V any] struct {
	m      map[string]sweptSlot[V] // by value: no allocation per key beyond the map's own
	keys   []string                // every key, in no particular order; slot.pos is its index
	cursor int                     // the next index sweep examines
}

type sweptSlot[V any] struct {
	v   V
	pos int
}

func (s *sweptMap[V]) get(key string) (V, bool) {
	if sl, ok := s.m[key]; ok {
		return sl.v, true
	}
	var zero V
	return zero, false
}

// set inserts or replaces key's value.
func (s *sweptMap[V]) set(key string, v V) {
	if s.m == nil {
		s.m = map[string]sweptSlot[V]{}
	}
	if sl, ok := s.m[key]; ok {
		s.m[key] = sweptSlot[V]{v: v, pos: sl.pos}
		return
	}
	s.m[key] = sweptSlot[V]{v: v, pos: len(s.keys)}
	s.keys = append(s.keys, key)
}

// sweep examines up to n keys from the cursor on and deletes those stale reports as stale.
func (s *sweptMap[V]) sweep(n int, stale func(key string, v V) bool) {
	for ; n > 0 && len(s.keys) > 0; n-- {
		if s.cursor >= len(s.keys) {
			s.cursor = 0
		}
		key := s.keys[s.cursor]
		if stale(key, s.m[key].v) {
			s.remove(key) // the last key takes this place, and is examined next
		} else {
			s.cursor++
		}
	}
}

// del deletes key if it is there.
func (s *sweptMap[V]) del(key string) {
	if _, ok := s.m[key]; ok {
		s.remove(key)
	}
}

// remove swap-removes a key that is there: the last key takes its place in keys.
func (s *sweptMap[V]) remove(key string) {
	pos, last := s.m[key].pos, len(s.keys)-1
	moved := s.keys[last]
	s.keys[pos] = moved
	sl := s.m[moved]
	sl.pos = pos
	s.m[moved] = sl
	s.keys[last] = "" // the backing array must not keep a dropped key alive
	s.keys = s.keys[:last]
	delete(s.m, key)
}

func (s *sweptMap[V]) len() int { return len(s.keys) }
