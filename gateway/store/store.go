// Package store is the message log: one record per accepted request, completed later by the
// providers' delivery reports, and the pushes of those reports to tenants' notify URLs until
// they are done (Due, PushDone). Backends: embedded SQLite (pure Go, WAL, versioned migrations),
// PostgreSQL (shared by every replica) and memory; Later opens one in the background, for a
// replica that starts while its PostgreSQL cannot be reached or while migrations run long
// (writes wait as in an outage). A build runs on a schema newer than it knows when schema_compat
// says it may (oldestReader: rollbacks); OpenSQLiteAsIs and OpenPostgresAsIs open a log without
// migrating it, for tools that only read.
//
// Group commit: writes are queued to one writer goroutine, which applies everything queued in one
// transaction, so concurrent sends share a commit. Insert and Report wait until their batch has
// committed, up to Options.CommitTimeout: a send answered after a successful Insert survives a
// SIGKILL of the process. When the database does not commit in time the caller goes on (sending
// codes matters more than logging them) and the write waits, in order, in a bounded retry buffer,
// tried again with backoff, counted and logged as an error; it is dropped only when that buffer is
// full (the oldest writes of the tenants holding the most of it, so that one tenant's flood
// pushes out its own records; each drop counted, the error lines at most one a second) or still
// failing when Close gives up and Options.HandOff does not take it over for another replica to
// write (handoff.go, Adopt), and always counted. A batch the
// database refuses for its data (ErrRefused) is applied one write at a time, and only the writes
// refused on their own are given up: no write can hold back the others. Strings are written as
// every backend keeps them (text.go). Close applies what is queued, retrying for a bounded time.
// Records never hold the one-time code or the text, and recipients are masked unless the
// operator asks for full numbers.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	// Note says when the chain was reordered around this provider, and why.
	Note string `json:"note,omitempty"`
}

// Record is one message.
type Record struct {
	ID          string `json:"id"`
	Tenant      string `json:"tenant"`
	ClientID    string `json:"client_id,omitempty"`
	Route       string `json:"route"`
	MessageType string `json:"message_type"`
	Action      string `json:"action,omitempty"`
	Country     string `json:"country"`
	Recipient   string `json:"recipient"`
	// Range is the recipient's number range: the calling code and the first national digits
	// ("44-74"), no more of the number (pumping detection).
	Range             string    `json:"range,omitempty"`
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

	// Fields of messages sent through the Infobip-compatible API (Source not empty).

	// Source is the API a message came through: "" (smsgate's own), "infobip-sms-v2",
	// "infobip-sms-v3" or "infobip-tts".
	Source string `json:"source,omitempty"`
	// Reference is the caller's own messageId; BulkID the request's bulkId; CallbackData the
	// caller's callbackData, returned in reports.
	Reference    string `json:"reference,omitempty"`
	BulkID       string `json:"bulk_id,omitempty"`
	CallbackData string `json:"-"`
	// NotifyURL is where the final delivery report is pushed (a host the tenant allows).
	NotifyURL string `json:"-"`
	// ReportTaken is set once the final report was handed out: pulled by GET /sms/{1,3}/reports
	// or pushed to NotifyURL.
	ReportTaken bool `json:"-"`
	// ReportHeld is set, with ReportTaken, on a message that failed at send: the caller is given
	// its id only if the request is answered 200 all the same (another destination was sent), and
	// then Release hands its report out. Otherwise it is never pulled nor pushed.
	ReportHeld bool `json:"-"`
	// PushAt is when the final report is next due to be pushed to NotifyURL (zero: none is due);
	// PushTries counts the pushes claimed so far (Due).
	PushAt    time.Time `json:"-"`
	PushTries int       `json:"-"`
	// Parts is how many parts the SMS was sent as (gateway.SMSParts), or the minutes a call was
	// counted as: a report's price is for them all.
	Parts int `json:"-"`
}

// Final reports whether a record's status can no longer change but to delivered.
func (r *Record) Final() bool {
	switch r.Status {
	case gateway.StatusDelivered, gateway.StatusUndelivered, gateway.StatusFailed, gateway.StatusRejected:
		return true
	}
	return false
}

// Query selects a tenant's records, newest first.
type Query struct {
	Tenant string
	// Statuses, when set, keeps records with any of these statuses.
	Statuses []string
	Provider string
	Since    time.Time
	Limit    int
	// Before continues a listing: records strictly older than this cursor (from a previous page).
	Before *Cursor
	// Until, when set, keeps records created before it; BulkID, when set, one bulk's records.
	Until  time.Time
	BulkID string
	// ID, when set, selects one message by our id or the caller's reference.
	ID string
	// Compat keeps only messages sent through the Infobip-compatible API.
	Compat bool
}

