package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/store/pgtest"
	"github.com/smsgate/smsgate/gateway/syncbuf"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func record(id, tenant, provider, pmid string, created time.Time) *Record {
	return &Record{ID: id, Tenant: tenant, Route: "default", MessageType: "sms", Country: "US", Recipient: gateway.MaskPhone("+14155550104"), Range: "1-41",
		Status: gateway.StatusSent, Provider: provider, ProviderMessageID: pmid,
		Attempts:  []Attempt{{Provider: "a", Outcome: "provider_error", Code: "E500", DurationMS: 12}, {Provider: provider, Outcome: "sent", DurationMS: 3}},
		CreatedAt: created, UpdatedAt: created, Parts: 1}
}

// backends runs f against each backend; the SQLite one in a temp dir.
func backends(t *testing.T, f func(t *testing.T, open func() Backend)) {
	t.Run("memory", func(t *testing.T) {
		m := NewMemory()
		m.Now = func() time.Time { return t0.Add(time.Minute) }
		f(t, func() Backend { return m })
	})
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "log.db")
		f(t, func() Backend {
			s, err := OpenSQLite(context.Background(), path, nil)
			if err != nil {
				t.Fatal(err)
			}
			s.Now = func() time.Time { return t0.Add(time.Minute) }
			return s
		})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.DSN(t)
		f(t, func() Backend {
			p, err := OpenPostgres(context.Background(), dsn, nil)
			if err != nil {
				t.Fatal(err)
			}
			p.Now = func() time.Time { return t0.Add(time.Minute) }
			return p
		})
	})
}

func TestLifecycleSendThenReport(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		s := New(Options{Backend: open()})
		defer s.Close()
		ctx := context.Background()
		s.Insert(ctx, record("m1", "acme", "infobip", "ib-1", t0))
		s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", ProviderMessageID: "ib-1", Status: gateway.StatusSent, ProviderStatus: "PENDING_ENROUTE"})
		done := t0.Add(30 * time.Second)
		s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", ProviderMessageID: "ib-1", Status: gateway.StatusDelivered, ProviderStatus: "DELIVERED_TO_HANDSET", Price: 0.01, Currency: "EUR", DoneAt: done})
		got, err := s.Get(ctx, "acme", "m1")
		if err != nil {
			t.Fatal(err)
		}
		want := record("m1", "acme", "infobip", "ib-1", t0)
		want.Status, want.ProviderStatus, want.Price, want.Currency, want.DeliveredAt, want.UpdatedAt = gateway.StatusDelivered, "DELIVERED_TO_HANDSET", 0.01, "EUR", &done, t0.Add(time.Minute)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if _, err := s.Get(ctx, "other-tenant", "m1"); err != ErrNotFound {
			t.Errorf("another tenant's Get = %v, want ErrNotFound", err)
		}
	})
}

func TestEarlyDuplicateAndOutOfOrderReports(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		s := New(Options{Backend: open()})
		defer s.Close()
		ctx := context.Background()
		// Early: the report (matched by our id, as Infobip echoes it) arrives before the record.
		s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", MessageID: "m2", ProviderMessageID: "ib-2", Status: gateway.StatusDelivered, ProviderStatus: "DELIVERED_TO_HANDSET"})
		// Early by provider id only (Twilio).
		s.Report(ctx, &gateway.DeliveryReport{Provider: "twilio", ProviderMessageID: "SM3", Status: gateway.StatusUndelivered, ProviderStatus: "undelivered", Error: "30003"})
		s.Flush(ctx)
		s.Insert(ctx, record("m2", "acme", "infobip", "ib-2", t0))
		s.Insert(ctx, record("m3", "acme", "twilio", "SM3", t0))
		// Duplicate and late intermediate reports never move a record back.
		s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", ProviderMessageID: "ib-2", Status: gateway.StatusDelivered, ProviderStatus: "DELIVERED_TO_HANDSET"})
		s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", ProviderMessageID: "ib-2", Status: gateway.StatusSent, ProviderStatus: "PENDING_ENROUTE"})
		// A report for a provider id that another provider also used does not cross over.
		s.Report(ctx, &gateway.DeliveryReport{Provider: "other", ProviderMessageID: "SM3", Status: gateway.StatusDelivered})
		for id, want := range map[string][2]string{"m2": {gateway.StatusDelivered, ""}, "m3": {gateway.StatusUndelivered, "30003"}} {
			got, err := s.Get(ctx, "acme", id)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != want[0] || got.Error != want[1] || got.DeliveredAt == nil {
				t.Errorf("%s: status %q error %q delivered_at %v, want %v", id, got.Status, got.Error, got.DeliveredAt, want)
			}
		}
	})
}

// TestAReportAheadOfItsRecordInOneBatch: a delivery report that reaches the writer before its
// message's record (a provider that reports at once, while the send waits for its commit) can
// share a batch with the record, ahead of it. It is applied to the record when the record comes,
// on every backend, whether it names our id or the provider's; a report whose record is not in
// the batch waits for it, and only it.
func TestAReportAheadOfItsRecordInOneBatch(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		b := open()
		defer b.Close()
		ctx := context.Background()
		done := t0.Add(10 * time.Second)
		batch := []Op{
			{Report: &gateway.DeliveryReport{Provider: "infobip", MessageID: "m1", ProviderMessageID: "ib-1", Status: gateway.StatusDelivered, ProviderStatus: "DELIVERED_TO_HANDSET", DoneAt: done}},
			{Report: &gateway.DeliveryReport{Provider: "twilio", ProviderMessageID: "SM2", Status: gateway.StatusUndelivered, ProviderStatus: "undelivered", Error: "30003", DoneAt: done}},
			{Report: &gateway.DeliveryReport{Provider: "twilio", ProviderMessageID: "SM3", Status: gateway.StatusDelivered, ProviderStatus: "delivered", DoneAt: done}},
			{Insert: record("m1", "acme", "infobip", "ib-1", t0)},
			{Insert: record("m2", "acme", "twilio", "SM2", t0)},
		}
		if _, err := b.Apply(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Apply(ctx, []Op{{Insert: record("m3", "acme", "twilio", "SM3", t0)}}); err != nil {
			t.Fatal(err)
		}
		for id, want := range map[string][3]string{
			"m1": {gateway.StatusDelivered, "DELIVERED_TO_HANDSET", ""},
			"m2": {gateway.StatusUndelivered, "undelivered", "30003"},
			"m3": {gateway.StatusDelivered, "delivered", ""}, // waited in pending reports for its record
		} {
			got, err := b.Get(ctx, "acme", id)
			if err != nil {
				t.Fatal(err)
			}
			if g := [3]string{got.Status, got.ProviderStatus, got.Error}; g != want || got.DeliveredAt == nil || !got.DeliveredAt.Equal(done) {
				t.Errorf("%s: status, provider status, error %q, delivered at %v; want %q at %v", id, g, got.DeliveredAt, want, done)
			}
		}
	})
}

func TestListFiltersAndPages(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		s := New(Options{Backend: open()})
		defer s.Close()
		ctx := context.Background()
		for i := 0; i < 7; i++ {
			r := record(fmt.Sprintf("m%d", i), "acme", []string{"infobip", "twilio"}[i%2], fmt.Sprintf("p%d", i), t0.Add(time.Duration(i)*time.Second))
			switch i {
			case 3:
				r.Status = gateway.StatusFailed
			case 4:
				r.Status = gateway.StatusRejected
			}
			s.Insert(ctx, r)
		}
		s.Insert(ctx, record("x", "other", "infobip", "px", t0))
		ids := func(rs []*Record) (out []string) {
			for _, r := range rs {
				out = append(out, r.ID)
			}
			return out
		}
		page1, _ := s.List(ctx, Query{Tenant: "acme", Limit: 3})
		page2, _ := s.List(ctx, Query{Tenant: "acme", Limit: 3, Before: &Cursor{page1[2].CreatedAt, page1[2].ID}})
		twilio, _ := s.List(ctx, Query{Tenant: "acme", Provider: "twilio", Limit: 10})
		failed, _ := s.List(ctx, Query{Tenant: "acme", Statuses: []string{gateway.StatusFailed}, Limit: 10})
		notSent, _ := s.List(ctx, Query{Tenant: "acme", Statuses: []string{gateway.StatusFailed, gateway.StatusRejected}, Limit: 10})
		since, _ := s.List(ctx, Query{Tenant: "acme", Since: t0.Add(5 * time.Second), Limit: 10})
		got := [][]string{ids(page1), ids(page2), ids(twilio), ids(failed), ids(notSent), ids(since)}
		want := [][]string{{"m6", "m5", "m4"}, {"m3", "m2", "m1"}, {"m5", "m3", "m1"}, {"m3"}, {"m4", "m3"}, {"m6", "m5"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

// TestAPageIsAtMostAThousand: a listing or a pull asks for 50 records when it names no limit, and
// for 1000 when it names more.
func TestAPageIsAtMostAThousand(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		s := New(Options{Backend: open()})
		defer s.Close()
		ctx := context.Background()
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < 1001; i += 16 {
					r := record(fmt.Sprintf("m%04d", i), "big", "p", fmt.Sprint(i), t0.Add(time.Duration(i)*time.Millisecond))
					r.Status, r.Source = gateway.StatusDelivered, "infobip-sms-v2"
					if err := s.Insert(ctx, r); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, tc := range []struct{ limit, want int }{{0, 50}, {7, 7}, {5000, 1000}} {
			if recs, err := s.List(ctx, Query{Tenant: "big", Limit: tc.limit}); err != nil || len(recs) != tc.want {
				t.Errorf("List with limit %d: %d records, %v; want %d", tc.limit, len(recs), err, tc.want)
			}
		}
		if recs, err := s.Take(ctx, TakeQuery{Tenant: "big", Limit: 5000}); err != nil || len(recs) != 1000 {
			t.Errorf("Take with limit 5000: %d reports, %v; want 1000", len(recs), err)
		}
	})
}

func TestRetentionPurge(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		s := New(Options{Backend: open()})
		defer s.Close()
		ctx := context.Background()
		s.Insert(ctx, record("old", "acme", "p", "1", t0.Add(-800*time.Hour)))
		s.Insert(ctx, record("new", "acme", "p", "2", t0))
		s.Flush(ctx)
		n, err := s.Purge(ctx, t0.Add(-720*time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("purged %d (%v), want 1", n, err)
		}
		if _, err := s.Get(ctx, "acme", "old"); err != ErrNotFound {
			t.Errorf("old record survived: %v", err)
		}
		if _, err := s.Get(ctx, "acme", "new"); err != nil {
			t.Errorf("new record purged: %v", err)
		}
	})
}

// TestThePurgeCutsStrictlyBefore: a purge deletes the records created before its cut-off and the
// unmatched reports received before it; a record or a report of the cut-off's very millisecond
// stays (storage.retention keeps what is not older than it), on every backend alike. In the
// memory log, a record purged or trimmed leaves nothing behind in its index of provider ids,
// which would otherwise grow as long as the process runs.
func TestThePurgeCutsStrictlyBefore(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		b := open()
		s := New(Options{Backend: b})
		defer s.Close()
		ctx := context.Background()
		cut := t0.Add(time.Minute) // the backends' clock: when the report below is received
		s.Insert(ctx, record("edge", "acme", "p", "pm-edge", cut))
		s.Insert(ctx, record("before", "acme", "p", "pm-before", cut.Add(-time.Millisecond)))
		s.Report(ctx, &gateway.DeliveryReport{Provider: "p", ProviderMessageID: "pm-early", Status: gateway.StatusDelivered})
		s.Report(ctx, &gateway.DeliveryReport{Provider: "p", ProviderMessageID: "pm-dropped", Status: gateway.StatusDelivered})
		s.Flush(ctx)
		if n, err := s.Purge(ctx, cut); err != nil || n != 1 {
			t.Fatalf("purged %d (%v), want the 1 record created before the cut-off", n, err)
		}
		if _, err := s.Get(ctx, "acme", "edge"); err != nil {
			t.Errorf("the record of the cut-off's millisecond: %v, want it kept", err)
		}
		if _, err := s.Get(ctx, "acme", "before"); !errors.Is(err, ErrNotFound) {
			t.Errorf("the record a millisecond before the cut-off: %v, want it purged", err)
		}
		// The report received at the cut-off still waits: its record, written now, takes it.
		s.Insert(ctx, record("late", "acme", "p", "pm-early", cut))
		s.Flush(ctx)
		if r, err := s.Get(ctx, "acme", "late"); err != nil || r.Status != gateway.StatusDelivered {
			t.Errorf("the record of the report received at the cut-off: %+v %v, want it delivered", r, err)
		}
		// A purge past the report's millisecond drops it: the record it named, written after, is
		// not changed by it.
		if n, err := s.Purge(ctx, cut.Add(time.Millisecond)); err != nil || n != 2 {
			t.Fatalf("purged %d (%v), want the 2 records of the cut-off's millisecond", n, err)
		}
		s.Insert(ctx, record("after", "acme", "p", "pm-dropped", cut))
		s.Insert(ctx, record("after2", "acme", "p", "pm-after2", cut))
		s.Flush(ctx)
		if r, err := s.Get(ctx, "acme", "after"); err != nil || r.Status != gateway.StatusSent {
			t.Errorf("the record of a report purged before it came: %+v %v, want it sent", r, err)
		}
		if m, ok := b.(*Memory); ok {
			s.Trim(ctx, RecordBounds{Default: 1})
			m.mu.RLock()
			defer m.mu.RUnlock()
			if len(m.byID) != 1 || len(m.byPMID) != 1 {
				t.Errorf("the memory log after a purge and a trim: %d records and %d provider ids, want 1 and 1", len(m.byID), len(m.byPMID))
			}
		}
	})
}

