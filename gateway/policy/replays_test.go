package policy

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/policy/redistest"
)

// replaysHeld reports which of tenant's keys ReplayKey(tenant, i), for i < n, are held.
func replaysHeld(r *MemoryReplays, tenant string, n int) (held []int) {
	for i := range n {
		if _, ok, _ := r.Get(context.Background(), ReplayKey(tenant, fmt.Sprint(i))); ok {
			held = append(held, i)
		}
	}
	return held
}

func putReplays(t *testing.T, r *MemoryReplays, tenant string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := r.Put(context.Background(), ReplayKey(tenant, fmt.Sprint(i)), &Replay{Status: 200, Body: []byte(`{"id":"x"}`)}, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
}

func span(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// TestMemoryReplaysAreBoundedPerTenant: idempotency records live 24 h, so the memory state holds
// at most max_idempotency_records of them. A tenant sending under ever new keys past the bound
// evicts its own oldest records, never those of a tenant holding fewer; two tenants over it end
// with half each, and each loses its oldest.
func TestMemoryReplaysAreBoundedPerTenant(t *testing.T) {
	clk := newClock()
	r := NewMemoryReplays(clk.now, 100)
	var evicted []string
	r.OnEvict = func(tenant string) { evicted = append(evicted, tenant) }
	putReplays(t, r, "quiet", 0, 10)
	putReplays(t, r, "flood", 0, 1000)
	if got := r.Len(); got != 100 {
		t.Errorf("%d records held, want the bound of 100", got)
	}
	if diff := cmp.Diff(span(0, 10), replaysHeld(r, "quiet", 10)); diff != "" {
		t.Errorf("the quiet tenant lost records to the flood (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(span(910, 1000), replaysHeld(r, "flood", 1000)); diff != "" {
		t.Errorf("the flood should keep its newest 90 (-want +got):\n%s", diff)
	}
	if len(evicted) != 910 || evicted[0] != "flood" || evicted[909] != "flood" {
		t.Errorf("%d evictions heard (%v...), want 910 of the flood's", len(evicted), evicted[:min(3, len(evicted))])
	}

	// A tenant that held more than half before the flood keeps half, its newest.
	r = NewMemoryReplays(clk.now, 100)
	putReplays(t, r, "busy", 0, 70)
	putReplays(t, r, "flood", 0, 1000)
	if diff := cmp.Diff(span(20, 70), replaysHeld(r, "busy", 70)); diff != "" {
		t.Errorf("the busy tenant should keep its newest 50 (-want +got):\n%s", diff)
	}
	if got := len(replaysHeld(r, "flood", 1000)); got != 50 {
		t.Errorf("the flood holds %d, want 50", got)
	}
}

// TestMemoryReplaysDropExpiredBeforeEvicting: at the bound, records past their ttl go before any
// live one is evicted, also those of a tenant that sends no more; and the first answer under a key
// stays until it expires, as in Redis.
func TestMemoryReplaysDropExpiredBeforeEvicting(t *testing.T) {
	clk := newClock()
	r := NewMemoryReplays(clk.now, 100)
	evictions := 0
	r.OnEvict = func(string) { evictions++ }
	ctx := context.Background()
	for i := range 60 {
		r.Put(ctx, ReplayKey("gone", fmt.Sprint(i)), &Replay{Status: 200}, time.Minute)
	}
	clk.add(2 * time.Minute)
	putReplays(t, r, "live", 0, 100)
	if evictions != 0 {
		t.Errorf("%d live records evicted while expired ones were held", evictions)
	}
	if diff := cmp.Diff(span(0, 100), replaysHeld(r, "live", 100)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := r.Len(); got != 100 {
		t.Errorf("%d records held, want 100", got)
	}

	k := ReplayKey("live", "first")
	r.Put(ctx, k, &Replay{Status: 200, Body: []byte("first")}, time.Minute)
	r.Put(ctx, k, &Replay{Status: 409, Body: []byte("second")}, time.Minute)
	if got, ok, _ := r.Get(ctx, k); !ok || string(got.Body) != "first" {
		t.Errorf("the first answer did not stay: %+v %v", got, ok)
	}
	clk.add(2 * time.Minute)
	r.Put(ctx, k, &Replay{Status: 200, Body: []byte("after")}, time.Minute)
	if got, ok, _ := r.Get(ctx, k); !ok || string(got.Body) != "after" {
		t.Errorf("an expired answer was not replaced: %+v %v", got, ok)
	}
}

// TestAKeyUsedAgainAfterItExpiredCountsOnce: a tenant that uses one Idempotency-Key again each
// time its record has expired holds the new record (the expired one's place in the queues is
// skipped, and must not take the new record with it), and is counted as holding one at the bound:
// another tenant's flood then evicts its own records, not that one. (Counted once per use, the
// key's tenant looked like the one holding the most and lost its record to the flood.)
func TestAKeyUsedAgainAfterItExpiredCountsOnce(t *testing.T) {
	clk := newClock()
	r := NewMemoryReplays(clk.now, 10)
	ctx := context.Background()
	k := ReplayKey("steady", "k")
	for i := range 20 {
		r.Put(ctx, k, &Replay{Status: 200}, time.Minute)
		if _, ok, _ := r.Get(ctx, k); !ok {
			t.Fatalf("use %d: the record put is not held", i+1)
		}
		clk.add(2 * time.Minute)
	}
	r.Put(ctx, k, &Replay{Status: 200}, time.Hour)
	putReplays(t, r, "flood", 0, 100)
	if _, ok, _ := r.Get(ctx, k); !ok {
		t.Error("the flood evicted the other tenant's one record")
	}
	if got := r.Len(); got != 10 {
		t.Errorf("%d records held, want the bound of 10", got)
	}
}

func TestReplayKeyNamesItsTenant(t *testing.T) {
	for key, want := range map[string]string{
		ReplayKey("acme", "k|with|bars"): "acme",
		ReplayKey("acme", ""):            "acme",
		"no-bar":                         "",
	} {
		if got := kindTenant(key); got != want {
			t.Errorf("kindTenant(%q) = %q, want %q", key, got, want)
		}
	}
}

// BenchmarkReplaysAtTheBound: a tenant putting records under ever new keys at
// state.max_idempotency_records' default, every put evicting one, beside records of 10 or of
// 10,000 other tenants.
func BenchmarkReplaysAtTheBound(b *testing.B) {
	for _, tenants := range []int{10, 10000} {
		b.Run(fmt.Sprint("tenants_", tenants), func(b *testing.B) {
			r := NewMemoryReplays(nil, 100000)
			ctx := context.Background()
			rep := &Replay{Status: 200}
			for i := range 100000 {
				r.Put(ctx, ReplayKey(fmt.Sprint("tenant-", i%tenants), fmt.Sprint(i)), rep, 24*time.Hour)
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				r.Put(ctx, ReplayKey("flood", strconv.Itoa(i)), rep, 24*time.Hour)
			}
		})
	}
}

// BenchmarkRedisReplayPut: one Put to Redis without a bound on the tenant's records, within it,
// and at it (each Put evicting the tenant's oldest record): the bound's index costs a round trip.
func BenchmarkRedisReplayPut(b *testing.B) {
	for _, c := range []struct {
		name  string
		bound int
	}{{"unbounded", 0}, {"within", 1 << 30}, {"at_bound", 1000}} {
		b.Run(c.name, func(b *testing.B) {
			r := &Redis{Client: redistest.Start(b), Prefix: redistest.Prefix(b), MaxTenantReplays: c.bound}
			ctx := context.Background()
			rep := &Replay{Status: 200, Body: []byte(`{"id":"msg_019b2c6e8f7a7c3e9d1a2b3c4d5e6f70","status":"sent"}`)}
			for i := range 2000 {
				r.Put(ctx, ReplayKey("flood", "warm-"+strconv.Itoa(i)), rep, time.Hour)
			}
			for i := 0; b.Loop(); i++ {
				if err := r.Put(ctx, ReplayKey("flood", strconv.Itoa(i)), rep, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestKeysNameTheirTenant: the bounds of the memory state count each key against the tenant it
// names, whatever the value after it holds.
func TestKeysNameTheirTenant(t *testing.T) {
	l := config.Limit{N: 5, Per: time.Hour}
	for i, c := range [][2]string{
		{limitTenant(LimitKey("r", l, "acme", "+1|415")), "acme"},
		{limitTenant(LimitKey("p", l, "", "infobip")), ""},
		{limitTenant(LimitKey("pump", l, "acme", "1-41")), "acme"},
		{kindTenant(ResendKey("acme", "digest|with|bars")), "acme"},
		{kindTenant(ReplayKey("acme", "idempotency|key|x")), "acme"},
	} {
		if c[0] != c[1] {
			t.Errorf("key %d names tenant %q, want %q", i, c[0], c[1])
		}
	}
}