// listSQL is the FROM, WHERE, ORDER and LIMIT of q's listing, with ? placeholders (PostgreSQL
// numbers them), and their arguments. The filters of the Infobip-compatible logs repeat the
// WHERE terms of their partial indexes (a bulk_id, a reference not empty): both databases use a
// partial index only for a query whose WHERE implies the index's, and SQLite only when it finds
// the very term.
func listSQL(q Query) (string, []any) {
	from, where, args := ` FROM messages`, []string{"tenant = ?"}, []any{q.Tenant}
	if q.ID != "" {
		// The message with our id, and the tenant's messages with that reference, found by their
		// indexes first (CROSS JOIN keeps SQLite from walking the tenant's records instead).
		from = ` FROM (SELECT id AS mid FROM messages WHERE id = ? UNION SELECT id FROM messages WHERE tenant = ? AND reference = ? AND reference <> '' AND source <> '') m CROSS JOIN messages`
		where, args = []string{"messages.id = m.mid", "tenant = ?"}, []any{q.ID, q.Tenant, q.ID, q.Tenant}
	}
	add := func(cond string, v ...any) {
		where, args = append(where, cond), append(args, v...)
	}
	if len(q.Statuses) > 0 {
		vals := make([]any, len(q.Statuses))
		for i, s := range q.Statuses {
			vals[i] = s
		}
		add("status IN (?"+strings.Repeat(", ?", len(vals)-1)+")", vals...)
	}
	if q.Provider != "" {
		add("provider = ?", q.Provider)
	}
	if !q.Since.IsZero() {
		add("created_at >= ?", q.Since.UnixMilli())
	}
	if !q.Until.IsZero() {
		add("created_at < ?", q.Until.UnixMilli())
	}
	if q.BulkID != "" {
		add("bulk_id = ? AND bulk_id <> ''", q.BulkID)
	}
	if q.Compat {
		add("source <> ''")
	}
	if q.Before != nil {
		// A row value: the database walks the (tenant, created_at, id) index from the cursor on.
		add("(created_at, id) < (?, ?)", q.Before.CreatedAt.UnixMilli(), q.Before.ID)
	}
	return from + ` WHERE ` + strings.Join(where, " AND ") + ` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, q.Limit)
}

// HealthRow is one (provider, country) of Backend.Health.
type HealthRow struct {
	// Tenant: rows are per tenant, so that one tenant's undelivered numbers can be told from a
	// provider that stopped delivering for everyone.
	Provider, Country, Tenant string
	// Voice: the row counts voice calls, else SMS.
	Voice bool
	// Delivered, Undelivered, Failed and Pending (no final report in time).
	Delivered, Undelivered, Failed, Pending int
}

// PriceRow is one (provider, country, currency, tenant) of Backend.Prices.
type PriceRow struct {
	// Tenant: rows are per tenant, so that one tenant's expensive destinations cannot move the
	// price every tenant is routed by.
	Provider, Country, Currency, Tenant string
	// Sum of the prices and N, the number of messages that reported one.
	Sum float64
	N   int
}

// Charge is a price a delivery report recorded on a message for the first time.
type Charge struct {
	Provider, Country, Currency string
	Price                       float64
	// Tenant sent the message (spend limits count what its messages really cost).
	Tenant string
	// Type is the message's: a voice call's price is compared with voice prices.
	Type gateway.MessageType
	// Parts is the record's: an SMS's price is for all its parts.
	Parts int
}

// applier applies reports within one batch and collects the charges they record.
type applier struct {
	now     time.Time
	charges []Charge
}

// apply is applyReport, noting a price set for the first time on r.
func (a *applier) apply(r *Record, rep *gateway.DeliveryReport) bool {
	priced := r.Price != 0
	if !applyReport(r, rep, a.now) {
		return false
	}
	if !priced && r.Price > 0 {
		a.charges = append(a.charges, Charge{Provider: r.Provider, Country: r.Country, Currency: r.Currency, Price: r.Price, Tenant: r.Tenant,
			Type: gateway.MessageType(r.MessageType), Parts: max(1, r.Parts)})
	}
	return true
}

// TakeQuery selects final delivery reports not handed out yet (GET /sms/{1,3}/reports).
type TakeQuery struct {
	Tenant string
	// BulkID and ID (ours or the caller's reference) narrow it when set.
	BulkID, ID string
	Limit      int
}

// Cursor is a position in a newest-first listing.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// Backend is where records live. Apply is called by one goroutine at a time.
type Backend interface {
	// Apply writes a batch: inserts, then reports, in order. It returns the prices the batch's
	// reports recorded for the first time on a record (for the spend counter): only a batch that
	// committed returns them, so a retried batch counts once.
	Apply(ctx context.Context, ops []Op) ([]Charge, error)
	Get(ctx context.Context, tenant, id string) (*Record, error)
	List(ctx context.Context, q Query) ([]*Record, error)
	// Purge deletes records created before t and returns how many.
	Purge(ctx context.Context, before time.Time) (int, error)
	// Oldest is when the oldest record was created; zero when there is none.
	Oldest(ctx context.Context) (time.Time, error)
	// Trim deletes the oldest records of every tenant holding more than its bound, down to it,
	// and returns how many it deleted of each such tenant (storage.max_records_per_tenant).
	Trim(ctx context.Context, b RecordBounds) (map[string]int, error)
	// Health counts, per provider, destination country, tenant and channel (SMS or voice), the
	// messages created since since that a provider accepted: delivered, undelivered, failed, and
	// still sent (no final report) but created before pendingBefore. The channels are apart: a
	// call nobody answered is reported undelivered, which says nothing about the provider.
	Health(ctx context.Context, since, pendingBefore time.Time) ([]HealthRow, error)
	// Prices sums, per provider, destination country, currency and tenant, the prices that
	// delivery reports recorded on SMS messages created since since and before until (zero: no
	// bound), least-cost routing's average. Voice calls are left out: priced by the minute, they
	// are no message's price.
	Prices(ctx context.Context, since, until time.Time) ([]PriceRow, error)
	// Find returns the record a report names: provider and our id, or provider and its id.
	Find(ctx context.Context, provider, id, providerMessageID string) (*Record, error)
	// Take returns up to q.Limit compat records whose final report was not handed out yet, oldest
	// first, and marks them handed out: each report is handed out once, across replicas too.
	// Messages whose reports are pushed to a notify URL are not pulled (Due).
	Take(ctx context.Context, q TakeQuery) ([]*Record, error)
	// Due claims up to limit of tenant's records whose final report is due to be pushed to its
	// notify URL (PushAt not after now), the longest due first. Each claim counts a try and moves
	// PushAt to the next retry (NextPush), or clears it on the last try, before anything is
	// pushed: another replica claims it again only if this push never ends, and only then.
	Due(ctx context.Context, tenant string, now time.Time, limit int) ([]*Record, error)
	// DueTenants lists the tenants with a push due at now, in any order: the tenants a sweep
	// claims for, configured or not, with notify hosts or not (the messages_push_due index).
	DueTenants(ctx context.Context, now time.Time) ([]string, error)
	// PushDone ends the pushes of a record's final report: it was pushed (handed out), or it will not be.
	PushDone(ctx context.Context, id string) error
	// ReadConns is how many reads made on a tenant's behalf (Get, List, Take) the backend serves
	// at once: the connections of their pool, apart from the pool of the reads every tenant relies
	// on (Find, Health, Prices, pushes, chores). 0: no bound of its own.
	ReadConns() int
	Close() error
}

// PushTries is how many times a final report is pushed to a notify URL before it is given up;
// NextPush spaces them as Infobip does, 1 min + 1 min × n² after the n-th try: 2 min, 5 min,
// 10 min, ..., 2 h 25 min, about 11 hours in all.
const PushTries = 12

// NextPush is when a report claimed for its try-th push (1-based) is due again if that push
// does not end; zero after the last try.
func NextPush(now time.Time, try int) time.Time {
	if try >= PushTries {
		return time.Time{}
	}
	return now.Add(time.Minute * time.Duration(1+try*try))
}

// nextPushSQL is NextPush in SQL, for an UPDATE that counts the try (push_tries is the count
// before it), given the placeholders of PushTries and of now in Unix milliseconds.
func nextPushSQL(maxTries, nowMS string) string {
	return `CASE WHEN push_tries + 1 >= ` + maxTries + ` THEN 0 ELSE ` + nowMS + ` + 60000 * (1 + (push_tries + 1) * (push_tries + 1)) END`
}

// armPush makes a compat record's final report due to be pushed now, once: a record already
// pushed, pulled, due or tried is left as it is.
func armPush(r *Record, now time.Time) {
	if r.NotifyURL != "" && r.Final() && !r.ReportTaken && r.PushTries == 0 && r.PushAt.IsZero() {
		r.PushAt = now
	}
}

// release hands out the held report of r (Record.ReportHeld): pullable, or due to be pushed now
// when r has a notify URL. A report not held is left alone.
func release(r *Record, now time.Time) {
	if r.ReportHeld {
		r.ReportHeld, r.ReportTaken = false, false
		armPush(r, now)
	}
}

// releaseSQL is release in SQL, given the placeholders of now in Unix milliseconds and of the id.
func releaseSQL(nowMS, id string) string {
	return `UPDATE messages SET report_held = false, report_taken = false, push_at = CASE WHEN notify_url <> '' THEN ` + nowMS + ` ELSE 0 END
		WHERE id = ` + id + ` AND report_held`
}

// Op is one queued write: exactly one of Insert, Report and Release is set.
type Op struct {
	Insert *Record
	Report *gateway.DeliveryReport
	// Release is the id of a record whose held report is handed out (release).
	Release string
	// barrier, when set, is closed once every earlier op was tried.
	barrier chan struct{}
	// done, when set, receives one word of what became of the write (answer): nil once its batch
	// has committed, ErrNotCommitted once it is kept for another try (with a spool: in it), or
	// the error it was given up with. Buffered: the writer never blocks on it.
	done chan error
	// seq is the write's number in the spool (Options.Spool); 0 while it is not in it.
	seq uint64
	// again is set on a write that may have been applied already (a chunk handed over, a spool
	// read back): an insert of a record already there leaves that record as it is, and the
	// reports after it in the batch go to it.
	again bool
}

// ErrNotCommitted is returned by Insert and Report when the write did not commit within
// Options.CommitTimeout: it stays queued and is retried, but is not durable yet.
var ErrNotCommitted = errors.New("message log write not committed in time; it is kept and retried")

// ErrRefused marks a Backend.Apply error caused by the writes' data, not by the database (which
// works): the same writes would fail again. The writer then applies the batch's writes one at a
// time and gives up, counted and logged, only the ones refused on their own; Insert and Report
// return it for those. Cleaning (text.go) keeps every known case from arising; this keeps an
// unknown one from stopping the log for every tenant.
var ErrRefused = errors.New("message log write refused by the database")

// refusedError is an Apply error that is ErrRefused and keeps the database's own error.
type refusedError struct{ err error }

func (e refusedError) Error() string   { return e.err.Error() }
func (e refusedError) Unwrap() []error { return []error{ErrRefused, e.err} }

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
	// Only a price that is one: a NaN or an infinity would be averaged into least-cost routing's
	// prices and added to counters and spend limits for good (drivers give none:
	// providertest.FuzzReports).
	if rep.Price > 0 && !math.IsInf(rep.Price, 0) {
		r.Price, r.Currency = rep.Price, rep.Currency
		if rep.PerPart {
			r.Price *= float64(max(1, r.Parts))
		}
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
	armPush(r, now)
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
	// PurgeEvery is how often the purge runs; default retention/24 between 1m and 1h, so a record
	// outlives the retention by at most an hour.
	PurgeEvery time.Duration
	// StartDelay is how long after New the purge and the trim first run, before their intervals;
	// default a random 1 to 2 minutes, so replicas started together spread out. (They once ran
	// first one whole interval after the start: replicas restarted more often than every 30 h, a
	// daily deploy, never purged.)
	StartDelay time.Duration
	// RecordBounds, when set, gives the most records each tenant may keep, as the config says
	// now: every TrimEvery (default 10m), a tenant holding more loses its oldest (Backend.Trim),
	// never another tenant's. The disk every tenant's records share is otherwise bounded only by
	// the tenants' rates times the retention.
	RecordBounds func() RecordBounds
	TrimEvery    time.Duration
	// OnTrim, when set, is told how many records a trim deleted of a tenant.
	OnTrim func(tenant string, n int)
	// OnPurge, when set, is told after each purge how many records it deleted, and when the
	// oldest record left was created (zero: none; not told when that read failed), so that a
	// purge that stopped keeping up shows.
	OnPurge func(n int, oldest time.Time, known bool)
	// OnBatch, when set, is told the size and result of each batch the writer tries (metrics).
	OnBatch func(n int, err error)
	// OnCharge, when set, is told each price a committed report recorded (the spend counter).
	OnCharge func(Charge)
	// RetryBuffer bounds the writes held for another try while the database fails; default
	// 65536. A write counts one, and one more for each KiB of the texts its tenant chose
	// (opWeight). When it overflows, the oldest writes of the tenants holding the most of it are
	// dropped, RetryBuffer/64 at a time: counted (OnDrop) and logged as errors.
	RetryBuffer int
	// ExactDrops drops only what is over RetryBuffer, never more ahead of need: for
	// storage.backlog_full refuse_sends, where sends stop at the bound and only the few in flight
	// (and delivery reports) go over it.
	ExactDrops bool
	// OnBacklog, when set, is told how many writes wait for another try after each attempt.
	OnBacklog func(n int)
	// OnDrop, when set, is told how many writes were given up (retry buffer full, or still failing
	// when Close's time ran out and not handed over).
	OnDrop func(n int)
	// OnSpoolFailure, when set, is told of each failure of the spool (Spool): writes it could not
	// take are kept in memory only, and a process killed meanwhile loses them.
	OnSpoolFailure func()
	// HandOff, when set, is given what still fails when Close's time ran out, encoded in chunks
	// that Adopt takes back (handoff.go), instead of dropping it; nil means it kept them all.
	HandOff func(ctx context.Context, chunks [][]byte) error
	// OnHandOff, when set, is told how many writes HandOff took.
	OnHandOff func(n int)
	// Spool, when set, keeps the writes waiting for another try in a local file as well, so that
	// a process killed outright finds them at its next start (spool.go); the store writes the
	// writes it held at open first, and closes it. What Close could neither write nor hand over
	// stays in it instead of being dropped.
	Spool *Spool
	// CloseTimeout bounds how long Close keeps retrying a failing database; default 5s.
	CloseTimeout time.Duration
	// CommitTimeout bounds how long Insert and Report wait for their batch to commit; default 200ms.
	CommitTimeout time.Duration
	// WriteTimeout bounds one batch's transaction on a database server (the SQLite backend, a
	// local file, does not apply it); default 10s. A database that stops answering
	// without closing its connections (a host gone, a failover that moves an address) would
	// otherwise hold the one writer until the kernel gives the connection up, many minutes, while
	// the write queue fills and every send waits to queue its record. Past it the batch waits in
	// the retry buffer, as in any outage, and the writer goes on taking the queue.
	WriteTimeout time.Duration
	// InFlight, when set, tells how many writes are on their way (sends being processed, each
	// of which will Insert). While more are than records wait in the batch, and the recent write
	// rate promises at least one more record within Linger, the writer waits up to Linger for them
	// to join it: one commit then serves more records (a commit costs several times a record).
	// Below that rate a wait would mostly add latency: at 500 µs the writer lingers from 2,000
	// records/s up. The bound follows from Linger, not from the machine (see docs/benchmarks.md).
	InFlight func() int
	// Linger bounds that wait; 0 never waits.
	Linger time.Duration
}

// Store is the message log with its writer goroutine.
type Store struct {
	b       Backend
	log     *slog.Logger
	ch      chan Op
	opts    Options
	onBatch func(int, error)
	wg      sync.WaitGroup
	stop    chan struct{}
	closeMu sync.RWMutex
	closed  bool
	// backlog is how many writes wait for another try, held what they count against
	// Options.RetryBuffer (the writer sets both).
	backlog, held atomic.Int64
}

// New starts the writer (and the purger when Retention > 0).
func New(o Options) *Store {
	if o.QueueSize <= 0 {
		o.QueueSize = 8192
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RetryBuffer <= 0 {
		o.RetryBuffer = 65536
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 5 * time.Second
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = 200 * time.Millisecond
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.StartDelay <= 0 {
		o.StartDelay = time.Minute + rand.N(time.Minute)
	}
	s := &Store{b: o.Backend, log: o.Logger, ch: make(chan Op, o.QueueSize), opts: o, onBatch: o.OnBatch, stop: make(chan struct{})}
	s.wg.Add(1)
	go s.writer()
	if o.Retention > 0 {
		every := o.PurgeEvery
		if every <= 0 {
			every = min(max(o.Retention/24, time.Minute), time.Hour)
		}
		s.wg.Add(1)
		go s.periodically(o.StartDelay, every, func() { s.purgeOlder(o.Retention) })
	}
	if o.RecordBounds != nil {
		every := o.TrimEvery
		if every <= 0 {
			every = 10 * time.Minute
		}
		s.wg.Add(1)
		go s.periodically(o.StartDelay, every, func() {
			if b := o.RecordBounds(); b.least() > 0 {
				b.Every = every
				s.Trim(context.Background(), b)
			}
		})
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

// Insert queues a new record and waits until its batch has committed (nil), or CommitTimeout or
// ctx ran out (ErrNotCommitted: it stays queued and is retried). With a spool, ErrNotCommitted
// comes once the record is in the spool instead (see wait).
func (s *Store) Insert(ctx context.Context, r *Record) error {
	return s.write(ctx, Op{Insert: cleanRecord(r)})
}

// Release hands out the held reports of messages that failed at send (Record.ReportHeld) and
// whose ids were given to the caller after all, and waits like Insert.
func (s *Store) Release(ctx context.Context, ids []string) error {
	ops := make([]Op, 0, len(ids))
	for _, id := range ids {
		op := Op{Release: cleanID(id), done: make(chan error, 1)}
		if err := s.enqueue(ctx, op); err != nil {
			return err
		}
		ops = append(ops, op)
	}
	return s.wait(ctx, ops)
}

// Report queues a delivery report and waits like Insert. Reports for records not written yet are
// kept and applied when the record arrives; repeated and out-of-order reports never move a record
// backwards.
func (s *Store) Report(ctx context.Context, rep *gateway.DeliveryReport) error {
	return s.write(ctx, Op{Report: cleanReport(rep)})
}

func (s *Store) write(ctx context.Context, op Op) error {
	op.done = make(chan error, 1)
	if err := s.enqueue(ctx, op); err != nil {
		return err
	}
	return s.wait(ctx, []Op{op})
}

// wait waits until every one of ops (queued) has committed, up to CommitTimeout in all; with a
// spool, until each has committed or is in the spool (or the spool failed to take it).
func (s *Store) wait(ctx context.Context, ops []Op) error {
	limit := s.opts.CommitTimeout
	if s.opts.Spool != nil {
		// With a spool, a write that does not commit in time is answered once the writer has
		// put it in the spool (its word on done), not when commit_timeout has passed: a kill
		// right after the answer finds it there. A try that hangs has it spooled after
		// commit_timeout (watchSlowTry); a spool that never says (a disk that hangs) has the
		// answer go after write_timeout more anyway.
		limit += s.opts.WriteTimeout
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	for _, op := range ops {
		select {
		case err := <-op.done:
			if err != nil {
				return err
			}
		case <-t.C:
			return ErrNotCommitted
		case <-ctx.Done():
			return ErrNotCommitted
		}
	}
	return nil
}

// Backlog reports how many writes wait for another try because the database failed.
func (s *Store) Backlog() int { return int(s.backlog.Load()) }

// Full reports whether the retry buffer is full: a further write would push out the oldest.
func (s *Store) Full() bool { return s.held.Load() >= int64(s.opts.RetryBuffer) }

// Flush waits until every write queued before it was tried once (applied, or kept for a retry
// when the database failed), so reads see every write the database took.
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

// Reads go straight to the database, past the write queue. A send or a report is answered once
// its write committed, so whoever learned of a message from an answer finds it; only a write
// answered without its commit (storage.commit_timeout passed, or the database failing) shows
// once the writer has written it. Reads once passed a barrier through the queue first: every
// read then made the writer commit at once (no lingering, so more commits for every tenant's
// records) and, while the database failed, try again at once instead of backing off, so one
// tenant reading in a loop cost every tenant's writes.

// Get returns a tenant's record.
func (s *Store) Get(ctx context.Context, tenant, id string) (*Record, error) {
	return s.b.Get(ctx, clean(tenant), clean(id))
}

// List returns a tenant's records, newest first: q.Limit of them (50 when not set, at most
// 1000).
func (s *Store) List(ctx context.Context, q Query) ([]*Record, error) {
	q.Limit = pageSize(q.Limit)
	cleanAll([]*string{&q.Tenant, &q.Provider, &q.BulkID, &q.ID})
	q.Statuses = slices.Clone(q.Statuses)
	for i := range q.Statuses {
		q.Statuses[i] = clean(q.Statuses[i])
	}
	if q.Before != nil {
		c := *q.Before
		c.ID, q.Before = clean(c.ID), &c
	}
	return s.b.List(ctx, q)
}

// pageSize is a listing's limit: 50 when not set, at most 1000 (it once fell back to 50 above
// 1000, so that asking for more gave fewer).
func pageSize(limit int) int {
	if limit <= 0 {
		return 50
	}
	return min(limit, 1000)
}

// Find returns the record a delivery report names.
func (s *Store) Find(ctx context.Context, provider, id, providerMessageID string) (*Record, error) {
	return s.b.Find(ctx, clean(provider), cleanID(id), cleanID(providerMessageID))
}

// Health counts delivery outcomes per provider and country (see Backend.Health).
func (s *Store) Health(ctx context.Context, since, pendingBefore time.Time) ([]HealthRow, error) {
	return s.b.Health(ctx, since, pendingBefore)
}

// Take hands out final delivery reports once (see Backend.Take), as many as List would list.
func (s *Store) Take(ctx context.Context, q TakeQuery) ([]*Record, error) {
	q.Limit = pageSize(q.Limit)
	cleanAll([]*string{&q.Tenant, &q.BulkID, &q.ID})
	return s.b.Take(ctx, q)
}

// Due claims up to limit of tenant's final reports due to be pushed (Backend.Due).
func (s *Store) Due(ctx context.Context, tenant string, now time.Time, limit int) ([]*Record, error) {
	if limit <= 0 {
		return nil, nil
	}
	return s.b.Due(ctx, clean(tenant), now, limit)
}

// DueTenants lists the tenants with a push due at now (Backend.DueTenants).
func (s *Store) DueTenants(ctx context.Context, now time.Time) ([]string, error) {
	return s.b.DueTenants(ctx, now)
}

// PushDone ends the pushes of a record's final report (Backend.PushDone).
func (s *Store) PushDone(ctx context.Context, id string) error {
	return s.b.PushDone(ctx, cleanID(id))
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
	err := s.b.Close()
	if s.opts.Spool != nil {
		if serr := s.opts.Spool.Close(); err == nil {
			err = serr
		}
	}
	return err
}

const maxBatch = 512

// Backoff of the retries of a failing database.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// writeLoop is the writer goroutine's state: writes not applied yet, in order, and the Flush
// barriers to release after the next attempt.
type writeLoop struct {
	s   *Store
	buf []Op
	// weight is what buf counts against Options.RetryBuffer (opWeight).
	weight   int
	barriers []chan struct{}
	backoff  time.Duration
	// rate is the recent write rate (records a second), measured over windows of rateWindow.
	rate        float64
	windowStart time.Time
	windowOps   int
	// overflow counts the writes pushed out of a full retry buffer since overflowLogged: while it
	// overflows, every new write pushes one out, and one error line a second says how many.
	overflow       int
	overflowLogged time.Time
	// spool is Options.Spool, nil once it failed to be emptied; spoolRetry is when it may be
	// tried again after a failure, spoolLogged when a failure was last logged.
	spool                   *Spool
	spoolRetry, spoolLogged time.Time
}

// rateWindow is how long the writer counts records to estimate the write rate.
const rateWindow = 100 * time.Millisecond

func (s *Store) writer() {
	defer s.wg.Done()
	w := &writeLoop{s: s, spool: s.opts.Spool}
	if w.spool != nil && len(w.spool.recovered) > 0 {
		w.buf = append(w.buf, w.spool.recovered...) // before anything sent since: the order they had
		w.spool.recovered = nil
		for i := range w.buf {
			w.weight += opWeight(&w.buf[i])
		}
		w.publish()
	}
	in := s.ch
	var retry *time.Timer
	var retryC <-chan time.Time
	for {
		if in == nil {
			w.final()
			return
		}
		// Wait for work, or for the end of a backoff.
		if len(w.buf) == 0 || retryC != nil {
			select {
			case op, ok := <-in:
				if !ok {
					in = nil
					continue
				}
				w.add(op)
			case <-retryC:
				retryC = nil
			}
		}
		// Take everything queued: while the database fails the queue must keep moving into the
		// bounded retry buffer, or senders would block on a full queue.
	drain:
		for range cap(s.ch) {
			select {
			case op, ok := <-in:
				if !ok {
					in = nil
					break drain
				}
				w.add(op)
			default:
				break drain
			}
		}
		// While backing off, only a Flush forces an early try; what arrived meanwhile waits for
		// that try too, so it counts in the backlog now (Full and the gauge must not lag a backoff).
		if retryC != nil && len(w.barriers) == 0 {
			w.toSpool()
			w.publish()
			continue
		}
		if retryC == nil && len(w.barriers) == 0 && in != nil {
			w.linger(in)
		}
		if len(w.buf) > 0 {
			if w.tryAll() {
				w.backoff = 0
				if retry != nil {
					retry.Stop()
				}
				retryC = nil
			} else if w.toSpool(); retryC == nil {
				w.backoff = min(max(2*w.backoff, minBackoff), maxBackoff)
				retry = time.NewTimer(w.backoff)
				retryC = retry.C
			}
		}
		w.release()
	}
}

// linger waits up to Linger for writes of sends still in flight to join the batch, and stops as
// soon as all of them have (or the batch is full, or a Flush arrives).
func (w *writeLoop) linger(in chan Op) {
	s := w.s
	if now := time.Now(); now.Sub(w.windowStart) >= rateWindow {
		w.rate = float64(w.windowOps) / now.Sub(w.windowStart).Seconds()
		w.windowStart, w.windowOps = now, 0
	}
	// Linger only when at least one more record is expected within it.
	if s.opts.Linger <= 0 || s.opts.InFlight == nil || w.rate*s.opts.Linger.Seconds() < 1 {
		return
	}
	waiting := func() int {
		n := 0
		for _, op := range w.buf {
			if op.done != nil {
				n++
			}
		}
		return n
	}
	if s.opts.InFlight() <= waiting() {
		return
	}
	t := time.NewTimer(s.opts.Linger)
	defer t.Stop()
	for len(w.buf) < maxBatch && len(w.barriers) == 0 {
		select {
		case op, ok := <-in:
			if !ok {
				return
			}
			w.add(op)
			if s.opts.InFlight() <= waiting() {
				return
			}
		case <-t.C:
			return
		}
	}
}

// add queues op; past the retry buffer's bound the oldest writes are given up, loudly.
func (w *writeLoop) add(op Op) {
	if op.barrier != nil {
		w.barriers = append(w.barriers, op.barrier)
		return
	}
	w.windowOps++
	w.buf = append(w.buf, op)
	w.weight += opWeight(&op)
	if over := w.weight - w.s.opts.RetryBuffer; over > 0 {
		if !w.s.opts.ExactDrops {
			over += w.s.opts.RetryBuffer / evictChunk
		}
		n := w.evict(over)
		if w.s.opts.OnDrop != nil {
			w.s.opts.OnDrop(n)
		}
		w.overflow += n
		w.logOverflow(time.Now())
	}
}

// evictChunk: an overflowing buffer gives up 1/evictChunk of its bound at once, so that the pass
// over it (evict) runs once every that many writes, not for each.
const evictChunk = 64

// evict gives up writes that count at least k (opWeight) and returns how many: the oldest writes
// of the tenants that hold the most of the buffer, until no tenant holds more than the others'
// largest share allows (delivery reports count as one more tenant). The retry buffer is shared:
// during an outage, a tenant sending a flood, or large records, must push out its own records,
// not the other tenants'. The order of what is kept does not change.
func (w *writeLoop) evict(k int) int {
	counts := map[string]int{}
	total := 0
	for i := range w.buf {
		n := opWeight(&w.buf[i])
		counts[opTenant(&w.buf[i])] += n
		total += n
	}
	// The largest share c that every tenant may keep with at most total-k kept in all.
	keep, c, hi := total-k, 0, 0
	for _, n := range counts {
		hi = max(hi, n)
	}
	kept := func(c int) int {
		s := 0
		for _, n := range counts {
			s += min(n, c)
		}
		return s
	}
	for lo := 0; lo <= hi; {
		if mid := (lo + hi) / 2; kept(mid) <= keep {
			c, lo = mid, mid+1
		} else {
			hi = mid - 1
		}
	}
	// What the share leaves unused goes, one write each, to tenants above it (by name, so that
	// the same buffer always loses the same writes): never more is given up than needed.
	extra := keep - kept(c)
	for _, t := range slices.Sorted(maps.Keys(counts)) {
		n := counts[t]
		if n > c && extra > 0 {
			n--
			extra--
		}
		counts[t] = max(n-c, 0) // now: how much of t's oldest goes
	}
	j, weight := 0, 0
	for _, op := range w.buf {
		if t := opTenant(&op); counts[t] > 0 {
			counts[t] -= opWeight(&op)
			answer(op.done, ErrNotCommitted) // pushed out, and no longer waited for
			continue
		}
		w.buf[j] = op
		j++
		weight += opWeight(&op)
	}
	dropped := len(w.buf) - j
	clear(w.buf[j:])
	w.buf, w.weight = w.buf[:j], weight
	return dropped
}

// opWeight is what a write counts against the retry buffer's bound: one, and one more for each
// KiB of the texts its tenant chose (an Infobip-compatible message's callbackData, notifyUrl,
// reference and bulkId; a client id; an action). An Auth0 send's record counts one (about 800
// bytes in memory); one with Infobip's largest callbackData four. Counted in writes alone, a
// tenant sending large records during an outage could fill the replica's memory, which every
// tenant's records share, five to ten times faster than the bound promises.
func opWeight(op *Op) int {
	r := op.Insert
	if r == nil {
		return 1
	}
	return 1 + (len(r.CallbackData)+len(r.NotifyURL)+len(r.Reference)+len(r.BulkID)+len(r.ClientID)+len(r.Action))/1024
}

// opTenant is the tenant a write belongs to; "" for a delivery report (it names no tenant).
func opTenant(op *Op) string {
	if op.Insert != nil {
		return op.Insert.Tenant
	}
	return ""
}

// logOverflow logs the writes pushed out of the retry buffer since the last such line, at most
// once a second.
func (w *writeLoop) logOverflow(now time.Time) {
	if w.overflow > 0 && now.Sub(w.overflowLogged) >= time.Second {
		w.s.log.Error("message log writes dropped", "writes", w.overflow, "reason", "the retry buffer is full")
		w.overflow, w.overflowLogged = 0, now
	}
}

// shift removes the buffer's first n ops. Little left behind them (a committed batch, the usual
// case) is copied down, so the array is used again; a long rest is not: the slice moves forward
// instead, and append moves what is left to a new array as the buffer grows (a long backlog
// drains in many batches). Removed ops are cleared so that their records can be collected.
func (w *writeLoop) shift(n int) {
	for i := range w.buf[:n] {
		w.weight -= opWeight(&w.buf[i])
	}
	rest := len(w.buf) - n
	if rest <= shiftCopyMax {
		copy(w.buf, w.buf[n:])
		clear(w.buf[rest:])
		w.buf = w.buf[:rest]
		return
	}
	clear(w.buf[:n])
	w.buf = w.buf[n:]
}

// shiftCopyMax is the longest rest shift copies down.
const shiftCopyMax = 1024

func (w *writeLoop) drop(n int, why string) {
	w.s.log.Error("message log writes dropped", "writes", n, "reason", why)
	if w.s.opts.OnDrop != nil {
		w.s.opts.OnDrop(n)
	}
}

// tryAll applies the buffer in batches, oldest first, and stops at the first batch that fails
// (which stays at the front, with everything after it). It reports whether the buffer is empty.
func (w *writeLoop) tryAll() bool {
	s := w.s
	defer w.publish()
	for len(w.buf) > 0 {
		n := min(len(w.buf), maxBatch)
		err := w.apply(n)
		if errors.Is(err, ErrRefused) {
			// Find the writes the database refuses: one at a time, in order.
			for range n {
				if err = w.apply(1); errors.Is(err, ErrRefused) {
					op := w.buf[0]
					w.shift(1)
					w.spoolDone(op.seq)
					w.drop(1, "the database refused the write: "+err.Error())
					answer(op.done, err)
					err = nil // given up: the database itself works
				} else if err != nil {
					break
				}
			}
		}
		if err != nil {
			s.log.Error("message log write failed; keeping the writes for another try", "writes", len(w.buf), "err", err.Error())
			return false
		}
	}
	w.spoolEmpty()
	return true
}

// apply writes the buffer's first n ops in one batch and removes them once committed.
func (w *writeLoop) apply(n int) error {
	s := w.s
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.WriteTimeout)
	watch := w.watchSlowTry()
	charges, err := s.b.Apply(ctx, w.buf[:n])
	cancel()
	// What the watcher took joins the buffer behind this batch, once the batch is done with.
	taken := w.endWatch(watch)
	defer func() {
		for _, op := range taken {
			w.add(op)
		}
	}()
	if s.onBatch != nil {
		s.onBatch(n, err)
	}
	if err != nil {
		return err
	}
	if s.opts.OnCharge != nil {
		for _, c := range charges {
			s.opts.OnCharge(c)
		}
	}
	var seq uint64
	for _, op := range w.buf[:n] {
		answer(op.done, nil)
		seq = max(seq, op.seq)
	}
	w.shift(n)
	w.spoolDone(seq)
	return nil
}

// answer tells a write's sender (done, nil for a write no one waits for) what became of it: nil,
// committed; ErrNotCommitted, kept for another try (with a spool: in the spool, or kept in memory
// only because the spool fails); another error, given up. The sender reads one word; a later one
// finds the channel full or no one reading and is dropped (a write answered as spooled and then
// committed), so the writer never blocks on it.
func answer(done chan error, err error) {
	if done != nil {
		select {
		case done <- err:
		default:
		}
	}
}

// publish tells Backlog and OnBacklog how many writes wait for another try.
func (w *writeLoop) publish() {
	s := w.s
	w.logOverflow(time.Now())
	s.backlog.Store(int64(len(w.buf)))
	s.held.Store(int64(w.weight))
	if s.opts.OnBacklog != nil {
		s.opts.OnBacklog(len(w.buf))
	}
}

func (w *writeLoop) release() {
	for _, b := range w.barriers {
		close(b)
	}
	w.barriers = w.barriers[:0]
}

// final runs once the queue is closed: it keeps trying what is left until CloseTimeout, then
// hands the rest over (Options.HandOff) or gives it up, loudly.
func (w *writeLoop) final() {
	deadline := time.Now().Add(w.s.opts.CloseTimeout)
	backoff := minBackoff
	for !w.tryAll() && time.Now().Before(deadline) {
		time.Sleep(min(backoff, time.Until(deadline)))
		backoff = min(2*backoff, maxBackoff)
	}
	w.overflowLogged = time.Time{} // whatever is left unlogged is logged now
	w.logOverflow(time.Now())
	left := w.buf // answered once handed over, spooled or given up
	switch {
	case len(w.buf) == 0:
	case w.handOff():
		w.buf = nil
		w.spoolEmpty() // another replica has them now
	case w.keepSpooled():
	default:
		w.drop(len(w.buf), "the database still failed when the message log closed")
	}
	for _, op := range left {
		answer(op.done, ErrNotCommitted)
	}
	w.buf = nil
	w.release()
}

// handOff gives what is left to Options.HandOff, and reports whether it took it.
func (w *writeLoop) handOff() bool {
	s := w.s
	if s.opts.HandOff == nil {
		return false
	}
	chunks, err := encodeOps(w.buf)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), handOffTimeout)
		err = s.opts.HandOff(ctx, chunks)
		cancel()
	}
	if err != nil {
		s.log.Error("message log writes could not be handed over to another replica", "writes", len(w.buf), "err", err.Error())
		return false
	}
	s.log.Warn("message log writes handed over to another replica: the database still failed when the message log closed", "writes", len(w.buf))
	if s.opts.OnHandOff != nil {
		s.opts.OnHandOff(len(w.buf))
	}
	return true
}

// handOffTimeout bounds Options.HandOff.
const handOffTimeout = 5 * time.Second

// periodically runs f first after first, then every every, until the store is closed (the
// purge, the trim).
func (s *Store) periodically(first, every time.Duration, f func()) {
	defer s.wg.Done()
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			f()
			t.Reset(every)
		}
	}
}

// purgeOlder deletes the records older than retention, and logs how many.
func (s *Store) purgeOlder(retention time.Duration) {
	ctx := context.Background()
	n, err := s.b.Purge(ctx, time.Now().Add(-retention))
	if err != nil {
		s.log.Error("message log purge failed", "err", err)
	} else if n > 0 {
		s.log.Info("message log purged", "records", n)
	}
	oldest, err := s.b.Oldest(ctx)
	if err != nil {
		s.log.Error("message log: its oldest record could not be read", "err", err)
	}
	if s.opts.OnPurge != nil {
		s.opts.OnPurge(n, oldest, err == nil)
	}
}

// RecordBounds are the most records each tenant may keep in the log: Tenants[name], or Default
// for a tenant it does not name; 0: no bound.
type RecordBounds struct {
	Default int
	Tenants map[string]int
	// Every, when set, is how often the trim runs: a backend the replicas share (PostgreSQL) then
	// runs at most one trim in that long among all of them, so that its look (trimLook) is made
	// once per interval, not once per replica.
	Every time.Duration
}

// Of is tenant's bound.
func (b RecordBounds) Of(tenant string) int {
	if n, ok := b.Tenants[tenant]; ok && n > 0 {
		return n
	}
	return b.Default
}

// least is the least bound of any tenant, 0 when there is none: a tenant holding no more records
// is within its own.
func (b RecordBounds) least() int {
	least := b.Default
	for _, n := range b.Tenants {
		if n > 0 && (least == 0 || n < least) {
			least = n
		}
	}
	return least
}

// over keeps, of counts (records by tenant), the tenants past their bounds.
func (b RecordBounds) over(counts map[string]int) []string {
	var out []string
	for tenant, n := range counts {
		if max := b.Of(tenant); max > 0 && n > max {
			out = append(out, tenant)
		}
	}
	slices.Sort(out)
	return out
}

// trimLook is what a SQL backend's last count of every tenant's records found, and when, so that
// the look for tenants over their bounds (every TrimEvery) need not count every record of the log
// each time: it counts, by tenant, only the records created since trimLate before that count,
// and a tenant's count then plus those is an upper bound of what it holds now. Only the tenants
// whose upper bound passes their bounds are looked at (their max-th newest record: errWithinBound
// when there is none). Every trimRecount, and at a backend's first look, every record is counted
// again. At 100 sends a second over 30 days (260 million records) the full count takes the
// database about 45 s; the others read the hours since it.
//
// A record written more than trimLate after it was created (the retry buffer of an outage longer
// than that, a spool or a handover written later) is in neither count, so a tenant may stay past
// its bound by such records until the next full count.
type trimLook struct {
	mu     sync.Mutex
	counts map[string]int
	at     time.Time
}

const (
	trimRecount = 6 * time.Hour
	trimLate    = time.Hour
)

// upper returns each tenant's records, or an upper bound of them, as of now (the backend's
// clock): all counts every tenant's records, since those created at or after a time (ms).
func (l *trimLook) upper(now time.Time, all func() (map[string]int, error), since func(from int64) (map[string]int, error)) (map[string]int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil || now.Before(l.at) || now.Sub(l.at) >= trimRecount {
		counts, err := all()
		if err != nil {
			return nil, err
		}
		l.counts, l.at = counts, now
		return counts, nil
	}
	recent, err := since(l.at.Add(-trimLate).UnixMilli())
	if err != nil {
		return nil, err
	}
	upper := maps.Clone(l.counts)
	for tenant, n := range recent {
		upper[tenant] += n
	}
	return upper, nil
}

// errWithinBound is what a SQL backend's edge (trimEach) returns for a tenant holding no more
// records than its bound: it has no max-th newest record.
var errWithinBound = errors.New("the tenant holds no more records than its bound")

// trimEach trims every tenant of counts (upper bounds of its records, trimLook) past its bound,
// for the SQL backends: edge finds the tenant's max-th newest record (errWithinBound when it has
// none), older deletes the tenant's records before it. It returns how many it deleted of each
// tenant, as far as it got.
func (b RecordBounds) trimEach(counts map[string]int, edge func(tenant string, max int) (int64, string, error), older func(tenant string, at int64, id string) (int, error)) (map[string]int, error) {
	cut := map[string]int{}
	for _, tenant := range b.over(counts) {
		at, id, err := edge(tenant, b.Of(tenant))
		if errors.Is(err, errWithinBound) {
			continue
		}
		if err != nil {
			return cut, err
		}
		n, err := older(tenant, at, id)
		if n > 0 {
			cut[tenant] = n
		}
		if err != nil {
			return cut, err
		}
	}
	return cut, nil
}

// Trim deletes the oldest records of each tenant holding more than its bound (Backend.Trim) and
// logs each such tenant: a warning, as its oldest messages are gone before the retention.
func (s *Store) Trim(ctx context.Context, b RecordBounds) {
	cut, err := s.b.Trim(ctx, b)
	for tenant, n := range cut {
		s.log.Warn("message log trimmed: the tenant held more records than its bound (storage.max_records_per_tenant, tenants[].max_records); its oldest were deleted",
			"tenant", tenant, "records", n, "max_records", b.Of(tenant))
		if s.opts.OnTrim != nil {
			s.opts.OnTrim(tenant, n)
		}
	}
	if err != nil {
		s.log.Error("message log trim failed", "err", err)
	}
}

// trimSQL are the statements of Trim on the SQL backends, with ? placeholders (numbered for
// PostgreSQL): every tenant's records counted, or those created since a time (trimLook), then
// each candidate's max-th newest record, by the index every tenant's listing reads (tenant,
// created_at DESC, id DESC); what is older than it goes, found as a range of that index by the
// row value, as a listing's page is (written with OR, SQLite scanned the tenant's records from
// its newest for each chunk: 4.6 s for 100,000 of 1 million).
const (
	trimAllSQL   = `SELECT tenant, COUNT(*) FROM messages GROUP BY tenant`
	trimSinceSQL = `SELECT tenant, COUNT(*) FROM messages WHERE created_at >= ? GROUP BY tenant`
	trimCutSQL   = `SELECT created_at, id FROM messages WHERE tenant = ? ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?`
	trimOlder    = `tenant = ? AND (created_at, id) < (?, ?)`
)

// oldestSQL is the creation time of the oldest record (NULL when there is none), on the SQL
// backends.
const oldestSQL = `SELECT MIN(created_at) FROM messages`

// The window queries of the SQL backends, with ? placeholders (numbered for PostgreSQL).
const (
	// healthSQL takes pendingBefore, since and until (untilMS).
	healthSQL = `SELECT provider, country, tenant, message_type = 'voice',
		SUM(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END),
		SUM(CASE WHEN status = 'undelivered' THEN 1 ELSE 0 END),
		SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END),
		SUM(CASE WHEN status = 'sent' AND created_at < ? THEN 1 ELSE 0 END)
	FROM messages WHERE created_at >= ? AND created_at < ? AND provider != '' GROUP BY provider, country, tenant, message_type = 'voice'`
	// pricesSQL takes since and until (untilMS). SMS only: a voice call is priced by the minute, and its price is no
	// SMS price (least-cost routing and spend estimates read these as a part's price: a message's
	// is divided by its parts).
	pricesSQL = `SELECT provider, country, currency, tenant, SUM(price / parts), COUNT(*)
	FROM messages WHERE created_at >= ? AND created_at < ? AND price > 0 AND provider != '' AND message_type != 'voice' GROUP BY provider, country, currency, tenant`
)

// oldestReader is the oldest schema version whose code can run on the schema this code migrates
// to: a rollback to an older build, whose code knows fewer migrations, runs on the newer schema
// when it knows at least this many (it migrates nothing, and logs it), and refuses to start
// otherwise. Migrations that add a column with a default, or an index, leave older code working;
// raise it to a migration's number when older code cannot run on its schema (a column dropped,
// renamed or made NOT NULL without a default, a value whose meaning changed). Each migrate that
// knows the whole schema records it in schema_compat, which older builds read.
const oldestReader = 1

// ErrSchemaTooNew is a message log whose schema is newer than this build can run on: it was
// migrated by a newer build, and a migration since needs the newer code.
var ErrSchemaTooNew = errors.New("the message log's schema is newer than this build can run on")

// ErrSchemaOld is a message log opened as it is (OpenSQLiteAsIs, OpenPostgresAsIs) whose schema
// lacks migrations this build knows: smsgate migrate (or serve) applies them.
var ErrSchemaOld = errors.New("the message log's schema is older than this build")

func schemaOld(v, known int) error {
	return fmt.Errorf("%w: schema version %d, this build knows %d migrations; smsgate migrate applies them", ErrSchemaOld, v, known)
}

// checkNewer decides whether code that knows known migrations may run on a schema at version v
// (v > known) whose schema_compat says requires (ok false: the table or its row is missing).
func checkNewer(v, known, requires int, ok bool) error {
	switch {
	case !ok:
		return fmt.Errorf("%w: schema version %d, this build knows %d migrations, and the log does not say which older builds can run on it", ErrSchemaTooNew, v, known)
	case requires > known:
		return fmt.Errorf("%w: schema version %d needs a build that knows at least %d migrations, this one knows %d", ErrSchemaTooNew, v, requires, known)
	}
	return nil
}

// finalSQL selects messages with a final status; the queries of reports to pull use it as the
// messages_unpulled index's WHERE has it (migration 7), since SQLite matches the very term.
const finalSQL = `status IN ('delivered','undelivered','failed','rejected')`

// rowScanner is what database/sql's and pgx's rows have in common.
type rowScanner interface {
	Next() bool
	Err() error
	Scan(dest ...any) error
}

// scanAll reads every row into a T through the fields dest points at.
func scanAll[T any](rows rowScanner, dest func(*T) []any) ([]T, error) {
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(dest(&v)...); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func healthFields(h *HealthRow) []any {
	return []any{&h.Provider, &h.Country, &h.Tenant, &h.Voice, &h.Delivered, &h.Undelivered, &h.Failed, &h.Pending}
}

func tenantField(t *string) []any { return []any{t} }

func priceFields(p *PriceRow) []any {
	return []any{&p.Provider, &p.Country, &p.Currency, &p.Tenant, &p.Sum, &p.N}
}

// tenantCounts reads the rows of trimAllSQL or trimSinceSQL, records by tenant, from either SQL
// backend's rows.
func tenantCounts[R interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}](rows R) (map[string]int, error) {
	out := map[string]int{}
	for rows.Next() {
		var tenant string
		var n int64
		if err := rows.Scan(&tenant, &n); err != nil {
			return nil, err
		}
		out[tenant] = int(n)
	}
	return out, rows.Err()
}

// collect reads every row of a query with scan: the row loop the SQL backends share
// (database/sql and pgx rows both have Next and Err).
func collect(rows interface {
	Next() bool
	Err() error
}, scan func() (*Record, error)) ([]*Record, error) {
	var out []*Record
	for rows.Next() {
		r, err := scan()
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// oldestFirst is collect, ordered by creation: records handed out (Take, Due) come oldest first.
func oldestFirst(rows interface {
	Next() bool
	Err() error
}, scan func() (*Record, error)) ([]*Record, error) {
	out, err := collect(rows, scan)
	slices.SortFunc(out, func(a, b *Record) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, err
}

// Prices sums the prices reported on messages created in [since, until) (see Backend.Prices).
func (s *Store) Prices(ctx context.Context, since, until time.Time) ([]PriceRow, error) {
	return s.b.Prices(ctx, since, until)
}

// untilMS is until in Unix milliseconds for a query's bound; zero is no bound.
func untilMS(until time.Time) int64 {
	if until.IsZero() {
		return math.MaxInt64
	}
	return until.UnixMilli()
}
