package app

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// acquireLater starts acquire for tenant in the background and returns where its outcome arrives.
func acquireLater(ctx context.Context, g *readGate, tenant string) chan error {
	c := make(chan error, 1)
	go func() { c <- g.acquire(ctx, tenant) }()
	return c
}

// queued waits until n calls wait in g.
func queued(t *testing.T, g *readGate, n int) {
	t.Helper()
	waitUntil(t, "calls waiting in the read gate", func() bool {
		return totalWaiting(g) == n
	})
}

// placesUsed is how many places of g are held.
func placesUsed(g *readGate) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inUse()
}

// totalWaiting is how many calls of all tenants wait in g.
func totalWaiting(g *readGate) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, q := range g.queues {
		n += len(q)
	}
	return n
}

func mustAcquire(t *testing.T, g *readGate, tenant string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := g.acquire(ctx, tenant); err != nil {
		t.Fatalf("a place for %s with room in the gate: %v", tenant, err)
	}
}

func granted(c chan error) bool {
	select {
	case err := <-c:
		c <- err
		return err == nil
	default:
		return false
	}
}

// TestTheReadGateServesTheTenantHoldingFewestFirst: two tenants reading slowly without pause hold
// every place of the pool; each keeps more calls waiting. A third tenant's read, arriving after
// them, gets the first place freed, before the calls of the tenants that already hold places,
// and a tenant never holds more than its own bound.
func TestTheReadGateServesTheTenantHoldingFewestFirst(t *testing.T) {
	t.Parallel()
	// The tenants waiting are looked at in map order, which varies: each round is a new draw.
	for range 20 {
		g := newReadGate(2, func() int { return 4 })
		ctx := context.Background()
		for _, tn := range []string{"a", "a", "b", "b"} {
			mustAcquire(t, g, tn)
		}
		a3 := acquireLater(ctx, g, "a")
		queued(t, g, 1)
		b3 := acquireLater(ctx, g, "b")
		queued(t, g, 2)
		c1 := acquireLater(ctx, g, "c")
		queued(t, g, 3)

		g.release("a") // a holds 1 now: its waiting call may have the place, but c holds none
		waitUntil(t, "c's read given the freed place", func() bool { return granted(c1) })
		if granted(a3) || granted(b3) {
			t.Fatal("a place went to a tenant holding places while one holding none waited")
		}

		g.release("b") // b holds 1, a holds 1 and waited first: a's call
		waitUntil(t, "a's waiting read given the freed place", func() bool { return granted(a3) })
		if granted(b3) {
			t.Fatal("two places for one freed")
		}
		g.release("c")
		waitUntil(t, "b's waiting read given the freed place", func() bool { return granted(b3) })
		for _, tn := range []string{"a", "a", "b", "b"} {
			g.release(tn)
		}
		if placesUsed(g) != 0 || len(g.held) != 0 || totalWaiting(g) != 0 {
			t.Errorf("all places given back: used %d, held %v, %d waiting", placesUsed(g), g.held, totalWaiting(g))
		}
	}
}

// TestTheReadGateSaysWhoseReadsHeldThePlaces: a call that gets no place within its budget is told
// whether its own tenant's reads held its places (the caller is refused as rate limited) or
// other tenants' held the pool; a pool without a bound (0) bounds only each tenant.
func TestTheReadGateSaysWhoseReadsHeldThePlaces(t *testing.T) {
	t.Parallel()
	size := 2
	g := newReadGate(2, func() int { return size })
	mustAcquire(t, g, "a")
	mustAcquire(t, g, "a")
	for _, c := range []struct {
		tenant string
		own    bool
	}{{"a", true}, {"b", false}} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err := g.acquire(ctx, c.tenant)
		cancel()
		var we *readWaitError
		if !errors.As(err, &we) || we.own != c.own {
			t.Errorf("%s's call with the places held: %v, want own=%v", c.tenant, err, c.own)
		}
	}
	if totalWaiting(g) != 0 || placesUsed(g) != 2 {
		t.Errorf("the calls that gave up left %d waiting and %d places used", totalWaiting(g), placesUsed(g))
	}
	size = 0
	mustAcquire(t, g, "b")
	mustAcquire(t, g, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := g.acquire(ctx, "b"); err == nil {
		t.Error("a tenant's third read with no bound on the pool: admitted")
	}
}

// TestTheReadGateLosesNoPlace: calls giving up while places are given back, many times over,
// leave every place free at the end: a place granted as its call gave up is the call's, and is
// given back.
func TestTheReadGateLosesNoPlace(t *testing.T) {
	t.Parallel()
	g := newReadGate(2, func() int { return 3 })
	var wg sync.WaitGroup
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tn := []string{"a", "b", "c", "d"}[i%4]
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%7)*100*time.Microsecond)
			defer cancel()
			if g.acquire(ctx, tn) == nil {
				time.Sleep(time.Duration(i%3) * 50 * time.Microsecond)
				g.release(tn)
			}
		}()
	}
	wg.Wait()
	if placesUsed(g) != 0 || len(g.held) != 0 || totalWaiting(g) != 0 {
		t.Errorf("after every call ended: used %d, held %v, %d waiting", placesUsed(g), g.held, totalWaiting(g))
	}
}

// A call whose budget ran out just as its place was granted holds the place: it reads, rather
// than being refused with a place free. Here the place is free at once and the budget already
// spent, so both happen together, every time.
func TestAPlaceGrantedAsTheBudgetEndsIsTheCalls(t *testing.T) {
	t.Parallel()
	g := newReadGate(2, func() int { return 3 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 100 {
		if err := g.acquire(ctx, "a"); err != nil {
			t.Fatalf("call %d, with every place free: %v", i, err)
		}
		g.release("a")
	}
	if placesUsed(g) != 0 || totalWaiting(g) != 0 {
		t.Errorf("used %d, %d waiting", placesUsed(g), totalWaiting(g))
	}
}
