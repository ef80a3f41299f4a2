package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
	"modernc.org/sqlite" // also registers the pure-Go "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/smsgate/smsgate/gateway"
)

// migrations are applied in order; schema_version records how many ran, and schema_compat the
// oldest version whose code can run on the schema (oldestReader). Append, never edit.
var migrations = []string{
	`CREATE TABLE messages (
		id TEXT PRIMARY KEY,
		tenant TEXT NOT NULL,
		client_id TEXT NOT NULL DEFAULT '',
		route TEXT NOT NULL DEFAULT '',
		message_type TEXT NOT NULL DEFAULT '',
		action TEXT NOT NULL DEFAULT '',
		country TEXT NOT NULL DEFAULT '',
		recipient TEXT NOT NULL DEFAULT '',
		status TEXT NOT NULL,
		provider TEXT NOT NULL DEFAULT '',
		provider_message_id TEXT NOT NULL DEFAULT '',
		attempts TEXT NOT NULL DEFAULT '[]',
		error TEXT NOT NULL DEFAULT '',
		provider_status TEXT NOT NULL DEFAULT '',
		price REAL NOT NULL DEFAULT 0,
		currency TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		delivered_at INTEGER
	);
	CREATE INDEX messages_tenant_created ON messages(tenant, created_at DESC, id DESC);
	CREATE INDEX messages_provider_pmid ON messages(provider, provider_message_id);
	CREATE INDEX messages_created ON messages(created_at);
	CREATE TABLE pending_reports (
		provider TEXT NOT NULL,
		provider_message_id TEXT NOT NULL,
		message_id TEXT NOT NULL,
		report TEXT NOT NULL,
		received_at INTEGER NOT NULL
	);
	CREATE INDEX pending_by_pmid ON pending_reports(provider, provider_message_id);
	CREATE INDEX pending_by_id ON pending_reports(message_id);`,
	// 2: messages sent through the Infobip-compatible API.
	`ALTER TABLE messages ADD COLUMN source TEXT NOT NULL DEFAULT '';
	ALTER TABLE messages ADD COLUMN reference TEXT NOT NULL DEFAULT '';
	ALTER TABLE messages ADD COLUMN bulk_id TEXT NOT NULL DEFAULT '';
	ALTER TABLE messages ADD COLUMN callback_data TEXT NOT NULL DEFAULT '';
	ALTER TABLE messages ADD COLUMN notify_url TEXT NOT NULL DEFAULT '';
	ALTER TABLE messages ADD COLUMN report_taken INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX messages_untaken ON messages(tenant, created_at) WHERE source != '' AND report_taken = 0;`,
	// 3: the number range of the recipient (pumping detection's conversion signal).
	`ALTER TABLE messages ADD COLUMN num_range TEXT NOT NULL DEFAULT '';`,
	// 4: pushes of final reports to notify URLs, kept until done (Due, PushDone).
	`ALTER TABLE messages ADD COLUMN push_at INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE messages ADD COLUMN push_tries INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX messages_push_due ON messages(tenant, push_at) WHERE push_at > 0;`,
	// 5: reports held until the caller is given the message's id (Release).
	`ALTER TABLE messages ADD COLUMN report_held INTEGER NOT NULL DEFAULT 0;`,
	// 6: the Infobip-compatible logs' filters (bulkId, the caller's messageId), partial: a message
	// without them (every Auth0 send) writes nothing to them. SQLite uses one only for a query
	// that repeats its WHERE term (listSQL).
	`CREATE INDEX messages_bulk ON messages(tenant, bulk_id, created_at DESC, id DESC) WHERE bulk_id <> '';
	CREATE INDEX messages_reference ON messages(tenant, reference) WHERE reference <> '';`,
	// 7: reports to pull (Take): only final reports of messages sent without a notify URL, not
	// yet pulled. messages_untaken held every compat message until pulled or pushed, so a pull
	// walked all of a tenant's messages still waiting for a report (a provider that sends none:
	// all of them) to find none.
	`CREATE INDEX messages_unpulled ON messages(tenant, created_at)
		WHERE source <> '' AND notify_url = '' AND report_taken = 0 AND status IN ('delivered','undelivered','failed','rejected');
	DROP INDEX messages_untaken;`,
	// 8: the parts an SMS was sent as (a report's price counts them; prices are read per part).
	`ALTER TABLE messages ADD COLUMN parts INTEGER NOT NULL DEFAULT 1;`,
}

