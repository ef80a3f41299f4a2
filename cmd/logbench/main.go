// Command logbench measures the message log as it grows: it fills a SQLite file or a PostgreSQL
// schema with N records (spread over 30 days, 10 tenants, 3 providers) through the log's own
// batched write path, then times the operations the gateway runs on it: get by id, a delivery
// report matched by provider id, a page of a tenant's listing (first and deep), and the purge of
// one day. It prints one Markdown table row per backend (docs/benchmarks.md).
//
//	go run ./cmd/logbench -backend sqlite -records 1000000
//	go run ./cmd/logbench -backend postgres -dsn postgres://postgres@127.0.0.1:5432/test -records 1000000
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/store"
)

func main() {
	backend := flag.String("backend", "sqlite", "sqlite or postgres")
	dsn := flag.String("dsn", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL server (a fresh schema is created and dropped)")
	n := flag.Int("records", 1_000_000, "records to write")
	samples := flag.Int("samples", 2000, "operations timed per kind")
	keep := flag.Bool("keep", false, "keep the database afterwards")
	commit := flag.Int("commit-writers", 0, "instead: measure group commit, this many concurrent senders each waiting for their record's commit")
	window := flag.Int("window", 0, "instead: time the grouped reads of delivery health and prices over a window holding this many messages")
	flag.Parse()
	if *window > 0 {
		if err := windowReads(*backend, *dsn, *window); err != nil {
			fmt.Fprintln(os.Stderr, "logbench:", err)
			os.Exit(1)
		}
		return
	}
	if *commit > 0 {
		if err := groupCommit(*backend, *dsn, *commit, *n); err != nil {
			fmt.Fprintln(os.Stderr, "logbench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*backend, *dsn, *n, *samples, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "logbench:", err)
		os.Exit(1)
	}
}

var base = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func record(i, n int) *store.Record {
	// Spread over 30 days in creation order, as a live log would be.
	created := base.Add(time.Duration(i) * (30 * 24 * time.Hour / time.Duration(n)))
	id := fmt.Sprintf("msg_%012x%04x%012x", created.UnixMilli(), i&0xffff, i)
	prov := []string{"infobip-eu", "twilio-us", "vonage"}[i%3]
	return &store.Record{ID: id, Tenant: fmt.Sprintf("tenant-%d", i%10), ClientID: "app1", Route: "default", MessageType: "sms",
		Action: "second-factor-authentication", Country: "US", Recipient: "+1415*****0104", Status: gateway.StatusSent,
		Provider: prov, ProviderMessageID: fmt.Sprintf("%s-%d", prov, i),
		Attempts:  []store.Attempt{{Provider: prov, Outcome: "sent", DurationMS: 80}},
		CreatedAt: created, UpdatedAt: created}
}

// compatEvery: in the growth run, every compatEvery-th record came through the
// Infobip-compatible API (tenant-0's, in bulks of 10, each with the caller's own messageId).
const compatEvery = 50

func withCompat(r *store.Record, i int) *store.Record {
	if i%compatEvery == 0 {
		r.Source, r.Reference, r.BulkID = "infobip-sms-v3", fmt.Sprintf("ref-%d", i), fmt.Sprintf("bulk-%d", i/(10*compatEvery))
	}
	return r
}

func run(kind, dsn string, n, samples int, keep bool) error {
	ctx := context.Background()
	var b store.Backend
	// size is what the log takes on disk: the SQLite database file, or the messages table with its
	// indexes.
	var size func() (int64, error)
	// setNow sets the backend's clock; analyze brings PostgreSQL's statistics up to date, as
	// autovacuum has by the time a table that grows as a live log does is queried.
	var setNow func(time.Time)
	analyze := func() error { return nil }
	switch kind {
	case "sqlite":
		dir, err := os.MkdirTemp("", "logbench-")
		if err != nil {
			return err
		}
		if !keep {
			defer os.RemoveAll(dir)
		}
		s, err := store.OpenSQLite(ctx, filepath.Join(dir, "log.db"), nil)
		if err != nil {
			return err
		}
		b = s
		setNow = func(t time.Time) { s.Now = func() time.Time { return t } }
		size = func() (int64, error) { // the database file; the WAL, checkpointed now and then, comes on top
			fi, err := os.Stat(filepath.Join(dir, "log.db"))
			if err != nil {
				return 0, err
			}
			return fi.Size(), nil
		}
	case "postgres":
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		schema := fmt.Sprintf("logbench_%d", time.Now().UnixNano())
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			return err
		}
		if !keep {
			defer conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		}
		sep := "?"
		if slices.Contains([]byte(dsn), '?') {
			sep = "&"
		}
		p, err := store.OpenPostgres(ctx, dsn+sep+"search_path="+schema, nil)
		if err != nil {
			return err
		}
		b = p
		setNow = func(t time.Time) { p.Now = func() time.Time { return t } }
		analyze = func() error {
			_, err := conn.Exec(ctx, "ANALYZE "+schema+".messages")
			return err
		}
		size = func() (n int64, err error) {
			err = conn.QueryRow(ctx, "SELECT pg_total_relation_size('"+schema+".messages')").Scan(&n)
			return n, err
		}
	default:
		return fmt.Errorf("unknown backend %q", kind)
	}
	defer b.Close()

	// Inserts, in batches of 512 as the writer applies them.
	start := time.Now()
	batch := make([]store.Op, 0, 512)
	for i := 0; i < n; i++ {
		batch = append(batch, store.Op{Insert: withCompat(record(i, n), i)})
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := b.Apply(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
		if i > 0 && i%1_000_000 == 0 {
			fmt.Fprintf(os.Stderr, "%d records, %.0f/s\n", i, float64(i)/time.Since(start).Seconds())
		}
	}
	insertRate := float64(n) / time.Since(start).Seconds()
	disk, err := size()
	if err != nil {
		return err
	}

	rng := rand.New(rand.NewPCG(1, 2))
	timeOp := func(f func(i int) error) (time.Duration, error) {
		d := make([]time.Duration, samples)
		for s := range samples {
			i := rng.IntN(n)
			t := time.Now()
			if err := f(i); err != nil {
				return 0, err
			}
			d[s] = time.Since(t)
		}
		slices.Sort(d)
		return d[len(d)/2], nil
	}
	// A pull of final reports (GET /sms/1/reports) while none is final: the compat records are
	// all still "sent", as with a provider that sends no reports.
	pull, err := timeOp(func(int) error {
		got, err := b.Take(ctx, store.TakeQuery{Tenant: "tenant-0", Limit: 50})
		if err == nil && len(got) > 0 {
			err = fmt.Errorf("pull: %d reports handed out, none is final", len(got))
		}
		return err
	})
	if err != nil {
		return err
	}
	get, err := timeOp(func(i int) error {
		r := record(i, n)
		_, err := b.Get(ctx, r.Tenant, r.ID)
		return err
	})
	if err != nil {
		return err
	}
	report, err := timeOp(func(i int) error {
		r := record(i, n)
		_, err := b.Apply(ctx, []store.Op{{Report: &gateway.DeliveryReport{Provider: r.Provider, ProviderMessageID: r.ProviderMessageID, Status: gateway.StatusDelivered}}})
		return err
	})
	if err != nil {
		return err
	}
	first, err := timeOp(func(i int) error {
		_, err := b.List(ctx, store.Query{Tenant: fmt.Sprintf("tenant-%d", i%10), Limit: 50})
		return err
	})
	if err != nil {
		return err
	}
	deep, err := timeOp(func(i int) error {
		r := record(i, n)
		_, err := b.List(ctx, store.Query{Tenant: r.Tenant, Limit: 50, Before: &store.Cursor{CreatedAt: r.CreatedAt, ID: r.ID}})
		return err
	})
	if err != nil {
		return err
	}
	// The Infobip-compatible logs' filters: a bulk, the caller's own messageId, a bulk no record has
	// (the worst case: every compat record of the tenant is looked at without an index).
	compat := func(bulk, ref string) func(int) error {
		return func(i int) error {
			i -= i % compatEvery
			q := store.Query{Tenant: "tenant-0", Compat: true, Limit: 50}
			if bulk != "" {
				q.BulkID = fmt.Sprintf(bulk, i/(10*compatEvery))
			}
			if ref != "" {
				q.ID = fmt.Sprintf(ref, i)
			}
			got, err := b.List(ctx, q)
			if err == nil && bulk == "bulk-%d" && len(got) == 0 {
				err = fmt.Errorf("bulk %s: nothing found", q.BulkID)
			}
			return err
		}
	}
	byBulk, err := timeOp(compat("bulk-%d", ""))
	if err != nil {
		return err
	}
	byRef, err := timeOp(compat("", "ref-%d"))
	if err != nil {
		return err
	}
	noBulk, err := timeOp(compat("none-%d", ""))
	if err != nil {
		return err
	}
	// The purge, while a writer commits one record at a time beside it, as sends do: the longest
	// of those commits is what the purge costs the sends.
	var purged int
	purge, beside, err := besideWrites(ctx, b, n, "purge", func() (err error) {
		purged, err = b.Purge(ctx, base.Add(24*time.Hour))
		return err
	})
	if err != nil {
		return err
	}
	// storage.max_records_per_tenant: the look for tenants over the bound, which finds none (each
	// holds half its bound: a tenant whose count and recent records pass its bound is looked at
	// too, its bound-th newest record, which reads as many index entries as its bound): the
	// first counts every record (as every 6 hours), the next only those created since an hour
	// before it, here 5 hours 59 minutes after it (the most records a look between two full
	// counts reads: the last 8 of the log's 720 hours); then a trim of every tenant by a tenth.
	if err := analyze(); err != nil {
		return err
	}
	left := (n - purged) / 10
	end := base.Add(30 * 24 * time.Hour)
	var looks [2]time.Duration
	for i, now := range []time.Time{end.Add(-7 * time.Hour), end.Add(-time.Hour - time.Minute)} {
		setNow(now)
		if looks[i], _, err = besideWrites(ctx, b, n, "look", func() error {
			_, err := b.Trim(ctx, store.RecordBounds{Default: 2 * left}) // no tenant near it
			return err
		}); err != nil {
			return err
		}
	}
	trimmed := 0
	trim, besideTrim, err := besideWrites(ctx, b, n, "trim", func() error {
		cut, err := b.Trim(ctx, store.RecordBounds{Default: left * 9 / 10})
		for _, c := range cut {
			trimmed += c
		}
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("| %s | %d | %.0f/s | %s | %s | %s | %s | %s (%d records) |\n", kind, n, insertRate,
		ms(get), ms(report), ms(first), ms(deep), purge.Round(time.Millisecond), purged)
	fmt.Printf("\non disk after the inserts: %d bytes, %d a record\n", disk, disk/int64(n))
	fmt.Printf("the longest commit of a record beside the purge: %s\n", ms(beside))
	fmt.Printf("max_records_per_tenant: a look finding no tenant over %s counting every record, %s the next; a trim of every tenant by a tenth %s (%d records), the longest commit beside it %s\n",
		looks[0].Round(time.Millisecond), ms(looks[1]), trim.Round(time.Millisecond), trimmed, ms(besideTrim))
	fmt.Printf("Infobip-compatible logs (tenant-0, %d records through that API): by bulkId %s, by messageId %s, a bulkId no record has %s; a pull of reports, none final, %s\n",
		(n+compatEvery-1)/compatEvery, ms(byBulk), ms(byRef), ms(noBulk), ms(pull))
	return nil
}

// besideWrites runs f while a writer commits one record at a time beside it, as sends do, and
// returns how long f took and the longest of those commits: what f costs the sends. The records
// written are named after what.
func besideWrites(ctx context.Context, b store.Backend, n int, what string, f func() error) (took, longest time.Duration, err error) {
	stop, most := make(chan struct{}), make(chan time.Duration)
	go func() {
		var m time.Duration
		for i := 0; ; i++ {
			select {
			case <-stop:
				most <- m
				return
			default:
			}
			r := record(n+i, n)
			r.ID, r.CreatedAt = fmt.Sprintf("beside-%s-%d", what, i), base.Add(30*24*time.Hour)
			t := time.Now()
			if _, err := b.Apply(ctx, []store.Op{{Insert: r}}); err != nil {
				fmt.Fprintf(os.Stderr, "logbench: a write beside the %s: %v\n", what, err)
			}
			m = max(m, time.Since(t))
		}
	}()
	t := time.Now()
	err = f()
	took = time.Since(t)
	close(stop)
	return took, <-most, err
}

// open returns a fresh backend of kind (a temp SQLite file, or a PostgreSQL schema) and its cleanup.
func open(ctx context.Context, kind, dsn string) (store.Backend, func(), error) {
	switch kind {
	case "sqlite":
		dir, err := os.MkdirTemp("", "logbench-")
		if err != nil {
			return nil, nil, err
		}
		s, err := store.OpenSQLite(ctx, filepath.Join(dir, "log.db"), nil)
		return s, func() { os.RemoveAll(dir) }, err
	case "postgres":
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return nil, nil, err
		}
		schema := fmt.Sprintf("logbench_%d", time.Now().UnixNano())
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			return nil, nil, err
		}
		sep := "?"
		if slices.Contains([]byte(dsn), '?') {
			sep = "&"
		}
		p, err := store.OpenPostgres(ctx, dsn+sep+"search_path="+schema, nil)
		return p, func() {
			conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			conn.Close(context.Background())
		}, err
	}
	return nil, nil, fmt.Errorf("unknown backend %q", kind)
}

// windowReads writes n messages over the last 25 minutes (10 tenants, 3 providers, 4 countries,
// a third each delivered, waiting and undelivered, all priced) and times what each replica runs
// every routing.delivery_health.refresh (Health over a 30-minute window) and, with least-cost
// routing, every least_cost.refresh (Prices): both read every message of the window.
func windowReads(kind, dsn string, n int) error {
	ctx := context.Background()
	b, cleanup, err := open(ctx, kind, dsn)
	if err != nil {
		return err
	}
	defer cleanup()
	defer b.Close()
	now := time.Now()
	batch := make([]store.Op, 0, 512)
	for i := range n {
		c := now.Add(-time.Duration(n-i) * (25 * time.Minute / time.Duration(n)))
		r := record(i, n)
		r.CreatedAt, r.UpdatedAt, r.Country, r.Price, r.Currency = c, c, []string{"US", "GB", "DE", "FR"}[i%4], 0.01, "EUR"
		r.Status = []string{gateway.StatusDelivered, gateway.StatusSent, gateway.StatusUndelivered}[i%3]
		batch = append(batch, store.Op{Insert: r})
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := b.Apply(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	var health, prices []time.Duration
	for range 5 {
		t := time.Now()
		if _, err := b.Health(ctx, now.Add(-30*time.Minute), now.Add(-10*time.Minute)); err != nil {
			return err
		}
		health = append(health, time.Since(t))
		t = time.Now()
		if _, err := b.Prices(ctx, now.Add(-30*time.Minute), time.Time{}); err != nil {
			return err
		}
		prices = append(prices, time.Since(t))
	}
	slices.Sort(health)
	slices.Sort(prices)
	fmt.Printf("| %s | %d | %s | %.2f µs | %s | %.2f µs |\n", kind, n, ms(health[2]), float64(health[2].Microseconds())/float64(n),
		ms(prices[2]), float64(prices[2].Microseconds())/float64(n))
	return nil
}

// groupCommit runs writers concurrent senders, n records in all, each Insert waiting for its
// batch's commit as a send does, and prints the latency that waiting adds.
func groupCommit(kind, dsn string, writers, n int) error {
	ctx := context.Background()
	b, cleanup, err := open(ctx, kind, dsn)
	if err != nil {
		return err
	}
	defer cleanup()
	s := store.New(store.Options{Backend: b, CommitTimeout: 5 * time.Second})
	defer s.Close()
	lat := make([]time.Duration, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t := time.Now()
				if err := s.Insert(ctx, record(i, n)); err != nil {
					failed.Add(1)
				}
				lat[i] = time.Since(t)
			}
		}()
	}
	wg.Wait()
	total := time.Since(start)
	slices.Sort(lat)
	fmt.Printf("| %s | %d | %.0f/s | %s | %s | %s | %d |\n", kind, writers, float64(n)/total.Seconds(), ms(lat[n/2]), ms(lat[n*99/100]), ms(lat[n-1]), failed.Load())
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
