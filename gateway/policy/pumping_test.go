package policy

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/intake"
	"github.com/smsgate/smsgate/gateway/policy/redistest"
)

func pumpConfig() config.Pumping {
	yes := true
	d := func(x time.Duration) gateway.Duration { return gateway.Duration(x) }
	return config.Pumping{Enabled: &yes, Action: "block", RangeDigits: 2, Baseline: d(168 * time.Hour), Warmup: d(24 * time.Hour),
		Factor: 5, MinVolume: 20, ConversionFloor: 0.3, ConversionWindow: d(time.Hour), ConversionDelay: d(5 * time.Minute),
		Throttle: lim(5, time.Hour), Cooldown: d(time.Hour), Refresh: d(10 * time.Second)}
}

func newPumping(t *testing.T, clk *clock, backend string) *Pumping {
	if backend == "redis" {
		return &Pumping{State: &Redis{Client: redistest.Start(t), Prefix: redistest.Prefix(t), Now: clk.now}, Now: clk.now}
	}
	return &Pumping{State: &MemoryPumpState{Now: clk.now}, Now: clk.now}
}

func TestPumpRange(t *testing.T) {
	for _, tc := range []struct{ e164, country, want string }{
		{"+447400123456", "GB", "44-74"}, {"+14155550104", "US", "1-41"}, {"+23276123456", "SL", "232-76"},
		{"+4915123456789", "DE", "49-15"},
		// A region its calling code shares, told apart by leading digits, keeps them whole: a
		// range never holds two such countries (1-87 held Jamaica with US area codes 870-879).
		{"+18765551234", "JM", "1-876"}, {"+18705551234", "US", "1-87"}, {"+17875551234", "PR", "1-787"},
		{"+18095551234", "DO", "1-809"}, {"+447624123456", "IM", "44-7624"}, {"+77012345678", "KZ", "7-70"},
		{"+358181234567", "AX", "358-18"},
		// A region that only number patterns tell from the main one is named: a Jersey or
		// Guernsey mobile, a Toronto number, is never counted in Britain's or the US's range.
		{"+14165551234", "CA", "1-41-CA"}, {"+14155550104", "US", "1-41"}, {"+447797123456", "JE", "44-77-JE"},
		{"+447781123456", "GG", "44-77-GG"}, {"+447712345678", "GB", "44-77"}, {"+262639012345", "YT", "262-63-YT"},
		{"+262692123456", "RE", "262-69"}, {"+61891621234", "CC", "61-89-CC"},
		// A number that is not under its country's calling code has no range of it.
		{"+447911123456", "US", "unknown"},
	} {
		if n, err := intake.NormalizeNumber(tc.e164, false); tc.want != "unknown" && (err != nil || n.Country != tc.country) {
			t.Errorf("%s: country %v (%v), the table says %s", tc.e164, n, err, tc.country)
		}
		if got := PumpRange(tc.e164, tc.country, 2); got != tc.want {
			t.Errorf("PumpRange(%s, %s) = %q, want %q", tc.e164, tc.country, got, tc.want)
		}
	}
}

// pumpSim drives a detector with a tenant's traffic on a simulated clock.
type pumpSim struct {
	t      *testing.T
	p      *Pumping
	clk    *clock
	cfg    config.Pumping
	n      int
	caught []*Quarantine
}

// send records one message to number (country cc) for tenant, verified when used.
func (s *pumpSim) send(tenant, number, cc string, used bool) *Quarantine {
	s.t.Helper()
	s.n++
	ctx := context.Background()
	rng := PumpRange(number, cc, s.cfg.RangeDigits)
	q, err := s.p.Record(ctx, s.cfg, tenant, cc, rng)
	if err != nil {
		s.t.Fatal(err)
	}
	if used {
		if err := s.p.Verified(ctx, s.cfg, tenant, strconv.Itoa(s.n), rng, s.clk.now()); err != nil {
			s.t.Fatal(err)
		}
	}
	if q != nil {
		s.caught = append(s.caught, q)
	}
	return q
}

