package policy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smsgate/smsgate/gateway/config"
)

// Limiter decides whether one more event under key fits limit l.
type Limiter interface {
	// Allow takes one token from key's bucket; when there is none it says how long to wait.
	Allow(ctx context.Context, key string, l config.Limit) (ok bool, retryAfter time.Duration, err error)
	// AllowKeeping takes one token only if the bucket keeps at least keep after it (the part of
	// it held in reserve for others); otherwise it says how long until it would.
	AllowKeeping(ctx context.Context, key string, l config.Limit, keep int) (ok bool, retryAfter time.Duration, err error)
}

// MemoryLimiter is a Limiter of token buckets in this process: a bucket holds N tokens and
// refills at N per Per, so a burst of N is allowed and then one every Per/N. Each bucket is its
// theoretical arrival time alone (the generic cell rate algorithm, as in Redis, see gcra): eight
// bytes a bucket instead of a rate.Limiter's eighty, which mattered because with the state in
// memory a replica holds a bucket per recipient for minutes after each send. It keeps the spend
// limits' buckets too (Spends).
//
// Made by NewMemoryLimiter with a bound, it holds at most that many buckets: past it, the tenant
// holding the most buckets loses one (a full one if it has one, else any), so that a tenant
// sending to ever new recipients forgets its own buckets, never those of a tenant holding fewer.
// Its zero value has no bound.
type MemoryLimiter struct {
	// Now is the clock; nil means time.Now. Tests inject one to move time without sleeping.
	Now func() time.Time
	// max bounds the buckets held (state.max_keys; 0: no bound), and onEvict, when set, is
	// called (outside the lock) with the tenant of each bucket forgotten before it was full.
	max     int
	onEvict func(tenant string)

	mu sync.Mutex
	// buckets hold each bucket's theoretical arrival time (Unix nanoseconds): the bucket is full
	// at and after it, and each token taken moves it Per/N later.
	buckets sweptMap[int64]

	// spends are the spend limits' buckets (Spends, spend.go): each its theoretical arrival time.
	spendMu sync.Mutex
	spends  map[string]time.Time
}

// NewMemoryLimiter returns a limiter of at most max buckets (state.max_keys; 0: no bound) whose
// evictions of buckets not yet full onEvict (nil: none) hears of; now nil means time.Now.
func NewMemoryLimiter(now func() time.Time, max int, onEvict func(tenant string)) *MemoryLimiter {
	m := &MemoryLimiter{Now: now, max: max, onEvict: onEvict}
	if max > 0 {
		m.buckets.owner = limitTenant
	}
	return m
}

func (m *MemoryLimiter) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Allow implements Limiter.
func (m *MemoryLimiter) Allow(ctx context.Context, key string, l config.Limit) (bool, time.Duration, error) {
	return m.AllowKeeping(ctx, key, l, 0)
}

// AllowKeeping implements Limiter: a token is taken when the arrival time it moves to is at most
// a period, less keep tokens' time, ahead of now.
func (m *MemoryLimiter) AllowKeeping(_ context.Context, key string, l config.Limit, keep int) (bool, time.Duration, error) {
	now := m.now().UnixNano()
	interval := max(1, int64(l.Per)/int64(l.N))
	m.mu.Lock()
	tat, held := m.buckets.get(key)
	if !held || tat < now {
		tat = now
	}
	// Full buckets hold no information: drop them, two examined per call.
	full := func(k string, t int64) bool { return k != key && t <= now }
	m.buckets.sweep(2, full)
	if over := tat + interval - now - (int64(l.Per) - int64(keep)*interval); over > 0 {
		m.mu.Unlock()
		return false, time.Duration(over), nil
	}
	m.buckets.set(key, tat+interval)
	tenant, lost := m.buckets.bound(m.max, key, full)
	m.mu.Unlock()
	tell(m.onEvict, tenant, lost)
	return true, 0, nil
}

// limitTenant is the tenant a LimitKey names ("" for a provider's throughput, which is every
// tenant's).
func limitTenant(key string) string { return keyField(key, 2) }

// Len reports how many buckets are held (for tests and metrics).
func (m *MemoryLimiter) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.buckets.len()
}

// Replay is a stored first answer to an Idempotency-Key.
type Replay struct {
	// BodyHash identifies the request body the key was first used with.
	BodyHash [32]byte
	// Status and Body are the first answer, sent again as they were.
	Status int
	Body   []byte
}

// Replays stores first answers by tenant-scoped Idempotency-Key.
type Replays interface {
	Get(ctx context.Context, key string) (*Replay, bool, error)
	Put(ctx context.Context, key string, r *Replay, ttl time.Duration) error
}

// Resends remembers which provider last sent a message to a recipient, for resend escalation.
type Resends interface {
	Last(ctx context.Context, key string) (provider string, at time.Time, ok bool, err error)
	Record(ctx context.Context, key, provider string, at time.Time, ttl time.Duration) error
}

type entry[T any] struct {
	v       T
	expires int64 // Unix nanoseconds: a time.Time takes three times the room, in every entry
}

// expiring is a map whose entries vanish after their TTL. With max set it holds at most max
// entries: past it, the tenant (m.owner) holding the most loses one, an expired one if it has
// one, and onEvict hears of a live one lost.
type expiring[T any] struct {
	now     func() time.Time
	max     int
	onEvict func(tenant string)
	mu      sync.Mutex
	m       sweptMap[entry[T]]
}

func (e *expiring[T]) clock() int64 {
	if e.now != nil {
		return e.now().UnixNano()
	}
	return time.Now().UnixNano()
}

