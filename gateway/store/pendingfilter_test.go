package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smsgate/smsgate/gateway"
)

// TestInsertsLookUpPendingReportsOnlyWhenOneMayWait: with reports waiting for good in
// pending_reports (about attempts no record has), an insert queries that table only when the
// filter says a report may name its record (about 1 % of the others); a report that arrived
// before its record is still applied to it: one added in this run, one from the file after a
// restart, and one after the filter outgrew its size and was rebuilt.
func TestInsertsLookUpPendingReportsOnlyWhenOneMayWait(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "log.db")
	s, err := OpenSQLite(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	apply := func(s *SQLite, ops ...Op) {
		t.Helper()
		if _, err := s.Apply(ctx, ops); err != nil {
			t.Fatal(err)
		}
	}
	report := func(pmid string) Op {
		return Op{Report: &gateway.DeliveryReport{Provider: "ib", ProviderMessageID: pmid, Status: gateway.StatusDelivered}}
	}
	delivered := func(s *SQLite, id string) bool {
		t.Helper()
		r, err := s.Get(ctx, "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		return r.Status == gateway.StatusDelivered
	}
	apply(s, report("stray-1"), report("stray-2"))
	var batch []Op
	for i := range 400 {
		batch = append(batch, Op{Insert: record(fmt.Sprint("m", i), "acme", "ib", fmt.Sprint("p", i), t0)})
		if len(batch) == 8 {
			apply(s, batch...)
			batch = batch[:0]
		}
	}
	if s.pendingLookups > 20 {
		t.Errorf("%d of 400 inserts looked pending_reports up, with no report waiting for any", s.pendingLookups)
	}
	// A report before its record, in this run.
	apply(s, report("p-early"))
	apply(s, Op{Insert: record("early", "acme", "ib", "p-early", t0)})
	if !delivered(s, "early") {
		t.Error("the report that came before its record was not applied")
	}
	s.Close()

	// After a restart the filter is built from the file.
	s, err = OpenSQLite(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	apply(s, Op{Insert: record("late-1", "acme", "ib", "stray-1", t0)})
	if !delivered(s, "late-1") {
		t.Error("after a restart, a waiting report was not applied to its record")
	}
	// More reports than the filter was sized for, each naming both ids: it is rebuilt once, with
	// room to spare, and still finds them.
	batch = batch[:0]
	for i := range pendingMinKeys + 100 {
		r := report(fmt.Sprint("flood-", i))
		r.Report.MessageID = fmt.Sprint("flood-msg-", i)
		batch = append(batch, r)
		if len(batch) == 512 {
			apply(s, batch...)
			batch = batch[:0]
		}
	}
	apply(s, batch...)
	apply(s, Op{Insert: record("late-2", "acme", "ib", "stray-2", t0.Add(time.Second))}, Op{Insert: record("late-3", "acme", "ib", "flood-7", t0)})
	if !delivered(s, "late-2") || !delivered(s, "late-3") {
		t.Error("after the filter was rebuilt, waiting reports were not applied")
	}
	if s.filter.room < pendingMinKeys {
		t.Errorf("after the rebuild the filter has room for %d more ids; a rebuild at every batch would follow", s.filter.room)
	}
}

// TestAFailedRebuildKeepsTheFilter: a rebuild whose read of pending_reports fails half way (here
// a view whose fourth row raises an error) returns the error and leaves the filter as it was. A
// half-built filter would miss the reports it had not read yet, and their records would be
// written without them.
func TestAFailedRebuildKeepsTheFilter(t *testing.T) {
	ctx := context.Background()
	open := func(name, schema string) *sql.DB {
		t.Helper()
		db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if _, err := db.ExecContext(ctx, schema); err != nil {
			t.Fatal(err)
		}
		return db
	}
	good := open("good.db", `CREATE TABLE pending_reports (provider TEXT, provider_message_id TEXT, message_id TEXT);
		INSERT INTO pending_reports VALUES ('ib', 'pm-kept', '')`)
	// abs() of the smallest integer is an overflow error, raised when the row is read.
	failing := open("failing.db", `CREATE TABLE r (n INTEGER, pmid TEXT);
		INSERT INTO r VALUES (1, 'pm-1'), (2, 'pm-2'), (3, 'pm-3'), (4, 'pm-4'), (5, 'pm-5');
		CREATE VIEW pending_reports AS SELECT 'ib' AS provider, pmid AS provider_message_id,
			CASE WHEN n = 4 THEN abs(-9223372036854775807 - 1) ELSE '' END AS message_id FROM r`)
	var f pendingFilter
	if err := f.rebuild(ctx, good); err != nil {
		t.Fatal(err)
	}
	room := f.room
	if err := f.rebuild(ctx, failing); err == nil {
		t.Fatal("a rebuild whose read failed half way returned no error")
	} else if !strings.Contains(err.Error(), "overflow") {
		t.Fatalf("the rebuild failed on something else than the fourth row: %v", err)
	}
	if !f.mayHave("ib", "pm-kept") || f.room != room {
		t.Errorf("after a failed rebuild: has pm-kept %v, room %d; want the filter as it was (true, %d)", f.mayHave("ib", "pm-kept"), f.room, room)
	}
	if f.mayHave("ib", "pm-1") && f.mayHave("ib", "pm-2") && f.mayHave("ib", "pm-3") {
		t.Error("the rows read before the failure were taken into the filter")
	}
}

// TestAFilterFalsePositiveStillMatchesOnlyItsProvider: when the filter says a report may wait for
// a record (about 1 % of inserts are told so wrongly), the look-up itself holds a report to its
// provider: an early report from another provider, naming the record's id and the provider's, is
// not applied to it (whoever holds one provider's webhook secret cannot change messages another
// provider sent).
func TestAFilterFalsePositiveStillMatchesOnlyItsProvider(t *testing.T) {
	ctx := context.Background()
	s := tempSQLite(t)
	if _, err := s.Apply(ctx, []Op{{Report: &gateway.DeliveryReport{Provider: "ib", MessageID: "m1", ProviderMessageID: "SM1", Status: gateway.StatusFailed}}}); err != nil {
		t.Fatal(err)
	}
	for i := range s.filter.bits { // every bit set: every insert is told a report may wait, as on a false positive
		s.filter.bits[i] = ^uint64(0)
	}
	if _, err := s.Apply(ctx, []Op{{Insert: record("m1", "acme", "tw", "SM1", t0)}}); err != nil {
		t.Fatal(err)
	}
	if s.pendingLookups == 0 {
		t.Fatal("the insert did not look pending_reports up")
	}
	if r, err := s.Get(ctx, "acme", "m1"); err != nil || r.Status != gateway.StatusSent {
		t.Errorf("the record after another provider's early report: %+v %v, want it sent", r, err)
	}
}

// TestAPurgeOfEveryWaitingReportEndsTheLookUps: once a purge has deleted the last unmatched
// report, inserts stop querying pending_reports even where the filter still holds the deleted
// reports' ids (it keeps them until it is rebuilt): the writer counts the waiting reports again
// after a purge.
func TestAPurgeOfEveryWaitingReportEndsTheLookUps(t *testing.T) {
	ctx := context.Background()
	s := tempSQLite(t)
	if _, err := s.Apply(ctx, []Op{{Report: &gateway.DeliveryReport{Provider: "ib", ProviderMessageID: "pm-gone", Status: gateway.StatusDelivered}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Purge(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for i := range s.filter.bits { // every id may have a report, as for the deleted one
		s.filter.bits[i] = ^uint64(0)
	}
	if _, err := s.Apply(ctx, []Op{{Insert: record("m1", "acme", "ib", "pm-gone", t0)}}); err != nil {
		t.Fatal(err)
	}
	if s.pendingLookups != 0 {
		t.Errorf("%d look-ups of pending_reports after a purge that left it empty, want none", s.pendingLookups)
	}
	if r, err := s.Get(ctx, "acme", "m1"); err != nil || r.Status != gateway.StatusSent {
		t.Errorf("the record whose report was purged: %+v %v, want it sent", r, err)
	}
}
