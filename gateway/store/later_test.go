package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

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
// database is reached it is migrated, and the record written before is there.
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
	if l.Open() || s.Backlog() != 1 {
		t.Errorf("open %v, backlog %d; want false and 1", l.Open(), s.Backlog())
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
	if s.Backlog() != 0 {
		t.Errorf("backlog %d after the database was reached", s.Backlog())
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
