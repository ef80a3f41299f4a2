package store

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/store/pgtest"
	"github.com/smsgate/smsgate/gateway/syncbuf"
)

// setStrings sets every string field of the struct v points to: to what f returns for its name.
func setStrings(v any, f func(name string) string) {
	rv := reflect.ValueOf(v).Elem()
	for i := range rv.NumField() {
		if fv := rv.Field(i); fv.Kind() == reflect.String {
			fv.SetString(f(rv.Type().Field(i).Name))
		}
	}
}

// TestCleanCoversEveryString: every string field of a record, an attempt and a report is
// cleaned, so a field added later cannot carry a NUL to PostgreSQL; a clean record is passed
// through without a copy and the caller's record is never changed.
func TestCleanCoversEveryString(t *testing.T) {
	dirty := func(name string) string { return name + "\x00\xff" }
	want := func(name string) string { return name + "\uFFFD\uFFFD" }
	r, w := &Record{Attempts: make([]Attempt, 2)}, &Record{Attempts: make([]Attempt, 2)}
	setStrings(r, dirty)
	setStrings(w, want)
	for i := range r.Attempts {
		setStrings(&r.Attempts[i], dirty)
		setStrings(&w.Attempts[i], want)
	}
	got := cleanRecord(r)
	if diff := cmp.Diff(w, got); diff != "" {
		t.Errorf("cleaned record (-want +got):\n%s", diff)
	}
	if r.ID != dirty("ID") || r.Attempts[1].Note != dirty("Note") {
		t.Errorf("the caller's record was changed: %q %q", r.ID, r.Attempts[1].Note)
	}
	// One dirty attempt alone is enough to clean.
	one := record("m1", "acme", "infobip", "ib-1", t0)
	one.Attempts[1].Error = "E\x00"
	if got := cleanRecord(one); got == one || got.Attempts[1].Error != "E\uFFFD" {
		t.Errorf("a NUL in the last attempt was kept: %q", got.Attempts[1].Error)
	}
	rep, wr := &gateway.DeliveryReport{}, &gateway.DeliveryReport{}
	setStrings(rep, dirty)
	setStrings(wr, want)
	if diff := cmp.Diff(wr, cleanReport(rep)); diff != "" {
		t.Errorf("cleaned report (-want +got):\n%s", diff)
	}
	ok := record("m1", "acme", "infobip", "ib-1", t0)
	if cleanRecord(ok) != ok {
		t.Error("a clean record was copied")
	}
	okRep := &gateway.DeliveryReport{Provider: "infobip", ProviderMessageID: "ib-1", Status: gateway.StatusDelivered}
	if cleanReport(okRep) != okRep {
		t.Error("a clean report was copied")
	}
}