// normalHour is an hour of a tenant's usual traffic: 10 US and 5 GB codes, 9 in 10 used.
func (s *pumpSim) normalHour(tenant string) {
	for i := range 15 {
		number, cc := fmt.Sprintf("+1415555%04d", s.n%10000), "US"
		if i%3 == 2 {
			number, cc = fmt.Sprintf("+447400%06d", s.n%1000000), "GB"
		}
		s.send(tenant, number, cc, i%10 != 9)
		s.clk.add(4 * time.Minute)
	}
}

// TestPumpingDetection: a week of a tenant's usual traffic, then a burst to a range it never
// used with no codes used: quarantined at the min_volume-th message while its usual ranges go
// on. A legitimate burst to a usual range, with codes used, is not quarantined; nor is another
// tenant's traffic to the quarantined range.
func TestPumpingDetection(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			clk := newClock()
			s := &pumpSim{t: t, p: newPumping(t, clk, backend), clk: clk, cfg: pumpConfig()}
			for range 7 * 24 {
				s.normalHour("acme")
			}
			if len(s.caught) != 0 {
				t.Fatalf("a week of normal traffic quarantined %+v", s.caught[0])
			}
			// A legitimate burst to GB (8x its usual rate), codes used.
			for i := range 40 {
				s.send("acme", fmt.Sprintf("+447400%06d", 500000+i), "GB", i%10 != 9)
				clk.add(90 * time.Second)
			}
			if len(s.caught) != 0 {
				t.Fatalf("a legitimate burst with codes used was quarantined: %+v", s.caught[0])
			}
			// Pumping: one send every 3 s to Sierra Leone, a range never used, no code used;
			// the usual traffic goes on alongside.
			start, at := clk.now(), 0
			for i := 1; i <= 60 && at == 0; i++ {
				if q := s.send("acme", fmt.Sprintf("+23276%06d", i), "SL", false); q != nil {
					at = i
					if q.Range != "232-76" || q.Country != "SL" || q.Action != "block" || !strings.HasPrefix(q.Reason, "rate: 20 sends in the last hour") {
						t.Errorf("quarantine: %+v", q)
					}
				}
				if i%10 == 0 {
					s.send("acme", "+14155550104", "US", true)
				}
				clk.add(3 * time.Second)
			}
			if at != 20 {
				t.Fatalf("quarantined at message %d, want 20 (min_volume); %v after the burst began", at, clk.now().Sub(start))
			}
			ctx := context.Background()
			for _, x := range []struct {
				tenant, rng string
				want        bool
			}{{"acme", "232-76", true}, {"acme", "1-41", false}, {"acme", "44-74", false}, {"other", "232-76", false}} {
				if q, err := s.p.Check(ctx, x.tenant, x.rng); err != nil || (q != nil) != x.want {
					t.Errorf("Check(%s, %s) = %+v, %v; want quarantined %v", x.tenant, x.rng, q, err, x.want)
				}
			}
			list, err := s.p.List(ctx)
			if err != nil || len(list) != 1 || list[0].Range != "232-76" {
				t.Fatalf("List = %+v, %v", list, err)
			}
			// Released by an operator: not quarantined again within the cooldown.
			if ok, err := s.p.Release(ctx, s.cfg, "acme", "232-76"); !ok || err != nil {
				t.Fatalf("Release = %v, %v", ok, err)
			}
			if ok, _ := s.p.Release(ctx, s.cfg, "acme", "232-76"); ok {
				t.Error("a second release found a quarantine")
			}
			for i := range 20 {
				if q := s.send("acme", fmt.Sprintf("+23276%06d", 100+i), "SL", false); q != nil {
					t.Fatalf("quarantined again right after a release: %+v", q)
				}
			}
			if list, _ := s.p.List(ctx); len(list) != 0 {
				t.Errorf("List after release = %+v", list)
			}
		})
	}
}

