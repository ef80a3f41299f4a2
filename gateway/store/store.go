// Package store is the message log: one record per accepted request, completed later by the
// providers' delivery reports. Writes are queued and applied in batches by one writer goroutine so
// the send path never waits on disk; Close flushes the queue. Backends: embedded SQLite (pure Go,
// WAL, versioned migrations) and memory. Records never hold the one-time code or the text, and
// recipients are masked unless the operator asks for full numbers.
package store

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/smsgate/smsgate/gateway"
)

// ErrNotFound is returned by Get for an unknown id or another tenant's message.
var ErrNotFound = errors.New("message not found")

// Attempt is one provider try, as recorded.
type Attempt struct {
	Provider   string `json:"provider"`
	Outcome    string `json:"outcome"`
	Code       string `json:"code,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// Record is one message.
type Record struct {
	ID                string    `json:"id"`
	Tenant            string    `json:"tenant"`
	ClientID          string    `json:"client_id,omitempty"`
	Route             string    `json:"route"`
	MessageType       string    `json:"message_type"`
	Action            string    `json:"action,omitempty"`
	Country           string    `json:"country"`
	Recipient         string    `json:"recipient"`
	Status            string    `json:"status"`
	Provider          string    `json:"provider,omitempty"`
	ProviderMessageID string    `json:"provider_message_id,omitempty"`
	Attempts          []Attempt `json:"attempts"`
	Error             string    `json:"error,omitempty"`
	ProviderStatus    string    `json:"provider_status,omitempty"`
	Price             float64   `json:"price,omitempty"`
	Currency          string    `json:"currency,omitempty"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
	// DeliveredAt is the time of the final delivery report (delivered or not); nil before one.
	DeliveredAt *time.Time `json:"delivered_at"`
}

// Query selects a tenant's records, newest first.
type Query struct {
	Tenant   string
	Status   string
	Provider string
	Since    time.Time
	Limit    int
	// Before continues a listing: records strictly older than this cursor (from a previous page).
	Before *Cursor
}

// Cursor is a position in a newest-first listing.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// Backend is where records live. Apply is called by one goroutine at a time.
type Backend interface {
	// Apply writes a batch: inserts, then reports, in order.
	Apply(ctx context.Context, ops []Op) error
	Get(ctx context.Context, tenant, id string) (*Record, error)
	List(ctx context.Context, q Query) ([]*Record, error)
	// Purge deletes records created before t and returns how many.
	Purge(ctx context.Context, before time.Time) (int, error)
	Close() error
}

// Op is one queued write: exactly one of Insert and Report is set.
type Op struct {
	Insert *Record
	Report *gateway.DeliveryReport
	// barrier, when set, is closed once every earlier op was applied.
	barrier chan struct{}
}

// rank orders statuses so that a late or repeated report never moves a record backwards.
func rank(status string) int {
	switch status {
	case gateway.StatusAccepted:
		return 0
	case gateway.StatusSent:
		return 1
	case gateway.StatusUndelivered, gateway.StatusFailed, gateway.StatusRejected:
		return 2
	case gateway.StatusDelivered:
		return 3
	}
	return -1
}

// applyReport updates r with rep when rep does not move it backwards; it reports whether r changed.
func applyReport(r *Record, rep *gateway.DeliveryReport, now time.Time) bool {
	if rank(rep.Status) < rank(r.Status) {
		return false
	}
	r.Status = rep.Status
	r.ProviderStatus = rep.ProviderStatus
	if rep.Error != "" {
		r.Error = rep.Error
	}
	if rep.Price != 0 {
		r.Price, r.Currency = rep.Price, rep.Currency
	}
	if rep.Status != gateway.StatusSent {
		t := rep.DoneAt
		if t.IsZero() {
			t = now
		}
		t = t.UTC()
		r.DeliveredAt = &t
	}
	r.UpdatedAt = now
	return true
}

// Options configures New.
type Options struct {
	// Backend is required.
	Backend Backend
	// Logger gets write failures; nil discards.
	Logger *slog.Logger
	// QueueSize bounds the write queue; default 8192. When full, writers wait (nothing is dropped).
	QueueSize int
	// Retention purges records older than it; 0 keeps everything.
	Retention time.Duration
	// PurgeEvery is how often the purge runs; default retention/24, at least 1m.
	PurgeEvery time.Duration
	// OnBatch, when set, is told the size of each applied batch (metrics).
	OnBatch func(n int, err error)
}