// TestNULAndInvalidBytesAreWrittenAndMatched: a record and a report carrying NUL and bytes that
// are not UTF-8 are written by every backend (PostgreSQL refuses them as they are), the report
// still finds its record, the next write goes through, and a lookup by such an id is a plain
// not-found, not an error.
func TestNULAndInvalidBytesAreWrittenAndMatched(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		s := New(Options{Backend: open()})
		defer s.Close()
		ctx := context.Background()
		bad := record("m\x00", "acme", "infobip", "ib\x00\xfe", t0)
		bad.ClientID, bad.Action, bad.CallbackData, bad.Reference = "app\x00", "enroll\x00", "cb\x00", "ref\xff"
		bad.Attempts[0].Error = "provider said \x00"
		if err := s.Insert(ctx, bad); err != nil {
			t.Fatalf("insert: %v", err)
		}
		if err := s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", ProviderMessageID: "ib\x00\xfe", Status: gateway.StatusDelivered,
			ProviderStatus: "DELIVERED\x00", DoneAt: t0}); err != nil {
			t.Fatalf("report: %v", err)
		}
		if err := s.Insert(ctx, record("m2", "acme", "infobip", "ib-2", t0)); err != nil {
			t.Fatalf("the next insert: %v", err)
		}
		got, err := s.Get(ctx, "acme", "m\x00")
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if got.ID != "m\uFFFD" || got.ClientID != "app\uFFFD" || got.Action != "enroll\uFFFD" || got.Reference != "ref\uFFFD" ||
			got.Attempts[0].Error != "provider said \uFFFD" || got.Status != gateway.StatusDelivered || got.ProviderStatus != "DELIVERED\uFFFD" {
			t.Errorf("stored record: %+v", got)
		}
		if _, err := s.Get(ctx, "acme", "m2"); err != nil {
			t.Errorf("the record after it: %v", err)
		}
		// A provider id too long for PostgreSQL's index (about 2,700 bytes) is cut alike in the
		// record and its report, at a character boundary.
		long := "x" + strings.Repeat("é", 1500) // 3,001 bytes; byte 1,024 is inside an é
		if err := s.Insert(ctx, record("m3", "acme", "infobip", long, t0)); err != nil {
			t.Fatalf("insert with a long provider id: %v", err)
		}
		if err := s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", ProviderMessageID: long, Status: gateway.StatusDelivered, DoneAt: t0}); err != nil {
			t.Fatalf("report with a long provider id: %v", err)
		}
		if got, err := s.Get(ctx, "acme", "m3"); err != nil || got.Status != gateway.StatusDelivered || got.ProviderMessageID != long[:1023] {
			t.Errorf("record with a long provider id: %v %+v", err, got)
		}
		if _, err := s.Get(ctx, "acme\x00", "x\x00\xff"); err != ErrNotFound {
			t.Errorf("get by a NUL id = %v, want ErrNotFound", err)
		}
		if _, err := s.Find(ctx, "infobip", "\x00", "\xff"); err != ErrNotFound {
			t.Errorf("find by a NUL id = %v, want ErrNotFound", err)
		}
		if recs, err := s.List(ctx, Query{Tenant: "acme", Statuses: []string{"\x00"}, Provider: "\xff", ID: "\x00", BulkID: "\x00"}); err != nil || len(recs) != 0 {
			t.Errorf("list with NUL filters = %d records, %v", len(recs), err)
		}
		if recs, err := s.Take(ctx, TakeQuery{Tenant: "acme", ID: "\x00", BulkID: "\xff"}); err != nil || len(recs) != 0 {
			t.Errorf("take with NUL filters = %d records, %v", len(recs), err)
		}
		if s.Backlog() != 0 {
			t.Errorf("backlog %d", s.Backlog())
		}
	})
}

// refusing is a Backend that refuses (ErrRefused) every batch holding an insert whose id starts
// with "poison", and fails like a database outage from its downFrom-th Apply on while down is
// set. Its first Apply waits for gate, so that writes queue behind it and share the next batch.
type refusing struct {
	Backend
	gate     chan struct{}
	once     sync.Once
	mu       sync.Mutex
	down     bool
	downFrom int
	batches  []int
}

func (r *refusing) Apply(ctx context.Context, ops []Op) ([]Charge, error) {
	r.mu.Lock()
	r.batches = append(r.batches, len(ops))
	down := r.down && len(r.batches) >= r.downFrom
	r.mu.Unlock()
	r.once.Do(func() { <-r.gate })
	if down {
		return nil, errors.New("connection refused (simulated)")
	}
	for _, op := range ops {
		if op.Insert != nil && strings.HasPrefix(op.Insert.ID, "poison") {
			return nil, refusedError{errors.New("value refused (simulated)")}
		}
	}
	return r.Backend.Apply(ctx, ops)
}

func (r *refusing) applies() []int { r.mu.Lock(); defer r.mu.Unlock(); return slices.Clone(r.batches) }

// settled waits up to 5 s for the backlog to reach 0 (the gauge is published when the writer's
// try ends, after the Inserts returned) and returns it and the writes dropped.
func (c *counters) settled() (backlog, dropped int) {
	_, backlog, dropped = c.get()
	for deadline := time.Now().Add(5 * time.Second); backlog != 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		_, backlog, dropped = c.get()
	}
	return backlog, dropped
}

