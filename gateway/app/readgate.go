package app

import (
	"context"
	"slices"
	"sync"
)

// readGate admits the calls that read the message log on a tenant's behalf (beginRead): at most
// per of one tenant's at once, and at most size of all tenants' together, size being the
// connections of the pool those reads share (store.ReadConns; 0: no bound but per). When a read
// ends, its place goes to the waiting call whose tenant holds the fewest places, the earliest of
// those first, and never to a call whose tenant holds per already.
//
// Without it, the pool's own queue decided: first come on PostgreSQL (pgx), any waiter on SQLite
// (database/sql). With the pool full of slow tenants' reads (each up to server.request_timeout),
// their further reads waiting for a connection, up to per of each tenant, went before a quick
// tenant's read or as often: its wait grew with every one of them. Here it grows with the tenants
// ahead of it that hold no more places than its own: a tenant with no read running goes before
// the second read of any other (TestATenantWithNoReadRunningGoesFirst).
type readGate struct {
	size func() int
	per  int

	mu     sync.Mutex
	held   map[string]int           // places held, by tenant; none at 0
	queues map[string][]*readWaiter // each tenant's waiting calls, in arrival order; none empty
	seq    uint64
}

// readWaiter is a call waiting for a place; seq orders the calls of different tenants.
type readWaiter struct {
	tenant  string
	seq     uint64
	granted chan struct{} // closed when the waiter holds a place
}

func newReadGate(per int, size func() int) *readGate {
	return &readGate{size: size, per: per, held: map[string]int{}, queues: map[string][]*readWaiter{}}
}

// readWaitError says why a call got no place within its budget: its own tenant held per places
// when the wait ended (own), or every place of the pool was held.
type readWaitError struct{ own bool }

func (e *readWaitError) Error() string {
	if e.own {
		return "this tenant's reads of the message log held all of its places"
	}
	return "every connection of the message log's read pool stayed busy"
}

// acquire waits, within ctx, for a place for one of tenant's reads; release gives it back.
func (g *readGate) acquire(ctx context.Context, tenant string) error {
	g.mu.Lock()
	g.seq++
	w := &readWaiter{tenant: tenant, seq: g.seq, granted: make(chan struct{})}
	g.queues[tenant] = append(g.queues[tenant], w)
	g.grant()
	g.mu.Unlock()
	select {
	case <-w.granted:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-w.granted: // granted as the wait ended: the place is the caller's
		return nil
	default:
	}
	q := g.queues[tenant]
	if i := slices.Index(q, w); i >= 0 {
		q = slices.Delete(q, i, i+1)
	}
	if len(q) == 0 {
		delete(g.queues, tenant)
	} else {
		g.queues[tenant] = q
	}
	return &readWaitError{own: g.held[tenant] >= g.per}
}

// release gives back a place acquire gave tenant.
func (g *readGate) release(tenant string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held[tenant]--; g.held[tenant] <= 0 {
		delete(g.held, tenant)
	}
	g.grant()
}

// grant gives the free places to the waiters, fewest held first (with g.mu held). It looks at
// each waiting tenant's first call only: a tenant keeping many calls waiting costs the others
// nothing more than one.
func (g *readGate) grant() {
	for {
		if size := g.size(); size > 0 && g.inUse() >= size {
			return
		}
		best, found := "", false
		for tn, q := range g.queues {
			n := g.held[tn]
			if n >= g.per {
				continue
			}
			if !found || n < g.held[best] || (n == g.held[best] && q[0].seq < g.queues[best][0].seq) {
				best, found = tn, true
			}
		}
		if !found {
			return
		}
		q := g.queues[best]
		w := q[0]
		if len(q) == 1 {
			delete(g.queues, best)
		} else {
			g.queues[best] = q[1:]
		}
		g.held[best]++
		close(w.granted)
	}
}

// inUse is how many places are held, all tenants' together (with g.mu held).
func (g *readGate) inUse() int {
	n := 0
	for _, k := range g.held {
		n += k
	}
	return n
}

// waiting returns how many of tenant's calls wait for a place (tests).
func (g *readGate) waiting(tenant string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queues[tenant])
}