// TestPumpingToJerseyIsNotHiddenInBritainsRange: Jersey's mobiles (+44 7797...) share their
// first digits with Britain's busiest ones, and only number patterns tell them apart. A tenant
// sending 30 British codes an hour to +44 77..., most of them used, once counted a pumping burst to
// Jersey in that range's baseline, where 20 more sends an hour went unseen. Jersey's numbers are a
// range of their own now: the burst is quarantined at min_volume, and Britain's range is not.
func TestPumpingToJerseyIsNotHiddenInBritainsRange(t *testing.T) {
	clk := newClock()
	s := &pumpSim{t: t, p: newPumping(t, clk, "memory"), clk: clk, cfg: pumpConfig()}
	gb := func() {
		s.send("acme", fmt.Sprintf("+44771%07d", s.n%10000000), "GB", s.n%10 != 0)
		clk.add(2 * time.Minute)
	}
	for range 7 * 24 * 30 {
		gb()
	}
	if len(s.caught) != 0 {
		t.Fatalf("a week of British traffic quarantined %+v", s.caught[0])
	}
	at := 0
	for i := 1; i <= 60 && at == 0; i++ {
		if q := s.send("acme", fmt.Sprintf("+447797%06d", i), "JE", false); q != nil {
			at = i
			if q.Range != "44-77-JE" || q.Country != "JE" {
				t.Errorf("quarantine: %+v", q)
			}
		}
		if i%2 == 0 {
			gb()
		}
	}
	if at != 20 {
		t.Fatalf("the burst to Jersey was quarantined at message %d, want 20 (min_volume); caught %+v", at, s.caught)
	}
	if q, err := s.p.Check(context.Background(), "acme", "44-77"); q != nil || err != nil {
		t.Errorf("Britain's range: %+v, %v; want no quarantine", q, err)
	}
}

// TestPumpingConversionSignal: a new tenant (no baseline yet, so no rate signal) whose codes to
// one range are never used while its other range's are: that range is quarantined once its
// sends older than conversion_delay reach min_volume. A tenant that never reports codes used is
// not judged by conversion at all.
func TestPumpingConversionSignal(t *testing.T) {
	clk := newClock()
	s := &pumpSim{t: t, p: newPumping(t, clk, "memory"), clk: clk, cfg: pumpConfig()}
	var at time.Duration
	start := clk.now()
	for i := range 120 {
		s.send("acme", fmt.Sprintf("+1415555%04d", i), "US", i%10 != 0)
		if q := s.send("acme", fmt.Sprintf("+447400%06d", i), "GB", false); q != nil && at == 0 {
			at = clk.now().Sub(start)
			if q.Range != "44-74" || !strings.HasPrefix(q.Reason, "conversion: 0 of ") {
				t.Errorf("quarantine: %+v", q)
			}
		}
		s.send("quiet", fmt.Sprintf("+447400%06d", i), "GB", false)
		s.send("quiet", fmt.Sprintf("+1415555%04d", i), "US", false)
		clk.add(30 * time.Second)
	}
	if at == 0 || at > 20*time.Minute {
		t.Fatalf("the unconverting range was quarantined after %v, want within 20 minutes", at)
	}
	if len(s.caught) != 1 {
		t.Errorf("quarantines: %+v", s.caught)
	}
}

// TestPumpingAYoungTenantIsMeasuredByItsOwnHistory: a tenant past its warmup but younger than
// the baseline window is compared with the hours it has sent, not with the whole window: its
// steady 25 sends an hour to one range, without codes reported used, are its normal traffic, not
// five times a baseline diluted over a week it did not exist.
func TestPumpingAYoungTenantIsMeasuredByItsOwnHistory(t *testing.T) {
	clk := newClock()
	s := &pumpSim{t: t, p: newPumping(t, clk, "memory"), clk: clk, cfg: pumpConfig()}
	for i := range 30 * 25 { // 30 hours, past the 24 h warmup
		s.send("young", fmt.Sprintf("+447400%06d", i), "GB", false)
		clk.add(time.Hour / 25)
	}
	if len(s.caught) != 0 {
		t.Errorf("a young tenant's steady traffic was quarantined: %+v", s.caught[0])
	}
}

// TestPumpingConversionNeedsAComparison: a range whose codes go unused is held against the
// tenant's other ranges only when those carry min_volume sends between them; a few used codes
// elsewhere are no proof that this range's users would have used theirs.
func TestPumpingConversionNeedsAComparison(t *testing.T) {
	clk := newClock()
	s := &pumpSim{t: t, p: newPumping(t, clk, "memory"), clk: clk, cfg: pumpConfig()}
	for i := range 60 {
		s.send("acme", fmt.Sprintf("+447400%06d", i), "GB", false)
		if i%20 == 0 {
			s.send("acme", fmt.Sprintf("+1415555%04d", i), "US", true) // 3 in all, each used
		}
		clk.add(30 * time.Second)
	}
	if len(s.caught) != 0 {
		t.Errorf("quarantined on a comparison with 3 sends: %+v", s.caught[0])
	}
}

