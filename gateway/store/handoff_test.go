package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/syncbuf"
)

// handOffs collects what a store hands over at Close.
type handOffs struct {
	mu     sync.Mutex
	chunks [][]byte
	n      int
	err    error // what HandOff answers
}

func (h *handOffs) opts(o Options) Options {
	o.HandOff = func(_ context.Context, chunks [][]byte) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.err != nil {
			return h.err
		}
		h.chunks = append(h.chunks, chunks...)
		return nil
	}
	o.OnHandOff = func(n int) { h.mu.Lock(); h.n += n; h.mu.Unlock() }
	return o
}

// TestWritesStillFailingAtCloseAreHandedOver: a store that closes while its database fails gives
// what it could not write to HandOff, every field of it, instead of dropping it, and another
// store takes it back with Adopt: the records, the report that followed one, the release of
// another, in their order.
func TestWritesStillFailingAtCloseAreHandedOver(t *testing.T) {
	fb := &flaky{Backend: NewMemory(), down: true}
	var c counters
	var h handOffs
	var logs syncbuf.Buffer
	s := New(h.opts(c.opts(Options{Backend: fb, Logger: jsonLogger(&logs), CommitTimeout: time.Millisecond, CloseTimeout: 20 * time.Millisecond})))
	ctx := context.Background()
	writeSixHundredThree(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, dropped := c.get(); dropped != 0 || h.n != 603 || len(h.chunks) != 2 {
		t.Fatalf("dropped %d, handed over %d writes in %d chunks; want 0, 603 in 2", dropped, h.n, len(h.chunks))
	}
	if !strings.Contains(logs.String(), `"level":"WARN","msg":"message log writes handed over to another replica`) {
		t.Errorf("the hand-over was not logged: %s", logs.String())
	}

	m := NewMemory()
	other := New(Options{Backend: m})
	defer other.Close()
	total := 0
	for _, chunk := range h.chunks {
		n, err := other.Adopt(ctx, chunk)
		if err != nil {
			t.Fatalf("Adopt: %v", err)
		}
		total += n
	}
	if total != 603 {
		t.Errorf("Adopt took %d writes, want 603", total)
	}
	checkSixHundredThree(t, m, "taken back")
}

// compatRecord is a record with every field the log keeps set.
func compatRecord() *Record {
	r := record("c1", "acme", "p", "pm-c1", t0)
	r.Source, r.Reference, r.BulkID, r.CallbackData = "infobip-sms-v2", "ref-1", "bulk-1", "cb data"
	r.NotifyURL, r.ReportTaken, r.ReportHeld, r.Parts = "https://hooks.example.com/dlr", true, true, 2
	r.Status = gateway.StatusFailed
	return r
}

// writeSixHundredThree writes a compat record, its release, 600 more records (more than one
// chunk) and a report of one of them, in that order.
func writeSixHundredThree(s *Store) {
	ctx := context.Background()
	s.Insert(ctx, compatRecord())
	s.Release(ctx, []string{"c1"})
	for i := range 600 {
		s.Insert(ctx, record(fmt.Sprint("m", i), "beta", "p", fmt.Sprint("pm", i), t0.Add(time.Duration(i)*time.Second)))
	}
	s.Report(ctx, &gateway.DeliveryReport{Provider: "p", ProviderMessageID: "pm7", Status: gateway.StatusDelivered, Price: 0.05, Currency: "EUR"})
}

// checkSixHundredThree checks that m holds writeSixHundredThree's writes, every field of them,
// applied in their order: the compat record released, the report after its record.
func checkSixHundredThree(t *testing.T, m *Memory, how string) {
	t.Helper()
	ctx := context.Background()
	got, err := m.Get(ctx, "acme", "c1")
	if err != nil {
		t.Fatal(err)
	}
	want := *compatRecord()
	want.ReportHeld, want.ReportTaken = false, false // released
	want.PushAt = got.PushAt
	if got.PushAt.IsZero() {
		t.Error("the release did not arm the report's push")
	}
	if d := cmp.Diff(&want, got); d != "" {
		t.Errorf("the compat record as %s (-want +got):\n%s", how, d)
	}
	if r, _ := m.Get(ctx, "beta", "m7"); r == nil || r.Status != gateway.StatusDelivered || r.Price != 0.05 {
		t.Errorf("the report queued behind its record: %+v", r)
	}
	if recs, _ := m.List(ctx, Query{Tenant: "beta", Limit: 1000}); len(recs) != 600 {
		t.Errorf("%d of beta's 600 records %s", len(recs), how)
	}
}

// TestAHandOffThatFailsDropsLoudly: when HandOff cannot take the writes (Redis is down too),
// they are dropped as without it: counted and logged.
func TestAHandOffThatFailsDropsLoudly(t *testing.T) {
	var c counters
	h := handOffs{err: errors.New("redis: connection refused")}
	var logs syncbuf.Buffer
	s := New(h.opts(c.opts(Options{Backend: &flaky{Backend: NewMemory(), down: true}, Logger: jsonLogger(&logs), CommitTimeout: time.Millisecond, CloseTimeout: 20 * time.Millisecond})))
	s.Insert(context.Background(), record("m1", "acme", "p", "pm1", t0))
	s.Close()
	if _, _, dropped := c.get(); dropped != 1 || h.n != 0 {
		t.Errorf("dropped %d, handed over %d; want 1, 0", dropped, h.n)
	}
	for _, line := range []string{"message log writes could not be handed over to another replica", "connection refused", "message log writes dropped"} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("no %q in the log: %s", line, logs.String())
		}
	}
}

