package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"modernc.org/sqlite"

	"github.com/smsgate/smsgate/gateway"
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
	for _, q := range []string{`DELETE FROM messages WHERE tenant IN ('tenant-0', 'tenant-1', 'tenant-2', 'tenant-3', 'tenant-4')`, `VACUUM`} {
		if _, err := shell.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// The VACUUM's pages reach the file, and shrink it, once a checkpoint copies all of the WAL;
	// one that finds a reader on an older snapshot (the log's own checkpointer or a background
	// read, on a busy machine) says busy and leaves that for the next: try until one is complete.
	var after os.FileInfo
	for deadline := time.Now().Add(30 * time.Second); ; {
		var busy, wal, copied int
		if err := shell.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &wal, &copied); err != nil {
			t.Fatal(err)
		}
		if after, err = os.Stat(path); err != nil {
			t.Fatal(err)
		}
		if busy == 0 && after.Size() < before.Size()*3/4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the file went from %d to %d bytes (last checkpoint: busy %d, %d of %d WAL pages copied): VACUUM did not shrink it",
				before.Size(), after.Size(), busy, copied, wal)
		}
		time.Sleep(50 * time.Millisecond)
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

// SQLite starts the WAL over only when a write begins with all of it copied into the database
// and no read on it. The background checkpoint runs beside the writer, whose commits keep adding
// frames while it copies: from a few hundred commits a second on it seldom caught up, and the WAL
// grew by every commit's pages (16 MiB a second at 700 commits a second) until the disk was full.
// The writer now copies what is left itself, between two batches, when the WAL is long. Here the
// background checkpointer is stopped, and journal_size_limit cuts the file back to nothing at
// each start over, so its size is how much the WAL holds.
func TestTheWriterStartsTheWALOver(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "log.db")
	b, err := OpenSQLite(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.stopCheckpointer()
	if _, err := b.w.ExecContext(ctx, `PRAGMA journal_size_limit = 0`); err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		st, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	batch := func(from int) {
		var ops []Op
		for i := from; i < from+200; i++ {
			ops = append(ops, Op{Insert: record(fmt.Sprint("m-", i), "acme", "p", fmt.Sprint("p-", i), t0)})
		}
		if _, err := b.Apply(ctx, ops); err != nil {
			t.Fatal(err)
		}
	}
	batch(0)
	batch(200)
	long := size()
	b.walLong.Store(true) // as the checkpointer says when the WAL passes walRestartFrames
	batch(400)
	if got := size(); got >= long {
		t.Errorf("the WAL holds %d bytes after the writer's checkpoint, %d before: it did not start over", got, long)
	}
	batch(600)
	if got := size(); got >= long {
		t.Errorf("the WAL grew to %d bytes after a start over, %d before", got, long)
	}
}