// TestATenantPastItsRecordBoundLosesOnlyItsOwnOldest: storage.max_records_per_tenant. A tenant
// holding more records than the bound loses its oldest, down to the bound exactly (two records of
// one millisecond at the edge are told apart by id, as the listing orders them), in chunks; a
// tenant within the bound keeps every record, even ones older than all of the flood's; a tenant's
// own bound (tenants[].max_records) holds for it, above the default or below.
func TestATenantPastItsRecordBoundLosesOnlyItsOwnOldest(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		b := open()
		switch x := b.(type) { // small chunks: the trim's deletes run several statements
		case *SQLite:
			x.PurgeChunk = 4
		case *Postgres:
			x.PurgeChunk = 4
		}
		var logs bytes.Buffer
		s := New(Options{Backend: b, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		defer s.Close()
		ctx := context.Background()
		for i := range 5 {
			s.Insert(ctx, record(fmt.Sprintf("q%02d", i), "quiet", "p", fmt.Sprintf("q-%d", i), t0.Add(-time.Hour+time.Duration(i)*time.Second)))
		}
		for i := range 12 { // past the default, within its own bound
			s.Insert(ctx, record(fmt.Sprintf("b%02d", i), "big", "p", fmt.Sprintf("b-%d", i), t0.Add(-time.Hour+time.Duration(i)*time.Second)))
		}
		for i := range 6 { // within the default, past its own bound
			s.Insert(ctx, record(fmt.Sprintf("s%02d", i), "small", "p", fmt.Sprintf("s-%d", i), t0.Add(-time.Hour+time.Duration(i)*time.Second)))
		}
		for i := range 25 {
			at := t0.Add(time.Duration(i) * time.Second)
			if i == 14 {
				at = t0.Add(15 * time.Second) // the same millisecond as the oldest record kept
			}
			s.Insert(ctx, record(fmt.Sprintf("f%02d", i), "flood", "p", fmt.Sprintf("f-%d", i), at))
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		bounds := RecordBounds{Default: 10, Tenants: map[string]int{"big": 20, "small": 4}}
		s.Trim(ctx, bounds)
		ids := func(tenant string) []string {
			t.Helper()
			rs, err := s.List(ctx, Query{Tenant: tenant, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range rs {
				out = append(out, r.ID)
			}
			slices.Sort(out)
			return out
		}
		var want []string
		for i := 15; i < 25; i++ {
			want = append(want, fmt.Sprintf("f%02d", i))
		}
		if diff := cmp.Diff(want, ids("flood")); diff != "" {
			t.Errorf("the flood's records after the trim (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"q00", "q01", "q02", "q03", "q04"}, ids("quiet")); diff != "" {
			t.Errorf("the quiet tenant's records (-want +got):\n%s", diff)
		}
		if got := ids("big"); len(got) != 12 {
			t.Errorf("the tenant with a bound of its own above the default kept %v, want all 12", got)
		}
		if diff := cmp.Diff([]string{"s02", "s03", "s04", "s05"}, ids("small")); diff != "" {
			t.Errorf("the tenant with a bound of its own below the default (-want +got):\n%s", diff)
		}
		if !strings.Contains(logs.String(), "message log trimmed") || !strings.Contains(logs.String(), "tenant=flood records=15 max_records=10") ||
			!strings.Contains(logs.String(), "tenant=small records=2 max_records=4") || strings.Contains(logs.String(), "tenant=quiet") || strings.Contains(logs.String(), "tenant=big") {
			t.Errorf("the trim's log lines:\n%s", logs.String())
		}
		if cut, err := b.Trim(ctx, bounds); len(cut) != 0 || err != nil {
			t.Errorf("a second trim cut %v (%v), want nothing", cut, err)
		}
	})
}

// TestTheLeastBoundCountsEveryTenantsOwn: the trim runs when any tenant has a bound, also when
// only some tenants set their own max_records and storage.max_records_per_tenant is unset.
func TestTheLeastBoundCountsEveryTenantsOwn(t *testing.T) {
	for _, tc := range []struct {
		b    RecordBounds
		want int
	}{
		{RecordBounds{}, 0},
		{RecordBounds{Default: 500}, 500},
		{RecordBounds{Tenants: map[string]int{"big": 900, "small": 100}}, 100},
		{RecordBounds{Default: 500, Tenants: map[string]int{"big": 900}}, 500},
		{RecordBounds{Default: 500, Tenants: map[string]int{"small": 100}}, 100},
	} {
		if got := tc.b.least(); got != tc.want {
			t.Errorf("%+v: least %d, want %d", tc.b, got, tc.want)
		}
	}
	// A tenant's bound of 0 is the default's, not none (tenants[].max_records: 0).
	if got := (RecordBounds{Default: 500, Tenants: map[string]int{"a": 0}}).Of("a"); got != 500 {
		t.Errorf("the bound of a tenant whose own is 0: %d, want the default 500", got)
	}
}

// TestTheTrimLookCountsOnlyRecentRecordsBetweenFullCounts: the look for tenants over their
// bounds counts every tenant's records at a backend's first trim and every trimRecount; between
// those it counts only the records created since trimLate before the last full count, so a tenant
// that grows past its bound with new records is trimmed at the next look, and the log's other
// records are not read again. A record written long after it was created is in neither count
// until the next full one (the price of not reading every record every 10 minutes). A clock set
// back before the last full count has every record counted again.
func TestTheTrimLookCountsOnlyRecentRecordsBetweenFullCounts(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			now := t0
			var b Backend
			switch kind {
			case "sqlite":
				s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "log.db"), nil)
				if err != nil {
					t.Fatal(err)
				}
				s.Now, b = func() time.Time { return now }, s
			case "postgres":
				p, err := OpenPostgres(ctx, pgtest.DSN(t), nil)
				if err != nil {
					t.Fatal(err)
				}
				p.Now, b = func() time.Time { return now }, p
			}
			defer b.Close()
			n := 0
			insert := func(tenant string, count int, created time.Time) {
				t.Helper()
				var ops []Op
				for range count {
					n++
					ops = append(ops, Op{Insert: record(fmt.Sprint("m", n), tenant, "p", fmt.Sprint("p-", n), created.Add(time.Duration(n)*time.Millisecond))})
				}
				if _, err := b.Apply(ctx, ops); err != nil {
					t.Fatal(err)
				}
			}
			look := func(what string, bounds RecordBounds, want map[string]int) {
				t.Helper()
				cut, err := b.Trim(ctx, bounds)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if diff := cmp.Diff(want, cut, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("%s: records trimmed (-want +got):\n%s", what, diff)
				}
			}
			three := RecordBounds{Default: 3}
			insert("steady", 2, now.Add(-2*time.Hour))
			insert("grows", 3, now.Add(-2*time.Hour))
			insert("shrinks", 4, now.Add(-2*time.Hour))
			look("the first look, every record counted", three, map[string]int{"shrinks": 1})
			now = now.Add(10 * time.Minute)
			insert("grows", 2, now)
			look("a look after the tenant grew", three, map[string]int{"grows": 2})
			// A tenant counted past its bound at the full count, now below it: looked at, kept.
			look("a look with a lower bound of its own", RecordBounds{Default: 3, Tenants: map[string]int{"shrinks": 1}}, map[string]int{"shrinks": 2})
			look("a look after it went below the bound", three, nil)
			// Written after the full count, but created within trimLate before it: counted.
			insert("tardy", 4, t0.Add(-30*time.Minute)) // after "shrinks", looked at and within its bound
			look("a look after records created shortly before the full count", three, map[string]int{"tardy": 1})
			now = now.Add(10 * time.Minute)
			insert("steady", 2, now.Add(-3*time.Hour)) // written three hours after it was created
			look("a look after records written late", three, nil)
			now = now.Add(trimRecount)
			look("the next full count", three, map[string]int{"steady": 1})
			// A clock set back before the last full count counts every record again: a count since
			// that count's time would miss what the new times place before it.
			now = now.Add(-2 * time.Hour)
			insert("back", 4, now.Add(-3*time.Hour))
			look("a look on a clock set back", three, map[string]int{"back": 1})
		})
	}
}