// SQLite is a Backend on one SQLite file (modernc.org/sqlite, no cgo) in WAL mode.
type SQLite struct {
	// db serves the reads made on a tenant's behalf (its message, its listings, the reports it
	// pulls: Get, List, Take), sys the reads every tenant relies on (delivery reports' look-ups,
	// delivery health, prices, pushes, the chores' looks, the checkpoints): however long tenants'
	// reads hold every connection of db, reports are still matched and routing still reads its
	// health. w, one connection, is the writer's: however many reads run, every tenant's records
	// still commit. The purge shares w, a chunk at a time, so that SQLite's one file lock never
	// keeps the writer out for more than a chunk.
	db, sys, w *sql.DB
	// Now is the clock for updated_at and for when a report falls due to be pushed; nil means time.Now.
	Now func() time.Time

	// Statements of the write path, prepared once: parsing SQL for every record cost more CPU
	// than executing it (see docs/benchmarks.md).
	insert, replace, byID, byPMID, pendingFor, pendingAdd, pendingDel *sql.Stmt
	// pending counts unmatched reports, and filter says which records they may name; only the
	// writer goroutine (Apply) touches them. An insert looks pending_reports up only when both say
	// a report may be waiting for it; pendingLookups counts those look-ups (tests).
	pending        int
	filter         pendingFilter
	pendingLookups int
	// recount is set by Purge (another goroutine) to make the writer count pending reports again.
	recount atomic.Bool
	// stopCheckpoints ends the background checkpointer, which closes checkpointsDone
	// (stopCheckpointer, once).
	stopCheckpoints, checkpointsDone chan struct{}
	stopOnce                         sync.Once
	// walLong is set by the checkpointer when the WAL holds more than walFrames frames: the
	// writer then checkpoints between two batches (restartWAL) and says so on walBegan once its
	// next batch has begun.
	walLong  atomic.Bool
	walBegan chan struct{}
	// gate lets every use of db and sys in (a weight of 1 each) unless the checkpointer holds all of it
	// to start the WAL over with no read on it (restartGated). tenantReads holds the cancels of
	// the tenants' reads running (on db), which a closing gate interrupts past walReadGrace.
	gate        *semaphore.Weighted
	readsMu     sync.Mutex
	tenantReads map[uint64]context.CancelCauseFunc
	readSeq     uint64
	// walFrames, for tests, replaces walRestartFrames; walRestarts counts the times the
	// checkpointer closed the gate (tests). Atomic, as readGrace (for tests, replaces
	// walReadGrace): a test sets them once the checkpointer runs.
	walFrames   atomic.Int64
	walRestarts atomic.Int64
	readGrace   atomic.Int64
	// onWAL is SQLiteOptions.OnWAL, onInterrupted SQLiteOptions.OnReadsInterrupted; pageSize the
	// file's page, the size of a frame's page.
	onWAL         func(bytes int64)
	onInterrupted func(n int)
	pageSize      int64
	// PurgeChunk bounds the rows one purge statement deletes; default 1000 (a batch of records
	// waits for at most one: 5000 took up to 0.2 s on a log of five million, storage.commit_timeout).
	PurgeChunk int
	// afterPurgeChunk, for tests, runs between the purge's statements; afterHealthSlice between
	// Health's reads.
	afterPurgeChunk, afterHealthSlice func()
	// ahead is the schema version found at open when it is newer than this build knows (a
	// rollback), else 0.
	ahead int
	// look is what the trim's last count of every tenant's records found (Trim).
	look trimLook
}

// Ahead returns the schema version found at open and the version this build knows, when the
// schema is newer (a rollback to an older build, which runs on it without migrating); else 0, 0.
func (s *SQLite) Ahead() (version, known int) {
	if s.ahead == 0 {
		return 0, 0
	}
	return s.ahead, len(migrations)
}

// SQLiteOptions are the SQLite log's settings beyond its path; the zero value is the default.
type SQLiteOptions struct {
	// Unmapped reads the file through the page cache instead of mapping it (storage.sqlite_mmap:
	// false; see readMmap for what the mapping buys and risks).
	Unmapped bool
	// OnWAL, when set, is told after each background checkpoint how many bytes the WAL holds
	// (smsgate_message_log_wal_bytes): a read from outside (a backup, a sqlite3 shell), or
	// checkpoints that fail, keep it from starting over, and it grows by every write.
	OnWAL func(bytes int64)
	// OnReadsInterrupted, when set, is told how many tenants' reads a closing WAL gate
	// interrupted (smsgate_message_log_reads_interrupted_total): each was answered 503.
	OnReadsInterrupted func(n int)
}

// OpenSQLite opens (creating it and its directory if needed) and migrates the database at path.
// Migrations run without a bound (an index built over a large file takes as long as the file is
// large), and log (nil: none) gets a line every migrateLogEvery while they run.
func OpenSQLite(ctx context.Context, path string, log *slog.Logger) (*SQLite, error) {
	return OpenSQLiteWith(ctx, path, SQLiteOptions{}, log)
}

// OpenSQLiteWith is OpenSQLite with options other than the defaults.
func OpenSQLiteWith(ctx context.Context, path string, opts SQLiteOptions, log *slog.Logger) (*SQLite, error) {
	return openSQLite(ctx, path, opts, log, true)
}

// OpenSQLiteAsIs opens the database at path without migrating it, for tools that only read
// (smsgate route): it fails with ErrSchemaOld when this build's migrations are not all applied,
// and as OpenSQLite does when the schema is newer than this build can run on.
func OpenSQLiteAsIs(ctx context.Context, path string, opts SQLiteOptions) (*SQLite, error) {
	return openSQLite(ctx, path, opts, nil, false)
}

func openSQLite(ctx context.Context, path string, opts SQLiteOptions, log *slog.Logger, migrate bool) (*SQLite, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("message log: %w", err)
		}
	}
	// wal_autocheckpoint(0): the writer never checkpoints inside a commit (copying the WAL into
	// the database and its fsync would stall every send waiting on that batch); checkpointer
	// does it in the background.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_pragma=wal_autocheckpoint(0)&_pragma=journal_size_limit(67108864)"
	// The writer begins its transactions IMMEDIATE: one that began deferred, read, and then wrote
	// while another process held the file's write lock (smsgate migrate, a sqlite3 shell) failed at
	// once with SQLITE_BUSY, as WAL mode does not wait on an upgrade from reading to writing;
	// IMMEDIATE takes the write lock first, within busy_timeout. A log opened as it is (a tool
	// that only reads) takes no write lock at all.
	wdsn := dsn
	if migrate {
		wdsn += "&_txlock=immediate"
	}
	w, err := sql.Open("sqlite", wdsn)
	if err != nil {
		return nil, fmt.Errorf("message log: %w", err)
	}
	w.SetMaxOpenConns(1)
	s := &SQLite{w: w}
	if err := s.migrate(ctx, log, migrate); err != nil {
		w.Close()
		if busy(err) {
			// Another process holds the file's write lock (smsgate migrate, a sqlite3 shell):
			// it ends, so this is tried again as an outage is, not a config to refuse.
			return nil, &unreachableError{fmt.Sprintf("message log %s: %v", path, err)}
		}
		return nil, fmt.Errorf("message log %s: %w", path, err)
	}
	if err := s.prepare(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("message log %s: %w", path, err)
	}
	if err := w.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&s.pageSize); err != nil {
		w.Close()
		return nil, fmt.Errorf("message log %s: %w", path, err)
	}
	rdsn := dsn + readMmap
	if opts.Unmapped {
		rdsn = dsn
	}
	if s.db, err = sql.Open("sqlite", rdsn); err != nil {
		w.Close()
		return nil, fmt.Errorf("message log: %w", err)
	}
	s.db.SetMaxOpenConns(sqliteTenantReads)
	if s.sys, err = sql.Open("sqlite", rdsn); err != nil {
		w.Close()
		s.db.Close()
		return nil, fmt.Errorf("message log: %w", err)
	}
	s.sys.SetMaxOpenConns(sqliteSharedReads)
	s.gate, s.walBegan, s.onWAL, s.onInterrupted = semaphore.NewWeighted(gateAll), make(chan struct{}, 1), opts.OnWAL, opts.OnReadsInterrupted
	s.stopCheckpoints, s.checkpointsDone = make(chan struct{}), make(chan struct{})
	go s.checkpointer(checkpointEvery)
	return s, nil
}

