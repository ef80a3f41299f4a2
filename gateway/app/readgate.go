package app

import (
	"context"
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

	mu      sync.Mutex
	used    int
	held    map[string]int
	waiting []*readWaiter // in arrival order
}

type readWaiter struct {
	tenant  string
	granted chan struct{} // closed when the waiter holds a place
}

func newReadGate(per int, size func() int) *readGate {
	return &readGate{size: size, per: per, held: map[string]int{}}
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
	w := &readWaiter{tenant: tenant, granted: make(chan struct{})}
	g.mu.Lock()
	g.waiting = append(g.waiting, w)
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
	for i, o := range g.waiting {
		if o == w {
			g.waiting = append(g.waiting[:i], g.waiting[i+1:]...)
			break
		}
	}
	return &readWaitError{own: g.held[tenant] >= g.per}
}

// release gives back a place acquire gave tenant.
func (g *readGate) release(tenant string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.used--
	if g.held[tenant]--; g.held[tenant] <= 0 {
		delete(g.held, tenant)
	}
	g.grant()
}

// grant gives the free places to the waiters, fewest held first (with g.mu held).
func (g *readGate) grant() {
	for {
		if size := g.size(); size > 0 && g.used >= size {
			return
		}
		best := -1
		for i, w := range g.waiting {
			n := g.held[w.tenant]
			if n < g.per && (best < 0 || n < g.held[g.waiting[best].tenant]) {
				best = i
			}
		}
		if best < 0 {
			return
		}
		w := g.waiting[best]
		g.waiting = append(g.waiting[:best], g.waiting[best+1:]...)
		g.used++
		g.held[w.tenant]++
		close(w.granted)
	}
}

// waitingOf returns tenant's calls waiting for a place (tests).
func (g *readGate) waitingOf(tenant string) []*readWaiter {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*readWaiter
	for _, w := range g.waiting {
		if w.tenant == tenant {
			out = append(out, w)
		}
	}
	return out
}
