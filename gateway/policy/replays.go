package policy

import (
	"context"
	"strings"
	"sync"
	"time"
)

// ReplayKey is the key of tenant's first answer to an Idempotency-Key: keys are scoped to the
// tenant, and MemoryReplays bounds each tenant's share by the name between the first two '|'
// (tenant names cannot hold one).
func ReplayKey(tenant, idempotencyKey string) string {
	return "idem|" + tenant + "|" + idempotencyKey
}

// kindTenant is the tenant a key "kind|tenant|..." names (ReplayKey, ResendKey; "" for a key
// without a '|').
func kindTenant(key string) string { return keyField(key, 1) }

// keyField is the field at index i of a key whose fields are separated by '|' ("" when it has
// fewer): where each kind of key names its tenant.
func keyField(key string, i int) string {
	for range i {
		_, key, _ = strings.Cut(key, "|")
	}
	field, _, _ := strings.Cut(key, "|")
	return field
}

// MemoryReplays is Replays in this process, holding at most max records (expired ones go first).
// Records live for idempotency.ttl (24 h), so without a bound the heap would hold every answer of
// the last day: about 430 bytes a send, 1.8 GB a day for a tenant at 50 sends a second. When a new
// record would pass the bound, the tenant holding the most records loses its oldest one, so that
// a tenant sending under ever new keys evicts its own records, never those of a tenant holding
// fewer. The bound stands in for Redis's maxmemory; OnEvict hears of each eviction. Finding that
// tenant takes the same time however many tenants hold records (ranking), and a record past its
// time, the oldest of all, goes before any live one.
type MemoryReplays struct {
	now func() time.Time
	max int
	// OnEvict, when set, is called (outside the store's lock) with the tenant of each record
	// evicted before its time.
	OnEvict func(tenant string)

	mu      sync.Mutex
	records map[string]*replayRecord
	tenants map[string]*replayQueue
	rank    ranking     // how many records each tenant holds
	all     replayQueue // every record in the order put: with one ttl for all, the first to expire first
}

type replayRecord struct {
	r       *Replay
	expires time.Time
}

// replayQueue is records in the order they were put (one tenant's, or all), the oldest first. An
// item whose key was put again since, or whose record was removed through the other queue, is
// skipped when it comes up.
type replayQueue struct {
	items  []replayItem
	head   int
	ranked // a tenant's: its name and how many records it holds in the store
}

type replayItem struct {
	key string
	rec *replayRecord
}

// NewMemoryReplays returns an empty store of at most max records (state.max_idempotency_records;
// max <= 0: no bound); now nil means time.Now.
func NewMemoryReplays(now func() time.Time, max int) *MemoryReplays {
	if now == nil {
		now = time.Now
	}
	return &MemoryReplays{now: now, max: max, records: map[string]*replayRecord{}, tenants: map[string]*replayQueue{}}
}

// Get implements Replays.
func (m *MemoryReplays) Get(_ context.Context, key string) (*Replay, bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.records[key]
	if !ok || !now.Before(rec.expires) {
		return nil, false, nil
	}
	return rec.r, true, nil
}

// Put implements Replays. As in Redis, the first answer stored under a key stays until it
// expires.
func (m *MemoryReplays) Put(_ context.Context, key string, r *Replay, ttl time.Duration) error {
	now := m.now()
	var evicted []string
	m.mu.Lock()
	tenant := kindTenant(key)
	q := m.tenants[tenant]
	if q == nil {
		q = &replayQueue{ranked: ranked{name: tenant}}
		m.tenants[tenant] = q
	}
	if old, ok := m.records[key]; ok {
		if now.Before(old.expires) {
			m.mu.Unlock()
			return nil
		}
		m.rank.dec(&q.ranked) // expired: its items are skipped when they come up (records[key] is the new one)
	}
	rec := &replayRecord{r: r, expires: now.Add(ttl)}
	m.records[key] = rec
	q.items = append(q.items, replayItem{key: key, rec: rec})
	m.all.items = append(m.all.items, replayItem{key: key, rec: rec})
	m.rank.inc(&q.ranked)
	// Expired records go a few at each put, the oldest of all first, and this tenant's items of
	// records gone are dropped (they answer no Get meanwhile, and the bound holds them too).
	m.dropExpired(&m.all, now, 4)
	m.dropExpired(q, now, 4)
	for m.max > 0 && len(m.records) > m.max {
		tenant, removed := m.makeRoom()
		if !removed {
			break // no record left to remove (cannot happen while records and queues agree)
		}
		evicted = append(evicted, tenant)
	}
	m.mu.Unlock()
	if m.OnEvict != nil {
		for _, t := range evicted {
			m.OnEvict(t)
		}
	}
	return nil
}

// Len is how many records the store holds (expired ones not yet dropped included).
func (m *MemoryReplays) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.records)
}

// dropExpired removes up to n of q's oldest records while they have expired (a few a put is
// enough: each put adds one).
func (m *MemoryReplays) dropExpired(q *replayQueue, now time.Time, n int) {
	for range n {
		it, ok := q.front(m.records)
		if !ok || now.Before(it.rec.expires) {
			return
		}
		m.remove(q, it)
	}
}

// makeRoom evicts the oldest record of a tenant holding the most, before its time, and returns
// that tenant. It looks at no other tenant. Put has just dropped the expired records at the front
// of all (the oldest, and with one ttl the first to expire): had it found one, the store would not
// be over its bound.
func (m *MemoryReplays) makeRoom() (tenant string, removed bool) {
	top := m.rank.top()
	if top == nil {
		return "", false
	}
	q := m.tenants[top.name]
	it, ok := q.front(m.records)
	if !ok {
		return "", false
	}
	m.remove(q, it)
	return top.name, true
}

// remove deletes the record of q's front item it (front found it live), q being its tenant's
// queue or all: the tenant counts one record fewer, and the record's item in the other queue is
// skipped when it comes up.
func (m *MemoryReplays) remove(q *replayQueue, it replayItem) {
	delete(m.records, it.key)
	q.items[q.head] = replayItem{}
	q.head++
	q.compact()
	m.rank.dec(&m.tenants[kindTenant(it.key)].ranked)
}

// front is the oldest live item of q; items that are no longer the record of their key are
// dropped on the way, and their room reclaimed (compact) whether or not a live item follows them:
// a tenant's queue loses most of its items this way (records that expire or are evicted through
// all, keys put again), so reclaiming it only once the queue is empty would let the queue grow for
// as long as its tenant holds a live record.
func (q *replayQueue) front(records map[string]*replayRecord) (replayItem, bool) {
	defer q.compact()
	for q.head < len(q.items) {
		it := q.items[q.head]
		if records[it.key] == it.rec {
			return it, true
		}
		q.items[q.head] = replayItem{}
		q.head++
	}
	return replayItem{}, false
}

// compact reclaims the space of the items taken from the front once they are half the queue.
func (q *replayQueue) compact() {
	if q.head > 0 && q.head >= len(q.items)/2 {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
}