// sqliteTenantReads is the connections of the pool tenants' reads use (ReadConns), and
// sqliteSharedReads those of the pool of the reads every tenant relies on.
const (
	sqliteTenantReads = 4
	sqliteSharedReads = 4
)

// ReadConns implements Backend.
func (s *SQLite) ReadConns() int { return sqliteTenantReads }

// readMmap makes the read pool's connections map the file (up to its first 2 GiB, the most this
// build of SQLite maps) instead of copying its pages into the page cache. The SQLite of
// modernc.org/sqlite is built with SQLITE_ENABLE_MEMORY_MANAGEMENT: every connection of the
// process shares one page cache and one least-recently-used list, so a read that scanned many
// pages (the delivery-health read, a tenant's listing) took the writer's pages from it as it went,
// and the writer's next batch read them back from the file (TestScansLeaveTheWritersPages).
// Mapped pages take no room in the page cache; pages still in the WAL, and pages past the mapped
// part of a larger file, are read through it as before. What this risks: the kernel reports a
// disk's read error on a mapped page as a fault, which ends the process, where a read through the
// cache would have failed that one read (docs/operations.md). SQLiteOptions.Unmapped turns it off.
const readMmap = "&_pragma=mmap_size(2147418112)"

// busy reports whether err is SQLite's SQLITE_BUSY or SQLITE_LOCKED (the file's lock held by
// another connection beyond busy_timeout).
func busy(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	code := se.Code() & 0xff // the primary code of an extended one
	return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
}

// checkpointEvery is how often the background checkpointer copies the WAL into the database.
const checkpointEvery = 500 * time.Millisecond

// walRestartFrames is how many frames (pages of 4 KiB) the WAL may hold before the writer
// checkpoints it itself (restartWAL): 64 MiB.
const walRestartFrames = 16384

// restartWAL checkpoints the WAL on the writer's own connection, between two batches, so that the
// next batch starts it again from its beginning. SQLite starts the WAL over only when a write
// begins with every frame of it copied into the database and no read using it; the background
// checkpointer runs beside the writer, whose commits keep adding frames while it copies, and from
// a few hundred commits a second on it never caught up: the WAL grew by the commits' pages, some
// 16 MiB a second at 700 commits a second, until the disk every tenant's records share was full.
// Here no commit can come between the copy and the next write. The copy is of the frames the
// background checkpoint left, a few hundred milliseconds of commits; a read still using older
// frames keeps them (PASSIVE never waits for it), and the next look tries again.
// journal_size_limit then cuts the file back.
func (s *SQLite) restartWAL(ctx context.Context) {
	_, _ = s.w.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
}

// checkpoint runs a PASSIVE checkpoint beside the writer and returns how many frames the WAL
// holds (0 when it failed: tried again at the next tick), and tells onWAL their bytes.
func (s *SQLite) checkpoint() int {
	var busy, frames, copied int
	if err := s.sys.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
		return 0
	}
	if s.onWAL != nil {
		s.onWAL(int64(frames) * s.pageSize)
	}
	return frames
}

// gateAll is the gate's whole weight: more than reads could ever hold at once.
const gateAll = 1 << 30

// walReadGrace is how long a closing gate waits for the tenants' reads running before it
// interrupts them: each read's wait for the gate, the delivery reports' look-ups and delivery
// health among them, is bounded by it (plus the shared reads running, which are not
// interrupted), not by the slowest listing a tenant may run (server.request_timeout, 8 s).
const walReadGrace = time.Second

// walGateWait bounds how long the gate stays closed for the writer's next batch: with none
// coming, nothing grows the WAL meanwhile.
const walGateWait = time.Second

// restartGated starts the WAL over when the writer's own checkpoints did not: reads that overlap
// without end (a tenant listing its messages with a filter no index serves, two at a time, each
// for seconds) always keep a frame of it in use, and it grew by every commit, 8 MiB a second
// beside two such listings. The gate lets no new read in and waits for those running (each
// within its own budget) to end; then this copies what the WAL holds, the writer copies the
// rest and begins its next batch, which starts the WAL over, and reads go on. The writer never
// waits for a read. A read waits for this at most walReadGrace and the longest shared read
// running (delivery health, prices: bounded, and not back to back): the tenants' reads still
// running after walReadGrace are interrupted (ErrReadInterrupted, a 503 the tenant may retry),
// or one tenant's slow listings, back to back, made every tenant's reads and the delivery
// reports' look-ups wait up to server.request_timeout each time the WAL started over.
func (s *SQLite) restartGated() {
	closed := make(chan struct{})
	go func() {
		s.gate.Acquire(context.Background(), gateAll) // never fails: no deadline
		close(closed)
	}()
	t := time.NewTimer(cmp.Or(time.Duration(s.readGrace.Load()), walReadGrace))
	select {
	case <-closed:
		t.Stop()
	case <-t.C:
		if n := s.interruptTenantReads(); n > 0 && s.onInterrupted != nil {
			s.onInterrupted(n)
		}
		<-closed
	}
	defer s.gate.Release(gateAll)
	s.walRestarts.Add(1)
	s.checkpoint()
	select {
	case <-s.walBegan: // a word left from an earlier restartWAL
	default:
	}
	s.walLong.Store(true)
	t = time.NewTimer(walGateWait)
	defer t.Stop()
	select {
	case <-s.walBegan:
	case <-t.C:
	case <-s.stopCheckpoints:
	}
}