// Every replica runs the trim every 10 minutes, and the trim's look counts every tenant's
// records (1.3 s at 10 million on PostgreSQL): replicas sharing the log make the look once per
// interval among them, not once each.
func TestReplicasSharingTheLogTrimOncePerInterval(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	var replicas [2]*Postgres
	for i := range replicas {
		p, err := OpenPostgres(ctx, dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		replicas[i] = p
	}
	s := New(Options{Backend: replicas[0]})
	defer s.Close()
	flood := func(from int) {
		t.Helper()
		for i := from; i < from+5; i++ {
			s.Insert(ctx, record(fmt.Sprintf("f%02d", i), "flood", "p", fmt.Sprint("f-", i), t0.Add(time.Duration(i)*time.Second)))
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	bounds := RecordBounds{Default: 3, Every: time.Hour}
	flood(0)
	if cut, err := replicas[0].Trim(ctx, bounds); err != nil || cut["flood"] != 2 {
		t.Fatalf("the first replica's trim cut %v (%v), want 2 of the flood's", cut, err)
	}
	flood(5)
	if cut, err := replicas[1].Trim(ctx, bounds); err != nil || len(cut) != 0 {
		t.Fatalf("the second replica trimmed %v (%v) within the first one's interval", cut, err)
	}
	bounds.Every = 50 * time.Millisecond
	time.Sleep(100 * time.Millisecond)
	if cut, err := replicas[1].Trim(ctx, bounds); err != nil || cut["flood"] != 5 {
		t.Fatalf("the second replica's trim after the interval cut %v (%v), want 5 of the flood's", cut, err)
	}
	flood(10)
	if cut, err := replicas[0].Trim(ctx, RecordBounds{Default: 3}); err != nil || cut["flood"] != 5 {
		t.Fatalf("a trim without an interval cut %v (%v), want 5 of the flood's", cut, err)
	}
	// A replica whose timer fires a little early (55 minutes into an interval of an hour) still
	// trims: the claim spares a tenth of the interval, so no replica skips a whole one.
	flood(15)
	if _, err := replicas[0].sys.Exec(ctx, `UPDATE chores SET ran_at = now() - interval '55 minutes' WHERE name = 'trim'`); err != nil {
		t.Fatal(err)
	}
	if cut, err := replicas[1].Trim(ctx, RecordBounds{Default: 3, Every: time.Hour}); err != nil || cut["flood"] != 5 {
		t.Fatalf("a trim 55 minutes into an interval of an hour cut %v (%v), want 5 of the flood's", cut, err)
	}
}

// Each purge says how many records it deleted and when the oldest one left was created, on every
// backend; an empty log has none.
func TestThePurgeTellsTheOldestRecordLeft(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		type told struct {
			n      int
			oldest time.Time
			known  bool
		}
		var got []told
		s := New(Options{Backend: open(), OnPurge: func(n int, oldest time.Time, known bool) { got = append(got, told{n, oldest, known}) }})
		defer s.Close()
		ctx := context.Background()
		s.purgeOlder(time.Hour)
		kept := time.Now().Add(-30 * time.Minute).Truncate(time.Millisecond)
		for i, at := range []time.Time{kept.Add(-2 * time.Hour), kept.Add(-90 * time.Minute), kept, kept.Add(time.Minute)} {
			s.Insert(ctx, record(fmt.Sprint("m", i), "acme", "p", fmt.Sprint("p-", i), at))
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		s.purgeOlder(time.Hour)
		want := []told{{0, time.Time{}, true}, {2, kept, true}}
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(told{}), cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
			t.Errorf("what the purges told (-want +got):\n%s", diff)
		}
	})
}

// The trim and the purge run again and again: each record here is taken by a later run than the
// one before it.
func TestBackgroundTrimRuns(t *testing.T) {
	m := &trimsSeen{Memory: NewMemory()}
	s := New(Options{Backend: m, RecordBounds: func() RecordBounds { return RecordBounds{Default: 1} }, TrimEvery: 10 * time.Millisecond, StartDelay: time.Millisecond})
	defer s.Close()
	s.Insert(context.Background(), record("new", "acme", "p", "new", time.Now()))
	for i := range 3 {
		old := fmt.Sprint("old", i)
		s.Insert(context.Background(), record(old, "acme", "p", fmt.Sprint(i), time.Now().Add(-time.Minute)))
		waitGone(t, s, "acme", old, "the background trim")
	}
	if _, err := s.Get(context.Background(), "acme", "new"); err != nil {
		t.Fatalf("the newest record went too: %v", err)
	}
	if every := m.every.Load(); every != int64(10*time.Millisecond) {
		t.Errorf("the trims were told they run every %v, want 10ms (replicas sharing a log run one per interval)", time.Duration(every))
	}
}

// trimsSeen is a Memory that keeps the interval its last trim was told.
type trimsSeen struct {
	*Memory
	every atomic.Int64
}

func (m *trimsSeen) Trim(ctx context.Context, b RecordBounds) (map[string]int, error) {
	m.every.Store(int64(b.Every))
	return m.Memory.Trim(ctx, b)
}

func TestBackgroundPurgeRuns(t *testing.T) {
	m := NewMemory()
	s := New(Options{Backend: m, Retention: time.Hour, PurgeEvery: 10 * time.Millisecond, StartDelay: time.Millisecond})
	defer s.Close()
	for i := range 3 {
		old := fmt.Sprint("old", i)
		s.Insert(context.Background(), record(old, "acme", "p", fmt.Sprint(i), time.Now().Add(-2*time.Hour)))
		waitGone(t, s, "acme", old, "the purge")
	}
}

// waitGone waits up to 5 s for tenant's record id to be gone from s.
func waitGone(t *testing.T, s *Store, tenant, id, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := s.Get(context.Background(), tenant, id); err == ErrNotFound {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never removed %s", what, id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A replica restarted more often than its purge's interval (a daily deploy, against the default
// 30 h of a 720 h retention) once never purged: the first purge came one whole interval after the
// start. Now the purge and the trim run first after StartDelay.
func TestAReplicaRestartedOftenStillPurgesAndTrims(t *testing.T) {
	m := NewMemory()
	s := New(Options{Backend: m, Retention: time.Hour, PurgeEvery: time.Hour,
		RecordBounds: func() RecordBounds { return RecordBounds{Default: 1} }, TrimEvery: time.Hour, StartDelay: 10 * time.Millisecond})
	defer s.Close()
	ctx := context.Background()
	s.Insert(ctx, record("expired", "acme", "p", "1", time.Now().Add(-2*time.Hour)))
	s.Insert(ctx, record("older", "beta", "p", "2", time.Now().Add(-time.Minute)))
	s.Insert(ctx, record("newer", "beta", "p", "3", time.Now()))
	gone := func(tenant, id string) bool {
		_, err := s.Get(ctx, tenant, id)
		return err == ErrNotFound
	}
	deadline := time.Now().Add(5 * time.Second)
	for !(gone("acme", "expired") && gone("beta", "older")) {
		if time.Now().After(deadline) {
			t.Fatalf("an hour's interval held the first purge and trim back: expired gone %v, older gone %v", gone("acme", "expired"), gone("beta", "older"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if gone("beta", "newer") {
		t.Error("the trim took the tenant's newest record too")
	}
}

func TestRestartKeepsRecordsAndCloseFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	b, err := OpenSQLite(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Backend: b})
	for i := 0; i < 500; i++ {
		s.Insert(context.Background(), record(fmt.Sprintf("m%03d", i), "acme", "p", fmt.Sprint(i), t0))
	}
	if err := s.Close(); err != nil { // no Flush: Close must apply everything queued
		t.Fatal(err)
	}
	if err := s.Insert(context.Background(), record("late", "acme", "p", "x", t0)); err != ErrClosed {
		t.Errorf("insert after close = %v, want ErrClosed", err)
	}
	b2, err := OpenSQLite(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := b2.SchemaVersion(context.Background()); v != len(migrations) {
		t.Errorf("schema version %d, want %d", v, len(migrations))
	}
	s2 := New(Options{Backend: b2})
	defer s2.Close()
	all, _ := s2.List(context.Background(), Query{Tenant: "acme", Limit: 500})
	if len(all) != 500 {
		t.Errorf("after restart %d records, want 500", len(all))
	}
}

// TestInsertWaitsForTheCommit: when Insert returns nil the record is in the database, readable by
// another connection (what another replica, or this one after a SIGKILL, would see).
func TestInsertWaitsForTheCommit(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			var a, b Backend
			switch name {
			case "sqlite":
				path := filepath.Join(t.TempDir(), "log.db")
				sa, err := OpenSQLite(context.Background(), path, nil)
				if err != nil {
					t.Fatal(err)
				}
				sb, _ := OpenSQLite(context.Background(), path, nil)
				a, b = sa, sb
			case "postgres":
				dsn := pgtest.DSN(t)
				pa, err := OpenPostgres(context.Background(), dsn, nil)
				if err != nil {
					t.Fatal(err)
				}
				pb, _ := OpenPostgres(context.Background(), dsn, nil)
				a, b = pa, pb
			}
			defer b.Close()
			s := New(Options{Backend: a})
			defer s.Close()
			var wg sync.WaitGroup
			for i := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					id := fmt.Sprint("gc-", i)
					if err := s.Insert(context.Background(), record(id, "acme", "p", id, t0)); err != nil {
						t.Error(err)
						return
					}
					// Read through the other connection, not the store: no flush can help here.
					if _, err := b.Get(context.Background(), "acme", id); err != nil {
						t.Errorf("%s answered but not committed: %v", id, err)
					}
				}()
			}
			wg.Wait()
		})
	}
}

func TestNoCodeInDatabaseFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log.db")
	b, err := OpenSQLite(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Backend: b})
	r := record("m1", "acme", "twilio", "SM1", t0)
	s.Insert(context.Background(), r)
	s.Report(context.Background(), &gateway.DeliveryReport{Provider: "twilio", ProviderMessageID: "SM-early", Status: gateway.StatusDelivered})
	s.Close()
	// The record carries no text or code field at all; check the raw files for the number too.
	for _, f := range []string{path, path + "-wal"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, secret := range []string{"4155550104", "Your code"} {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("%s contains %q", filepath.Base(f), secret)
			}
		}
	}
}

func TestConcurrentWriters(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		s := New(Options{Backend: open(), QueueSize: 16})
		defer s.Close()
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					id := fmt.Sprintf("w%d-%d", w, i)
					s.Insert(context.Background(), record(id, "acme", "p", id, t0))
					s.Report(context.Background(), &gateway.DeliveryReport{Provider: "p", ProviderMessageID: id, Status: gateway.StatusDelivered})
				}
			}()
		}
		wg.Wait()
		all, _ := s.List(context.Background(), Query{Tenant: "acme", Statuses: []string{gateway.StatusDelivered}, Limit: 500})
		if len(all) != 400 {
			t.Errorf("delivered records = %d, want 400", len(all))
		}
	})
}

func BenchmarkRecordPath(b *testing.B) {
	for _, name := range []string{"memory", "sqlite"} {
		b.Run(name, func(b *testing.B) {
			var be Backend = NewMemory()
			if name == "sqlite" {
				sq, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "bench.db"), nil)
				if err != nil {
					b.Fatal(err)
				}
				be = sq
			}
			s := New(Options{Backend: be})
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					id := fmt.Sprintf("%p-%d", pb, i)
					s.Insert(context.Background(), record(id, "acme", "p", id, t0))
				}
			})
			s.Flush(context.Background())
			b.StopTimer()
			s.Close()
		})
	}
}

// TestReportsTouchOnlyTheirProvidersMessages: a report that names our message id matches only
// when it comes from the provider that sent the message, also when it arrives before the record.
func TestReportsTouchOnlyTheirProvidersMessages(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		s := New(Options{Backend: open()})
		defer s.Close()
		ctx := context.Background()
		s.Insert(ctx, record("m1", "acme", "twilio", "SM1", t0))
		// The Infobip webhook names our id, but the message went through Twilio.
		s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", MessageID: "m1", ProviderMessageID: "m1", Status: gateway.StatusUndelivered})
		// Early report from the wrong provider for a record written after it.
		s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", MessageID: "m2", ProviderMessageID: "m2", Status: gateway.StatusFailed})
		s.Insert(ctx, record("m2", "acme", "twilio", "SM2", t0))
		// The right provider's early report for a third record does apply.
		s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", MessageID: "m3", ProviderMessageID: "m3", Status: gateway.StatusDelivered})
		s.Insert(ctx, record("m3", "acme", "infobip", "m3", t0))
		// Two providers' own ids may be the same string: an early report naming only its
		// provider's id waits for that provider's message, not another's of the same id.
		s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", ProviderMessageID: "4711", Status: gateway.StatusFailed})
		s.Insert(ctx, record("m4", "acme", "twilio", "4711", t0))
		// A report naming only an id of ours that no message has is no report about a message of
		// its provider that has no id of the provider's.
		s.Insert(ctx, record("m5", "acme", "infobip", "", t0))
		s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", MessageID: "m-unknown", Status: gateway.StatusFailed})
		for id, want := range map[string]string{"m1": gateway.StatusSent, "m2": gateway.StatusSent, "m3": gateway.StatusDelivered, "m4": gateway.StatusSent, "m5": gateway.StatusSent} {
			got, err := s.Get(ctx, "acme", id)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != want {
				t.Errorf("%s: status %q, want %q", id, got.Status, want)
			}
		}
	})
}

func TestMemoryPendingReportsExpireAndAreBounded(t *testing.T) {
	now := t0
	m := NewMemory()
	m.Now = func() time.Time { return now }
	m.MaxPending, m.PendingTTL = 3, time.Hour
	rep := func(id string) Op {
		return Op{Report: &gateway.DeliveryReport{Provider: "p", ProviderMessageID: id, Status: gateway.StatusDelivered}}
	}
	for i := range 5 {
		m.Apply(context.Background(), []Op{rep(fmt.Sprint("early-", i))})
	}
	if n := m.PendingReports(); n != 3 {
		t.Errorf("pending = %d, want the bound 3", n)
	}
	now = now.Add(2 * time.Hour)
	m.Apply(context.Background(), []Op{rep("late")})
	if n := m.PendingReports(); n != 1 {
		t.Errorf("pending = %d after the TTL, want only the new one", n)
	}
	// The newest kept report still applies to its record.
	m.Apply(context.Background(), []Op{{Insert: record("x", "acme", "p", "late", now)}})
	if r, _ := m.Get(context.Background(), "acme", "x"); r.Status != gateway.StatusDelivered {
		t.Errorf("kept report not applied: %q", r.Status)
	}
}