// Reads that overlap without end (a tenant listing its messages with a filter no index serves,
// two at a time, each scanning its records) keep a frame of the WAL in use, so that no write ever
// begins with none: the WAL grew by every commit, 8 MiB a second beside two such listings, with
// the writer's own checkpoints too. When the WAL is twice as long as it should be, the gate lets
// no new read in until those running end and the writer's next batch has started the WAL over.
func TestTheWALStartsOverBesideEndlessListings(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "log.db")
	var told atomic.Int64 // the most OnWAL was told
	b, err := OpenSQLiteWith(ctx, path, SQLiteOptions{OnWAL: func(n int64) {
		if n > told.Load() {
			told.Store(n)
		}
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.walFrames.Store(256) // 1 MiB
	var ops []Op
	for i := range 10000 { // a tenant whose listing without an index takes a while
		ops = append(ops, Op{Insert: record(fmt.Sprint("big-", i), "big", "p", fmt.Sprint("b-", i), t0)})
	}
	if _, err := b.Apply(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if _, err := b.w.ExecContext(ctx, `PRAGMA journal_size_limit = 0; PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Backend: b})
	defer s.Close()
	stopWriting := keepWriting(s, 8, 10*time.Millisecond) // several hundred commits a second
	var stop atomic.Bool
	var wg sync.WaitGroup
	var lists, interrupted atomic.Int64
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				// A listing still running walReadGrace after the gate began to close is
				// interrupted, as designed: on a loaded machine (a race build beside other
				// work) one may take that long.
				_, err := s.List(ctx, Query{Tenant: "big", Statuses: []string{"delivered"}, Limit: 10})
				if errors.Is(err, ErrReadInterrupted) {
					interrupted.Add(1)
				} else if err != nil {
					t.Error(err)
				}
				lists.Add(1)
			}
		})
	}
	var last, most int64
	cuts := 0
	for deadline := time.Now().Add(15 * time.Second); cuts < 3 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		st, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() < last {
			cuts++
		}
		last, most = st.Size(), max(most, st.Size())
	}
	stop.Store(true)
	wg.Wait()
	written := stopWriting()
	t.Logf("%d records, %d listings (%d interrupted); the WAL started over %d times, at most %.1f MiB; the gate closed %d times",
		written, lists.Load(), interrupted.Load(), cuts, float64(most)/(1<<20), b.walRestarts.Load())
	if cuts < 3 || b.walRestarts.Load() == 0 {
		t.Errorf("the WAL started over %d times in 15 s (the gate closed %d times), reaching %.1f MiB", cuts, b.walRestarts.Load(), float64(most)/(1<<20))
	}
	if lists.Load() < int64(cuts) {
		t.Errorf("only %d listings ran: the gate held reads back", lists.Load())
	}
	// What the checkpoints said the WAL held is what the file reached (the file lags the WAL by
	// the frames written after the last look, and is cut back at each start over).
	if got := told.Load(); got <= b.walFrames.Load()*4096 || got > most+(8<<20) {
		t.Errorf("OnWAL was told at most %d bytes; the file reached %d, past %d when the writer steps in", got, most, b.walFrames.Load()*4096)
	}
}

// tempSQLite opens a SQLite message log in a temporary directory, closed when the test ends.
func tempSQLite(t *testing.T) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "log.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestHealthLetsTheWALGateCloseBetweenItsSlices: the delivery-health read, which the WAL gate
// waits for, is a read of its own for each slice of the window, so that the gate can close between
// two (one grouped scan of a busy window held every read of the file for seconds); the slices'
// rows add up to the window's, a message created ahead of the clock included and one before the
// window left out.
func TestHealthLetsTheWALGateCloseBetweenItsSlices(t *testing.T) {
	ctx := context.Background()
	b := tempSQLite(t)
	now := t0
	b.Now = func() time.Time { return now }
	since, pendingBefore := now.Add(-30*time.Minute), now.Add(-10*time.Minute)
	statuses := []string{gateway.StatusDelivered, gateway.StatusUndelivered, gateway.StatusFailed, gateway.StatusSent}
	want := map[string]*HealthRow{}
	var ops []Op
	// A message every 20 s of the window and a minute past now, for two tenants and two channels;
	// one just before the window.
	for i := -1; i <= 93; i++ {
		created := since.Add(time.Duration(i) * 20 * time.Second)
		r := record(fmt.Sprint("m", i), []string{"acme", "other"}[i&1], "infobip", fmt.Sprint("ib-", i), created)
		r.Status, r.MessageType = statuses[i&3], []string{"sms", "voice"}[(i>>1)&1]
		ops = append(ops, Op{Insert: r})
		if i < 0 {
			continue
		}
		k := fmt.Sprintf("%s %v", r.Tenant, r.MessageType == "voice")
		if want[k] == nil {
			want[k] = &HealthRow{Provider: "infobip", Country: "US", Tenant: r.Tenant, Voice: r.MessageType == "voice"}
		}
		switch {
		case r.Status == gateway.StatusDelivered:
			want[k].Delivered++
		case r.Status == gateway.StatusUndelivered:
			want[k].Undelivered++
		case r.Status == gateway.StatusFailed:
			want[k].Failed++
		case created.Before(pendingBefore):
			want[k].Pending++
		}
	}
	if _, err := b.Apply(ctx, ops); err != nil {
		t.Fatal(err)
	}
	var between, gateClosed int
	b.afterHealthSlice = func() {
		between++
		if b.gate.TryAcquire(gateAll) { // what a closing gate takes: no read may hold it
			gateClosed++
			b.gate.Release(gateAll)
		}
	}
	rows, err := b.Health(ctx, since, pendingBefore)
	if err != nil {
		t.Fatal(err)
	}
	if between != healthSlices-1 || gateClosed != between {
		t.Errorf("the gate could close at %d of the %d points between the health read's slices, want all of %d", gateClosed, between, healthSlices-1)
	}
	var wantRows []HealthRow
	for _, k := range []string{"acme false", "acme true", "other false", "other true"} {
		wantRows = append(wantRows, *want[k])
	}
	slices.SortFunc(rows, func(x, y HealthRow) int {
		return strings.Compare(fmt.Sprint(x.Tenant, x.Voice), fmt.Sprint(y.Tenant, y.Voice))
	})
	if diff := cmp.Diff(wantRows, rows); diff != "" {
		t.Errorf("health rows of the sliced window (-want +got):\n%s", diff)
	}
}

// TestAClosingWALGateInterruptsATenantsLongRead: the gate that lets SQLite start its WAL over
// waits for the reads running; a tenant's read that goes on (a listing no index serves, up to
// server.request_timeout, back to back) kept every other read out as long, delivery reports'
// look-ups among them. Past walReadGrace the gate interrupts the tenants' reads (the tenant is
// answered 503 and may retry), and the other reads go on after a short wait.
func TestAClosingWALGateInterruptsATenantsLongRead(t *testing.T) {
	ctx := context.Background()
	var told atomic.Int64
	b, err := OpenSQLiteWith(ctx, filepath.Join(t.TempDir(), "log.db"), SQLiteOptions{OnReadsInterrupted: func(n int) { told.Add(int64(n)) }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.walFrames.Store(64)
	b.readGrace.Store(int64(100 * time.Millisecond))
	if _, err := b.Apply(ctx, []Op{{Insert: record("found", "acme", "p", "p-found", t0)}}); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Backend: b})
	defer s.Close()
	// A tenant's read that ends only when interrupted: rows without end, read on the tenants' pool
	// inside one read transaction of the file.
	long := make(chan error, 1)
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second) // the budget of a very slow read
	defer cancel()
	go func() {
		_, err := readRows(b, lctx, b.db, func(rows *sql.Rows) (int, error) {
			n := 0
			for rows.Next() {
				n++
			}
			return n, rows.Err()
		}, `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c, (SELECT id FROM messages LIMIT 1)`)
		long <- err
	}()
	stopWriting := keepWriting(s, 8, 5*time.Millisecond)
	var slowest time.Duration
	var finds int
	var got error
	deadline := time.Now().Add(20 * time.Second)
	for got == nil && time.Now().Before(deadline) {
		start := time.Now()
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := b.Find(fctx, "p", "", "p-found")
		cancel()
		if err != nil {
			t.Errorf("a report's look-up beside the tenant's long read: %v", err)
			break
		}
		finds++
		slowest = max(slowest, time.Since(start))
		select {
		case got = <-long:
		case <-time.After(10 * time.Millisecond):
		}
	}
	waitUntil := time.Now().Add(10 * time.Second)
	for b.walRestarts.Load() == 0 && time.Now().Before(waitUntil) {
		time.Sleep(10 * time.Millisecond)
	}
	written := stopWriting()
	t.Logf("%d records, %d look-ups (the slowest %v); the gate closed %d times and interrupted %d reads", written, finds, slowest, b.walRestarts.Load(), told.Load())
	if !errors.Is(got, ErrReadInterrupted) {
		t.Fatalf("the tenant's endless read ended with %v, want ErrReadInterrupted", got)
	}
	if b.walRestarts.Load() == 0 || told.Load() == 0 {
		t.Errorf("the gate closed %d times and OnReadsInterrupted was told of %d interrupted reads", b.walRestarts.Load(), told.Load())
	}
	if slowest > 5*time.Second {
		t.Errorf("a report's look-up waited %v for the gate", slowest)
	}
}

// TestTheWALGateBacksOffFromAReadOutsideTheGateway: a read from outside the gateway (a sqlite3
// shell, a .backup) holds the WAL, which the gate cannot start over while it lasts. The gate's
// closings, each a pause of every read and an interruption of the tenants' long ones, come 1 s,
// 2 s, 4 s ... apart instead of every 500 ms; once the outside read ends, the WAL starts over.
func TestTheWALGateBacksOffFromAReadOutsideTheGateway(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "log.db")
	b, err := OpenSQLite(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.walFrames.Store(64)
	if _, err := b.Apply(ctx, []Op{{Insert: record("first", "acme", "p", "p-first", t0)}}); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Backend: b})
	defer s.Close()
	outside, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()
	tx, err := outside.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow(`SELECT count(*) FROM messages`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	defer keepWriting(s, 4, 5*time.Millisecond)()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
		}
	}
	waitFor("the gate closed once", func() bool { return b.walRestarts.Load() >= 1 })
	first := b.walRestarts.Load()
	time.Sleep(6 * time.Second)
	closings := b.walRestarts.Load() - first
	t.Logf("the gate closed %d more times in 6 s beside the outside read", closings)
	if closings > 4 {
		t.Errorf("the gate closed %d times in 6 s beside a read it cannot hold, want at most 4 (1 s, 2 s, 4 s apart)", closings)
	}
	tx.Rollback()
	waitFor("the WAL started over once the outside read ended", func() bool { return b.checkpoint() < 2*int(b.walFrames.Load()) })
}

// keepWriting inserts records into s from writers goroutines, each pausing every between two,
// until the returned stop, which waits for them and returns how many were inserted.
func keepWriting(s *Store, writers int, every time.Duration) (stop func() int64) {
	var done atomic.Bool
	var wg sync.WaitGroup
	var n atomic.Int64
	for range writers {
		wg.Go(func() {
			for !done.Load() {
				i := n.Add(1)
				s.Insert(context.Background(), record(fmt.Sprint("m-", i), "acme", "p", fmt.Sprint("p-", i), t0))
				time.Sleep(every)
			}
		})
	}
	return func() int64 {
		done.Store(true)
		wg.Wait()
		return n.Load()
	}
}

// TestEveryConnectionHasTheLogsPragmas: the writer and both read pools run with the settings the
// log depends on (docs/operations.md): WAL, synchronous NORMAL (the durability trade-off the
// benchmarks document), a 5 s busy timeout, foreign keys, no checkpoint inside a commit, a WAL cut
// back to 64 MiB, and the read pools' memory map.
func TestEveryConnectionHasTheLogsPragmas(t *testing.T) {
	s := tempSQLite(t)
	ctx := context.Background()
	for _, pool := range []struct {
		name string
		db   *sql.DB
		mmap int64
	}{{"writer", s.w, 0}, {"tenant reads", s.db, 2147418112}, {"shared reads", s.sys, 2147418112}} {
		for _, p := range []struct {
			pragma string
			want   any
		}{
			{"journal_mode", "wal"}, {"synchronous", int64(1)}, {"busy_timeout", int64(5000)}, {"foreign_keys", int64(1)},
			{"wal_autocheckpoint", int64(0)}, {"journal_size_limit", int64(67108864)}, {"mmap_size", pool.mmap},
		} {
			var got any
			if err := pool.db.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&got); err != nil {
				t.Fatalf("%s: PRAGMA %s: %v", pool.name, p.pragma, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(p.want) {
				t.Errorf("%s: PRAGMA %s = %v, want %v", pool.name, p.pragma, got, p.want)
			}
		}
	}
}
