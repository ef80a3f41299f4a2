package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/store/pgtest"
)

// TestOpenPostgresTellsUnreachableFromRefused: a database that cannot be reached is told apart
// from one that answers no (a role that does not exist), which no retry will change.
func TestOpenPostgresTellsUnreachableFromRefused(t *testing.T) {
	dsn, _ := pgtest.Unreachable(t)
	ctx := context.Background()
	if _, err := OpenPostgres(ctx, dsn, nil); err == nil || !Unreachable(err) {
		t.Errorf("nothing listening: %v, want an unreachable error", err)
	}
	u, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User("no_such_role_smsgate")
	if _, err := OpenPostgres(ctx, u.String(), nil); err == nil || Unreachable(err) {
		t.Errorf("a role that does not exist: %v, want an error that is not unreachable", err)
	}
}

// TestALogOpenedLaterKeepsWhatItWasGiven: a message log whose database is unreachable at start
// answers writes as during an outage (not committed, kept) and reads with ErrNotOpen; once the
// database is reached it is migrated, and the record written before is there. Until then the
// store says it was not reached, so that it takes no writes another replica handed over.
func TestALogOpenedLaterKeepsWhatItWasGiven(t *testing.T) {
	dsn, up := pgtest.Unreachable(t)
	var failures atomic.Int32
	opened := make(chan struct{})
	l, ended, err := OpenLater(func(ctx context.Context) (Backend, error) { return OpenPostgres(ctx, dsn, nil) }, 10*time.Millisecond, 5*time.Second,
		func(err error) {
			if !Unreachable(err) {
				t.Errorf("open: %v", err)
			}
			failures.Add(1)
		}, func() { close(opened) })
	if !ended || !Unreachable(err) {
		t.Errorf("the first attempt: ended %v, %v; want an unreachable error", ended, err)
	}
	s := New(Options{Backend: l, CommitTimeout: 50 * time.Millisecond})
	defer s.Close()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	rec := &Record{ID: "msg_later", Tenant: "acme", Status: gateway.StatusSent, Provider: "p1", CreatedAt: now, UpdatedAt: now}
	if err := s.Insert(ctx, rec); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("insert before the database is reached: %v, want ErrNotCommitted", err)
	}
	if _, err := s.Get(ctx, "acme", "msg_later"); !errors.Is(err, ErrNotOpen) {
		t.Errorf("read before the database is reached: %v, want ErrNotOpen", err)
	}
	if l.Open() || s.Reached() || s.Backlog() != 1 {
		t.Errorf("open %v, reached %v, backlog %d; want false, false and 1", l.Open(), s.Reached(), s.Backlog())
	}
	within(t, 10*time.Second, "two failed opens", func() bool { return failures.Load() >= 2 })
	up()
	select {
	case <-opened:
	case <-time.After(15 * time.Second):
		t.Fatal("the database was not reached after it came up")
	}
	within(t, 10*time.Second, "the record written before is there", func() bool {
		got, err := s.Get(ctx, "acme", "msg_later")
		return err == nil && got.Status == gateway.StatusSent
	})
	if s.Backlog() != 0 || !s.Reached() {
		t.Errorf("backlog %d, reached %v after the database was reached", s.Backlog(), s.Reached())
	}
}

// TestADatabaseThatStopsAnsweringDoesNotHoldTheWriter: PostgreSQL stops answering without closing
// its connections (a host gone, an address moved by a failover). The writer's batch is cut at
// storage.write_timeout and waits in the retry buffer; the writer goes on taking the queue, so
// every send still gets its answer at once (not committed), however small the queue. Once the
// database answers again, every record is written. Before the bound, the one writer waited on the
// dead connection for as long as the kernel kept it, the queue filled, and every send of every
// tenant hung queueing its record.
func TestADatabaseThatStopsAnsweringDoesNotHoldTheWriter(t *testing.T) {
	dsn, stall := pgtest.Stalling(t)
	ctx := context.Background()
	pg, err := OpenPostgres(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Backend: pg, CommitTimeout: 50 * time.Millisecond, WriteTimeout: 300 * time.Millisecond, QueueSize: 4})
	defer s.Close()
	defer stall(false) // before Close
	now := time.Now().UTC().Truncate(time.Millisecond)
	rec := func(i int) *Record {
		return &Record{ID: fmt.Sprintf("msg_stall_%02d", i), Tenant: "acme", Status: gateway.StatusSent, Provider: "p1", CreatedAt: now, UpdatedAt: now}
	}
	// Before the stall: written (on a busy machine perhaps after its 50 ms).
	if err := s.Insert(ctx, rec(0)); err != nil && !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("before the stall: %v", err)
	}
	within(t, 10*time.Second, "the record before the stall is written", func() bool {
		_, err := s.Get(ctx, "acme", rec(0).ID)
		return err == nil
	})
	stall(true)
	const sends = 40
	done := make(chan error, sends)
	for i := 1; i <= sends; i++ {
		go func() { done <- s.Insert(ctx, rec(i)) }()
	}
	deadline := time.After(10 * time.Second)
	for range sends {
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotCommitted) {
				t.Errorf("insert during the stall: %v, want ErrNotCommitted", err)
			}
		case <-deadline:
			t.Fatal("sends still waiting to queue their records 10 s into the stall")
		}
	}
	stall(false)
	within(t, 30*time.Second, "every record is written after the stall", func() bool {
		got, err := s.List(ctx, Query{Tenant: "acme", Limit: 100})
		return err == nil && len(got) == sends+1
	})
}

