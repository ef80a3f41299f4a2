package app

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// stateMemoryEvery is how often a replica reads the shared state store's memory figures.
const stateMemoryEvery = 30 * time.Second

// every calls f every d until stop.
func every(stop <-chan struct{}, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		f()
	}
}

// readStateMemory reads the shared Redis's memory figures into smsgate_state_memory_used_bytes,
// smsgate_state_memory_max_bytes and smsgate_state_evicted_keys (Start, then every
// stateMemoryEvery). Every key smsgate writes expires but the drains and the records handed over (handoff.go), so what Redis holds is
// bounded by the tenants' limits; these show how close it is to its maxmemory, and whether it
// already lost keys before their time (docs/operations.md, "Sizing Redis"). It reads INFO memory
// and INFO stats (two calls: Redis before 7 takes one section per call); on a Redis Cluster, of
// every primary: the memory figures are the fullest primary's (the first to evict; one without
// maxmemory before any, fuller), the evicted keys the sum. A failure leaves the figures as they were: smsgate_state_errors_total and its
// alert already cover a store that does not answer.
func (a *App) readStateMemory(client redis.UniversalClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var (
		mu      sync.Mutex
		fullest *stateMemory
		evicted float64
	)
	read := func(ctx context.Context, c redis.UniversalClient) error {
		m, err := readNodeMemory(ctx, c)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		evicted += m.evicted
		if fullest == nil || m.fuller(fullest) {
			fullest = m
		}
		return nil
	}
	var err error
	if cc, ok := client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return read(ctx, c) })
	} else {
		err = read(ctx, client)
	}
	if err != nil {
		a.log.Debug("state store memory could not be read", "err", err.Error())
		return
	}
	m := a.metrics
	m.StateMemoryUsed.Set(fullest.used)
	m.StateMemoryMax.Reset() // the policy can change under us (CONFIG SET)
	m.StateMemoryMax.WithLabelValues(fullest.policy).Set(fullest.max)
	m.StateEvictedKeys.Set(evicted)
}

// stateMemory is one Redis node's memory figures.
type stateMemory struct {
	used, max, evicted float64
	policy             string
}

// fuller reports whether m is to be reported before o: a node without maxmemory first (it grows
// until its host runs out, and SmsgateStateStoreUnbounded must hear of it even when the other
// primaries have one), the one using more of those; else the one nearer its maxmemory.
func (m *stateMemory) fuller(o *stateMemory) bool {
	switch {
	case m.max > 0 && o.max > 0:
		return m.used/m.max > o.used/o.max
	case m.max == 0 && o.max == 0:
		return m.used > o.used
	}
	return m.max == 0
}

// readNodeMemory reads one node's INFO memory and INFO stats.
func readNodeMemory(ctx context.Context, c redis.UniversalClient) (*stateMemory, error) {
	mem, err := c.InfoMap(ctx, "memory").Result()
	if err != nil {
		return nil, err
	}
	stats, err := c.InfoMap(ctx, "stats").Result()
	if err != nil {
		return nil, err
	}
	num := func(v string) float64 { f, _ := strconv.ParseFloat(v, 64); return f }
	return &stateMemory{used: num(mem["Memory"]["used_memory"]), max: num(mem["Memory"]["maxmemory"]),
		policy: mem["Memory"]["maxmemory_policy"], evicted: num(stats["Stats"]["evicted_keys"])}, nil
}

// replayEvicted hears of an idempotency record that the memory state evicted before its ttl
// (state.max_idempotency_records reached; tenant held the most): it counts in
// smsgate_state_evicted_keys, as Redis's evictions do, and says so at most
// log.error_lines_per_second.
func (a *App) replayEvicted(tenant string) {
	a.metrics.ReplaysEvicted.WithLabelValues(tenant).Inc()
	a.stateEvicted("idempotency record evicted before its ttl: state.max_idempotency_records reached, the tenant holding the most records lost its oldest", tenant)
}

// redisReplaysEvicted hears of idempotency records a tenant lost in Redis to its own bound
// (state.redis.max_idempotency_records_per_tenant): counted, and said at most
// log.error_lines_per_second. Redis's own evictions are smsgate_state_evicted_keys'.
func (a *App) redisReplaysEvicted(tenant string, n int) {
	a.metrics.ReplaysEvicted.WithLabelValues(tenant).Add(float64(n))
	a.evictedLine("idempotency records evicted before their ttl: the tenant reached state.redis.max_idempotency_records_per_tenant, its oldest went",
		"tenant", tenant, "records", n)
}

// bucketEvicted hears of a rate-limit bucket that the memory state forgot before it was full
// (state.max_keys reached; tenant held the most buckets): a send it would have refused may pass.
func (a *App) bucketEvicted(tenant string) {
	a.stateEvicted("rate-limit bucket evicted before it refilled: state.max_keys reached, the tenant holding the most buckets lost one", tenant)
}

// resendEvicted hears of resend memory that the memory state forgot before its time
// (state.max_keys reached; tenant held the most): that recipient's next resend is not escalated.
func (a *App) resendEvicted(tenant string) {
	a.stateEvicted("resend memory evicted before its time: state.max_keys reached, the tenant holding the most entries lost one", tenant)
}

// stateEvicted counts a key the memory state evicted in smsgate_state_evicted_keys, as Redis's
// evictions count, and logs msg with the tenant at most log.error_lines_per_second.
func (a *App) stateEvicted(msg, tenant string) {
	a.metrics.StateEvictedKeys.Inc()
	a.evictedLine(msg, "tenant", tenant)
}

// evictedLine logs an eviction's msg with attrs, at most log.error_lines_per_second.
func (a *App) evictedLine(msg string, attrs ...any) {
	ok, left := a.errorLine("state|evicted")
	if !ok {
		return
	}
	a.log.Warn(msg, append(attrs, leftOut(left)...)...)
}
