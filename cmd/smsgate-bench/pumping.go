package main

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/policy"
)

// The pumping mode runs the detector (gateway/policy, the code a gateway runs, with in-memory
// state) on a simulated clock over two weeks of traffic: 20 tenants with their usual countries and
// ranges, a daily rhythm, 85 % of codes used; in the second week legitimate surprises (campaign
// bursts in usual ranges, a launch in a new country, travellers to new countries) and pumping
// attacks at several speeds. It reports, per attack, the messages and time until quarantine, and
// every quarantine of legitimate traffic (false positives).

type simRange struct {
	country, rng string
	share        float64
}

type simTenant struct {
	name   string
	perHr  float64
	ranges []simRange
}

type simAttack struct {
	tenant   int
	country  string
	rng      string
	perHr    float64
	start    time.Duration // from the start of week 2
	dur      time.Duration
	sent     int
	caughtAt time.Duration
	caughtN  int
	label    string
}

// simRanges are the usual destinations tenants pick from.
var simRanges = []simRange{
	{"US", "1-41", 0}, {"US", "1-21", 0}, {"GB", "44-74", 0}, {"GB", "44-77", 0}, {"DE", "49-15", 0}, {"DE", "49-17", 0},
	{"FR", "33-6", 0}, {"BR", "55-11", 0}, {"IN", "91-98", 0}, {"ES", "34-6", 0}, {"MX", "52-55", 0}, {"CA", "1-41-CA", 0},
}

// pumpingSim prints two simulated weeks of pumping detection, once with the tenants reporting
// their used codes and once without; smoke runs the first only.
func pumpingSim(seed uint64, smoke bool) error {
	fmt.Printf("## Pumping detection: two simulated weeks (`-mode pumping`)\n\n")
	fmt.Printf("20 tenants (5 to 250 codes an hour, 2 to 4 usual ranges each, a daily rhythm, 85%% of codes used); week 1 builds the baselines; week 2 adds a 5x campaign per tenant, a launch in a new country (40/h for 48 h, codes used), travellers (2/h to a new country) and 6 attacks (codes never used). Defaults: factor 5, min_volume 20, warmup 24h, conversion_floor 0.3; simulated minute by minute.\n\n")
	variants := []bool{true, false}
	if smoke {
		variants = variants[:1] // each takes about 20 s
	}
	for _, reported := range variants {
		if reported {
			fmt.Println("### Tenants report used codes (POST /v1/messages/{id}/verified)")
		} else {
			fmt.Println("### Tenants report nothing: the rate signal alone")
		}
		fmt.Println()
		simulateWeeks(seed, reported)
	}
	return nil
}