// flaky is a Backend that fails while down is set, counting the tries, but lets the next
// allowed batches through; with hold set, each try that is let through waits for hold to close
// (a database that stopped answering) and then commits.
type flaky struct {
	Backend
	mu      sync.Mutex
	down    bool
	tries   int
	allowed int
	hold    chan struct{}
	holding int
}

func (f *flaky) Apply(ctx context.Context, ops []Op) ([]Charge, error) {
	f.mu.Lock()
	f.tries++
	down := f.down && f.allowed == 0
	if f.down && f.allowed > 0 {
		f.allowed--
	}
	hold := f.hold
	if !down && hold != nil {
		f.holding++
	}
	f.mu.Unlock()
	if down {
		return nil, fmt.Errorf("disk I/O error (simulated)")
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return f.Backend.Apply(ctx, ops)
}

func (f *flaky) set(down bool) { f.mu.Lock(); f.down = down; f.mu.Unlock() }
func (f *flaky) count() int    { f.mu.Lock(); defer f.mu.Unlock(); return f.tries }

// allow lets the next n batches through while down.
func (f *flaky) allow(n int) { f.mu.Lock(); f.allowed = n; f.mu.Unlock() }

// held reports whether a try has begun waiting for hold.
func (f *flaky) held() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.holding > 0 }

// counters collects what the writer reports to metrics.
type counters struct {
	mu                       sync.Mutex
	failed, backlog, dropped int
}

func (c *counters) opts(o Options) Options {
	o.OnBatch = func(n int, err error) {
		c.mu.Lock()
		if err != nil {
			c.failed++
		}
		c.mu.Unlock()
	}
	o.OnBacklog = func(n int) { c.mu.Lock(); c.backlog = n; c.mu.Unlock() }
	o.OnDrop = func(n int) { c.mu.Lock(); c.dropped += n; c.mu.Unlock() }
	return o
}

func (c *counters) get() (failed, backlog, dropped int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed, c.backlog, c.dropped
}

// TestFailingDatabaseIsRetriedNotDropped: while the database refuses writes, they are kept in
// order, tried again with backoff, counted and logged; when it recovers, every write lands.
func TestFailingDatabaseIsRetriedNotDropped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	sq, err := OpenSQLite(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	fb := &flaky{Backend: sq, down: true}
	var c counters
	var logs syncbuf.Buffer
	s := New(c.opts(Options{Backend: fb, Logger: jsonLogger(&logs), CommitTimeout: 5 * time.Millisecond}))
	defer s.Close()
	ctx := context.Background()
	for i := range 20 {
		if err := s.Insert(ctx, record(fmt.Sprint("m", i), "acme", "p", fmt.Sprint("pm", i), t0)); err != ErrNotCommitted {
			t.Fatalf("insert while the database fails: %v, want ErrNotCommitted", err)
		}
	}
	s.Report(ctx, &gateway.DeliveryReport{Provider: "p", ProviderMessageID: "pm3", Status: gateway.StatusDelivered})
	// Wait for the state, not for a time: on a slow machine the last writes can arrive after the
	// third try, and then they wait in the backlog for the fourth.
	failed, backlog, dropped := c.get()
	for deadline := time.Now().Add(10 * time.Second); (failed < 3 || backlog != 21) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		failed, backlog, dropped = c.get()
	}
	if failed < 3 || backlog != 21 || dropped != 0 {
		t.Fatalf("while down: failed batches %d (want >= 3 retries), backlog %d (want 21), dropped %d", failed, backlog, dropped)
	}
	if !strings.Contains(logs.String(), `"level":"ERROR","msg":"message log write failed; keeping the writes for another try"`) {
		t.Errorf("no error log line: %s", logs.String())
	}
	fb.set(false)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, backlog, _ := c.get(); backlog == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the backlog was not written after the database recovered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	recs, err := s.List(ctx, Query{Tenant: "acme", Limit: 100})
	if err != nil || len(recs) != 20 {
		t.Fatalf("%d records after recovery, want 20 (err %v)", len(recs), err)
	}
	if r, _ := s.Get(ctx, "acme", "m3"); r.Status != gateway.StatusDelivered {
		t.Errorf("the report queued behind the inserts was not applied in order: %q", r.Status)
	}
}

// TestTheBackoffDoublesAndStartsAgainAfterARecovery: the writer tries a failing database again
// after 50 ms, then waits twice as long each time (a database struggling back to its feet is not
// hammered by every replica), and a recovery starts the next outage's backoff from 50 ms again.
func TestTheBackoffDoublesAndStartsAgainAfterARecovery(t *testing.T) {
	fb := &flaky{Backend: NewMemory(), down: true}
	s := New(Options{Backend: fb, CommitTimeout: time.Millisecond, CloseTimeout: time.Millisecond})
	defer s.Close()
	ctx := context.Background()
	s.Insert(ctx, record("m1", "acme", "p", "", t0))
	time.Sleep(time.Second)
	if n := fb.count(); n < 3 || n > 8 {
		t.Errorf("%d tries in the first second of an outage, want about 5 (at 0, 50, 150, 350 and 750 ms)", n)
	}
	fb.set(false)
	if err := s.Flush(ctx); err != nil { // a Flush tries at once, backoff or not
		t.Fatal(err)
	}
	fb.set(true)
	before := fb.count()
	s.Insert(ctx, record("m2", "acme", "p", "", t0))
	time.Sleep(400 * time.Millisecond)
	if n := fb.count() - before; n < 3 {
		t.Errorf("%d tries in the first 400 ms of the next outage, want about 4 (at 0, 50, 150 and 350 ms)", n)
	}
}

// TestFullWhileBackingOff: writes that arrive while the writer backs off from a failing database
// count in the backlog at once, so Full (what storage.backlog_full: refuse_sends checks) turns
// true before the next try, not up to a backoff (5 s at most) later, while accepted sends push the
// oldest records out of the buffer.
func TestFullWhileBackingOff(t *testing.T) {
	fb := &flaky{Backend: NewMemory(), down: true}
	var c counters
	s := New(c.opts(Options{Backend: fb, RetryBuffer: 5, CommitTimeout: time.Millisecond, CloseTimeout: 10 * time.Millisecond}))
	defer s.Close()
	ctx := context.Background()
	s.Insert(ctx, record("m0", "acme", "p", "", t0))
	// After the third failed try the writer waits 200 ms before the fourth.
	for deadline := time.Now().Add(5 * time.Second); fb.count() < 3; {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not retry")
		}
		time.Sleep(time.Millisecond)
	}
	tries := fb.count()
	for i := 1; i < 5; i++ {
		s.Insert(ctx, record(fmt.Sprint("m", i), "acme", "p", "", t0))
	}
	for deadline := time.Now().Add(100 * time.Millisecond); !s.Full(); {
		if time.Now().After(deadline) {
			t.Fatalf("Full() still false 100 ms after the buffer filled (backlog %d)", s.Backlog())
		}
		time.Sleep(time.Millisecond)
	}
	if fb.count() != tries {
		t.Skipf("the writer tried again meanwhile (a slow machine); Full was not shown to turn true between tries")
	}
}

// TestRetryBufferBoundAndCloseGiveUpAreCounted: a full retry buffer drops the oldest writes and
// Close gives up after CloseTimeout; both are counted, never silent.
func TestRetryBufferBoundAndCloseGiveUpAreCounted(t *testing.T) {
	fb := &flaky{Backend: NewMemory(), down: true}
	var c counters
	s := New(c.opts(Options{Backend: fb, RetryBuffer: 5, CloseTimeout: 200 * time.Millisecond, CommitTimeout: time.Millisecond}))
	for i := range 8 {
		s.Insert(context.Background(), record(fmt.Sprint("m", i), "acme", "p", "", t0))
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, _, dropped := c.get(); dropped >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("overflow of the retry buffer was not counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v with CloseTimeout 200ms", d)
	}
	if _, _, dropped := c.get(); dropped != 8 {
		t.Errorf("dropped %d, want 8 (3 overflow + 5 given up at close)", dropped)
	}
}