// within polls cond until it holds, failing the test after d.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting until %s", d, what)
		}
	}
}

// TestADatabaseWithNoConnectionLeftIsReachedLater: a PostgreSQL that refuses a connection for
// want of room (too many connections: here a role allowed none) does not stop a start, as an
// unreachable one does not: the log is reached once there is room. It used to fail the start,
// so replicas added while the database was full failed theirs again and again.
func TestADatabaseWithNoConnectionLeftIsReachedLater(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var b [4]byte
	rand.Read(b[:])
	role := "smsgate_full_" + hex.EncodeToString(b[:])
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `CREATE ROLE `+role+` LOGIN CONNECTION LIMIT 0; GRANT ALL ON SCHEMA `+u.Query().Get("search_path")+` TO `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			c.Exec(context.Background(), `DROP OWNED BY `+role+`; DROP ROLE `+role)
			c.Close(context.Background())
		}
	})
	u.User = url.User(role)
	if _, err := OpenPostgres(ctx, u.String(), nil); err == nil || !Unreachable(err) || !strings.Contains(err.Error(), "53300") {
		t.Fatalf("no connection left: %v, want an unreachable error (SQLSTATE 53300)", err)
	}
	opened := make(chan struct{})
	l, _, _ := OpenLater(func(ctx context.Context) (Backend, error) { return OpenPostgres(ctx, u.String(), nil) }, 10*time.Millisecond, 0,
		nil, func() { close(opened) })
	defer l.Close()
	time.Sleep(100 * time.Millisecond)
	if _, err := admin.Exec(ctx, `ALTER ROLE `+role+` CONNECTION LIMIT -1`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-opened:
	case <-time.After(15 * time.Second):
		t.Fatal("the log was not reached once there was room")
	}
}

