package policy

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestRankingFindsATenantHoldingTheMost: across random counts up and down, top is always a tenant
// holding the most, each tenant sits where its count says, and no empty group is kept.
func TestRankingFindsATenantHoldingTheMost(t *testing.T) {
	var r ranking
	tenants := make([]*ranked, 30)
	for i := range tenants {
		tenants[i] = &ranked{name: fmt.Sprint("t", i)}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for step := range 50000 {
		// Mostly up at first, then mostly down, so that counts climb, tie and empty out.
		up := rng.IntN(100) < 70
		if step > 30000 {
			up = rng.IntN(100) < 30
		}
		x := tenants[rng.IntN(len(tenants))]
		if step%7 == 0 {
			x = tenants[0] // one tenant far ahead for a while
		}
		switch {
		case up:
			r.inc(x)
		case x.n > 0:
			r.dec(x)
		}
		most := 0
		for _, y := range tenants {
			most = max(most, y.n)
		}
		top := r.top()
		if most == 0 {
			if top != nil {
				t.Fatalf("step %d: nobody holds anything, top is %s with %d", step, top.name, top.n)
			}
			continue
		}
		if top == nil || top.n != most {
			t.Fatalf("step %d: top %+v, the most held is %d", step, top, most)
		}
	}
	for _, y := range tenants {
		if y.n > 0 && r.byCount[y.n][y.pos] != y {
			t.Errorf("%s holds %d but is not at its place in that group", y.name, y.n)
		}
	}
	for n, g := range r.byCount {
		if len(g) == 0 {
			t.Errorf("an empty group for %d kept", n)
		}
	}
}

// TestMemoryReplaysQueuesStayBounded: records leave by expiring, by being put again and by
// eviction, through either queue; what the queues hold, the room of the items taken out included,
// stays within a few times the records held (the tenants' queues once kept that room for good).
func TestMemoryReplaysQueuesStayBounded(t *testing.T) {
	clk := newClock()
	r := NewMemoryReplays(clk.now, 50)
	for i := range 20000 {
		tenant := []string{"a", "b", "c"}[i%3]
		if i%5 == 0 {
			tenant = "flood"
		}
		r.Put(t.Context(), ReplayKey(tenant, fmt.Sprint(i%700)), &Replay{Status: 200}, 40*time.Second)
		clk.add(time.Second)
	}
	// Items taken from a queue's front leave room behind them until it is reclaimed: count it.
	stored := len(r.all.items)
	for _, q := range r.tenants {
		stored += len(q.items)
	}
	if held := r.Len(); stored > 8*held+80 {
		t.Errorf("the queues hold %d items for %d records", stored, held)
	}
}
