package policy

// sweptMap is a map whose stale entries are dropped a few at a time: each sweep call examines
// the next few keys of a round-robin over all of them. It replaces a full scan of the map every
// N calls, which held the mutex (and so every send behind it) for as long as the map was big: with
// a per-recipient limit of an hour and distinct recipients, that is every recipient of the last
// hour. Callers hold their own lock around every method.
//
// If each write is followed by sweep(2, ...), a key that went stale is examined within len/2
// writes, so the map holds at most about twice the keys that are live (TestSweptMapStaysBounded).
//
// With owner set, the map also keeps each tenant's keys apart and counts them (ranking), so that
// evict can find the tenant holding the most and take a key of it without looking at anyone
// else's: a bound on the whole map then costs a tenant only its own keys, and an eviction the
// same time with 10 tenants as with 10,000.
type sweptMap[V any] struct {
	m      map[string]sweptSlot[V] // by value: no allocation per key beyond the map's own
	keys   []string                // every key, in no particular order; slot.pos is its index
	cursor int                     // the next index sweep examines

	owner   func(key string) string // the tenant a key is kept for; nil: tenants are not kept
	tenants map[string]*ownedKeys   // each tenant's keys (owner set)
	rank    ranking                 // how many keys each tenant holds (owner set)
}

type sweptSlot[V any] struct {
	v    V
	pos  int // index in keys
	tpos int // index in its tenant's ownedKeys.keys (owner set)
}

// ownedKeys are one tenant's keys, in no particular order, and where evict looks next.
type ownedKeys struct {
	keys []string
	at   int
	ranked
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
		sl.v = v
		s.m[key] = sl
		return
	}
	sl := sweptSlot[V]{v: v, pos: len(s.keys)}
	s.keys = append(s.keys, key)
	if s.owner != nil {
		if s.tenants == nil {
			s.tenants = map[string]*ownedKeys{}
		}
		o := s.owner(key)
		t := s.tenants[o]
		if t == nil {
			t = &ownedKeys{ranked: ranked{name: o}}
			s.tenants[o] = t
		}
		sl.tpos = len(t.keys)
		t.keys = append(t.keys, key)
		s.rank.inc(&t.ranked)
	}
	s.m[key] = sl
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

// remove swap-removes a key that is there: the last key takes its place in keys (and the last of
// its tenant's keys takes its place in those).
func (s *sweptMap[V]) remove(key string) {
	sl := s.m[key]
	s.keys = swapRemove(s.keys, sl.pos, func(k string) { m := s.m[k]; m.pos = sl.pos; s.m[k] = m })
	if s.owner != nil {
		o := s.owner(key)
		t := s.tenants[o]
		t.keys = swapRemove(t.keys, sl.tpos, func(k string) { m := s.m[k]; m.tpos = sl.tpos; s.m[k] = m })
		if s.rank.dec(&t.ranked); len(t.keys) == 0 {
			delete(s.tenants, o)
		}
	}
	delete(s.m, key)
}

// swapRemove removes keys[i]: the last key takes its place, and moved is told which key that is
// (the removed key itself when it was the last). The element dropped is cleared, so that the
// backing array keeps no dropped key alive.
func swapRemove(keys []string, i int, moved func(key string)) []string {
	last := len(keys) - 1
	keys[i] = keys[last]
	moved(keys[i])
	keys[last] = ""
	return keys[:last]
}

// evict removes one key of a tenant holding the most (owner set; of several, the one that
// reached that count last), preferring one that stale reports as stale among the next few it looks
// at, and returns that tenant and whether the key was live (lost before its time); ok is false
// when there is nothing to remove. keep is never removed (the key just set). It looks only at that
// tenant's keys, from where its last eviction stopped, and finds the tenant without looking at
// the others (ranking).
func (s *sweptMap[V]) evict(keep string, stale func(key string, v V) bool) (tenant string, early, ok bool) {
	top := s.rank.top()
	if top == nil {
		return "", false, false
	}
	tenant = top.name
	most := s.tenants[tenant]
	victim := ""
	for i := range min(len(most.keys), evictLookahead) {
		key := most.keys[(most.at+i)%len(most.keys)]
		if key == keep {
			continue
		}
		if stale(key, s.m[key].v) {
			victim, early = key, false
			break
		}
		if victim == "" {
			victim, early = key, true
		}
	}
	if victim == "" {
		return "", false, false // the tenant holds only keep
	}
	most.at = s.m[victim].tpos + 1 // its place takes the tenant's newest key: look past it next
	s.remove(victim)
	return tenant, early, true
}

// evictLookahead is how many of a tenant's keys evict looks at for a stale one.
const evictLookahead = 16

// bound evicts keys (evict) while the map holds more than max (0: no bound), keep aside, and
// returns the tenant that lost a live key, if one did (lost).
func (s *sweptMap[V]) bound(max int, keep string, stale func(key string, v V) bool) (tenant string, lost bool) {
	for max > 0 && len(s.keys) > max {
		t, early, ok := s.evict(keep, stale)
		if !ok {
			break
		}
		if early {
			tenant, lost = t, true
		}
	}
	return tenant, lost
}

// tell calls onEvict, when set, with the tenant that lost a live key (bound), outside the lock.
func tell(onEvict func(tenant string), tenant string, lost bool) {
	if lost && onEvict != nil {
		onEvict(tenant)
	}
}

func (s *sweptMap[V]) len() int { return len(s.keys) }
