package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotOpen is what a Later answers until its database has been reached. The writer takes it as
// it takes any failed write: the batch waits in the retry buffer and is written once it can be.
var ErrNotOpen = errors.New("message log: the database has not been reached yet")

// Later is a Backend whose database is opened in the background. A replica that starts while
// PostgreSQL is unreachable serves anyway, as it does when PostgreSQL fails while it runs: sends are
// answered and their records wait in the retry buffer, reads answer an error, until the database
// is reached and migrated. Otherwise a database outage would keep every replica that restarts
// during it (a deploy, a node lost, a scale-out) from serving, and the gateway would become the
// single point of failure it exists to remove. The same holds for migrations that run long, on
// PostgreSQL or SQLite: the start serves while they go on.
type Later struct {
	cur      atomic.Pointer[laterBackend]
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	// The first attempt's outcome: firstDone is closed when it ends. While OpenLater waits for it,
	// it is OpenLater's to return, and failed or opened is not called for it.
	mu          sync.Mutex
	firstDone   chan struct{}
	firstErr    error
	firstWaiter bool
}

var _ Backend = (*Later)(nil)

type laterBackend struct{ Backend }

// laterMaxWait is the longest wait between two attempts.
const laterMaxWait = 30 * time.Second

// OpenLater calls open until it succeeds: at once, then after wait, doubling up to 30 s. It waits
// up to firstWait for the first attempt: ended says whether that attempt ended within it, and err
// is its error (nil: the database was reached). Every later outcome, and the first's when it ends
// after firstWait, goes to failed or opened (both may be nil).
//
// An attempt is not cut short here: open bounds what must be bounded (OpenPostgres bounds
// connecting, and cuts its migrations short only when the database stops answering). A migration
// that builds an index over a large table takes as long as it takes; cut at a fixed bound it
// would start over at every attempt and never end.
func OpenLater(open func(context.Context) (Backend, error), wait, firstWait time.Duration, failed func(error), opened func()) (l *Later, ended bool, err error) {
	l = &Later{stop: make(chan struct{}), done: make(chan struct{}), firstDone: make(chan struct{}), firstWaiter: true}
	go func() {
		defer close(l.done)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-l.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		for first := true; ; first = false {
			b, err := open(ctx)
			if err == nil {
				// Before the first outcome is told: a caller told the log is open uses it at once.
				l.cur.Store(&laterBackend{b})
			}
			told := first && l.endFirst(err)
			if err == nil {
				if opened != nil && !told {
					opened()
				}
				return
			}
			if ctx.Err() != nil {
				return
			}
			if failed != nil && !told {
				failed(err)
			}
			select {
			case <-l.stop:
				return
			case <-time.After(wait):
			}
			wait = laterNextWait(wait)
		}
	}()
	ended, err = l.waitFirst(firstWait)
	return l, ended, err
}

// laterNextWait is the wait after wait: twice as long, at most laterMaxWait.
func laterNextWait(wait time.Duration) time.Duration { return min(2*wait, laterMaxWait) }

// endFirst records the first attempt's outcome and reports whether waitFirst takes it.
func (l *Later) endFirst(err error) (told bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.firstErr = err
	close(l.firstDone)
	return l.firstWaiter
}

// waitFirst waits up to d for the first attempt's outcome; when it has not ended by then, its
// outcome is left to failed and opened.
func (l *Later) waitFirst(d time.Duration) (ended bool, err error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-l.firstDone:
	case <-t.C:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.firstWaiter = false
	select {
	case <-l.firstDone: // closed under mu: it ended before firstWaiter was cleared
		return true, l.firstErr
	default:
		return false, nil
	}
}

// Open reports whether the database has been reached.
func (l *Later) Open() bool { return l.cur.Load() != nil }

// with calls f on the database once it has been reached; until then it answers ErrNotOpen.
func with[T any](l *Later, f func(Backend) (T, error)) (T, error) {
	b := l.cur.Load()
	if b == nil {
		var zero T
		return zero, ErrNotOpen
	}
	return f(b.Backend)
}

// Apply implements Backend.
func (l *Later) Apply(ctx context.Context, ops []Op) ([]Charge, error) {
	return with(l, func(b Backend) ([]Charge, error) { return b.Apply(ctx, ops) })
}

// Get implements Backend.
func (l *Later) Get(ctx context.Context, tenant, id string) (*Record, error) {
	return with(l, func(b Backend) (*Record, error) { return b.Get(ctx, tenant, id) })
}

// List implements Backend.
func (l *Later) List(ctx context.Context, q Query) ([]*Record, error) {
	return with(l, func(b Backend) ([]*Record, error) { return b.List(ctx, q) })
}

// Purge implements Backend.
func (l *Later) Purge(ctx context.Context, before time.Time) (int, error) {
	return with(l, func(b Backend) (int, error) { return b.Purge(ctx, before) })
}

// Oldest implements Backend.
func (l *Later) Oldest(ctx context.Context) (time.Time, error) {
	return with(l, func(b Backend) (time.Time, error) { return b.Oldest(ctx) })
}

// Trim implements Backend.
func (l *Later) Trim(ctx context.Context, bounds RecordBounds) (map[string]int, error) {
	return with(l, func(b Backend) (map[string]int, error) { return b.Trim(ctx, bounds) })
}

// Health implements Backend.
func (l *Later) Health(ctx context.Context, since, pendingBefore time.Time) ([]HealthRow, error) {
	return with(l, func(b Backend) ([]HealthRow, error) { return b.Health(ctx, since, pendingBefore) })
}

// Prices implements Backend.
func (l *Later) Prices(ctx context.Context, since, until time.Time) ([]PriceRow, error) {
	return with(l, func(b Backend) ([]PriceRow, error) { return b.Prices(ctx, since, until) })
}

// Find implements Backend.
func (l *Later) Find(ctx context.Context, provider, id, providerMessageID string) (*Record, error) {
	return with(l, func(b Backend) (*Record, error) { return b.Find(ctx, provider, id, providerMessageID) })
}

// Take implements Backend.
func (l *Later) Take(ctx context.Context, q TakeQuery) ([]*Record, error) {
	return with(l, func(b Backend) ([]*Record, error) { return b.Take(ctx, q) })
}

// Due implements Backend.
func (l *Later) Due(ctx context.Context, tenant string, now time.Time, limit int) ([]*Record, error) {
	return with(l, func(b Backend) ([]*Record, error) { return b.Due(ctx, tenant, now, limit) })
}

// DueTenants implements Backend.
func (l *Later) DueTenants(ctx context.Context, now time.Time) ([]string, error) {
	return with(l, func(b Backend) ([]string, error) { return b.DueTenants(ctx, now) })
}

// PushDone implements Backend.
func (l *Later) PushDone(ctx context.Context, id string) error {
	_, err := with(l, func(b Backend) (struct{}, error) { return struct{}{}, b.PushDone(ctx, id) })
	return err
}

// ReadConns implements Backend: the opened database's, 0 until then (reads answer ErrNotOpen
// at once).
func (l *Later) ReadConns() int {
	n, _ := with(l, func(b Backend) (int, error) { return b.ReadConns(), nil })
	return n
}

// Close stops opening (waiting for an attempt under way to end) and closes the database if it was
// reached.
func (l *Later) Close() error {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	if b := l.cur.Load(); b != nil {
		return b.Close()
	}
	return nil
}