// TestPoolSizeFromTheDSNIsKept: pool_max_conns in the DSN sizes the pool of tenants' reads, also
// below the default of 6, so that an operator can fit the replicas into the database's
// max_connections; the pools of the shared reads (4) and of the writer (2) keep their sizes.
func TestPoolSizeFromTheDSNIsKept(t *testing.T) {
	for _, c := range []struct {
		dsn      string
		min, max int32
		why      string
	}{
		{"&pool_max_conns=3", 3, 3, "the DSN's 3"},
		{"&pool_max_conns=1", 2, 2, "2 (migrations and their watcher)"},
		{"", 6, 1 << 30, "at least 6 without pool_max_conns"},
	} {
		p, err := OpenPostgres(context.Background(), pgtest.DSN(t)+c.dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.pool.Config().MaxConns; got < c.min || got > c.max || p.ReadConns() != int(got) {
			t.Errorf("DSN with %q: a pool of %d connections for tenants' reads (ReadConns %d), want %s", c.dsn, got, p.ReadConns(), c.why)
		}
		if s, w := p.sys.Config().MaxConns, p.writer.Config().MaxConns; s != 4 || w != 2 {
			t.Errorf("DSN with %q: pools of %d connections for the shared reads and %d for the writer, want 4 and 2", c.dsn, s, w)
		}
		p.Close()
	}
}

// TestALogReachedWithinTheFirstWaitIsOpenAtOnce: when OpenLater says the first attempt reached
// the database, the log is open from that moment: a caller writes to it at once.
func TestALogReachedWithinTheFirstWaitIsOpenAtOnce(t *testing.T) {
	for range 200 {
		l, ended, err := OpenLater(func(context.Context) (Backend, error) { return NewMemory(), nil }, time.Millisecond, time.Second, nil, nil)
		if !ended || err != nil || !l.Open() {
			t.Fatalf("reached within the first wait: ended %v, %v, open %v", ended, err, l.Open())
		}
		l.Close()
	}
}

// closeCounting is a Backend that counts its Close calls.
type closeCounting struct {
	Backend
	closed atomic.Int32
}

func (c *closeCounting) Close() error { c.closed.Add(1); return nil }

// TestOpenLaterTellsEachOutcomeOnce: the first attempt's outcome goes to OpenLater's caller when
// it ends within the first wait, and to failed or opened when it ends after; never to both, and
// a caller is never told the database was reached before it was. Close closes what was opened.
func TestOpenLaterTellsEachOutcomeOnce(t *testing.T) {
	refused := errors.New("refused")
	type outcomes struct{ failed, opened atomic.Int32 }
	count := func(o *outcomes) (func(error), func()) {
		return func(error) { o.failed.Add(1) }, func() { o.opened.Add(1) }
	}

	// Reached at the first attempt, within the wait: the caller is told, opened is not called.
	var o1 outcomes
	b1 := &closeCounting{Backend: NewMemory()}
	failed, opened := count(&o1)
	l, ended, err := OpenLater(func(context.Context) (Backend, error) { return b1, nil }, time.Millisecond, 5*time.Second, failed, opened)
	if !ended || err != nil || !l.Open() {
		t.Errorf("reached at once: ended %v, %v, open %v; want told, reached", ended, err, l.Open())
	}
	l.Close()
	if o1.failed.Load() != 0 || o1.opened.Load() != 0 || b1.closed.Load() != 1 {
		t.Errorf("reached at once: failed %d, opened %d times, closed %d; want 0, 0 and 1", o1.failed.Load(), o1.opened.Load(), b1.closed.Load())
	}

	// Refused at the first attempt, reached at the second: the caller is told the refusal,
	// failed is not called for it, opened is for the second.
	var o2 outcomes
	var tries atomic.Int32
	failed, opened = count(&o2)
	l, ended, err = OpenLater(func(context.Context) (Backend, error) {
		if tries.Add(1) == 1 {
			return nil, refused
		}
		return NewMemory(), nil
	}, time.Millisecond, 5*time.Second, failed, opened)
	if !ended || err != refused {
		t.Errorf("refused at first: ended %v, %v; want told the refusal", ended, err)
	}
	within(t, 5*time.Second, "the second attempt reaches it", func() bool { return o2.opened.Load() == 1 })
	l.Close()
	if o2.failed.Load() != 0 || o2.opened.Load() != 1 {
		t.Errorf("refused at first: failed %d, opened %d times; want 0 and 1", o2.failed.Load(), o2.opened.Load())
	}

	// A first attempt that outlasts the wait: the caller is told nothing (not that it was
	// reached), and opened is called when it ends.
	var o3 outcomes
	release := make(chan struct{})
	failed, opened = count(&o3)
	l, ended, err = OpenLater(func(context.Context) (Backend, error) { <-release; return NewMemory(), nil }, time.Millisecond, 20*time.Millisecond, failed, opened)
	if ended || err != nil || l.Open() {
		t.Errorf("a first attempt under way: ended %v, %v, open %v; want not ended", ended, err, l.Open())
	}
	close(release)
	within(t, 5*time.Second, "the attempt that outlasted the wait is told to opened", func() bool { return o3.opened.Load() == 1 })
	l.Close()
	if o3.failed.Load() != 0 || o3.opened.Load() != 1 || !l.Open() {
		t.Errorf("a first attempt under way: failed %d, opened %d times, open %v", o3.failed.Load(), o3.opened.Load(), l.Open())
	}
}

// TestOpenLaterWaitsLongerEachTimeAndStopsAtClose: attempts that fail are spaced by a wait that
// doubles (10, 20, 40, 80 ms: at least 150 ms before the fifth) up to 30 s; Close ends a wait and
// cancels an attempt under way instead of waiting for them.
func TestOpenLaterWaitsLongerEachTimeAndStopsAtClose(t *testing.T) {
	var tries atomic.Int32
	var fifth atomic.Int64
	begun := time.Now()
	l, _, _ := OpenLater(func(context.Context) (Backend, error) {
		if tries.Add(1) == 5 {
			fifth.Store(int64(time.Since(begun)))
		}
		return nil, errors.New("down")
	}, 10*time.Millisecond, 0, nil, nil)
	within(t, 10*time.Second, "five attempts", func() bool { return tries.Load() >= 5 })
	if d := time.Duration(fifth.Load()); d < 150*time.Millisecond {
		t.Errorf("the fifth attempt came %v after the first, want at least 150ms (the waits doubling)", d)
	}
	closed := func(l *Later, what string) {
		t.Helper()
		done := make(chan struct{})
		go func() { l.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Close did not return %s", what)
		}
	}
	l.Close()
	// A wait of an hour between attempts is ended by Close.
	tries.Store(0)
	l, _, _ = OpenLater(func(context.Context) (Backend, error) { tries.Add(1); return nil, errors.New("down") }, time.Hour, 0, nil, nil)
	within(t, 10*time.Second, "the first attempt", func() bool { return tries.Load() == 1 })
	closed(l, "during a wait between attempts")

	// An attempt under way (a connect that would hang) is cancelled by Close, and its error is
	// not told as a failure to reach the database: the replica is stopping.
	started := make(chan struct{})
	var failed atomic.Int32
	l, _, _ = OpenLater(func(ctx context.Context) (Backend, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}, time.Hour, 0, func(error) { failed.Add(1) }, nil)
	<-started
	closed(l, "during an attempt")
	if n := failed.Load(); n != 0 {
		t.Errorf("the attempt Close cancelled was told as %d failures, want none", n)
	}
	// The waits double up to 30 s and stay there: a replica started during a long outage tries
	// again at least every 30 s.
	for _, tc := range [][2]time.Duration{{10 * time.Millisecond, 20 * time.Millisecond}, {10 * time.Second, 20 * time.Second},
		{20 * time.Second, 30 * time.Second}, {30 * time.Second, 30 * time.Second}} {
		if got := laterNextWait(tc[0]); got != tc[1] {
			t.Errorf("the wait after %v: %v, want %v", tc[0], got, tc[1])
		}
	}
}