// read runs f, one use of db (s.db or s.sys), once the gate lets it in; ctx bounds the wait. f
// is given db and the context to run its statements with: a tenant's read (on s.db) is
// interrupted when the gate, closing, has waited walReadGrace for it (interruptTenantReads).
// Never nest: a read waiting inside another behind a closing gate would wait for itself.
func read[T any](s *SQLite, ctx context.Context, db *sql.DB, f func(context.Context, *sql.DB) (T, error)) (T, error) {
	return gated(s, ctx, func() (T, error) {
		if db != s.db {
			return f(ctx, db)
		}
		ctx, done := s.trackTenantRead(ctx)
		defer done()
		v, err := f(ctx, db)
		if err != nil && errors.Is(context.Cause(ctx), ErrReadInterrupted) {
			return v, ErrReadInterrupted
		}
		return v, err
	})
}

// gated runs f once the gate lets it in; ctx bounds the wait.
func gated[T any](s *SQLite, ctx context.Context, f func() (T, error)) (T, error) {
	if err := s.gate.Acquire(ctx, 1); err != nil {
		var zero T
		return zero, err
	}
	defer s.gate.Release(1)
	return f()
}

// trackTenantRead gives a tenant's read a context that interruptTenantReads cancels; done
// forgets it.
func (s *SQLite) trackTenantRead(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	s.readsMu.Lock()
	if s.tenantReads == nil {
		s.tenantReads = map[uint64]context.CancelCauseFunc{}
	}
	s.readSeq++
	key := s.readSeq
	s.tenantReads[key] = cancel
	s.readsMu.Unlock()
	return ctx, func() {
		s.readsMu.Lock()
		delete(s.tenantReads, key)
		s.readsMu.Unlock()
		cancel(nil)
	}
}

// ErrReadInterrupted is a tenant's read of the message log cut short so that SQLite could start
// its write-ahead log over (restartGated): the read may be tried again.
var ErrReadInterrupted = errors.New("message log: a read running for longer than the write-ahead log could wait was interrupted; retry")

// interruptTenantReads cancels the tenants' reads running (SQLite interrupts their statements)
// and returns how many.
func (s *SQLite) interruptTenantReads() int {
	s.readsMu.Lock()
	defer s.readsMu.Unlock()
	for _, cancel := range s.tenantReads {
		cancel(ErrReadInterrupted)
	}
	return len(s.tenantReads)
}

// readRows runs the query q on db (s.db or s.sys) once the gate lets it in (read), and reads its
// rows with each.
func readRows[T any](s *SQLite, ctx context.Context, db *sql.DB, each func(*sql.Rows) (T, error), q string, args ...any) (T, error) {
	return read(s, ctx, db, func(ctx context.Context, db *sql.DB) (T, error) { return queryRows(ctx, db, each, q, args...) })
}

// claimRows runs q, a statement that changes the rows it returns (UPDATE ... RETURNING), on db
// once the gate lets it in (ctx bounds the wait), and reads its rows with each to their end,
// whatever happens to ctx meanwhile: SQLite makes every change at the statement's first step, so
// one cut short while its rows were read (the caller gone, the gate's interruption) would have
// claimed rows nobody was given: reports marked pulled that no pull returned. Such statements
// are short (an index and a limit).
func claimRows[T any](s *SQLite, ctx context.Context, db *sql.DB, each func(*sql.Rows) (T, error), q string, args ...any) (T, error) {
	return gated(s, ctx, func() (T, error) { return queryRows(context.WithoutCancel(ctx), db, each, q, args...) })
}

// queryRows runs the query q on db and reads its rows with each.
func queryRows[T any](ctx context.Context, db *sql.DB, each func(*sql.Rows) (T, error), q string, args ...any) (T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		var zero T
		return zero, err
	}
	defer rows.Close()
	return each(rows)
}

// records reads rows of cols as records, in their order; oldest reads them oldest first.
func records(rows *sql.Rows) ([]*Record, error) {
	return collect(rows, func() (*Record, error) { return scan(rows) })
}

func oldest(rows *sql.Rows) ([]*Record, error) {
	return oldestFirst(rows, func() (*Record, error) { return scan(rows) })
}

// stopCheckpointer ends the background checkpointer and waits for it (Close; tests).
func (s *SQLite) stopCheckpointer() {
	s.stopOnce.Do(func() {
		close(s.stopCheckpoints)
		<-s.checkpointsDone
	})
}

// checkpointer runs PASSIVE checkpoints (they never wait for, nor block, the writer or readers)
// every interval until Close. A failed one is tried again at the next tick; the WAL keeps
// everything meanwhile.
func (s *SQLite) checkpointer(every time.Duration) {
	defer close(s.checkpointsDone)
	t := time.NewTicker(every)
	defer t.Stop()
	var g gateBackoff
	for {
		select {
		case <-s.stopCheckpoints:
			return
		case <-t.C:
			limit := cmp.Or(int(s.walFrames.Load()), walRestartFrames)
			switch frames := s.checkpoint(); {
			case frames > 2*limit:
				if g.due(frames, time.Now()) {
					s.restartGated()
				} else {
					s.walLong.Store(true)
				}
			case frames > limit:
				s.walLong.Store(true)
			default:
				g = gateBackoff{}
			}
		}
	}
}