// queueBehindGate starts Insert of each record in order while the writer waits in the gated
// first Apply, opens the gate, and returns the Inserts' results.
func queueBehindGate(t *testing.T, s *Store, fb *refusing, recs ...*Record) []error {
	errs := make([]error, len(recs))
	first := make(chan error, 1)
	go func() { first <- s.Insert(context.Background(), record("gate", "acme", "p", "pm-gate", t0)) }()
	for len(fb.applies()) == 0 {
		time.Sleep(time.Millisecond) // until the writer is inside the gated Apply
	}
	var wg sync.WaitGroup
	for i, r := range recs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.Insert(context.Background(), r) }()
		for len(s.ch) < i+1 {
			time.Sleep(time.Millisecond) // queued in this order
		}
	}
	close(fb.gate)
	if err := <-first; err != nil {
		t.Errorf("gate record: %v", err)
	}
	wg.Wait()
	return errs
}

// refusingStore is a store over a backend that refuses any batch holding a "poison" record, with
// its counters and log lines.
func refusingStore(t *testing.T) (*Store, *refusing, *counters, *syncbuf.Buffer) {
	fb := &refusing{Backend: NewMemory(), gate: make(chan struct{})}
	c, logs := &counters{}, &syncbuf.Buffer{}
	s := New(c.opts(Options{Backend: fb, Logger: jsonLogger(logs), CommitTimeout: 10 * time.Second}))
	t.Cleanup(func() { s.Close() })
	return s, fb, c, logs
}