// TestOverflowIsCountedEveryTimeAndLoggedOnceASecond: while the database is down and the retry
// buffer overflows, each write pushes out the oldest: every one is counted, but the error lines
// come at most one a second, and together (with the one at close) they account for every write.
func TestOverflowIsCountedEveryTimeAndLoggedOnceASecond(t *testing.T) {
	fb := &flaky{Backend: NewMemory(), down: true}
	var c counters
	var logs syncbuf.Buffer
	s := New(c.opts(Options{Backend: fb, RetryBuffer: 5, CloseTimeout: 50 * time.Millisecond, CommitTimeout: time.Millisecond,
		Logger: jsonLogger(&logs)}))
	for i := range 300 {
		s.Insert(context.Background(), record(fmt.Sprint("m", i), "acme", "p", "", t0))
	}
	s.Close()
	if _, _, dropped := c.get(); dropped != 300 {
		t.Errorf("dropped %d, want 300", dropped)
	}
	lines, total := 0, 0
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var e struct {
			Msg    string `json:"msg"`
			Writes int    `json:"writes"`
			Reason string `json:"reason"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && e.Msg == "message log writes dropped" {
			total += e.Writes
			if e.Reason == "the retry buffer is full" {
				lines++
			}
		}
	}
	// One line a second: a handful however slow the machine, never one per write (295 of them).
	if lines < 1 || lines > 30 || total != 300 {
		t.Errorf("%d overflow lines covering, with the close, %d writes; want 1 to 30 lines and 300 writes:\n%s", lines, total, logs.String())
	}
}

// TestOverflowPushesOutTheFloodNotTheOthers: the database is down; a quiet tenant's records
// arrive first, then another tenant's flood overflows the retry buffer. Once the database is back,
// every record of the quiet tenant is written, and what was given up was the flood's oldest.
func TestOverflowPushesOutTheFloodNotTheOthers(t *testing.T) {
	fb := &flaky{Backend: NewMemory(), down: true}
	var c counters
	s := New(c.opts(Options{Backend: fb, RetryBuffer: 128, CommitTimeout: time.Millisecond}))
	defer s.Close()
	for i := range 20 {
		s.Insert(context.Background(), record(fmt.Sprint("quiet-", i), "quiet", "p", "", t0))
	}
	for i := range 1000 {
		s.Insert(context.Background(), record(fmt.Sprint("flood-", i), "flood", "p", "", t0))
	}
	fb.set(false)
	s.Flush(context.Background())
	got := map[string]int{}
	for _, tn := range []string{"quiet", "flood"} {
		recs, err := fb.Backend.List(context.Background(), Query{Tenant: tn, Limit: 2000})
		if err != nil {
			t.Fatal(err)
		}
		got[tn] = len(recs)
		if tn == "flood" && len(recs) > 0 {
			// The flood kept its newest: what was given up came from its front.
			if ids := recs[0].ID; ids != "flood-999" {
				t.Errorf("the flood's newest kept record is %s, want flood-999", ids)
			}
		}
	}
	_, _, dropped := c.get()
	if got["quiet"] != 20 || got["flood"] < 100 || got["flood"]+got["quiet"]+dropped != 1020 {
		t.Errorf("kept quiet %d (want 20), flood %d (want 100 or more), dropped %d (want the rest of 1020)", got["quiet"], got["flood"], dropped)
	}
}

// TestLargeRecordsCountByTheirSize: the retry buffer counts a write one, and one more for each
// KiB of the texts its tenant chose. A tenant sending Infobip-compatible messages with the largest
// callbackData during an outage fills the bound four times faster than one sending Auth0 codes,
// and pushes out its own records, not the quiet tenant's: the replica's memory, which both share,
// stays what the bound promises.
func TestLargeRecordsCountByTheirSize(t *testing.T) {
	fb := &flaky{Backend: NewMemory(), down: true}
	var c counters
	s := New(c.opts(Options{Backend: fb, RetryBuffer: 1024, CommitTimeout: time.Microsecond}))
	defer s.Close()
	ctx := context.Background()
	for i := range 100 {
		s.Insert(ctx, record(fmt.Sprint("quiet-", i), "quiet", "p", "", t0))
	}
	big := strings.Repeat("x", 4000)
	for i := range 2000 {
		r := record(fmt.Sprint("large-", i), "large", "p", "", t0)
		r.Source, r.CallbackData = "infobip-sms-v2", big
		s.Insert(ctx, r)
	}
	s.Flush(ctx)
	if held := s.held.Load(); held > 1024 || held < 1024-1024/evictChunk-4 {
		t.Errorf("the buffer holds %d against a bound of 1024", held)
	}
	fb.set(false)
	s.Flush(ctx)
	quiet, _ := fb.Backend.List(ctx, Query{Tenant: "quiet", Limit: 2000})
	large, _ := fb.Backend.List(ctx, Query{Tenant: "large", Limit: 2000})
	if len(quiet) != 100 || len(large) > (1024-100)/4 || len(large) == 0 {
		t.Errorf("kept quiet %d (want 100), large %d (want at most %d, each counting 4)", len(quiet), len(large), (1024-100)/4)
	}
	if _, _, dropped := c.get(); dropped != 2000-len(large) {
		t.Errorf("%d counted dropped, want %d", dropped, 2000-len(large))
	}
}

// TestExactDropsGiveUpOnlyWhatIsOver: with ExactDrops (backlog_full: refuse_sends) an overflow
// gives up only the writes over the bound; without, 1/64 of the bound goes at once.
func TestExactDropsGiveUpOnlyWhatIsOver(t *testing.T) {
	for _, exact := range []bool{true, false} {
		s := &Store{opts: Options{RetryBuffer: 128, ExactDrops: exact}, log: slog.New(slog.DiscardHandler)}
		w := &writeLoop{s: s}
		for i := range 129 {
			w.add(Op{Insert: record(fmt.Sprint("m", i), "acme", "p", "", t0)})
		}
		want := 128
		if !exact {
			want = 128 - 2
		}
		if len(w.buf) != want || w.buf[len(w.buf)-1].Insert.ID != "m128" {
			t.Errorf("exact %v: %d kept, want %d, the newest kept", exact, len(w.buf), want)
		}
	}
}

// TestEvictKeepsOrderAndCutsTheLargestFirst: evict takes the oldest writes of the largest tenants,
// never more of a tenant than brings it down to the others' share, and keeps the order.
func TestEvictKeepsOrderAndCutsTheLargestFirst(t *testing.T) {
	var w writeLoop
	for i, tn := range strings.Split("a b a a c a a b a a", " ") {
		w.buf = append(w.buf, Op{Insert: record(fmt.Sprint(tn, i), tn, "p", "", t0)})
	}
	w.buf = append(w.buf, Op{Report: &gateway.DeliveryReport{ProviderMessageID: "r"}})
	if n := w.evict(4); n != 4 {
		t.Fatalf("evicted %d, want 4", n)
	}
	var ids []string
	for _, op := range w.buf {
		if op.Insert != nil {
			ids = append(ids, op.Insert.ID)
		} else {
			ids = append(ids, "report")
		}
	}
	// a held 7 of 11: cut to 3 (b 2, c 1 and the report 1 untouched).
	if diff := cmp.Diff([]string{"b1", "c4", "a6", "b7", "a8", "a9", "report"}, ids); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Many tenants of one write each and a bound below their number: no more goes than asked.
	w.buf = nil
	for _, tn := range strings.Split("a b c d e e", " ") {
		w.buf = append(w.buf, Op{Insert: record(tn, tn, "p", "", t0)})
	}
	if n := w.evict(3); n != 3 || len(w.buf) != 3 {
		t.Errorf("evicted %d, kept %d; want 3 and 3", n, len(w.buf))
	}
	// A share's remainder goes to the tenants above the share: a (1) is below it, b and c (5 each)
	// come down to 3 each and one of them keeps one more.
	w.buf = nil
	for i, tn := range strings.Split("a b b b b b c c c c c", " ") {
		w.buf = append(w.buf, Op{Insert: record(fmt.Sprint(tn, i), tn, "p", "", t0)})
	}
	if n := w.evict(3); n != 3 || len(w.buf) != 8 {
		t.Errorf("evicted %d, kept %d; want 3 and 8", n, len(w.buf))
	}
}

// TestEveryTextATenantChoosesWeighs: each text whose length a tenant chooses counts one more for
// each KiB towards the retry buffer's bound, and those it cannot choose do not.
func TestEveryTextATenantChoosesWeighs(t *testing.T) {
	kib := strings.Repeat("x", 1024)
	for name, set := range map[string]func(r *Record){
		"callbackData": func(r *Record) { r.CallbackData = kib },
		"notifyUrl":    func(r *Record) { r.NotifyURL = kib },
		"reference":    func(r *Record) { r.Reference = kib },
		"bulkId":       func(r *Record) { r.BulkID = kib },
		"client id":    func(r *Record) { r.ClientID = kib },
		"action":       func(r *Record) { r.Action = kib },
	} {
		r := record("m", "acme", "p", "", t0)
		set(r)
		if w := opWeight(&Op{Insert: r}); w != 2 {
			t.Errorf("%s of 1 KiB: weight %d, want 2", name, w)
		}
	}
	if w := opWeight(&Op{Insert: record("m", "acme", "p", "", t0)}); w != 1 {
		t.Errorf("an Auth0 send's record: weight %d, want 1", w)
	}
	if w := opWeight(&Op{Report: &gateway.DeliveryReport{Error: kib}}); w != 1 {
		t.Errorf("a report: weight %d, want 1", w)
	}
}

// jsonLogger logs to b in JSON, as the gateway does.
func jsonLogger(b *syncbuf.Buffer) *slog.Logger { return slog.New(slog.NewJSONHandler(b, nil)) }

// TestPostgresPurgeRunsOnOneReplicaAtATime: while another replica holds the purge lock, a purge
// skips its round; once released, it deletes in chunks.
func TestPostgresPurgeRunsOnOneReplicaAtATime(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	p, err := OpenPostgres(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.PurgeChunk = 7
	var ops []Op
	for i := range 30 {
		ops = append(ops, Op{Insert: record(fmt.Sprint("old-", i), "acme", "p", "", t0.Add(-48*time.Hour))})
	}
	ops = append(ops, Op{Insert: record("new", "acme", "p", "", t0)})
	if _, err := p.Apply(ctx, ops); err != nil {
		t.Fatal(err)
	}
	other, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	taken := func(name string) bool {
		t.Helper()
		var got bool
		if err := other.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+lockKeySQL+`)`, name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	release := func(name string) {
		t.Helper()
		if _, err := other.Exec(ctx, `SELECT pg_advisory_unlock(`+lockKeySQL+`)`, name); err != nil {
			t.Fatal(err)
		}
	}
	if !taken(":purge") {
		t.Fatal("the purge's lock was not free")
	}
	if n, err := p.Purge(ctx, t0.Add(-time.Hour)); n != 0 || err != nil {
		t.Fatalf("purge while another replica purges: %d, %v", n, err)
	}
	release(":purge")
	if n, err := p.Purge(ctx, t0.Add(-time.Hour)); n != 30 || err != nil {
		t.Fatalf("purge: %d, %v; want 30 in chunks of 7", n, err)
	}
	if _, err := p.Get(ctx, "acme", "new"); err != nil {
		t.Errorf("the new record went too: %v", err)
	}
	// A purge leaves the lock free: another replica takes it at once.
	if !taken(":purge") {
		t.Error("another replica could not take the purge's lock after a purge")
	}
	release(":purge")
	// The trim too: while another replica trims, this one leaves the log alone, and after its own
	// trim the lock is free.
	if _, err := p.Apply(ctx, []Op{{Insert: record("new2", "acme", "p", "", t0)}}); err != nil {
		t.Fatal(err)
	}
	if !taken(":trim") {
		t.Fatal("the trim's lock was not free")
	}
	if cut, err := p.Trim(ctx, RecordBounds{Default: 1}); err != nil || len(cut) != 0 {
		t.Errorf("a trim while another replica trims cut %v (%v), want nothing", cut, err)
	}
	release(":trim")
	if cut, err := p.Trim(ctx, RecordBounds{Default: 1}); err != nil || cut["acme"] != 1 {
		t.Errorf("a trim once the other replica's ended cut %v (%v), want 1 of acme's", cut, err)
	}
	if !taken(":trim") {
		t.Error("another replica could not take the trim's lock after a trim")
	}
	release(":trim")
}

// TestPostgresMigrationsUnderConcurrentStarts: replicas starting together migrate once. Those
// waiting for the one that migrates must not hold a snapshot while they wait: its CREATE INDEX
// CONCURRENTLY waits for every older snapshot, and PostgreSQL then ends the start of one of them
// or of the migrating one with "deadlock detected" (as it did when they waited in
// pg_advisory_lock).
func TestPostgresMigrationsUnderConcurrentStarts(t *testing.T) {
	dsn := pgtest.DSN(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := OpenPostgres(context.Background(), dsn, nil)
			if err == nil {
				defer p.Close()
				if v, verr := p.SchemaVersion(context.Background()); verr != nil || v != len(pgMigrations) {
					err = fmt.Errorf("version %d, %v", v, verr)
				}
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
}

func TestPostgresDSNPasswordNeverPrinted(t *testing.T) {
	_, err := OpenPostgres(context.Background(), "postgres://smsgate:hunter2-secret@127.0.0.1:1/test?connect_timeout=1", nil)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("err = %v", err)
	}
}

// TestTakeHandsEachReportOutOnce: final reports of compat messages are handed out once, oldest
// first, and filters by bulk and id (ours or the caller's reference) work, each within the tenant.
func TestTakeHandsEachReportOutOnce(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		s := New(Options{Backend: open()})
		defer s.Close()
		ctx := context.Background()
		for i := range 4 {
			r := record(fmt.Sprint("c", i), "acme", "ib", fmt.Sprint("c", i), t0.Add(time.Duration(i)*time.Second))
			r.Source, r.BulkID, r.Reference = "infobip-sms-v2", "bulk-1", fmt.Sprint("ref-", i)
			if i == 3 {
				r.BulkID = "bulk-2"
			}
			s.Insert(ctx, r)
		}
		s.Insert(ctx, record("native", "acme", "ib", "native", t0)) // not a compat message
		// Another tenant's message, in a bulk and with a reference of the same names.
		o := record("o0", "other", "ib", "o0", t0)
		o.Source, o.BulkID, o.Reference = "infobip-sms-v2", "bulk-1", "ref-3"
		s.Insert(ctx, o)
		for _, id := range []string{"c0", "c1", "c3", "native", "o0"} {
			s.Report(ctx, &gateway.DeliveryReport{Provider: "ib", MessageID: id, ProviderMessageID: id, Status: gateway.StatusDelivered})
		}
		if r, err := s.Find(ctx, "ib", "", "c1"); err != nil || r.Reference != "ref-1" || r.Status != gateway.StatusDelivered {
			t.Errorf("find: %+v %v", r, err)
		}
		if _, err := s.Find(ctx, "other", "c1", "c1"); err != ErrNotFound {
			t.Errorf("find with another provider: %v", err)
		}
		got, err := s.Take(ctx, TakeQuery{Tenant: "acme", BulkID: "bulk-1", Limit: 10})
		if err != nil || len(got) != 2 || got[0].ID != "c0" || got[1].ID != "c1" {
			t.Fatalf("take bulk-1: %d records %v", len(got), err)
		}
		if again, _ := s.Take(ctx, TakeQuery{Tenant: "acme", BulkID: "bulk-1", Limit: 10}); len(again) != 0 {
			t.Errorf("reports handed out twice: %d", len(again))
		}
		if byRef, _ := s.Take(ctx, TakeQuery{Tenant: "acme", ID: "ref-3", Limit: 10}); len(byRef) != 1 || byRef[0].ID != "c3" {
			t.Errorf("take by reference: %v", byRef)
		}
		if others, _ := s.Take(ctx, TakeQuery{Tenant: "other", Limit: 10}); len(others) != 1 || others[0].ID != "o0" {
			t.Errorf("the other tenant's reports: %d records, want its own o0 alone, left by acme's takes", len(others))
		}
		logs, _ := s.List(ctx, Query{Tenant: "acme", Compat: true, ID: "ref-2", Limit: 10})
		if len(logs) != 1 || logs[0].ID != "c2" || logs[0].Source != "infobip-sms-v2" {
			t.Errorf("compat listing by reference: %v", logs)
		}
	})
}

// TestHeldReportsAreReleased: a compat message that failed at send is written with its report
// held (ReportHeld): neither pulled nor pushed, since the request it failed in gave the caller no
// id. Release hands it out (pullable, or due to be pushed at once) when the request was answered
// 200 all the same; it leaves sent and already released records alone.
func TestHeldReportsAreReleased(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		s := New(Options{Backend: open()})
		defer s.Close()
		ctx := context.Background()
		now := t0.Add(time.Minute) // the backends' clock
		failed := func(id, notify string) *Record {
			r := record(id, "acme", "ib", "", t0)
			r.Status, r.Error, r.Source, r.NotifyURL, r.ReportTaken, r.ReportHeld = gateway.StatusRejected, "EC_BAD_NUMBER", "infobip-sms-v3", notify, true, true
			return r
		}
		sent := record("sent", "acme", "ib", "sent", t0)
		sent.Source = "infobip-sms-v3"
		for _, r := range []*Record{failed("held", ""), failed("held-push", "https://hooks.example.com/r"), failed("given", ""), failed("given-push", "https://hooks.example.com/r"), sent} {
			if err := s.Insert(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		ids := func(rs []*Record) (out []string) {
			for _, r := range rs {
				out = append(out, r.ID)
			}
			slices.Sort(out)
			return out
		}
		if got, _ := s.Take(ctx, TakeQuery{Tenant: "acme", Limit: 10}); len(got) != 0 {
			t.Errorf("held reports pulled: %v", ids(got))
		}
		if got, _ := s.Due(ctx, "acme", now.Add(time.Hour), 10); len(got) != 0 {
			t.Errorf("held reports pushed: %v", ids(got))
		}
		if err := s.Release(ctx, []string{"given", "given-push", "sent", "unknown"}); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Take(ctx, TakeQuery{Tenant: "acme", Limit: 10}); !slices.Equal(ids(got), []string{"given"}) {
			t.Errorf("pulled after the release: %v, want [given]", ids(got))
		}
		if got, _ := s.Due(ctx, "acme", now.Add(-time.Second), 10); len(got) != 0 {
			t.Errorf("due before the release: %v", ids(got))
		}
		got, err := s.Due(ctx, "acme", now, 10)
		if err != nil || !slices.Equal(ids(got), []string{"given-push"}) {
			t.Fatalf("due after the release: %v, %v; want [given-push]", ids(got), err)
		}
		// Released again (a replayed answer): neither pulled nor due again.
		if err := s.Release(ctx, []string{"given", "given-push"}); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Take(ctx, TakeQuery{Tenant: "acme", Limit: 10}); len(got) != 0 {
			t.Errorf("pulled twice: %v", ids(got))
		}
		if got, _ := s.Due(ctx, "acme", now.Add(time.Minute), 10); len(got) != 0 {
			t.Errorf("claimed again within its retry after a second release: %v", ids(got))
		}
		if r, err := s.Get(ctx, "acme", "sent"); err != nil || r.ReportTaken || !r.PushAt.IsZero() {
			t.Errorf("a sent record released: %+v, %v", r, err)
		}
	})
}

// TestAReportArmsAPushOnlyOnce: a final report makes a record with a notify URL due to be pushed,
// once: not a record whose pushes were all tried and given up (a report arriving later would start
// twelve more), nor one whose report is held (its send failed and the caller never had its id).
func TestAReportArmsAPushOnlyOnce(t *testing.T) {
	now := t0.Add(time.Hour)
	for _, tc := range []struct {
		name  string
		edit  func(r *Record)
		armed bool
	}{
		{"never pushed", func(*Record) {}, true},
		{"pushes given up", func(r *Record) { r.PushTries = PushTries }, false},
		{"held: the send failed", func(r *Record) { r.Status, r.ReportTaken, r.ReportHeld = gateway.StatusFailed, true, true }, false},
	} {
		r := record("m1", "acme", "ib", "ib-1", t0)
		r.Source, r.NotifyURL = "infobip-sms-v3", "https://hooks.example.com/r"
		tc.edit(r)
		applyReport(r, &gateway.DeliveryReport{Provider: "ib", MessageID: "m1", Status: gateway.StatusDelivered}, now)
		if armed := !r.PushAt.IsZero(); armed != tc.armed {
			t.Errorf("%s: push armed %v, want %v", tc.name, armed, tc.armed)
		}
	}
}

// TestPushesAreClaimedUntilDone: a compat message's final report is due to be pushed once it is
// final (also when the report came before the record); each claim counts a try and makes it due
// again only on Infobip's schedule, so a push that never ends is tried again and a claimed one
// is not claimed twice; PushDone ends it, and after PushTries claims it is given up. Messages
// without a notify URL, other tenants' messages and non-final ones are never due.
func TestPushesAreClaimedUntilDone(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		s := New(Options{Backend: open()})
		defer s.Close()
		ctx := context.Background()
		final := t0.Add(time.Minute) // the backends' clock: when reports are applied
		compat := func(id, tenant, notify string) *Record {
			r := record(id, tenant, "ib", id, t0)
			r.Source, r.NotifyURL = "infobip-sms-v3", notify
			return r
		}
		// Early report for p2: it waits for its record, which is then due at once.
		s.Report(ctx, &gateway.DeliveryReport{Provider: "ib", MessageID: "p2", Status: gateway.StatusUndelivered})
		s.Flush(ctx)
		for _, r := range []*Record{compat("p1", "acme", "https://hooks.example.com/r"), compat("p2", "acme", "https://hooks.example.com/r"),
			compat("pulled", "acme", ""), compat("other", "globex", "https://hooks.example.com/r"), compat("open", "acme", "https://hooks.example.com/r")} {
			s.Insert(ctx, r)
		}
		ids := func(rs []*Record) (out []string) {
			for _, r := range rs {
				out = append(out, fmt.Sprintf("%s#%d", r.ID, r.PushTries))
			}
			slices.Sort(out)
			return out
		}
		if due, err := s.Due(ctx, "acme", final, 10); err != nil || len(due) != 1 || due[0].ID != "p2" {
			t.Fatalf("before any final report: due %v, %v; want only p2 (its early report)", ids(due), err)
		}
		s.PushDone(ctx, "p2")
		for _, id := range []string{"p1", "pulled", "other"} {
			s.Report(ctx, &gateway.DeliveryReport{Provider: "ib", MessageID: id, Status: gateway.StatusDelivered})
		}
		s.Report(ctx, &gateway.DeliveryReport{Provider: "ib", MessageID: "open", Status: gateway.StatusSent})
		s.Report(ctx, &gateway.DeliveryReport{Provider: "ib", MessageID: "p2", Status: gateway.StatusDelivered}) // pushed already: not again
		if due, _ := s.Due(ctx, "acme", final.Add(-time.Second), 10); len(due) != 0 {
			t.Errorf("due before it was final: %v", ids(due))
		}
		dueTenants := func(at time.Time) []string {
			t.Helper()
			got, err := s.DueTenants(ctx, at)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			return got
		}
		if got := dueTenants(final.Add(-time.Second)); len(got) != 0 {
			t.Errorf("tenants due before any push was: %v", got)
		}
		if got := dueTenants(final); !slices.Equal(got, []string{"acme", "globex"}) {
			t.Errorf("tenants due: %v, want [acme globex]", got)
		}
		due, err := s.Due(ctx, "acme", final, 10)
		if err != nil || !slices.Equal(ids(due), []string{"p1#1"}) {
			t.Fatalf("due = %v, %v; want [p1#1]", ids(due), err)
		}
		if want := NextPush(final, 1); !due[0].PushAt.Equal(want) || due[0].CallbackData != "" || due[0].NotifyURL == "" {
			t.Errorf("claimed: push at %v, want %v (%+v)", due[0].PushAt, want, due[0])
		}
		if again, _ := s.Due(ctx, "acme", final.Add(time.Minute), 10); len(again) != 0 {
			t.Errorf("claimed twice within its retry: %v", ids(again))
		}
		// The push never ended (a replica died): due again two minutes later, as the second try.
		at := final.Add(2 * time.Minute)
		if again, _ := s.Due(ctx, "acme", at, 10); !slices.Equal(ids(again), []string{"p1#2"}) {
			t.Errorf("after the first retry's wait: %v, want [p1#2]", ids(again))
		}
		if got := dueTenants(final.Add(time.Minute)); !slices.Equal(got, []string{"globex"}) {
			t.Errorf("tenants due once acme's push was claimed: %v, want [globex]", got)
		}
		if other, _ := s.Due(ctx, "globex", final, 10); !slices.Equal(ids(other), []string{"other#1"}) {
			t.Errorf("globex: %v", ids(other))
		}
		// Given up after PushTries claims.
		for try := 3; try <= PushTries; try++ {
			at = NextPush(at, try-1)
			got, _ := s.Due(ctx, "acme", at, 10)
			if !slices.Equal(ids(got), []string{fmt.Sprintf("p1#%d", try)}) {
				t.Fatalf("try %d at %v: %v", try, at, ids(got))
			}
			if try == PushTries && !got[0].PushAt.IsZero() {
				t.Errorf("the last try leaves push at %v, want none", got[0].PushAt)
			}
		}
		if late, _ := s.Due(ctx, "acme", at.Add(1000*time.Hour), 10); len(late) != 0 {
			t.Errorf("after %d tries: %v", PushTries, ids(late))
		}
		// PushDone: never due again, never pulled.
		s.PushDone(ctx, "other")
		if late, _ := s.Due(ctx, "globex", at.Add(1000*time.Hour), 10); len(late) != 0 {
			t.Errorf("pushed, yet due: %v", ids(late))
		}
		if got := dueTenants(at.Add(1000 * time.Hour)); len(got) != 0 {
			t.Errorf("tenants due once every push was given up or done: %v", got)
		}
		if pulled, _ := s.Take(ctx, TakeQuery{Tenant: "acme", Limit: 10}); !slices.Equal(ids(pulled), []string{"pulled#0"}) {
			t.Errorf("pulled: %v", ids(pulled))
		}
	})
}

// TestUpgradeLeavesPushedReportsAlone: a log written before pushes were kept (schema 3) upgrades
// with its records whole, and a final report the old version pushed from memory is not due.
func TestUpgradeLeavesPushedReportsAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range append([]string{`CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version (version) VALUES (3)`}, migrations[:3]...) {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO messages (id, tenant, status, created_at, updated_at, source, notify_url) VALUES ('old', 'acme', 'delivered', ?, ?, 'infobip-sms-v3', 'https://hooks.example.com/r')`,
		t0.UnixMilli(), t0.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b, err := OpenSQLite(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Backend: b})
	defer s.Close()
	if v, _ := b.SchemaVersion(context.Background()); v != len(migrations) {
		t.Errorf("schema version %d, want %d", v, len(migrations))
	}
	if due, err := s.Due(context.Background(), "acme", t0.Add(1000*time.Hour), 10); err != nil || len(due) != 0 {
		t.Errorf("due after the upgrade: %d, %v", len(due), err)
	}
	if r, err := s.Get(context.Background(), "acme", "old"); err != nil || r.NotifyURL != "https://hooks.example.com/r" || r.Status != gateway.StatusDelivered || !r.PushAt.IsZero() {
		t.Errorf("the old record: %+v, %v", r, err)
	}
}