// Store is the message log with its writer goroutine.
type Store struct {
	b       Backend
	log     *slog.Logger
	ch      chan Op
	onBatch func(int, error)
	wg      sync.WaitGroup
	stop    chan struct{}
	closeMu sync.RWMutex
	closed  bool
}

// New starts the writer (and the purger when Retention > 0).
func New(o Options) *Store {
	if o.QueueSize <= 0 {
		o.QueueSize = 8192
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{b: o.Backend, log: o.Logger, ch: make(chan Op, o.QueueSize), onBatch: o.OnBatch, stop: make(chan struct{})}
	s.wg.Add(1)
	go s.writer()
	if o.Retention > 0 {
		every := o.PurgeEvery
		if every <= 0 {
			every = max(o.Retention/24, time.Minute)
		}
		s.wg.Add(1)
		go s.purger(o.Retention, every)
	}
	return s
}

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("message log is closed")

func (s *Store) enqueue(ctx context.Context, op Op) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	select {
	case s.ch <- op:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Insert queues a new record.
func (s *Store) Insert(ctx context.Context, r *Record) error { return s.enqueue(ctx, Op{Insert: r}) }

// Report queues a delivery report. Reports for records not written yet are kept and applied when
// the record arrives; repeated and out-of-order reports never move a record backwards.
func (s *Store) Report(ctx context.Context, rep *gateway.DeliveryReport) error {
	return s.enqueue(ctx, Op{Report: rep})
}

// Flush waits until every write queued before it is applied.
func (s *Store) Flush(ctx context.Context) error {
	done := make(chan struct{})
	if err := s.enqueue(ctx, Op{barrier: done}); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Get returns a tenant's record after flushing pending writes, so a send is readable at once.
func (s *Store) Get(ctx context.Context, tenant, id string) (*Record, error) {
	if err := s.Flush(ctx); err != nil && !errors.Is(err, ErrClosed) {
		return nil, err
	}
	return s.b.Get(ctx, tenant, id)
}

// List returns a tenant's records, newest first, after flushing pending writes.
func (s *Store) List(ctx context.Context, q Query) ([]*Record, error) {
	if err := s.Flush(ctx); err != nil && !errors.Is(err, ErrClosed) {
		return nil, err
	}
	if q.Limit <= 0 || q.Limit > 500 {
		q.Limit = 50
	}
	return s.b.List(ctx, q)
}

// Purge deletes records created before t now.
func (s *Store) Purge(ctx context.Context, before time.Time) (int, error) {
	return s.b.Purge(ctx, before)
}

// Close stops accepting writes, applies everything queued, and closes the backend.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.ch)
	close(s.stop)
	s.closeMu.Unlock()
	s.wg.Wait()
	return s.b.Close()
}

const maxBatch = 512

func (s *Store) writer() {
	defer s.wg.Done()
	batch := make([]Op, 0, maxBatch)
	for op := range s.ch {
		batch = append(batch[:0], op)
	drain:
		for len(batch) < maxBatch {
			select {
			case op, ok := <-s.ch:
				if !ok {
					break drain
				}
				batch = append(batch, op)
			default:
				break drain
			}
		}
		s.apply(batch)
	}
}

func (s *Store) apply(batch []Op) {
	writes := make([]Op, 0, len(batch))
	for _, op := range batch {
		if op.barrier == nil {
			writes = append(writes, op)
		}
	}
	var err error
	if len(writes) > 0 {
		for try := 0; try < 3; try++ {
			if err = s.b.Apply(context.Background(), writes); err == nil {
				break
			}
			time.Sleep(time.Duration(try+1) * 50 * time.Millisecond)
		}
		if err != nil {
			s.log.Error("message log write failed", "ops", len(writes), "err", err)
		}
		if s.onBatch != nil {
			s.onBatch(len(writes), err)
		}
	}
	for _, op := range batch {
		if op.barrier != nil {
			close(op.barrier)
		}
	}
}

func (s *Store) purger(retention, every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			n, err := s.b.Purge(context.Background(), time.Now().Add(-retention))
			if err != nil {
				s.log.Error("message log purge failed", "err", err)
			} else if n > 0 {
				s.log.Info("message log purged", "records", n)
			}
		}
	}
}
