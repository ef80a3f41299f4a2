package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"modernc.org/sqlite"
)

// scanLog opens a SQLite log holding n messages created over the 25 minutes before now, spread
// over ten tenants and two countries: a window that the delivery-health read scans whole.
func scanLog(tb testing.TB, n int, now time.Time) *SQLite {
	tb.Helper()
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(tb.TempDir(), "log.db"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	ops := make([]Op, 0, 500)
	for i := range n {
		c := now.Add(-time.Duration(n-i) * (25 * time.Minute / time.Duration(n)))
		r := record(fmt.Sprintf("msg_%08d", i), fmt.Sprintf("tenant-%d", i%10), "infobip", fmt.Sprintf("ib-%d", i), c)
		r.Country = []string{"US", "GB"}[i%2]
		ops = append(ops, Op{Insert: r})
		if len(ops) == cap(ops) || i == n-1 {
			if _, err := s.Apply(ctx, ops); err != nil {
				tb.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	// The checkpointer copies the WAL into the file every 500 ms: the window is in the file.
	if _, err := s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		tb.Fatal(err)
	}
	return s
}

// writerMisses returns how many pages the writer's connection looked for in the page cache and
// did not find (it then read them from the file) since it last asked, and resets the count.
func writerMisses(tb testing.TB, s *SQLite) int {
	tb.Helper()
	ctx := context.Background()
	conn, err := s.w.Conn(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	var n int
	if err := conn.Raw(func(dc any) error {
		var err error
		n, _, err = dc.(sqlite.DBStatus).Status(sqlite.DBStatusCacheMiss, true)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	return n
}

// healthPending runs the delivery-health read over scanLog's window and counts the messages it
// found pending (every message created more than 10 minutes before now).
func healthPending(tb testing.TB, s *SQLite, now time.Time) int {
	tb.Helper()
	rows, err := s.Health(context.Background(), now.Add(-30*time.Minute), now.Add(-10*time.Minute))
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, r := range rows {
		n += r.Pending
	}
	return n
}

// writeBatch applies eight new messages, as the writer does under load.
func writeBatch(tb testing.TB, s *SQLite, from int, now time.Time) {
	tb.Helper()
	ops := make([]Op, 8)
	for k := range ops {
		i := from + k
		ops[k] = Op{Insert: record(fmt.Sprintf("new_%08d", i), fmt.Sprintf("tenant-%d", i%10), "infobip", fmt.Sprintf("ib-new-%d", i), now)}
	}
	if _, err := s.Apply(context.Background(), ops); err != nil {
		tb.Fatal(err)
	}
}

// TestScansLeaveTheWritersPages: SQLite's connections in this process share one page cache, so a
// read that scans more pages than the caches hold (here delivery health over 12,000 messages,
// about 5 MB against the writer's 2 MB and the reader's 2 MB) took the writer's pages from it, and
// the writer's next batch read every B-tree page it touched back from the file. The read pool maps
// the file instead (readMmap): the writer's batch after a scan finds its pages as one after no
// scan does.
func TestScansLeaveTheWritersPages(t *testing.T) {
	now := time.Now()
	s := scanLog(t, 12000, now)
	writeBatch(t, s, 0, now)
	writerMisses(t, s)
	quiet := 0
	for j := range 3 {
		writeBatch(t, s, 8*(1+j), now)
		quiet += writerMisses(t, s)
	}
	scanned := 0
	for j := range 3 {
		if pending := healthPending(t, s, now); pending != 7200 { // the messages of the 15 minutes before pendingBefore
			t.Fatalf("health counted %d messages pending, want 7200: it did not scan the log", pending)
		}
		writeBatch(t, s, 8*(4+j), now)
		scanned += writerMisses(t, s)
	}
	t.Logf("the writer missed %d pages in the cache in three batches after no scan, %d in three after a scan each", quiet, scanned)
	if scanned > quiet+6 {
		t.Errorf("the writer's three batches after a scan missed %d pages in the cache, after no scan %d: the scan took the writer's pages", scanned, quiet)
	}
}

// TestAVacuumElsewhereLeavesMappedReadsWorking: an operator's VACUUM from another process (a
// sqlite3 shell) shrinks the file under the read pool's mapping; SQLite maps it again, so reads
// go on instead of touching pages past the file's end (which would end the process).
func TestAVacuumElsewhereLeavesMappedReadsWorking(t *testing.T) {
	now := time.Now()
	s := scanLog(t, 12000, now)
	ctx := context.Background()
	if got := healthPending(t, s, now); got != 7200 {
		t.Fatalf("pending before: %d, want 7200", got)
	}
	var path string
	if err := s.db.QueryRow(`SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&path); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	shell, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer shell.Close()
	for _, q := range []string{`DELETE FROM messages WHERE tenant IN ('tenant-0', 'tenant-1', 'tenant-2', 'tenant-3', 'tenant-4')`,
		`VACUUM`, `PRAGMA wal_checkpoint(TRUNCATE)`} {
		if _, err := shell.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() >= before.Size()*3/4 {
		t.Fatalf("the file went from %d to %d bytes: VACUUM did not shrink it", before.Size(), after.Size())
	}
	if got := healthPending(t, s, now); got != 3600 {
		t.Errorf("pending after the VACUUM: %d, want 3600", got)
	}
	list, err := s.List(ctx, Query{Tenant: "tenant-5", Limit: 10})
	if err != nil || len(list) != 10 {
		t.Errorf("a listing after the VACUUM: %d records, %v; want 10", len(list), err)
	}
	writeBatch(t, s, 0, now)
	if r, err := s.Get(ctx, "tenant-0", "new_00000000"); err != nil || r == nil {
		t.Errorf("a record written after the VACUUM: %v, %v", r, err)
	}
}

// BenchmarkSQLiteWriterBesideScans times the writer's batches of eight messages on a log holding
// a window of 100,000 messages, alone and while the delivery-health read scans the window on the
// read pool every 200 ms (as a replica at a high rate does); misses/batch is the pages each batch
// read back from the file.
func BenchmarkSQLiteWriterBesideScans(b *testing.B) {
	for _, every := range []time.Duration{0, 200 * time.Millisecond} {
		name := "alone"
		if every > 0 {
			name = "scans_every_" + every.String()
		}
		b.Run(name, func(b *testing.B) {
			now := time.Now()
			s := scanLog(b, 100000, now)
			ctx := context.Background()
			var stop atomic.Bool
			var wg sync.WaitGroup
			var reads atomic.Int64
			if every > 0 {
				wg.Go(func() {
					for !stop.Load() {
						if _, err := s.Health(ctx, now.Add(-30*time.Minute), now.Add(-10*time.Minute)); err != nil {
							b.Error(err)
							return
						}
						reads.Add(1)
						time.Sleep(every)
					}
				})
			}
			writerMisses(b, s)
			b.ResetTimer()
			for i := range b.N {
				writeBatch(b, s, 8*i, now)
			}
			b.StopTimer()
			stop.Store(true)
			wg.Wait()
			b.ReportMetric(float64(writerMisses(b, s))/float64(b.N), "misses/batch")
			b.ReportMetric(float64(reads.Load()), "scans")
		})
	}
}