// TestPollsAndSweepsDoNotWaitForTheWriter: with nothing to hand out, Take and Due only read, so
// a poll of GET /sms/1/reports or a sweep of pushes neither waits for the SQLite file's one write
// lock nor holds up the message log's writer for it. Here another connection holds that lock.
func TestPollsAndSweepsDoNotWaitForTheWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	b, err := OpenSQLite(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), `ROLLBACK`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // the busy timeout is 5 s
	defer cancel()
	if got, err := b.Due(ctx, "acme", t0, 20); err != nil || len(got) != 0 {
		t.Errorf("Due: %d, %v", len(got), err)
	}
	if got, err := b.Take(ctx, TakeQuery{Tenant: "acme", Limit: 50}); err != nil || len(got) != 0 {
		t.Errorf("Take: %d, %v", len(got), err)
	}
}

// TestChargesCountOnceAndPricesSum: a price reported for a message is a charge once, however
// often the report repeats and whether it came before or after the record; Prices sums the
// prices of the window per (provider, country, currency).
func TestChargesCountOnceAndPricesSum(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		var mu sync.Mutex
		var charges []Charge
		b := open()
		s := New(Options{Backend: b, OnCharge: func(c Charge) {
			mu.Lock()
			defer mu.Unlock()
			charges = append(charges, c)
		}})
		defer s.Close()
		ctx := context.Background()
		gb := func(r *Record) *Record { r.Country = "GB"; return r }
		s.Insert(ctx, record("m1", "acme", "infobip", "ib-1", t0))
		s.Insert(ctx, record("old", "acme", "infobip", "ib-0", t0.Add(-48*time.Hour)))
		s.Insert(ctx, gb(record("m3", "acme", "twilio", "SM3", t0)))
		voice := gb(record("v1", "acme", "infobip", "ib-v1", t0))
		voice.MessageType = "voice"
		s.Insert(ctx, voice)
		// Early report with a price: charged when its record arrives. The message was sent as two
		// parts: the price is for both, and Prices reads it per part.
		s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", ProviderMessageID: "ib-2", Status: gateway.StatusDelivered, Price: 0.08, Currency: "EUR"})
		s.Flush(ctx)
		m2 := gb(record("m2", "acme", "infobip", "ib-2", t0))
		m2.Parts = 2
		s.Insert(ctx, m2)
		for range 3 { // repeated: one charge
			s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", ProviderMessageID: "ib-1", Status: gateway.StatusDelivered, Price: 0.01, Currency: "EUR"})
		}
		s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", ProviderMessageID: "ib-0", Status: gateway.StatusDelivered, Price: 0.5, Currency: "EUR"})
		s.Report(ctx, &gateway.DeliveryReport{Provider: "twilio", ProviderMessageID: "SM3", Status: gateway.StatusDelivered})
		// A voice call's price is charged to its tenant, but it is no SMS price.
		s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", ProviderMessageID: "ib-v1", Status: gateway.StatusDelivered, Price: 0.3, Currency: "EUR"})
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got := slices.Clone(charges)
		mu.Unlock()
		sortBy := func(x, y Charge) int { return strings.Compare(x.Provider+x.Country, y.Provider+y.Country) }
		slices.SortFunc(got, sortBy)
		want := []Charge{{"infobip", "GB", "EUR", 0.08, "acme", "sms", 2}, {"infobip", "GB", "EUR", 0.3, "acme", "voice", 1}, {"infobip", "US", "EUR", 0.01, "acme", "sms", 1}, {"infobip", "US", "EUR", 0.5, "acme", "sms", 1}}
		slices.SortFunc(want, sortBy)
		if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(x, y Charge) bool { return x.Price < y.Price })); diff != "" {
			t.Errorf("charges (-want +got):\n%s", diff)
		}
		rows, err := b.Prices(ctx, t0.Add(-time.Hour), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		// The bound is [since, until): the messages of t0 are in a bucket that starts at t0, not
		// in one that ends there.
		if before, err := b.Prices(ctx, t0.Add(-time.Hour), t0); err != nil || len(before) != 0 {
			t.Errorf("prices before t0: %v %v", before, err)
		}
		if from, err := b.Prices(ctx, t0, t0.Add(time.Millisecond)); err != nil || len(from) != 2 {
			t.Errorf("prices of t0's millisecond: %v %v", from, err)
		}
		slices.SortFunc(rows, func(x, y PriceRow) int { return strings.Compare(x.Provider+x.Country, y.Provider+y.Country) })
		wantRows := []PriceRow{{Provider: "infobip", Country: "GB", Currency: "EUR", Tenant: "acme", Sum: 0.04, N: 1}, {Provider: "infobip", Country: "US", Currency: "EUR", Tenant: "acme", Sum: 0.01, N: 1}}
		if diff := cmp.Diff(wantRows, rows); diff != "" {
			t.Errorf("prices since t0-1h, SMS only (-want +got):\n%s", diff)
		}
	})
}