// TestPumpingConversionWaitsForTheDelay: codes sent within conversion_delay have had no time to
// be used, so a burst to a range is not judged by conversion until it is that old.
func TestPumpingConversionWaitsForTheDelay(t *testing.T) {
	clk := newClock()
	cfg := pumpConfig()
	s := &pumpSim{t: t, p: newPumping(t, clk, "memory"), clk: clk, cfg: cfg}
	for i := range 40 { // the comparison: another range whose codes are used
		s.send("acme", fmt.Sprintf("+1415555%04d", i), "US", true)
		clk.add(30 * time.Second)
	}
	// At the start of a slot, so that the whole burst lies within the delay.
	clk.add(slot - time.Duration(clk.now().Unix()%int64(slot.Seconds()))*time.Second)
	for i := range 25 {
		s.send("acme", fmt.Sprintf("+447400%06d", i), "GB", false)
		clk.add(5 * time.Second)
	}
	if len(s.caught) != 0 {
		t.Errorf("a burst younger than conversion_delay was judged by conversion: %+v", s.caught[0])
	}
	clk.add(cfg.ConversionDelay.D() + slot)
	if q := s.send("acme", "+447400999999", "GB", false); q == nil || !strings.HasPrefix(q.Reason, "conversion:") {
		t.Errorf("the burst once older than the delay: %+v, want a conversion quarantine", q)
	}
}

// countingPumpState counts the counter reads of keys that contain a marker.
type countingPumpState struct {
	*MemoryPumpState
	marker string
	reads  int
}

func (c *countingPumpState) PumpCounters(ctx context.Context, key string) (map[string]int64, error) {
	if strings.Contains(key, c.marker) {
		c.reads++
	}
	return c.MemoryPumpState.PumpCounters(ctx, key)
}

// TestPumpingCacheIsNotFlushedByAnotherTenant: a tenant that sends to 100,010 ranges within the
// refresh interval does not push another tenant's counters out of the cache (the cache used to be
// emptied past 100,000 keys), and still the cache does not keep what went stale.
func TestPumpingCacheIsNotFlushedByAnotherTenant(t *testing.T) {
	clk := newClock()
	st := &countingPumpState{MemoryPumpState: &MemoryPumpState{Now: clk.now}, marker: "|victim"}
	p := &Pumping{State: st, Now: clk.now}
	cfg, ctx := pumpConfig(), context.Background()
	if _, err := p.Record(ctx, cfg, "victim", "GB", "44-74"); err != nil {
		t.Fatal(err)
	}
	if st.reads != 2 {
		t.Fatalf("first send read %d counters, want its range's and its tenant's", st.reads)
	}
	for i := range 100010 {
		if _, err := p.Record(ctx, cfg, "hostile", "US", strconv.Itoa(100000+i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Record(ctx, cfg, "victim", "GB", "44-74"); err != nil {
		t.Fatal(err)
	}
	if st.reads != 2 {
		t.Errorf("the victim's counters were read again (%d reads): another tenant flushed them", st.reads)
	}
	// Past the refresh interval, later sends sweep the stale entries out.
	clk.add(cfg.Refresh.D())
	for i := range 60000 {
		if _, err := p.Record(ctx, cfg, "later", "US", strconv.Itoa(i%10)); err != nil {
			t.Fatal(err)
		}
	}
	p.mu.Lock()
	n := p.cache.len()
	p.mu.Unlock()
	if n > 100 {
		t.Errorf("%d counters cached after the others went stale, want only the live ones", n)
	}
}

// TestPumpingCountsACodeUsedOnce: the same message reported used many times at once, from two
// replicas sharing the state, counts one conversion (each report used to add one whenever the
// reports read the message before any had marked it); another message counts again, and a
// message older than the conversion window not at all.
func TestPumpingCountsACodeUsedOnce(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			clk := newClock()
			a := newPumping(t, clk, backend)
			b := &Pumping{State: a.State, Now: clk.now}
			if r, ok := a.State.(*Redis); ok {
				b.State = &Redis{Client: r.Client, Prefix: r.Prefix, Now: clk.now}
			}
			cfg, ctx := pumpConfig(), context.Background()
			sentAt := clk.now().Add(-10 * time.Minute)
			slotField := "v:" + strconv.FormatInt(sentAt.Unix()/int64(slot.Seconds()), 10)
			used := func(id string, times int) {
				t.Helper()
				errs := make(chan error, times)
				for i := range times {
					p := a
					if i%2 == 1 {
						p = b
					}
					go func() { errs <- p.Verified(ctx, cfg, "acme", id, "44-74", sentAt) }()
				}
				for range times {
					if err := <-errs; err != nil {
						t.Fatal(err)
					}
				}
			}
			counted := func() (rng, tenant int64) {
				t.Helper()
				rc, err := a.State.PumpCounters(ctx, rangeKey("acme", "44-74"))
				if err != nil {
					t.Fatal(err)
				}
				tc, err := a.State.PumpCounters(ctx, tenantKey("acme"))
				if err != nil {
					t.Fatal(err)
				}
				return rc[slotField], tc[slotField]
			}
			used("m1", 16)
			if r, tn := counted(); r != 1 || tn != 1 {
				t.Fatalf("one message reported 16 times at once: range counts %d, tenant %d; want 1 and 1", r, tn)
			}
			used("m2", 1)
			used("m1", 2)
			if r, tn := counted(); r != 2 || tn != 2 {
				t.Fatalf("a second message: range counts %d, tenant %d; want 2 and 2", r, tn)
			}
			// Another tenant's message of the same id is its own.
			if err := b.Verified(ctx, cfg, "beta", "m1", "44-74", sentAt); err != nil {
				t.Fatal(err)
			}
			if c, err := a.State.PumpCounters(ctx, rangeKey("beta", "44-74")); err != nil || c[slotField] != 1 {
				t.Fatalf("another tenant's message of the same id: %v, %v", c, err)
			}
			clk.add(cfg.ConversionWindow.D())
			used("m3", 1)
			if r, tn := counted(); r != 2 || tn != 2 {
				t.Errorf("a message older than the window: range counts %d, tenant %d; want 2 and 2", r, tn)
			}
		})
	}
}

