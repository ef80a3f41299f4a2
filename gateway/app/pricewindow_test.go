package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/store"
)

// pricedLog is the in-memory message log, counting its Prices reads (their bounds) and failing
// the fail-th one from now.
type pricedLog struct {
	*store.Memory
	reads [][2]time.Time
	fail  int // reads left before one fails; 0: none fails
}

func (l *pricedLog) Prices(ctx context.Context, since, until time.Time) ([]store.PriceRow, error) {
	l.reads = append(l.reads, [2]time.Time{since, until})
	if l.fail > 0 {
		if l.fail--; l.fail == 0 {
			return nil, errors.New("the log did not answer")
		}
	}
	return l.Memory.Prices(ctx, since, until)
}

// priced writes a message of acme through ib to country, created at created, its report's price
// recorded.
func (l *pricedLog) priced(t *testing.T, created time.Time, country string, price float64) {
	t.Helper()
	r := &store.Record{ID: fmt.Sprintf("m-%d-%s", created.UnixNano(), country), Tenant: "acme", Provider: "ib", Country: country, MessageType: "sms",
		Status: gateway.StatusDelivered, Price: price, Currency: "EUR", CreatedAt: created, UpdatedAt: created}
	if _, err := l.Apply(context.Background(), []store.Op{{Insert: r}}); err != nil {
		t.Fatal(err)
	}
}

// totals sums rows per country, as buildPrices does per tenant.
func totals(rows []store.PriceRow) map[string][2]float64 {
	out := map[string][2]float64{}
	for _, r := range rows {
		t := out[r.Country]
		out[r.Country] = [2]float64{t[0] + r.Sum, t[1] + float64(r.N)}
	}
	return out
}

// TestPriceWindowReadsTheNewestPartOnly: the window's prices are those of a full read, but after
// the first refresh a refresh reads the log's newest buckets and the one that settled since, not
// every message of the window again; buckets leave with the window; a failed read keeps what was
// read.
func TestPriceWindowReadsTheNewestPartOnly(t *testing.T) {
	t.Parallel()
	const window = 24 * time.Hour
	width := window / priceBuckets // 10 minutes
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	log := &pricedLog{Memory: store.NewMemory()}
	// A message every minute of the last 26 hours, GB at 0.05 and US at 0.01 in turn.
	for i := range 26 * 60 {
		c := "GB"
		if i%2 == 1 {
			c = "US"
		}
		log.priced(t, now.Add(-time.Duration(i)*time.Minute), c, map[string]float64{"GB": 0.05, "US": 0.01}[c])
	}
	var w priceWindow
	full := func(at time.Time) map[string][2]float64 {
		// What one read of the whole window gives: the buckets it overlaps, from the first one's start.
		since := time.Unix(0, at.Add(-window).UnixNano()/int64(width)*int64(width))
		rows, _ := log.Memory.Prices(context.Background(), since, time.Time{})
		return totals(rows)
	}
	check := func(at time.Time, wantReads int) {
		t.Helper()
		log.reads = nil
		rows, err := w.read(context.Background(), log, at, window)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(full(at), totals(rows), cmp.Comparer(func(x, y float64) bool { return x-y < 1e-9 && y-x < 1e-9 })); diff != "" {
			t.Errorf("at %s the window's prices (-full read +window):\n%s", at.Format(time.TimeOnly), diff)
		}
		if len(log.reads) != wantReads {
			t.Errorf("at %s: %d reads of the log, want %d", at.Format(time.TimeOnly), len(log.reads), wantReads)
		}
		if last := log.reads[len(log.reads)-1]; !last[1].IsZero() || at.Sub(last[0]) > time.Duration(priceSettle+1)*width {
			t.Errorf("at %s the newest part read is %s to %v, want at most %d buckets", at.Format(time.TimeOnly), last[0].Format(time.TimeOnly), last[1], priceSettle+1)
		}
	}
	// The first refresh reads every settled bucket once, then the newest part.
	check(now, priceBuckets-priceSettle+1)
	// A refresh a minute later: the newest part only.
	check(now.Add(time.Minute), 1)
	// One bucket later: the one that settled, and the newest part.
	check(now.Add(width+time.Minute), 2)
	if len(w.sealed) > priceBuckets {
		t.Errorf("%d buckets kept, more than the window's %d", len(w.sealed), priceBuckets)
	}
	// Hours later, the buckets that left the window are gone and the new ones read once each.
	later := now.Add(3*time.Hour + time.Minute)
	check(later, 3*6-1+1)
	if n := len(w.sealed); n != priceBuckets-priceSettle {
		t.Errorf("%d buckets kept, want %d", n, priceBuckets-priceSettle)
	}
	// A read that fails half way returns the error and keeps the buckets read before it.
	w.reset()
	log.fail, log.reads = 50, nil
	if _, err := w.read(context.Background(), log, now, window); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("a failed read: %v", err)
	}
	if len(w.sealed) != 49 {
		t.Errorf("%d buckets kept after the failure, want the 49 read before it", len(w.sealed))
	}
	check(now, priceBuckets-priceSettle-49+1)
	// A price reported late, for a message of a settled bucket, is left out until the window is
	// read anew; one of the newest part counts at the next refresh.
	read := func() map[string][2]float64 {
		t.Helper()
		rows, err := w.read(context.Background(), log, now, window)
		if err != nil {
			t.Fatal(err)
		}
		return totals(rows)
	}
	before := read()
	log.priced(t, now.Add(-2*time.Hour), "DE", 0.07)
	log.priced(t, now.Add(-time.Minute), "FR", 0.03)
	after := read()
	if _, ok := after["DE"]; ok || after["FR"] != [2]float64{0.03, 1} || after["GB"] != before["GB"] {
		t.Errorf("late prices: %v", after)
	}
	// A new window width (a reload) starts over.
	log.reads = nil
	if _, err := w.read(context.Background(), log, now, window/2); err != nil {
		t.Fatal(err)
	}
	if len(log.reads) != priceBuckets-priceSettle+1 || slices.ContainsFunc(log.reads[:len(log.reads)-1], func(r [2]time.Time) bool { return r[1].Sub(r[0]) != window/2/priceBuckets }) {
		t.Errorf("after the window changed: %d reads", len(log.reads))
	}
	// And back to the longer window: the shorter one's buckets (numbered by their own width) are
	// not kept beside the new ones.
	if _, err := w.read(context.Background(), log, now, window); err != nil {
		t.Fatal(err)
	}
	if n := len(w.sealed); n != priceBuckets-priceSettle {
		t.Errorf("after the window grew back: %d buckets kept, want %d", n, priceBuckets-priceSettle)
	}
}

// TestAPriceWindowShorterThanItsBucketsReads: routing.least_cost.window need only be positive, so
// one shorter than its 144 buckets (a nanosecond) is read in buckets of a millisecond, not of
// zero (a division by zero).
func TestAPriceWindowShorterThanItsBucketsReads(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	log := &pricedLog{Memory: store.NewMemory()}
	log.priced(t, now, "GB", 0.05)
	var w priceWindow
	rows, err := w.read(context.Background(), log, now, time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	if got := totals(rows); got["GB"] != [2]float64{0.05, 1} {
		t.Errorf("a nanosecond's window read %v, want the message sent now", got)
	}
}