// TestRefusedWriteIsGivenUpAloneNotWithItsBatch: a write the database refuses for its data (one
// tenant's, say) shares a batch with other tenants' writes. The writer retries the batch one
// write at a time: the others commit, the refused one alone is given up, counted and logged,
// and its Insert says ErrRefused; nothing waits in the retry buffer.
func TestRefusedWriteIsGivenUpAloneNotWithItsBatch(t *testing.T) {
	s, fb, c, logs := refusingStore(t)
	errs := queueBehindGate(t, s, fb, record("good1", "acme", "p", "pm1", t0), record("poison1", "mallory", "p", "pm2", t0),
		record("good2", "acme", "p", "pm3", t0))
	if errs[0] != nil || !errors.Is(errs[1], ErrRefused) || errs[2] != nil {
		t.Errorf("insert results %v, want nil, ErrRefused, nil", errs)
	}
	if diff := cmp.Diff([]int{1, 3, 1, 1, 1}, fb.applies()); diff != "" {
		t.Errorf("batch sizes (-want +got):\n%s", diff)
	}
	for _, id := range []string{"good1", "good2"} {
		if _, err := s.Get(context.Background(), "acme", id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	if _, err := s.Get(context.Background(), "mallory", "poison1"); err != ErrNotFound {
		t.Errorf("the refused record: %v", err)
	}
	if backlog, dropped := c.settled(); backlog != 0 || dropped != 1 {
		t.Errorf("backlog %d, dropped %d; want 0 and 1", backlog, dropped)
	}
	if !strings.Contains(logs.String(), "the database refused the write") {
		t.Errorf("the drop was not logged: %s", logs.String())
	}
}

// TestOutageWhileIsolatingKeepsTheRest: when the database fails (not refuses) while the writer
// retries a refused batch one write at a time, nothing is given up: the writes stay in the
// retry buffer, in order, and once it recovers the refused one alone is dropped.
func TestOutageWhileIsolatingKeepsTheRest(t *testing.T) {
	// Apply 1: the gate; 2: the batch of two, refused; 3 on: the outage.
	fb := &refusing{Backend: NewMemory(), gate: make(chan struct{}), down: true, downFrom: 3}
	var c counters
	s := New(c.opts(Options{Backend: fb, CommitTimeout: 10 * time.Second}))
	defer s.Close()
	errs := make(chan []error, 1)
	go func() {
		errs <- queueBehindGate(t, s, fb, record("poison1", "mallory", "p", "pm1", t0), record("good1", "acme", "p", "pm2", t0))
	}()
	for len(fb.applies()) < 4 { // the first try alone, and one retry after the backoff
		time.Sleep(time.Millisecond)
	}
	// The outage ends the one-at-a-time retry at its first write: the next try, after the
	// backoff, is of both writes again, not of the second alone.
	if diff := cmp.Diff([]int{1, 2, 1, 2}, fb.applies()[:4]); diff != "" {
		t.Errorf("batch sizes (-want +got):\n%s", diff)
	}
	if _, backlog, dropped := c.get(); dropped != 0 || backlog != 2 {
		t.Errorf("during the outage: dropped %d, backlog %d; want 0 and 2", dropped, backlog)
	}
	fb.mu.Lock()
	fb.down = false
	fb.mu.Unlock()
	got := <-errs
	if !errors.Is(got[0], ErrRefused) || got[1] != nil {
		t.Errorf("insert results %v, want ErrRefused, nil", got)
	}
	if _, err := s.Get(context.Background(), "acme", "good1"); err != nil {
		t.Errorf("good1 after the outage: %v", err)
	}
	if backlog, dropped := c.settled(); dropped != 1 || backlog != 0 {
		t.Errorf("after the outage: dropped %d, backlog %d; want 1 and 0", dropped, backlog)
	}
}

// TestPostgresRefusalIsClassified: PostgreSQL refusing the data (a NUL byte, which the Store
// cleans away before it gets here) is ErrRefused; a database that cannot be reached is not, so
// those writes are kept and tried again rather than given up.
func TestPostgresRefusalIsClassified(t *testing.T) {
	p, err := OpenPostgres(context.Background(), pgtest.DSN(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := record("m1", "acme", "infobip", "ib-1", t0)
	r.Action = "enroll\x00"
	if _, err := p.Apply(context.Background(), []Op{{Insert: record("m0", "acme", "infobip", "ib-0", t0)}}); err != nil {
		t.Fatal(err)
	}
	conns := p.pool.Stat().NewConnsCount()
	if _, err := p.Apply(context.Background(), []Op{{Insert: record("m1b", "acme", "infobip", "ib-1b", t0)}, {Insert: r}}); !errors.Is(err, ErrRefused) {
		t.Errorf("a NUL byte: %v, want ErrRefused", err)
	}
	// The refused transaction was rolled back, nothing of it kept, and its connection reused.
	if _, err := p.Apply(context.Background(), []Op{{Insert: record("m2", "acme", "infobip", "ib-2", t0)}}); err != nil {
		t.Fatalf("the next batch: %v", err)
	}
	if n := p.pool.Stat().NewConnsCount(); n != conns {
		t.Errorf("%d new connections after a refused batch, want none", n-conns)
	}
	if _, err := p.Get(context.Background(), "acme", "m1b"); err != ErrNotFound {
		t.Errorf("a write of the refused batch: %v, want ErrNotFound", err)
	}
	p.Close()
	if _, err := p.Apply(context.Background(), []Op{{Insert: record("m3", "acme", "infobip", "ib-3", t0)}}); err == nil || errors.Is(err, ErrRefused) {
		t.Errorf("a closed connection pool: %v, want an error that is not ErrRefused", err)
	}
}

// TestRefusedLastWriteIsNotAnOutage: when the refused write is the last of its batch, the writer
// does not take the refusal for a failing database: no "keeping the writes" error, no backoff.
func TestRefusedLastWriteIsNotAnOutage(t *testing.T) {
	s, fb, c, logs := refusingStore(t)
	errs := queueBehindGate(t, s, fb, record("good1", "acme", "p", "pm1", t0), record("poison1", "mallory", "p", "pm2", t0))
	if errs[0] != nil || !errors.Is(errs[1], ErrRefused) {
		t.Errorf("insert results %v, want nil, ErrRefused", errs)
	}
	if backlog, dropped := c.settled(); backlog != 0 || dropped != 1 {
		t.Errorf("backlog %d, dropped %d; want 0 and 1", backlog, dropped)
	}
	if strings.Contains(logs.String(), "keeping the writes for another try") {
		t.Errorf("a refusal was taken for an outage:\n%s", logs.String())
	}
}