// TestAdoptKeepsWhatItCannotWriteYet: a chunk taken while this store's database fails stays in
// its retry buffer (Adopt says ErrNotCommitted once its context ends) and is written when the
// database recovers; a chunk it cannot read is refused whole, and a closed store takes none.
func TestAdoptKeepsWhatItCannotWriteYet(t *testing.T) {
	chunks, err := encodeOps([]Op{{Insert: record("m1", "acme", "p", "pm1", t0)}, {Insert: record("m2", "acme", "p", "pm2", t0)}})
	if err != nil || len(chunks) != 1 {
		t.Fatalf("encodeOps: %d chunks, %v", len(chunks), err)
	}
	fb := &flaky{Backend: NewMemory(), down: true}
	s := New(Options{Backend: fb, CommitTimeout: time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if n, err := s.Adopt(ctx, chunks[0]); n != 2 || !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("Adopt while the database fails: %d, %v", n, err)
	}
	fb.set(false)
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if recs, _ := s.List(context.Background(), Query{Tenant: "acme", Limit: 10}); len(recs) != 2 {
		t.Errorf("%d records written after the recovery, want 2", len(recs))
	}
	// The last: a chunk that gob reads, under a format byte this build does not know (a newer
	// build's writes may mean something else in the same shape).
	newer := append([]byte{handoffFormat + 1}, chunks[0][1:]...)
	for _, bad := range [][]byte{nil, []byte("x"), {handoffFormat, 1, 2, 3}, {handoffFormat + 1}, newer} {
		if _, err := s.Adopt(context.Background(), bad); !errors.Is(err, ErrHandoffFormat) {
			t.Errorf("Adopt(%q): %v, want ErrHandoffFormat", bad, err)
		}
	}
	s.Close()
	if _, err := s.Adopt(context.Background(), chunks[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("Adopt after Close: %v", err)
	}
	// A store that closes while its database still fails, and has nowhere to hand the writes,
	// answers the Adopt waiting on them with an error: the caller leaves the chunk in the list
	// for another replica instead of taking it out as written.
	down := New(Options{Backend: &flaky{Backend: NewMemory(), down: true}, CommitTimeout: time.Millisecond, CloseTimeout: 50 * time.Millisecond})
	adopted := make(chan error, 1)
	go func() { _, err := down.Adopt(context.Background(), chunks[0]); adopted <- err }()
	within(t, 5*time.Second, "the adopted writes to wait for another try", func() bool { return down.Backlog() == 2 })
	down.Close()
	if err := <-adopted; err == nil {
		t.Error("Adopt said the writes were written when the store closed without them")
	}
}

// FuzzDecodeOps: no chunk makes decodeOps panic (chunks are signed before they reach it, but a
// build's own bug must not take a replica down), and whatever it accepts encodes back to a chunk
// that decodes to the same writes.
func FuzzDecodeOps(f *testing.F) {
	chunks, err := encodeOps([]Op{{Insert: record("m1", "acme", "p", "pm1", t0)},
		{Report: &gateway.DeliveryReport{Provider: "p", ProviderMessageID: "pm1", Status: gateway.StatusDelivered, Price: 0.01, Currency: "EUR"}},
		{Release: "m1"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(chunks[0])
	f.Add([]byte{handoffFormat})
	f.Add([]byte{handoffFormat, 0x0c, 0xff, 0x81})
	f.Fuzz(func(t *testing.T, chunk []byte) {
		ops, err := decodeOps(chunk)
		if err != nil {
			if !errors.Is(err, ErrHandoffFormat) {
				t.Fatalf("decodeOps: %v, want ErrHandoffFormat", err)
			}
			return
		}
		again, err := encodeOps(ops)
		if err != nil {
			t.Fatalf("encodeOps of what decodeOps gave: %v", err)
		}
		var back []Op
		for _, c := range again {
			part, err := decodeOps(c)
			if err != nil {
				t.Fatalf("decodeOps of a chunk encodeOps made: %v", err)
			}
			back = append(back, part...)
		}
		if d := cmp.Diff(ops, back, cmp.AllowUnexported(Op{})); d != "" {
			t.Errorf("round trip (-first +second):\n%s", d)
		}
	})
}

// TestWritesReadBackAreCleanedAsWritesGiven: a chunk (or a spool) written by a build that kept a
// byte the database refuses (a NUL, invalid UTF-8, an id past its bound) gives it back cleaned as
// the store cleans what it is given: kept, not refused by the database and given up; a write with
// nothing to write is a chunk of another format.
func TestWritesReadBackAreCleanedAsWritesGiven(t *testing.T) {
	dirty := record("m\x001", "acme", "p", "pm1", t0)
	dirty.Error = "bad \xff byte"
	long := strings.Repeat("r", maxIDBytes+10)
	chunks, err := encodeOps([]Op{{Insert: dirty},
		{Report: &gateway.DeliveryReport{Provider: "p", ProviderMessageID: "pm\x001", Status: gateway.StatusDelivered}},
		{Release: long}})
	if err != nil {
		t.Fatal(err)
	}
	ops, err := decodeOps(chunks[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := ops[0].Insert; got.ID != "m\uFFFD1" || got.Error != "bad \uFFFD byte" {
		t.Errorf("insert read back: id %q, error %q", got.ID, got.Error)
	}
	if got := ops[1].Report.ProviderMessageID; got != "pm\uFFFD1" {
		t.Errorf("report read back: provider message id %q", got)
	}
	if got := ops[2].Release; got != long[:maxIDBytes] {
		t.Errorf("release read back: %d bytes, want %d", len(got), maxIDBytes)
	}
	for _, op := range ops {
		if !op.again {
			t.Errorf("a write read back is not marked as possibly applied already: %+v", op)
		}
	}
	empty, err := encodeOps([]Op{{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeOps(empty[0]); !errors.Is(err, ErrHandoffFormat) {
		t.Errorf("a chunk holding a write with nothing to write: %v, want ErrHandoffFormat", err)
	}
}

// TestAdoptGivesUpWhatTheDatabaseRefuses: a chunk holding a write the database refuses (given up
// by the writer, as any) is adopted: the rest is written and Adopt says so, so that the chunk is
// not handed back and adopted again for ever.
func TestAdoptGivesUpWhatTheDatabaseRefuses(t *testing.T) {
	chunks, err := encodeOps([]Op{{Insert: record("poison1", "acme", "p", "pm0", t0)}, {Insert: record("m2", "acme", "p", "pm2", t0)}})
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	close(gate)
	s := New(Options{Backend: &refusing{Backend: NewMemory(), gate: gate}})
	defer s.Close()
	if n, err := s.Adopt(context.Background(), chunks[0]); n != 2 || err != nil {
		t.Errorf("Adopt of a chunk with a refused write: %d, %v, want 2, nil", n, err)
	}
	if _, err := s.Get(context.Background(), "acme", "m2"); err != nil {
		t.Errorf("the write after the refused one: %v", err)
	}
}