// gateBackoff spaces the gate's closings while they do not start the WAL over: a read from
// outside the gateway (a sqlite3 shell, a .backup of the file) holds the WAL, the gate cannot
// hold it, and every closing still paused every read and interrupted the tenants' long ones,
// every 500 ms for as long as that read lasted. A closing that did not (the WAL held at least as
// many frames at the next look) is followed by the next 1 s after it, then twice as long each
// time, up to a minute; one that did, or the WAL back under its bound, ends the wait.
type gateBackoff struct {
	closedAt int // frames the WAL held when the gate last closed; 0: not since it was back under
	wait     time.Duration
	next     time.Time
}

// due says whether the gate closes now, the WAL holding frames.
func (g *gateBackoff) due(frames int, now time.Time) bool {
	if g.closedAt > 0 && frames >= g.closedAt { // the last closing did not start the WAL over
		if now.Before(g.next) {
			return false
		}
		g.wait = min(2*g.wait, time.Minute)
	} else {
		g.wait = time.Second
	}
	g.closedAt, g.next = frames, now.Add(g.wait)
	return true
}

func (s *SQLite) prepare(ctx context.Context) error {
	values := ` INTO messages (` + cols + `) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`
	for _, st := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.insert, `INSERT OR REPLACE` + values},
		{&s.replace, `REPLACE` + values},
		{&s.byID, `SELECT ` + cols + ` FROM messages WHERE id = ? AND provider = ?`},
		{&s.byPMID, `SELECT ` + cols + ` FROM messages WHERE provider = ? AND provider_message_id = ?`},
		{&s.pendingFor, `SELECT rowid, report FROM pending_reports WHERE provider = ? AND ((message_id = ? AND message_id != '') OR (provider_message_id = ? AND provider_message_id != ''))`},
		{&s.pendingAdd, `INSERT INTO pending_reports (provider, provider_message_id, message_id, report, received_at) VALUES (?,?,?,?,?)`},
		{&s.pendingDel, `DELETE FROM pending_reports WHERE rowid = ?`},
	} {
		stmt, err := s.w.PrepareContext(ctx, st.sql)
		if err != nil {
			return err
		}
		*st.dst = stmt
	}
	return s.countPending(ctx)
}

// countPending counts the unmatched reports and rebuilds the filter of what they name.
func (s *SQLite) countPending(ctx context.Context) error {
	if err := s.w.QueryRowContext(ctx, `SELECT count(*) FROM pending_reports`).Scan(&s.pending); err != nil {
		return err
	}
	return s.filter.rebuild(ctx, s.w)
}

// SchemaVersion returns how many migrations have been applied.
func (s *SQLite) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.w.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	return v, err
}