// TestHealthCountsEachChannel: the delivery-health rows count every tenant's messages by outcome
// (a sent message without a report only once it is older than pendingBefore), SMS and voice in
// rows of their own.
func TestHealthCountsEachChannel(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		b := open()
		s := New(Options{Backend: b})
		defer s.Close()
		ctx := context.Background()
		with := func(r *Record, status, typ string) *Record { r.Status, r.MessageType = status, typ; return r }
		s.Insert(ctx, with(record("h1", "acme", "infobip", "ib-1", t0), gateway.StatusDelivered, "sms"))
		s.Insert(ctx, with(record("h2", "acme", "infobip", "ib-2", t0), gateway.StatusUndelivered, "sms"))
		s.Insert(ctx, with(record("h3", "acme", "infobip", "ib-3", t0.Add(-time.Hour)), gateway.StatusSent, "sms"))
		s.Insert(ctx, with(record("h4", "acme", "infobip", "ib-4", t0), gateway.StatusSent, "sms"))
		s.Insert(ctx, with(record("h5", "acme", "infobip", "ib-5", t0), gateway.StatusUndelivered, "voice"))
		s.Insert(ctx, with(record("h8", "acme", "infobip", "ib-8", t0), gateway.StatusFailed, "voice"))
		s.Insert(ctx, with(record("h9", "acme", "infobip", "ib-9", t0.Add(-time.Hour)), gateway.StatusSent, "voice"))
		s.Insert(ctx, with(record("h6", "other", "infobip", "ib-6", t0), gateway.StatusFailed, "sms"))
		s.Insert(ctx, with(record("h7", "other", "infobip", "ib-7", t0.Add(-3*time.Hour)), gateway.StatusFailed, "sms"))
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		rows, err := b.Health(ctx, t0.Add(-2*time.Hour), t0.Add(-30*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(rows, func(x, y HealthRow) int {
			return strings.Compare(fmt.Sprint(x.Tenant, x.Voice), fmt.Sprint(y.Tenant, y.Voice))
		})
		want := []HealthRow{{Provider: "infobip", Country: "US", Tenant: "acme", Delivered: 1, Undelivered: 1, Pending: 1},
			{Provider: "infobip", Country: "US", Tenant: "acme", Voice: true, Undelivered: 1, Failed: 1, Pending: 1},
			{Provider: "infobip", Country: "US", Tenant: "other", Failed: 1}}
		if diff := cmp.Diff(want, rows); diff != "" {
			t.Errorf("health rows (-want +got):\n%s", diff)
		}
	})
}

// TestLingerGroupsInFlightWrites: while the application says more writes are on their way, the
// writer waits (up to Linger) so that one commit serves them all; with none on the way it commits
// at once (a Linger of an hour would otherwise hang the test).
func TestLingerGroupsInFlightWrites(t *testing.T) {
	var mu sync.Mutex
	var batches []int
	var inflight atomic.Int64
	s := New(Options{Backend: NewMemory(), Linger: time.Hour, CommitTimeout: 5 * time.Second, InFlight: func() int { return int(inflight.Load()) },
		OnBatch: func(n int, err error) { mu.Lock(); batches = append(batches, n); mu.Unlock() }})
	defer s.Close()
	ctx := context.Background()
	// Alone: committed at once.
	inflight.Store(1)
	if err := s.Insert(ctx, record("solo", "acme", "p", "", t0)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(rateWindow) // the next write measures a rate (1 record in 100 ms: plenty for an hour's linger)
	// Three sends in flight, arriving 20 ms apart: one batch.
	inflight.Store(3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 20 * time.Millisecond)
			if err := s.Insert(ctx, record(fmt.Sprint("g", i), "acme", "p", "", t0)); err != nil {
				t.Errorf("g%d: %v (the batch waited on after the last send in flight joined it)", i, err)
			}
		}()
	}
	wg.Wait()
	s.Flush(ctx)
	mu.Lock()
	got := slices.Clone(batches)
	mu.Unlock()
	if diff := cmp.Diff([]int{1, 3}, got); diff != "" {
		t.Errorf("batch sizes (-want +got):\n%s", diff)
	}
	// The one send in flight already waits in the batch: committed at once.
	inflight.Store(1)
	if err := s.Insert(ctx, record("last", "acme", "p", "", t0)); err != nil {
		t.Errorf("a write with no other in flight: %v (the writer lingered for company that was not coming)", err)
	}
}

// TestAFlushEndsALinger: a Flush (a read that must see what was written, a shutdown) does not
// wait out the linger for sends still in flight: the batch commits at once.
func TestAFlushEndsALinger(t *testing.T) {
	s := New(Options{Backend: NewMemory(), Linger: time.Hour, CommitTimeout: time.Hour, InFlight: func() int { return 100 }})
	defer s.Close()
	ctx := context.Background()
	s.Insert(ctx, record("solo", "acme", "p", "", t0)) // no rate measured yet: committed at once
	time.Sleep(rateWindow)
	inserted := make(chan error, 1)
	go func() { inserted <- s.Insert(ctx, record("m1", "acme", "p", "", t0)) }()
	time.Sleep(50 * time.Millisecond) // m1 queued, then held by the linger
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Flush(fctx); err != nil {
		t.Fatalf("Flush during a linger: %v", err)
	}
	select {
	case err := <-inserted:
		if err != nil {
			t.Errorf("the write the linger held: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the write the linger held was not committed with the Flush")
	}
}

// TestLingerStopsAtAFullBatch: however many sends are in flight, the writer stops lingering once
// the batch holds maxBatch writes: they commit at once, and only the writes after them wait.
func TestLingerStopsAtAFullBatch(t *testing.T) {
	var mu sync.Mutex
	var batches []int
	s := New(Options{Backend: NewMemory(), Linger: time.Hour, CommitTimeout: 2 * time.Second, InFlight: func() int { return 100_000 },
		OnBatch: func(n int, err error) { mu.Lock(); batches = append(batches, n); mu.Unlock() }})
	ctx := context.Background()
	s.Insert(ctx, record("solo", "acme", "p", "", t0)) // no rate measured yet: committed at once
	time.Sleep(rateWindow)
	var committed atomic.Int32
	var wg sync.WaitGroup
	for i := range maxBatch + 50 {
		wg.Go(func() {
			if s.Insert(ctx, record(fmt.Sprint("m", i), "acme", "p", "", t0)) == nil {
				committed.Add(1)
			}
		})
	}
	wg.Wait()
	s.Close()
	if n := committed.Load(); n < maxBatch {
		t.Errorf("%d writes committed before their commit timeout, want at least %d (a full batch)", n, maxBatch)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) < 2 || batches[1] < maxBatch {
		t.Errorf("batch sizes %v: the second is not a full batch", batches)
	}
}

// TestNoLingerBelowOneRecordPerLinger: when the write rate promises no other record within
// Linger, the writer commits at once even though sends are in flight (they wait on providers):
// one record every 400 ms is 0.75 records per 300 ms linger. Had it lingered, each Insert would
// have outwaited its 100 ms commit timeout.
func TestNoLingerBelowOneRecordPerLinger(t *testing.T) {
	s := New(Options{Backend: NewMemory(), Linger: 300 * time.Millisecond, CommitTimeout: 100 * time.Millisecond,
		InFlight: func() int { return 5 }})
	defer s.Close()
	for i := range 3 {
		time.Sleep(400 * time.Millisecond)
		if err := s.Insert(context.Background(), record(fmt.Sprint("m", i), "acme", "p", "", t0)); err != nil {
			t.Fatalf("record %d: %v (the writer lingered at a rate that promised no company)", i, err)
		}
	}
}

// TestNegativePriceIsNoCharge: a report with a negative price (a bug, or a forged report) is
// recorded as reported but is no charge: a Prometheus counter would panic on it.
func TestNegativePriceIsNoCharge(t *testing.T) {
	var charges []Charge
	s := New(Options{Backend: NewMemory(), OnCharge: func(c Charge) { charges = append(charges, c) }})
	defer s.Close()
	ctx := context.Background()
	s.Insert(ctx, record("m1", "acme", "infobip", "ib-1", t0))
	s.Report(ctx, &gateway.DeliveryReport{Provider: "infobip", ProviderMessageID: "ib-1", Status: gateway.StatusDelivered, Price: -5, Currency: "EUR"})
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(charges) != 0 {
		t.Errorf("charges = %+v", charges)
	}
}

// BenchmarkAddToFullRetryBuffer: what one more write costs the writer while the database is down
// and the retry buffer is full (each pushes out the oldest), at the default bound.
func BenchmarkAddToFullRetryBuffer(b *testing.B) {
	s := &Store{opts: Options{RetryBuffer: 65536}, log: slog.New(slog.DiscardHandler)}
	w := &writeLoop{s: s}
	rec := record("m", "acme", "p", "", t0)
	for range s.opts.RetryBuffer {
		w.add(Op{Insert: rec})
	}
	b.ResetTimer()
	for range b.N {
		w.add(Op{Insert: rec})
	}
}

// TestReadsCannotStopTheWriter: every tenant's send waits for its record's commit, and a tenant
// can read its messages as often as it likes (GET /v1/messages). With every connection the reads
// use taken, by however many slow or hostile readers, the writer still commits: it has a
// connection of its own.
func TestReadsCannotStopTheWriter(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		b := open()
		defer b.Close()
		ctx := context.Background()
		defer holdTenantReads(t, b)()
		// Generous: a slow machine commits in milliseconds, and a writer waiting for a reader's
		// connection would wait for ever.
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := b.Apply(actx, []Op{{Insert: record("w1", "acme", "infobip", "ib-w1", t0)}}); err != nil {
			t.Fatalf("the writer with every read connection taken: %v", err)
		}
	})
}