// racingPumpState is another replica quarantining the range first: at the first look at whether
// an operator released the range (the last step before a detector quarantines it), it sets the
// quarantine the detector is about to set.
type racingPumpState struct {
	*MemoryPumpState
	raced bool
}

func (r *racingPumpState) PumpGet(ctx context.Context, key string) (string, bool, error) {
	if strings.HasPrefix(key, "pump|r|") && !r.raced {
		r.raced = true
		tenant, rng, _ := strings.Cut(strings.TrimPrefix(key, "pump|r|"), "|")
		q := fmt.Sprintf(`{"tenant":%q,"range":%q,"action":"block","reason":"the other replica's"}`, tenant, rng)
		if _, err := r.PumpPut(ctx, quarantineKey(tenant, rng), q, time.Hour, true); err != nil {
			return "", false, err
		}
	}
	return r.MemoryPumpState.PumpGet(ctx, key)
}

// TestPumpingQuarantineRaisedOnce: when two replicas see the same signal at once, the one that
// sets the quarantine reports it; the other reports none (both used to, and each logged and
// counted it), and the quarantine in force is the first one's.
func TestPumpingQuarantineRaisedOnce(t *testing.T) {
	clk := newClock()
	st := &racingPumpState{MemoryPumpState: &MemoryPumpState{Now: clk.now}}
	s := &pumpSim{t: t, p: &Pumping{State: st, Now: clk.now}, clk: clk, cfg: pumpConfig()}
	for i := range 120 {
		s.send("acme", fmt.Sprintf("+1415555%04d", i), "US", i%10 != 0)
		s.send("acme", fmt.Sprintf("+447400%06d", i), "GB", false)
		clk.add(30 * time.Second)
	}
	if !st.raced {
		t.Fatal("the signal never fired")
	}
	if len(s.caught) != 0 {
		t.Errorf("this replica reported the quarantine the other set first: %+v", s.caught[0])
	}
	q, err := s.p.Check(context.Background(), "acme", "44-74")
	if err != nil || q == nil || q.Reason != "the other replica's" {
		t.Errorf("quarantine in force: %+v, %v", q, err)
	}
}