func simulateWeeks(seed uint64, reported bool) {
	rng := rand.New(rand.NewPCG(seed, 99))
	cfg := config.Pumping{Action: "block", RangeDigits: 2, Baseline: gateway.Duration(168 * time.Hour), Warmup: gateway.Duration(24 * time.Hour),
		Factor: 5, MinVolume: 20, ConversionFloor: 0.3, ConversionWindow: gateway.Duration(time.Hour), ConversionDelay: gateway.Duration(5 * time.Minute),
		Throttle: &config.Limit{N: 5, Per: time.Hour}, Cooldown: gateway.Duration(time.Hour), Refresh: gateway.Duration(10 * time.Second)}
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	now := t0
	det := &policy.Pumping{State: &policy.MemoryPumpState{Now: func() time.Time { return now }}, Now: func() time.Time { return now }}
	var tenants []simTenant
	for i := range 20 {
		t := simTenant{name: fmt.Sprintf("tenant-%02d", i), perHr: []float64{5, 15, 40, 100, 250}[i%5]}
		picks := rng.Perm(len(simRanges))[:2+rng.IntN(3)]
		left := 1.0
		for j, p := range picks {
			r := simRanges[p]
			r.share = left * 0.6
			if j == len(picks)-1 {
				r.share = left
			}
			left -= r.share
			t.ranges = append(t.ranges, r)
		}
		tenants = append(tenants, t)
	}
	week := 7 * 24 * time.Hour
	attacks := []*simAttack{
		{tenant: 0, country: "SL", rng: "232-76", perHr: 600, start: 30 * time.Hour, dur: 2 * time.Hour, label: "new country, 600/h"},
		{tenant: 3, country: "LK", rng: "94-77", perHr: 120, start: 50 * time.Hour, dur: 3 * time.Hour, label: "new country, 120/h"},
		{tenant: 6, country: "MM", rng: "95-9", perHr: 30, start: 75 * time.Hour, dur: 6 * time.Hour, label: "new country, 30/h"},
		{tenant: 9, country: "GB", rng: "44-70", perHr: 60, start: 100 * time.Hour, dur: 3 * time.Hour, label: "usual country, new range, 60/h"},
		{tenant: 12, country: "KG", rng: "996-55", perHr: 300, start: 120 * time.Hour, dur: 1 * time.Hour, label: "new country, 300/h"},
		{tenant: 4, country: "NG", rng: "234-80", perHr: 25, start: 140 * time.Hour, dur: 8 * time.Hour, label: "new country, 25/h (slow)"},
	}
	type legit struct {
		tenant int
		r      simRange
		perHr  float64
		start  time.Duration
		dur    time.Duration
		label  string
	}
	var events []legit
	for i := range tenants {
		// A campaign: 5x the tenant's volume in its main range for 2 hours, codes used.
		events = append(events, legit{tenant: i, r: tenants[i].ranges[0], perHr: 5 * tenants[i].perHr, start: time.Duration(10+i*7) * time.Hour, dur: 2 * time.Hour, label: "campaign"})
	}
	// A launch in a new country, and travellers to new countries.
	events = append(events, legit{tenant: 2, r: simRange{"JP", "81-90", 1}, perHr: 40, start: 60 * time.Hour, dur: 48 * time.Hour, label: "launch in JP"})
	for i := range 10 {
		events = append(events, legit{tenant: i * 2, r: simRange{"TH", "66-8", 1}, perHr: 2, start: time.Duration(5+i*13) * time.Hour, dur: 6 * time.Hour, label: "travellers"})
	}
	ctx := context.Background()
	var falsePos []string
	sent := 0 // each message's id, for the code's conversion
	// send returns a quarantine it raised (nil when it raised none, also when it was refused).
	send := func(t *simTenant, country, r string, used bool) *policy.Quarantine {
		if q, err := det.Check(ctx, t.name, r); err != nil || q != nil {
			return nil
		}
		q, err := det.Record(ctx, cfg, t.name, country, r)
		if err != nil {
			panic(err)
		}
		sent++
		if used && reported {
			det.Verified(ctx, cfg, t.name, strconv.Itoa(sent), r, now)
		}
		return q
	}
	poisson := func(mean float64) int {
		// Knuth; the means here are small.
		l, k, p := math.Exp(-mean), 0, 1.0
		for {
			p *= rng.Float64()
			if p <= l {
				return k
			}
			k++
		}
	}
	legitSends, attackSends := 0, 0
	for m := time.Duration(0); m < 2*week; m += time.Minute {
		now = t0.Add(m)
		hourOfDay := float64(now.Hour())
		rhythm := 0.35 + 0.65*math.Pow(math.Sin(math.Pi*(hourOfDay-3)/24), 2)
		for i := range tenants {
			t := &tenants[i]
			for _, r := range t.ranges {
				for range poisson(t.perHr * r.share * rhythm / 60) {
					legitSends++
					if q := send(t, r.country, r.rng, rng.Float64() < 0.85); q != nil {
						falsePos = append(falsePos, "usual traffic")
					}
				}
			}
		}
		if m < week {
			continue
		}
		w := m - week
		for _, e := range events {
			if w >= e.start && w < e.start+e.dur {
				for range poisson(e.perHr / 60) {
					legitSends++
					if q := send(&tenants[e.tenant], e.r.country, e.r.rng, rng.Float64() < 0.85); q != nil {
						falsePos = append(falsePos, e.label)
					}
				}
			}
		}
		for _, a := range attacks {
			if w >= a.start && w < a.start+a.dur && a.caughtAt == 0 {
				for range poisson(a.perHr / 60) {
					attackSends++
					a.sent++
					if q := send(&tenants[a.tenant], a.country, a.rng, false); q != nil {
						a.caughtAt, a.caughtN = w-a.start+time.Minute, a.sent
						break
					}
				}
			}
		}
	}
	fmt.Println("| attack | rate | messages until quarantine | time until quarantine |")
	fmt.Println("|---|---|---|---|")
	var caught []float64
	for _, a := range attacks {
		if a.caughtAt == 0 {
			fmt.Printf("| %s (%s %s) | %.0f/h | not caught (%d sent) | - |\n", a.label, a.country, a.rng, a.perHr, a.sent)
			continue
		}
		caught = append(caught, float64(a.caughtN))
		fmt.Printf("| %s (%s %s) | %.0f/h | %d | %s |\n", a.label, a.country, a.rng, a.perHr, a.caughtN, a.caughtAt)
	}
	slices.Sort(caught)
	fmt.Printf("\nlegitimate sends: %d; attack sends: %d; attacks caught: %d of %d; false positives: **%d**\n", legitSends, attackSends, len(caught), len(attacks), len(falsePos))
	if len(falsePos) > 0 {
		by := map[string]int{}
		for _, f := range falsePos {
			by[f]++
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(by)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, by[k]))
		}
		fmt.Printf("false positives by cause (each a one-hour quarantine of legitimate traffic): %s\n", strings.Join(parts, ", "))
	}
	fmt.Println()
}