// migrate applies the migrations this build knows and the database lacks; with apply false it
// only checks that there are none (ErrSchemaOld). SQLite says nothing of a statement's progress,
// so the lines on log say which migration runs and for how long (the file is local: no watcher
// needs to ask whether the database is alive).
func (s *SQLite) migrate(ctx context.Context, log *slog.Logger, apply bool) error {
	steps := newMigrationSteps()
	if log != nil {
		var wg sync.WaitGroup
		done := make(chan struct{})
		defer wg.Wait()
		defer close(done)
		wg.Go(func() {
			t := time.NewTicker(migrateLogEvery)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					steps.log(log)
				}
			}
		})
	}
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return err
	}
	steps.at("waiting for the file's write lock (another process is writing to it)")
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	steps.at("reading the schema version")
	var v int
	switch err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_compat (requires INTEGER NOT NULL)`); err != nil {
		return err
	}
	if v > len(migrations) {
		var requires int
		err := tx.QueryRowContext(ctx, `SELECT requires FROM schema_compat`).Scan(&requires)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err := checkNewer(v, len(migrations), requires, err == nil); err != nil {
			return err
		}
		s.ahead = v
		return nil
	}
	if !apply {
		if v < len(migrations) {
			return schemaOld(v, len(migrations))
		}
		return nil
	}
	for i := v; i < len(migrations); i++ {
		steps.at(fmt.Sprintf("migration %d", i+1))
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	// One statement an Exec: the driver binds each statement of a multi-statement Exec from the
	// first argument on, which wrote len(migrations) as requires and made every older build
	// refuse the log (TestARollbackRunsOnANewerSchema).
	for _, st := range []struct {
		sql  string
		args []any
	}{
		{`UPDATE schema_version SET version = ?`, []any{len(migrations)}},
		{`DELETE FROM schema_compat`, nil},
		{`INSERT INTO schema_compat (requires) VALUES (?)`, []any{oldestReader}},
	} {
		if _, err := tx.ExecContext(ctx, st.sql, st.args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (s *SQLite) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

const cols = `id, tenant, client_id, route, message_type, action, country, recipient, status, provider,
	provider_message_id, attempts, error, provider_status, price, currency, created_at, updated_at, delivered_at,
	source, reference, bulk_id, callback_data, notify_url, report_taken, num_range, push_at, push_tries, report_held, parts`

// Apply implements Backend: the whole batch in one transaction.
func (s *SQLite) Apply(ctx context.Context, ops []Op) ([]Charge, error) {
	ap := &applier{now: s.now().UTC()}
	// The write timeout is not applied here: a local file does not stop answering the way a
	// server does, an interrupt cannot end a write blocked in the kernel anyway, and a deadline
	// costs a watching goroutine per statement in modernc.org/sqlite, on every send.
	if err := s.apply(context.WithoutCancel(ctx), ops, ap); err != nil {
		return nil, err
	}
	return ap.charges, nil
}

func (s *SQLite) apply(ctx context.Context, ops []Op, ap *applier) error {
	if s.filter.room <= 0 {
		if err := s.countPending(ctx); err != nil {
			return err
		}
		s.recount.Store(false)
	} else if s.recount.Swap(false) {
		// After a purge: the filter keeps the ids of the reports it deleted (false positives
		// only) until it is rebuilt.
		if err := s.w.QueryRowContext(ctx, `SELECT count(*) FROM pending_reports`).Scan(&s.pending); err != nil {
			return err
		}
	}
	restarted := s.walLong.Swap(false)
	if restarted {
		s.restartWAL(ctx)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if restarted {
		select {
		case s.walBegan <- struct{}{}:
		default:
		}
	}
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var insert *sql.Stmt // the transaction's copy of s.insert, made once per batch
	for _, op := range ops {
		switch {
		case op.Insert != nil:
			if op.again {
				there, err := scanOne(tx.StmtContext(ctx, s.byID).QueryRowContext(ctx, op.Insert.ID, op.Insert.Provider))
				if err != nil {
					return err
				}
				if there != nil {
					continue // applied before: the record stays as it is
				}
			}
			r := *op.Insert
			if err := s.applyPending(ctx, tx, &r, ap); err != nil {
				return err
			}
			if insert == nil {
				insert = tx.StmtContext(ctx, s.insert)
			}
			if err := put(ctx, insert, &r); err != nil {
				return err
			}
		case op.Report != nil:
			if err := s.report(ctx, tx, op.Report, ap); err != nil {
				return err
			}
		case op.Release != "":
			if _, err := tx.ExecContext(ctx, releaseSQL("?", "?"), ap.now.UnixMilli(), op.Release); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

func put(ctx context.Context, stmt *sql.Stmt, r *Record) error {
	att, err := json.Marshal(r.Attempts)
	if err != nil {
		return err
	}
	var delivered any
	if r.DeliveredAt != nil {
		delivered = r.DeliveredAt.UnixMilli()
	}
	_, err = stmt.ExecContext(ctx, r.ID, r.Tenant, r.ClientID, r.Route, r.MessageType, r.Action, r.Country, r.Recipient, r.Status, r.Provider,
		r.ProviderMessageID, string(att), r.Error, r.ProviderStatus, r.Price, r.Currency, r.CreatedAt.UnixMilli(), r.UpdatedAt.UnixMilli(), delivered,
		r.Source, r.Reference, r.BulkID, r.CallbackData, r.NotifyURL, r.ReportTaken, r.Range, msOrZero(r.PushAt), r.PushTries, r.ReportHeld, max(1, r.Parts))
	return err
}

// msOrZero is t in Unix milliseconds, 0 for the zero time.
func msOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// timeOrZero is msOrZero's inverse.
func timeOrZero(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// applyPending applies reports that arrived before r was written, and deletes them.
func (s *SQLite) applyPending(ctx context.Context, tx *sql.Tx, r *Record, ap *applier) error {
	if s.pending == 0 || !s.filter.mayHave(r.Provider, r.ID, r.ProviderMessageID) {
		return nil
	}
	s.pendingLookups++
	rows, err := tx.StmtContext(ctx, s.pendingFor).QueryContext(ctx, r.Provider, r.ID, r.ProviderMessageID)
	if err != nil {
		return err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		var raw string
		if err := rows.Scan(&id, &raw); err != nil {
			rows.Close()
			return err
		}
		var rep gateway.DeliveryReport
		if json.Unmarshal([]byte(raw), &rep) == nil {
			ap.apply(r, &rep)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	del := tx.StmtContext(ctx, s.pendingDel)
	for _, id := range ids {
		if _, err := del.ExecContext(ctx, id); err != nil {
			return err
		}
		s.pending--
	}
	return nil
}

func (s *SQLite) report(ctx context.Context, tx *sql.Tx, rep *gateway.DeliveryReport, ap *applier) error {
	var r *Record
	var err error
	// A report matches only messages its own provider sent: whoever holds one provider's webhook
	// credentials cannot change the status of messages sent through another.
	if rep.MessageID != "" {
		r, err = scanOne(tx.StmtContext(ctx, s.byID).QueryRowContext(ctx, rep.MessageID, rep.Provider))
	}
	if r == nil && err == nil && rep.ProviderMessageID != "" {
		r, err = scanOne(tx.StmtContext(ctx, s.byPMID).QueryRowContext(ctx, rep.Provider, rep.ProviderMessageID))
	}
	if err != nil {
		return err
	}
	if r == nil {
		raw, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		if _, err = tx.StmtContext(ctx, s.pendingAdd).ExecContext(ctx, rep.Provider, rep.ProviderMessageID, rep.MessageID, string(raw), ap.now.UnixMilli()); err != nil {
			return err
		}
		s.pending++
		s.filter.add(rep.Provider, rep.ProviderMessageID, rep.MessageID)
		return nil
	}
	if !ap.apply(r, rep) {
		return nil
	}
	return put(ctx, tx.StmtContext(ctx, s.replace), r)
}

type scanner interface{ Scan(...any) error }

func scan(sc scanner) (*Record, error) {
	var r Record
	var att string
	var created, updated, pushAt int64
	var delivered sql.NullInt64
	if err := sc.Scan(&r.ID, &r.Tenant, &r.ClientID, &r.Route, &r.MessageType, &r.Action, &r.Country, &r.Recipient, &r.Status, &r.Provider,
		&r.ProviderMessageID, &att, &r.Error, &r.ProviderStatus, &r.Price, &r.Currency, &created, &updated, &delivered,
		&r.Source, &r.Reference, &r.BulkID, &r.CallbackData, &r.NotifyURL, &r.ReportTaken, &r.Range, &pushAt, &r.PushTries, &r.ReportHeld, &r.Parts); err != nil {
		return nil, err
	}
	r.PushAt = timeOrZero(pushAt)
	if err := json.Unmarshal([]byte(att), &r.Attempts); err != nil {
		return nil, err
	}
	r.CreatedAt, r.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	if delivered.Valid {
		t := time.UnixMilli(delivered.Int64).UTC()
		r.DeliveredAt = &t
	}
	return &r, nil
}

func scanOne(row *sql.Row) (*Record, error) {
	r, err := scan(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return r, err
}

// Get implements Backend.
func (s *SQLite) Get(ctx context.Context, tenant, id string) (*Record, error) {
	r, err := read(s, ctx, s.db, func(ctx context.Context, db *sql.DB) (*Record, error) {
		return scanOne(db.QueryRowContext(ctx, `SELECT `+cols+` FROM messages WHERE id = ? AND tenant = ?`, id, tenant))
	})
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, ErrNotFound
	}
	return r, nil
}

// List implements Backend.
func (s *SQLite) List(ctx context.Context, q Query) ([]*Record, error) {
	where, args := listSQL(q)
	return readRows(s, ctx, s.db, records, `SELECT `+cols+where, args...)
}

// healthSlices is how many slices of creation time Health reads the window in, each a read of its
// own. The WAL gate waits for the reads every tenant relies on instead of interrupting them
// (restartGated), and one grouped scan of a busy window (2.7 s at 1,000 sends a second) held
// every read of the file, reports' look-ups included, for as long whenever the gate closed during
// it; between two slices (a thirtieth of the scan) the gate may close.
const healthSlices = 30

// Health implements Backend: a grouped scan of the window (the created_at index) in healthSlices
// slices, a row per (provider, country, tenant, channel).
func (s *SQLite) Health(ctx context.Context, since, pendingBefore time.Time) ([]HealthRow, error) {
	type key struct {
		provider, country, tenant string
		voice                     bool
	}
	sums := map[key]*HealthRow{}
	lo := since.UnixMilli()
	width := (s.now().UnixMilli() - lo) / healthSlices
	for i := range healthSlices {
		// The last slice (the only one when the window is under healthSlices ms) has no end: it
		// takes what was created since, ahead of this replica's clock too.
		hi := int64(math.MaxInt64)
		if i < healthSlices-1 && width > 0 {
			hi = lo + width
		}
		rows, err := readRows(s, ctx, s.sys, func(rows *sql.Rows) ([]HealthRow, error) { return scanAll(rows, healthFields) },
			healthSQL, pendingBefore.UnixMilli(), lo, hi)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			k := key{r.Provider, r.Country, r.Tenant, r.Voice}
			if sum := sums[k]; sum != nil {
				sum.Delivered += r.Delivered
				sum.Undelivered += r.Undelivered
				sum.Failed += r.Failed
				sum.Pending += r.Pending
			} else {
				sums[k] = &r
			}
		}
		if hi == math.MaxInt64 {
			break
		}
		if s.afterHealthSlice != nil {
			s.afterHealthSlice()
		}
		lo = hi
	}
	out := make([]HealthRow, 0, len(sums))
	for _, r := range sums {
		out = append(out, *r)
	}
	return out, nil
}

// Prices implements Backend.
func (s *SQLite) Prices(ctx context.Context, since, until time.Time) ([]PriceRow, error) {
	return readRows(s, ctx, s.sys, func(rows *sql.Rows) ([]PriceRow, error) { return scanAll(rows, priceFields) },
		pricesSQL, since.UnixMilli(), untilMS(until))
}

// Find implements Backend.
func (s *SQLite) Find(ctx context.Context, provider, id, pmid string) (*Record, error) {
	return read(s, ctx, s.sys, func(ctx context.Context, db *sql.DB) (*Record, error) {
		var r *Record
		var err error
		if id != "" {
			r, err = scanOne(db.QueryRowContext(ctx, `SELECT `+cols+` FROM messages WHERE id = ? AND provider = ?`, id, provider))
		}
		if r == nil && err == nil && pmid != "" {
			r, err = scanOne(db.QueryRowContext(ctx, `SELECT `+cols+` FROM messages WHERE provider = ? AND provider_message_id = ?`, provider, pmid))
		}
		if err == nil && r == nil {
			err = ErrNotFound
		}
		return r, err
	})
}

// Take implements Backend: one UPDATE ... RETURNING, so a report is handed out once.
func (s *SQLite) Take(ctx context.Context, q TakeQuery) ([]*Record, error) {
	where, args := takeWhere(q)
	if none, err := s.none(ctx, s.db, where, args); none || err != nil {
		return nil, err
	}
	args = append(args, q.Limit)
	return claimRows(s, ctx, s.db, oldest, `UPDATE messages SET report_taken = 1 WHERE id IN (SELECT id FROM messages WHERE `+where+
		` ORDER BY created_at LIMIT ?) RETURNING `+cols, args...)
}

// takeWhere selects q's reports to pull; its first terms are those of messages_unpulled, which
// SQLite uses only for a query that repeats them.
func takeWhere(q TakeQuery) (string, []any) {
	where := "tenant = ? AND source <> '' AND notify_url = '' AND report_taken = 0 AND " + finalSQL
	args := []any{q.Tenant}
	if q.BulkID != "" {
		where, args = where+" AND bulk_id = ? AND bulk_id <> ''", append(args, q.BulkID)
	}
	if q.ID != "" {
		where, args = where+" AND (id = ? OR (reference = ? AND reference <> ''))", append(args, q.ID, q.ID)
	}
	return where, args
}

// Due implements Backend: one UPDATE ... RETURNING (the messages_push_due index), so a push is
// claimed once; a read first (none).
func (s *SQLite) Due(ctx context.Context, tenant string, now time.Time, limit int) ([]*Record, error) {
	if none, err := s.none(ctx, s.sys, "tenant = ? AND push_at > 0 AND push_at <= ?", []any{tenant, now.UnixMilli()}); none || err != nil {
		return nil, err
	}
	return claimRows(s, ctx, s.sys, oldest, `UPDATE messages SET push_tries = push_tries + 1, push_at = `+nextPushSQL("?", "?")+
		` WHERE id IN (SELECT id FROM messages WHERE tenant = ? AND push_at > 0 AND push_at <= ? ORDER BY push_at LIMIT ?) RETURNING `+cols,
		PushTries, now.UnixMilli(), tenant, now.UnixMilli(), limit)
}

// DueTenants implements Backend: a read of the messages_push_due index, which holds only the
// pushes not done.
func (s *SQLite) DueTenants(ctx context.Context, now time.Time) ([]string, error) {
	return readRows(s, ctx, s.sys, func(rows *sql.Rows) ([]string, error) { return scanAll(rows, tenantField) },
		`SELECT DISTINCT tenant FROM messages WHERE push_at > 0 AND push_at <= ?`, now.UnixMilli())
}

// none reports whether no message matches where: Take and Due read before they claim, since an
// UPDATE takes the file's one write lock even when it changes nothing, and the message log's
// writer would wait on every poll and sweep.
func (s *SQLite) none(ctx context.Context, db *sql.DB, where string, args []any) (bool, error) {
	return read(s, ctx, db, func(ctx context.Context, db *sql.DB) (bool, error) {
		var one int
		err := db.QueryRowContext(ctx, `SELECT 1 FROM messages WHERE `+where+` LIMIT 1`, args...).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return true, nil
		}
		return false, err
	})
}

// PushDone implements Backend.
func (s *SQLite) PushDone(ctx context.Context, id string) error {
	_, err := read(s, ctx, s.sys, func(ctx context.Context, db *sql.DB) (sql.Result, error) {
		return db.ExecContext(ctx, `UPDATE messages SET report_taken = 1, push_at = 0 WHERE id = ?`, id)
	})
	return err
}

// Purge implements Backend, in chunks of PurgeChunk on the writer's connection; it also drops
// unmatched reports older than the cut-off.
func (s *SQLite) Purge(ctx context.Context, before time.Time) (int, error) {
	chunk := s.PurgeChunk
	if chunk <= 0 {
		chunk = 1000
	}
	// Unmatched reports are dropped too; the writer recounts them on its next Apply.
	defer s.recount.Store(true)
	total, err := s.deleteChunks(ctx, `DELETE FROM messages WHERE rowid IN (SELECT rowid FROM messages WHERE created_at < ? LIMIT ?)`, chunk, before.UnixMilli())
	if err != nil {
		return total, err
	}
	_, err = s.deleteChunks(ctx, `DELETE FROM pending_reports WHERE rowid IN (SELECT rowid FROM pending_reports WHERE received_at < ? LIMIT ?)`, chunk, before.UnixMilli())
	return total, err
}

// Oldest implements Backend (by messages_created: one step of the index).
func (s *SQLite) Oldest(ctx context.Context) (time.Time, error) {
	at, err := read(s, ctx, s.sys, func(ctx context.Context, db *sql.DB) (at sql.NullInt64, err error) {
		return at, db.QueryRowContext(ctx, oldestSQL).Scan(&at)
	})
	if err != nil || !at.Valid {
		return time.Time{}, err
	}
	return time.UnixMilli(at.Int64), nil
}

// deleteChunks runs del (a DELETE of at most its last argument's rows, chunk, after args) until it
// deletes fewer than chunk rows, and returns how many it deleted. On the writer's own connection,
// a chunk at a time: the writer's batches take it between chunks, where SQLite's file lock would
// let a long purge starve them.
func (s *SQLite) deleteChunks(ctx context.Context, del string, chunk int, args ...any) (int, error) {
	total := 0
	for {
		res, err := s.w.ExecContext(ctx, del, append(args, chunk)...)
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += int(n)
		if s.afterPurgeChunk != nil {
			s.afterPurgeChunk()
		}
		if n < int64(chunk) {
			return total, nil
		}
	}
}

// Trim implements Backend, in chunks of PurgeChunk on the writer's connection, as Purge.
func (s *SQLite) Trim(ctx context.Context, b RecordBounds) (map[string]int, error) {
	chunk := s.PurgeChunk
	if chunk <= 0 {
		chunk = 1000
	}
	counts, err := s.look.upper(s.now(), func() (map[string]int, error) {
		return readRows(s, ctx, s.sys, tenantCounts, trimAllSQL)
	}, func(from int64) (map[string]int, error) {
		return readRows(s, ctx, s.sys, tenantCounts, sqliteTrimSinceSQL, from)
	})
	if err != nil {
		return nil, err
	}
	return b.trimEach(counts, func(tenant string, max int) (at int64, id string, err error) {
		_, err = read(s, ctx, s.sys, func(ctx context.Context, db *sql.DB) (struct{}, error) {
			return struct{}{}, db.QueryRowContext(ctx, trimCutSQL, tenant, max-1).Scan(&at, &id)
		})
		if errors.Is(err, sql.ErrNoRows) {
			err = errWithinBound
		}
		return at, id, err
	}, func(tenant string, at int64, id string) (int, error) {
		return s.deleteChunks(ctx, `DELETE FROM messages WHERE rowid IN (SELECT rowid FROM messages WHERE `+trimOlder+` LIMIT ?)`, chunk, tenant, at, id)
	})
}

// sqliteTrimSinceSQL is trimSinceSQL through the created_at index: SQLite's planner preferred the
// (tenant, created_at, id) index, which serves the GROUP BY without a sort, and scanned every
// record of the log for the few created since (495 against 670 ms for the full count at a
// million records, instead of a millisecond).
const sqliteTrimSinceSQL = `SELECT tenant, COUNT(*) FROM messages INDEXED BY messages_created WHERE created_at >= ? GROUP BY tenant`

// Close implements Backend.
func (s *SQLite) Close() error {
	s.stopCheckpointer()
	for _, st := range []*sql.Stmt{s.insert, s.replace, s.byID, s.byPMID, s.pendingFor, s.pendingAdd, s.pendingDel} {
		st.Close()
	}
	return errors.Join(s.db.Close(), s.sys.Close(), s.w.Close())
}