// TestQuarantineIndexExpires: the index of quarantines in Redis expires by itself (it once stayed
// for good, growing with every range ever quarantined), and never sooner than the longest
// quarantine it lists: a tenant with a short cooldown must not drop another's entry.
func TestQuarantineIndexExpires(t *testing.T) {
	client := redistest.Start(t)
	r := &Redis{Client: client, Prefix: redistest.Prefix(t)}
	ctx := context.Background()
	if err := r.PumpIndex(ctx, quarantineIndex, "acme|232-76", 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := r.PumpIndex(ctx, quarantineIndex, "beta|44-74", 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	if ttl := client.PTTL(ctx, r.Prefix+quarantineIndex).Val(); ttl <= 119*time.Minute || ttl > 2*time.Hour {
		t.Errorf("index TTL %v, want the longer cooldown, 2h", ttl)
	}
	if err := r.PumpIndex(ctx, quarantineIndex, "gamma|1-41", 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	if ttl := client.PTTL(ctx, r.Prefix+quarantineIndex).Val(); ttl <= 179*time.Minute || ttl > 3*time.Hour {
		t.Errorf("index TTL %v after a longer quarantine, want 3h", ttl)
	}
	if err := r.PumpUnindex(ctx, quarantineIndex, "beta|44-74"); err != nil {
		t.Fatal(err)
	}
	got, err := r.PumpMembers(ctx, quarantineIndex)
	slices.Sort(got)
	if err != nil || strings.Join(got, ",") != "acme|232-76,gamma|1-41" {
		t.Errorf("members %v, %v", got, err)
	}
}

// TestPumpingSignalsAtTheirEdges: the two signals at the edge of each bound, on counters built
// by hand. The rate signal fires above factor x the baseline (at it, not), unless the range
// converts well: at least 5 sends (however small min_volume / 4 is) with conversion_floor of
// them used, the floor itself included. The conversion signal fires from min_volume sends.
func TestPumpingSignalsAtTheirEdges(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC) // the start of an hour and of a slot
	hour, sl := now.Unix()/3600, now.Unix()/int64(slot.Seconds())
	cfg := pumpConfig() // min_volume 20, factor 5, floor 0.3, window 1h, delay 5m, warmup 24h
	judged := sl - int64(cfg.ConversionDelay.D()/slot)
	// at is a range's or a tenant's counters, first sent 48 hours ago, with base sends an hour on
	// average over those hours, and sends and used codes in a slot the conversion window judges.
	at := func(base, sends, used int64) *counters {
		return &counters{hours: map[int64]int64{hour - 10: base * 48}, sends: map[int64]int64{judged: sends}, used: map[int64]int64{judged: used}, first: hour - 48}
	}
	for _, tc := range []struct {
		name   string
		minVol int
		cur    int64
		rc, tc *counters
		fires  string
	}{
		{"rate at factor x baseline", 20, 20, at(4, 0, 0), at(4, 0, 0), ""},
		{"rate above it", 20, 21, at(4, 0, 0), at(4, 0, 0), "rate"},
		{"rate, 4 sends half used: too few to prove conversion", 8, 21, at(4, 4, 2), at(4, 4, 2), "rate"},
		{"rate, 5 sends 3 used", 8, 21, at(4, 5, 3), at(4, 5, 3), ""},
		{"rate, 10 sends 3 used: the floor", 20, 21, at(4, 10, 3), at(4, 10, 3), ""},
		{"rate, 10 sends 2 used", 20, 21, at(4, 10, 2), at(4, 10, 2), "rate"},
		{"conversion at min_volume", 20, 0, at(0, 20, 0), at(0, 40, 10), "conversion"},
		{"conversion under it", 20, 0, at(0, 19, 0), at(0, 40, 10), ""},
		{"conversion, the others under min_volume", 20, 0, at(0, 20, 0), at(0, 39, 10), ""},
	} {
		c := cfg
		c.MinVolume = tc.minVol
		got := signal(c, now, tc.cur, tc.rc, tc.tc)
		if kind, _, _ := strings.Cut(got, ":"); kind != tc.fires {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.fires)
		}
	}
}

// TestPumpingReadsWhatOtherReplicasCountedAfterRefresh: a replica's counters are read again from
// the shared state once refresh has passed, so it sees the sends other replicas counted; within
// refresh it keeps what it read.
func TestPumpingReadsWhatOtherReplicasCountedAfterRefresh(t *testing.T) {
	clk := newClock()
	st := &MemoryPumpState{Now: clk.now}
	a, b := &Pumping{State: st, Now: clk.now}, &Pumping{State: st, Now: clk.now}
	cfg, ctx := pumpConfig(), context.Background()
	key := rangeKey("acme", "44-74")
	sent := func(p *Pumping) int64 {
		t.Helper()
		c, err := p.counters(ctx, cfg, key, clk.now())
		if err != nil {
			t.Fatal(err)
		}
		return c.hours[clk.now().Unix()/3600]
	}
	if _, err := a.Record(ctx, cfg, "acme", "GB", "44-74"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := b.Record(ctx, cfg, "acme", "GB", "44-74"); err != nil {
			t.Fatal(err)
		}
	}
	// Other ranges fill a's cache, so that its sweep (two entries a read) does not happen on
	// acme's counters: a read itself must tell that they are stale.
	for i := range 1000 {
		if _, err := a.Record(ctx, cfg, "other", "US", strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	clk.add(cfg.Refresh.D() - time.Nanosecond)
	if n := sent(a); n != 1 {
		t.Errorf("within refresh: replica a counts %d sends this hour, want the 1 it read", n)
	}
	clk.add(time.Nanosecond)
	if n := sent(a); n != 6 {
		t.Errorf("after refresh: replica a counts %d sends this hour, want 6 (b's five too)", n)
	}
}

// TestPumpingForgetsWhatIsOutsideItsWindows: a range sent to every hour keeps its key alive for
// good, so the hours older than the baseline and the slots older than the conversion window are
// removed from the state as counters are read; otherwise each busy range's key would grow by a
// field an hour and twelve a slot-hour without end.
func TestPumpingForgetsWhatIsOutsideItsWindows(t *testing.T) {
	clk := newClock()
	st := &MemoryPumpState{Now: clk.now}
	p := &Pumping{State: st, Now: clk.now}
	cfg, ctx := pumpConfig(), context.Background()
	baseline := int64(cfg.Baseline.D().Hours())
	for range baseline + 30 {
		if _, err := p.Record(ctx, cfg, "acme", "GB", "44-74"); err != nil {
			t.Fatal(err)
		}
		clk.add(time.Hour)
	}
	if _, err := p.Record(ctx, cfg, "acme", "GB", "44-74"); err != nil {
		t.Fatal(err)
	}
	fields, err := st.PumpCounters(ctx, rangeKey("acme", "44-74"))
	if err != nil {
		t.Fatal(err)
	}
	hour, sl := clk.now().Unix()/3600, clk.now().Unix()/int64(slot.Seconds())
	for f := range fields {
		kind, n, _ := field(f)
		if kind == 'h' && n < hour-baseline-1 || kind != 'h' && n < sl-int64(cfg.ConversionWindow.D()/slot)-1 {
			t.Errorf("field %s is still kept, outside its window", f)
		}
	}
	if len(fields) > int(baseline)+4 {
		t.Errorf("%d fields kept for one range", len(fields))
	}
}

// failingAddPumpState fails the first count of a code used.
type failingAddPumpState struct {
	*MemoryPumpState
	failed bool
}

func (f *failingAddPumpState) PumpAdd(ctx context.Context, incs [][2]string, ttl time.Duration) ([]int64, error) {
	if strings.HasPrefix(incs[0][1], "v:") && !f.failed {
		f.failed = true
		return nil, errors.New("state store down")
	}
	return f.MemoryPumpState.PumpAdd(ctx, incs, ttl)
}

// TestPumpingACodeUsedThatCouldNotBeCountedCountsWhenReportedAgain: the claim of a code reported
// used is given back when its count fails, so the next report of it counts.
func TestPumpingACodeUsedThatCouldNotBeCountedCountsWhenReportedAgain(t *testing.T) {
	clk := newClock()
	st := &failingAddPumpState{MemoryPumpState: &MemoryPumpState{Now: clk.now}}
	p := &Pumping{State: st, Now: clk.now}
	cfg, ctx := pumpConfig(), context.Background()
	sentAt := clk.now().Add(-10 * time.Minute)
	if err := p.Verified(ctx, cfg, "acme", "m1", "44-74", sentAt); err == nil {
		t.Fatal("a count that failed returned no error")
	}
	if err := p.Verified(ctx, cfg, "acme", "m1", "44-74", sentAt); err != nil {
		t.Fatal(err)
	}
	c, err := st.PumpCounters(ctx, rangeKey("acme", "44-74"))
	if err != nil || c["v:"+strconv.FormatInt(sentAt.Unix()/int64(slot.Seconds()), 10)] != 1 {
		t.Errorf("after the report again: %v, %v; want one code used", c, err)
	}
}

// TestTheQuarantineIndexLosesEndedQuarantines: a released quarantine leaves the index at once,
// and one that ended leaves it when quarantines are next listed: in memory the index lives as
// long as the process.
func TestTheQuarantineIndexLosesEndedQuarantines(t *testing.T) {
	clk := newClock()
	st := &MemoryPumpState{Now: clk.now}
	p := &Pumping{State: st, Now: clk.now}
	cfg, ctx := pumpConfig(), context.Background()
	for _, rng := range []string{"232-76", "44-74"} {
		q := fmt.Sprintf(`{"tenant":"acme","range":%q}`, rng)
		if _, err := st.PumpPut(ctx, quarantineKey("acme", rng), q, cfg.Cooldown.D(), true); err != nil {
			t.Fatal(err)
		}
		if err := st.PumpIndex(ctx, quarantineIndex, "acme|"+rng, cfg.Cooldown.D()); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := p.Release(ctx, cfg, "acme", "232-76"); !ok || err != nil {
		t.Fatalf("Release: %v, %v", ok, err)
	}
	if m, _ := st.PumpMembers(ctx, quarantineIndex); !slices.Equal(m, []string{"acme|44-74"}) {
		t.Errorf("index after a release: %v", m)
	}
	clk.add(cfg.Cooldown.D() + time.Second)
	if list, err := p.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("List after the cooldown: %+v, %v", list, err)
	}
	if m, _ := st.PumpMembers(ctx, quarantineIndex); len(m) != 0 {
		t.Errorf("index after the quarantine ended and was listed: %v", m)
	}
}

// BenchmarkMemoryPumpBytesPerRange measures what MemoryPumpState keeps for one (tenant, range):
// as Record leaves a range sent to once (an hour's and a slot's count), and a range sent to in
// every hour of the default baseline, with the conversion window's slots (the fields counters
// keeps before it forgets older ones). operations.md sizes the state in memory with it.
func BenchmarkMemoryPumpBytesPerRange(b *testing.B) {
	heap := func() float64 {
		var ms goruntime.MemStats
		goruntime.GC()
		goruntime.ReadMemStats(&ms)
		return float64(ms.HeapAlloc)
	}
	now := time.Unix(1_800_000_000, 0)
	hour, sl := now.Unix()/3600, now.Unix()/int64(slot.Seconds())
	for _, c := range []struct {
		name   string
		fields []string
	}{
		{"new", []string{"h:" + strconv.FormatInt(hour, 10), "s:" + strconv.FormatInt(sl, 10)}},
		{"full", func() (f []string) {
			for h := range int64(170) {
				f = append(f, "h:"+strconv.FormatInt(hour-h, 10))
			}
			for s := range int64(13) {
				f = append(f, "s:"+strconv.FormatInt(sl-s, 10), "v:"+strconv.FormatInt(sl-s, 10))
			}
			return f
		}()},
	} {
		b.Run(c.name, func(b *testing.B) {
			m := &MemoryPumpState{Now: func() time.Time { return now }}
			incs := make([][2]string, len(c.fields))
			heap0 := heap()
			for i := range b.N {
				k := rangeKey("tenant-a", "44-"+strconv.Itoa(1_000_000+i))
				for j, f := range c.fields {
					incs[j] = [2]string{k, strings.Clone(f)} // each send makes its own field names
				}
				if _, err := m.PumpAdd(context.Background(), incs, 170*time.Hour); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric((heap()-heap0)/float64(b.N), "heap-bytes/range")
			goruntime.KeepAlive(m)
		})
	}
}