// holdTenantReads takes every connection of the pool that reads made on a tenant's behalf use,
// until release, and checks that ReadConns says how many that is; it skips a backend without
// connections. Release before closing the backend: a pool closes once its connections are back.
func holdTenantReads(t *testing.T, b Backend) (release func()) {
	ctx := context.Background()
	var held []func()
	var size int
	switch b := b.(type) {
	case *SQLite:
		size = b.db.Stats().MaxOpenConnections
		for range size {
			c, err := b.db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, func() { c.Close() })
		}
	case *Postgres:
		size = int(b.pool.Config().MaxConns)
		for range size {
			c, err := b.pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c.Release)
		}
	default:
		t.Skip("no connections to take")
	}
	if got := b.ReadConns(); got != size {
		t.Errorf("ReadConns() = %d, the pool of tenants' reads holds %d", got, size)
	}
	return func() {
		for _, r := range held {
			r()
		}
	}
}

// TestTenantsReadsCannotStopTheSharedReads: a tenant may read its messages as its limits allow,
// each read up to the request's budget, and several tenants reading so can hold every connection
// of the pool their reads use. The reads every tenant relies on do not use it: a delivery
// report is still matched to its message, routing still reads delivery health and prices,
// pushes are still claimed and ended, and the chores still run.
func TestTenantsReadsCannotStopTheSharedReads(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		b := open()
		defer b.Close()
		ctx := context.Background()
		rec := record("s1", "acme", "infobip", "ib-s1", t0)
		rec.Source, rec.NotifyURL = "infobip", "https://hooks.example/r"
		if _, err := b.Apply(ctx, []Op{{Insert: rec}, {Report: &gateway.DeliveryReport{Provider: "infobip", ProviderMessageID: "ib-s1",
			Status: gateway.StatusDelivered, Price: 0.05, Currency: "EUR"}}}); err != nil {
			t.Fatal(err)
		}
		defer holdTenantReads(t, b)()
		for _, c := range []struct {
			what string
			f    func(context.Context) error
		}{
			{"Find (a delivery report's look-up)", func(ctx context.Context) error { _, err := b.Find(ctx, "infobip", "", "ib-s1"); return err }},
			{"Health", func(ctx context.Context) error { _, err := b.Health(ctx, t0.Add(-time.Hour), t0); return err }},
			{"Prices", func(ctx context.Context) error { _, err := b.Prices(ctx, t0.Add(-time.Hour), time.Time{}); return err }},
			{"DueTenants", func(ctx context.Context) error { _, err := b.DueTenants(ctx, time.Now().Add(time.Hour)); return err }},
			{"Due", func(ctx context.Context) error {
				_, err := b.Due(ctx, "acme", time.Now().Add(time.Hour), 10)
				return err
			}},
			{"PushDone", func(ctx context.Context) error { return b.PushDone(ctx, "s1") }},
			{"Oldest", func(ctx context.Context) error { _, err := b.Oldest(ctx); return err }},
			{"Trim", func(ctx context.Context) error { _, err := b.Trim(ctx, RecordBounds{Default: 1}); return err }},
			{"Purge", func(ctx context.Context) error { _, err := b.Purge(ctx, t0.Add(-time.Hour)); return err }},
		} {
			// Generous: each takes milliseconds; one waiting for a connection would wait for ever.
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := c.f(ctx); err != nil {
				t.Errorf("%s with every connection of the tenants' reads taken: %v", c.what, err)
			}
		}
	})
}

// TestReadsLeaveTheWriterAlone: reads do not pass through the write queue. While the database
// fails and the writer backs off, a tenant reading in a loop does not make it try again at once
// (each read once did, through a barrier), and while it works, reads do not make it commit early.
func TestReadsLeaveTheWriterAlone(t *testing.T) {
	fb := &flaky{Backend: NewMemory(), down: true}
	s := New(Options{Backend: fb, CommitTimeout: 5 * time.Millisecond, CloseTimeout: 10 * time.Millisecond})
	defer s.Close()
	ctx := context.Background()
	if err := s.Insert(ctx, record("m1", "acme", "p", "pm1", t0)); err != ErrNotCommitted {
		t.Fatalf("insert while the database fails: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); fb.count() < 1 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	before := fb.count()
	for range 200 {
		s.Get(ctx, "acme", "m1")
		s.List(ctx, Query{Tenant: "acme"})
	}
	// The backoff doubles from 50 ms: in the time 400 reads take, the writer tries a few times at
	// most; a try per read would be hundreds.
	if extra := fb.count() - before; extra > 20 {
		t.Errorf("%d tries of the failing database during 400 reads", extra)
	}
}

// TestSQLitePurgeLetsTheWriterIn: the purge deletes in chunks, each its own statement on the
// writer's connection, and a batch of records commits between two chunks; a purge in one
// statement held SQLite's lock, and every send's record with it, for seconds on a large log.
func TestSQLitePurgeLetsTheWriterIn(t *testing.T) {
	ctx := context.Background()
	s := tempSQLite(t)
	var batch []Op
	for i := range 95 {
		batch = append(batch, Op{Insert: record(fmt.Sprint("old-", i), "acme", "ib", "", t0.Add(-48*time.Hour))})
	}
	if _, err := s.Apply(ctx, batch); err != nil {
		t.Fatal(err)
	}
	s.PurgeChunk = 10
	chunks, during := 0, 0
	s.afterPurgeChunk = func() {
		chunks++
		if chunks == 3 { // a batch of the writer, between two chunks
			if _, err := s.Apply(ctx, []Op{{Insert: record("new", "acme", "ib", "", t0)}}); err != nil {
				t.Errorf("a batch during the purge: %v", err)
			}
			during++
		}
	}
	n, err := s.Purge(ctx, t0.Add(-time.Hour))
	if err != nil || n != 95 {
		t.Fatalf("purged %d (%v), want 95", n, err)
	}
	// 10 chunks of messages (the last one short), then one of unmatched reports.
	if chunks != 11 || during != 1 {
		t.Errorf("%d chunks, %d batches between them", chunks, during)
	}
	if _, err := s.Get(ctx, "acme", "new"); err != nil {
		t.Errorf("the record written during the purge: %v", err)
	}
}

// TestAReportsPriceIsAPrice: a report whose price is no price (NaN, an infinity, negative) leaves
// the record unpriced, so nothing averages, counts or charges it; a real price is kept.
func TestAReportsPriceIsAPrice(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, p := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), -0.5} {
		r := &Record{Status: gateway.StatusSent}
		if !applyReport(r, &gateway.DeliveryReport{Status: gateway.StatusDelivered, Price: p, Currency: "EUR"}, now) || r.Status != gateway.StatusDelivered {
			t.Fatalf("price %v: the report was not applied: %+v", p, r)
		}
		if r.Price != 0 || r.Currency != "" {
			t.Errorf("price %v recorded as %v %s", p, r.Price, r.Currency)
		}
	}
	r := &Record{Status: gateway.StatusSent}
	applyReport(r, &gateway.DeliveryReport{Status: gateway.StatusDelivered, Price: 0.0333, Currency: "EUR"}, now)
	if r.Price != 0.0333 || r.Currency != "EUR" {
		t.Errorf("a real price recorded as %v %s", r.Price, r.Currency)
	}
	// A part's price (Vonage reports each part of a long text): the message cost it times its
	// parts, however many of the parts' reports arrive.
	r = &Record{Status: gateway.StatusSent, Parts: 3}
	for range 3 {
		applyReport(r, &gateway.DeliveryReport{Status: gateway.StatusDelivered, Price: 0.25, Currency: "EUR", PerPart: true}, now)
	}
	if r.Price != 0.75 {
		t.Errorf("a part's price of 0.25 for a message of 3 parts recorded as %v, want 0.75", r.Price)
	}
}

// TestAClaimCutShortStillGivesWhatItClaimed: an UPDATE ... RETURNING makes its changes before
// its rows are all read (SQLite at its first step; PostgreSQL may commit while the rows are still
// on their way). A claim (reports pulled, pushes due) whose caller goes away while its rows are
// read still reads every row it changed, or reports marked pulled would be lost to every pull.
func TestAClaimCutShortStillGivesWhatItClaimed(t *testing.T) {
	backends(t, func(t *testing.T, open func() Backend) {
		b := open()
		defer b.Close()
		ctx := context.Background()
		var ops []Op
		for i := range 500 {
			ops = append(ops, Op{Insert: record(fmt.Sprint("c-", i), "acme", "p", fmt.Sprint("pc-", i), t0)})
		}
		if _, err := b.Apply(ctx, ops); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		// each row read; the caller goes away as the first is.
		var got int
		row := func() {
			if got++; got == 1 {
				cancel()
				time.Sleep(50 * time.Millisecond)
			}
		}
		var err error
		var taken int
		switch b := b.(type) {
		case *SQLite:
			_, err = claimRows(b, cctx, b.db, func(rows *sql.Rows) (int, error) {
				for rows.Next() {
					row()
				}
				return got, rows.Err()
			}, `UPDATE messages SET report_taken = 1 WHERE tenant = ? RETURNING id`, "acme")
			if qerr := b.db.QueryRow(`SELECT count(*) FROM messages WHERE report_taken = 1`).Scan(&taken); qerr != nil {
				t.Fatal(qerr)
			}
		case *Postgres:
			_, err = pgClaimRows(cctx, b.pool, func(rows pgx.Rows) (int, error) {
				for rows.Next() {
					row()
				}
				return got, rows.Err()
			}, `UPDATE messages SET report_taken = true WHERE tenant = $1 RETURNING `+pgCols, "acme")
			if qerr := b.pool.QueryRow(ctx, `SELECT count(*) FROM messages WHERE report_taken`).Scan(&taken); qerr != nil {
				t.Fatal(qerr)
			}
		default:
			t.Skip("claims in memory are not cut short")
		}
		if err != nil || got != taken {
			t.Errorf("a claim cut short marked %d records and returned %d (%v)", taken, got, err)
		}
	})
}