func (e *expiring[T]) get(key string) (T, bool) {
	now := e.clock()
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m.get(key)
	if !ok || now >= x.expires {
		var zero T
		return zero, false
	}
	return x.v, true
}

func (e *expiring[T]) put(key string, v T, ttl time.Duration) {
	now := e.clock()
	expired := func(_ string, x entry[T]) bool { return now >= x.expires }
	e.mu.Lock()
	e.m.set(key, entry[T]{v: v, expires: now + int64(ttl)})
	e.m.sweep(2, expired)
	tenant, lost := e.m.bound(e.max, key, expired)
	e.mu.Unlock()
	tell(e.onEvict, tenant, lost)
}

// lastSend is the provider that last sent to a recipient, and when (Unix nanoseconds).
type lastSend struct {
	provider string
	at       int64
}

// ResendKey is the resend memory of a recipient and code of tenant (digest names them without
// saying them). It names the tenant so that MemoryResends can bound each tenant's share.
func ResendKey(tenant, digest string) string { return "resend|" + tenant + "|" + digest }

// MemoryResends is Resends in this process. With the state in memory a replica keeps an entry a
// send for resend_escalation.within (10 minutes), so each is kept small (56 bytes and its key).
type MemoryResends struct{ e expiring[lastSend] }

// NewMemoryResends returns an empty tracker of at most max entries (state.max_keys; 0: no bound;
// past it the tenant holding the most loses one, and onEvict, when set, hears of it); now nil
// means time.Now.
func NewMemoryResends(now func() time.Time, max int, onEvict func(tenant string)) *MemoryResends {
	r := &MemoryResends{e: expiring[lastSend]{now: now, max: max, onEvict: onEvict}}
	if max > 0 {
		r.e.m.owner = kindTenant
	}
	return r
}

// Last implements Resends.
func (m *MemoryResends) Last(_ context.Context, key string) (string, time.Time, bool, error) {
	x, ok := m.e.get(key)
	if !ok {
		return "", time.Time{}, false, nil
	}
	return x.provider, time.Unix(0, x.at), true, nil
}

// Record implements Resends.
func (m *MemoryResends) Record(_ context.Context, key, provider string, at time.Time, ttl time.Duration) error {
	m.e.put(key, lastSend{provider: provider, at: at.UnixNano()}, ttl)
	return nil
}

// Flight coalesces identical concurrent calls: while one call for a key runs, later calls for the
// same key wait for it and share its result instead of running again.
//
// The call runs in a goroutine of its own, detached from every caller: fn must bound itself (the
// app gives it the request budget). A caller whose ctx ends, the first one included, stops waiting
// and gets ctx's error, but the call goes on and finishes for the others; so no caller's
// disconnect ever aborts a provider call in flight.
//
// Those goroutines are reused (see workers): a send's call is deep (JSON encoding, the HTTP
// client), and a fresh goroutine grew and copied its stack on every call, 7 % of the gateway's
// CPU when providers answer at once.
type Flight[T any] struct {
	// OnPanic, when set, is told about a panic in fn; callers then get T's zero value.
	OnPanic func(key string, v any)

	mu    sync.Mutex
	calls map[string]*flightCall[T]
	pool  workers
}

type flightCall[T any] struct {
	done    chan struct{}
	v       T
	waiters int // guarded by Flight.mu
}

// Do runs fn once per key at a time; shared is true for callers that joined another call.
func (f *Flight[T]) Do(ctx context.Context, key string, fn func() T) (v T, shared bool, err error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*flightCall[T]{}
	}
	c, shared := f.calls[key]
	if shared {
		c.waiters++
	} else {
		c = &flightCall[T]{done: make(chan struct{})}
		f.calls[key] = c
		f.pool.run(func() { f.run(key, c, fn) })
	}
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.v, shared, nil
	case <-ctx.Done():
		var zero T
		return zero, shared, ctx.Err()
	}
}

func (f *Flight[T]) run(key string, c *flightCall[T], fn func() T) {
	defer func() {
		if r := recover(); r != nil && f.OnPanic != nil {
			f.OnPanic(key, r)
		}
		f.mu.Lock()
		delete(f.calls, key)
		f.mu.Unlock()
		close(c.done)
	}()
	c.v = fn()
}

// waiting reports how many callers wait for key's running call.
func (f *Flight[T]) waiting(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.calls[key]; ok {
		return c.waiters
	}
	return 0
}

// workerIdle is how long an idle worker waits for the next call before it exits.
const workerIdle = 10 * time.Second

// workers runs each task at once on an idle goroutine, or on a new one when none is idle, so
// tasks never queue behind each other: it behaves as a go statement whose goroutines keep the
// stacks they have grown. A worker that has had no task for workerIdle exits, so a burst leaves
// no goroutines behind for long.
type workers struct {
	tasks chan func() // unbuffered: a send succeeds only when a worker is waiting for it
	once  sync.Once

	started, idle atomic.Int64 // goroutines started, and waiting for a task now (tests read them)
}

func (w *workers) run(task func()) {
	w.once.Do(func() { w.tasks = make(chan func()) })
	select {
	case w.tasks <- task:
	default:
		w.started.Add(1)
		go w.loop(task)
	}
}

func (w *workers) loop(task func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		task()
		idle.Reset(workerIdle)
		w.idle.Add(1)
		select {
		case task = <-w.tasks:
			w.idle.Add(-1)
		case <-idle.C:
			w.idle.Add(-1)
			return
		}
	}
}
