package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/intake"
)

// SMS-pumping detection. Per tenant and number range (country calling code and the first digits
// of the national number, "44-74"), the state holds hourly send counts over the baseline window,
// and sends and verified codes in 5-minute slots over the conversion window. After each send the
// range is checked for two signals:
//
//   - rate: the last hour's sends (the current hour plus the part of the previous hour still
//     inside the last 60 minutes) reach min_volume and exceed factor x the range's average hourly
//     sends over the baseline window (a range never used has a baseline of zero), unless the
//     range itself converts at or above conversion_floor over max(5, min_volume/4) sends (a
//     campaign or a launch: codes get used). It
//     applies once the tenant has sent for warmup (a new tenant has no baseline anywhere).
//   - conversion: the range's sends in the conversion window (without the newest
//     conversion_delay) reach min_volume and convert below conversion_floor, while the tenant's
//     other ranges, with min_volume between them, convert at or above it.
//
// A range that fires is quarantined for cooldown with the tenant's action. Everything lives in
// the shared state, so every replica counts the same traffic and enforces the same quarantines.

// slot is the granularity of the conversion counters.
const slot = 5 * time.Minute

// PumpState is where the detector keeps its counters and quarantines: in memory (one replica)
// or in Redis (shared). Keys are the detector's own; implementations add their prefix.
type PumpState interface {
	// PumpAdd adds 1 to each (key, field) of incs, keeps those keys for ttl, and returns the
	// new values in order.
	PumpAdd(ctx context.Context, incs [][2]string, ttl time.Duration) ([]int64, error)
	// PumpCounters returns a key's counters.
	PumpCounters(ctx context.Context, key string) (map[string]int64, error)
	// PumpForget deletes fields of a key's counters.
	PumpForget(ctx context.Context, key string, fields []string) error
	// PumpPut stores val under key for ttl; with nx only when the key is absent. It reports
	// whether it stored val (with nx, whether this call was the one that set the key).
	PumpPut(ctx context.Context, key, val string, ttl time.Duration, nx bool) (bool, error)
	// PumpGet reads a value PumpPut stored.
	PumpGet(ctx context.Context, key string) (string, bool, error)
	// PumpDel deletes a value and reports whether it was there.
	PumpDel(ctx context.Context, key string) (bool, error)
	// PumpIndex adds member to the set under key and keeps the set for at least keep (never
	// shortens it: each member's entry must outlive what it indexes); PumpUnindex removes one;
	// PumpMembers lists them.
	PumpIndex(ctx context.Context, key, member string, keep time.Duration) error
	PumpUnindex(ctx context.Context, key, member string) error
	PumpMembers(ctx context.Context, key string) ([]string, error)
}

// Quarantine is a number range of a tenant held under suspicion of pumping.
type Quarantine struct {
	Tenant string `json:"tenant"`
	// Range is the country calling code and the first national digits, e.g. "44-74".
	Range   string `json:"range"`
	Country string `json:"country"`
	// Action is alert, throttle or block.
	Action string `json:"action"`
	// Reason says which signal fired, with its figures.
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
}

// PumpRange is the number range of an E.164 number in country: "44-74" for +447400123456 with
// digits 2. It holds no more of the number than the calling code and those digits, or than the
// leading digits that set country apart from the other regions of its calling code when they are
// more: "1-876" for Jamaica, so a range never holds two countries that leading digits tell apart
// ("1-87" would hold Jamaica with the US area codes 870 to 879: a quarantine of one would hold the
// other, and one's baseline would hide pumping to the other). A region that only its number
// patterns tell from its calling code's main region (intake.ApartByPatterns) has its name after
// the digits: "44-77-JE" for a Jersey mobile, "1-41-CA" for Toronto, kept apart from "44-77" and
// "1-41", which hold only the main region's numbers (Jersey's and Guernsey's numbers, dear to
// terminate and a classic target of pumping, were once counted in the baseline of Britain's
// busiest mobile ranges, where a surge to them went unseen).
func PumpRange(e164, country string, digits int) string {
	num := strings.TrimPrefix(e164, "+")
	cc := phonenumbers.GetCountryCodeForRegion(country)
	var code string
	if cc > 0 {
		code = strconv.Itoa(cc)
	} else if n, err := phonenumbers.Parse(e164, ""); err == nil { // 001 and the like
		code = strconv.Itoa(int(n.GetCountryCode()))
	}
	if code == "" || !strings.HasPrefix(num, code) {
		return "unknown"
	}
	national := num[len(code):]
	lead := intake.LeadingDigits(country, national)
	rng := code + "-" + national[:min(max(digits, lead), len(national))]
	if lead == 0 && intake.ApartByPatterns(country) {
		rng += "-" + country
	}
	return rng
}

// Pumping is the detector.
type Pumping struct {
	State PumpState
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu sync.Mutex
	// cache holds counters read within cfg.Refresh; older ones are dropped, two examined per read.
	// (It was emptied whenever it passed 100,000 keys, so one tenant spraying ranges flushed
	// every other tenant's counters.)
	cache sweptMap[*counters]
}

// counters are one key's counters as read from the state, by hour or slot number.
type counters struct {
	at                 time.Time
	hours, sends, used map[int64]int64
	// first is the earliest hour with a send (the key's history), or the hour of reading.
	first int64
}

func (c *counters) slots(from, to int64) (sends, used int64) {
	for x := from; x <= to; x++ {
		sends, used = sends+c.sends[x], used+c.used[x]
	}
	return sends, used
}

func (p *Pumping) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func rangeKey(tenant, rng string) string { return "pump|c|" + tenant + "|" + rng }
func tenantKey(tenant string) string     { return "pump|t|" + tenant }

// usedKey is the claim of message id's code reported used (Verified).
func usedKey(tenant, id string) string { return "pump|v|" + tenant + "|" + id }

func quarantineKey(tenant, rng string) string {
	return "pump|q|" + tenant + "|" + rng
}

const quarantineIndex = "pump|qi"

// Check returns the quarantine in force for a tenant's range, if any.
func (p *Pumping) Check(ctx context.Context, tenant, rng string) (*Quarantine, error) {
	v, ok, err := p.State.PumpGet(ctx, quarantineKey(tenant, rng))
	if err != nil || !ok {
		return nil, err
	}
	var q Quarantine
	if err := json.Unmarshal([]byte(v), &q); err != nil {
		return nil, err
	}
	return &q, nil
}

// counters returns a key's counters, read again after cfg.Refresh; stale fields are forgotten.
func (p *Pumping) counters(ctx context.Context, cfg config.Pumping, key string, now time.Time) (*counters, error) {
	old := func(_ string, c *counters) bool { return now.Sub(c.at) >= cfg.Refresh.D() }
	p.mu.Lock()
	p.cache.sweep(2, old)
	c, ok := p.cache.get(key)
	p.mu.Unlock()
	if ok && !old(key, c) {
		return c, nil
	}
	m, err := p.State.PumpCounters(ctx, key)
	if err != nil {
		return nil, err
	}
	hour, sl := now.Unix()/3600, now.Unix()/int64(slot.Seconds())
	oldHour, oldSlot := hour-int64(cfg.Baseline.D().Hours())-1, sl-int64(cfg.ConversionWindow.D()/slot)-1
	c = &counters{at: now, hours: map[int64]int64{}, sends: map[int64]int64{}, used: map[int64]int64{}, first: hour}
	var stale []string
	for f, v := range m {
		kind, n, ok := field(f)
		switch {
		case !ok:
		case kind == 'h' && n < oldHour, kind != 'h' && n < oldSlot:
			stale = append(stale, f)
		case kind == 'h':
			c.hours[n] = v
			c.first = min(c.first, n)
		case kind == 's':
			c.sends[n] = v
		case kind == 'v':
			c.used[n] = v
		}
	}
	if len(stale) > 0 {
		if err := p.State.PumpForget(ctx, key, stale); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	p.cache.set(key, c)
	p.mu.Unlock()
	return c, nil
}

// field splits "h:123" into 'h' and 123.
func field(f string) (byte, int64, bool) {
	if len(f) < 3 || f[1] != ':' {
		return 0, 0, false
	}
	n, err := strconv.ParseInt(f[2:], 10, 64)
	return f[0], n, err == nil
}

// Record counts a message sent to a tenant's range and returns a new quarantine when a signal
// fires (nil otherwise).
func (p *Pumping) Record(ctx context.Context, cfg config.Pumping, tenant, country, rng string) (*Quarantine, error) {
	now := p.now()
	hour, sl := now.Unix()/3600, now.Unix()/int64(slot.Seconds())
	h, s := "h:"+strconv.FormatInt(hour, 10), "s:"+strconv.FormatInt(sl, 10)
	rk, tk := rangeKey(tenant, rng), tenantKey(tenant)
	ttl := cfg.Baseline.D() + 2*time.Hour
	vals, err := p.State.PumpAdd(ctx, [][2]string{{rk, h}, {rk, s}, {tk, h}, {tk, s}}, ttl)
	if err != nil {
		return nil, err
	}
	rc, err := p.counters(ctx, cfg, rk, now)
	if err != nil {
		return nil, err
	}
	tc, err := p.counters(ctx, cfg, tk, now)
	if err != nil {
		return nil, err
	}
	reason := signal(cfg, now, vals[0], rc, tc)
	if reason == "" {
		return nil, nil
	}
	// Once per cooldown: not again while quarantined, nor after an operator released it.
	if q, err := p.Check(ctx, tenant, rng); err != nil || q != nil {
		return nil, err
	}
	if _, released, err := p.State.PumpGet(ctx, "pump|r|"+tenant+"|"+rng); err != nil || released {
		return nil, err
	}
	q := &Quarantine{Tenant: tenant, Range: rng, Country: country, Action: cfg.Action, Reason: reason, Since: now.UTC(), Until: now.Add(cfg.Cooldown.D()).UTC()}
	b, _ := json.Marshal(q)
	// Another replica may have seen the same signal at the same moment: the one that sets the
	// key reports the quarantine, so it is logged and counted once.
	if stored, err := p.State.PumpPut(ctx, quarantineKey(tenant, rng), string(b), cfg.Cooldown.D(), true); err != nil || !stored {
		return nil, err
	}
	if err := p.State.PumpIndex(ctx, quarantineIndex, tenant+"|"+rng, cfg.Cooldown.D()); err != nil {
		return nil, err
	}
	return q, nil
}

// signal applies the two signals to a range's counters (rc, with cur sends in the current hour)
// and its tenant's (tc); it returns why the range fires, or "".
func signal(cfg config.Pumping, now time.Time, cur int64, rc, tc *counters) string {
	hour, sl := now.Unix()/3600, now.Unix()/int64(slot.Seconds())
	// The tenant's history: its earliest hour with a send in the baseline window.
	baseHours := min(int64(cfg.Baseline.D().Hours()), max(1, hour-tc.first))
	var base int64
	for h := hour - baseHours; h < hour; h++ {
		base += rc.hours[h]
	}
	avg := float64(base) / float64(baseHours)
	frac := float64(now.Unix()%3600) / 3600
	last := float64(cur) + float64(rc.hours[hour-1])*(1-frac)

	// Conversion over [now - window, now - delay], by send slot.
	from, to := sl-int64(cfg.ConversionWindow.D()/slot), sl-int64(cfg.ConversionDelay.D()/slot)
	rs, rv := rc.slots(from, to)
	ts, tv := tc.slots(from, to)
	vol := int64(cfg.MinVolume)
	floor := cfg.ConversionFloor
	// Proof that a range converts needs fewer sends than suspicion: pumped codes are never used.
	convertsWell := rs >= max(5, vol/4) && float64(rv) >= floor*float64(rs)
	warm := time.Duration(hour-tc.first)*time.Hour >= cfg.Warmup.D()
	if warm && last >= float64(vol) && last > cfg.Factor*avg && !convertsWell {
		return fmt.Sprintf("rate: %.0f sends in the last hour, over %.0f x the baseline of %.2f an hour", last, cfg.Factor, avg)
	}
	os, ov := ts-rs, tv-rv
	if rs >= vol && float64(rv) < floor*float64(rs) && os >= vol && float64(ov) >= floor*float64(os) {
		return fmt.Sprintf("conversion: %d of %d codes used (%.2f), while the tenant's other ranges used %d of %d", rv, rs, float64(rv)/float64(rs), ov, os)
	}
	return ""
}

// Verified counts a code reported used for message id, which a tenant sent to rng at sentAt, in
// the slot of the send, once however often and from however many replicas at once it is
// reported: the first report claims the message in the state for the conversion window, and the
// others find it claimed. Messages older than the conversion window no longer count.
func (p *Pumping) Verified(ctx context.Context, cfg config.Pumping, tenant, id, rng string, sentAt time.Time) error {
	window := cfg.ConversionWindow.D()
	if rng == "" || p.now().Sub(sentAt) > window {
		return nil
	}
	claimed, err := p.State.PumpPut(ctx, usedKey(tenant, id), "1", window, true)
	if err != nil || !claimed {
		return err
	}
	f := "v:" + strconv.FormatInt(sentAt.Unix()/int64(slot.Seconds()), 10)
	if _, err := p.State.PumpAdd(ctx, [][2]string{{rangeKey(tenant, rng), f}, {tenantKey(tenant), f}}, cfg.Baseline.D()+2*time.Hour); err != nil {
		// Not counted: the claim goes, so that a report repeated later counts it.
		_, _ = p.State.PumpDel(context.WithoutCancel(ctx), usedKey(tenant, id))
		return err
	}
	return nil
}

// List returns the quarantines in force, oldest first.
func (p *Pumping) List(ctx context.Context) ([]Quarantine, error) {
	members, err := p.State.PumpMembers(ctx, quarantineIndex)
	if err != nil {
		return nil, err
	}
	out := []Quarantine{}
	for _, m := range members {
		tenant, rng, _ := strings.Cut(m, "|")
		q, err := p.Check(ctx, tenant, rng)
		if err != nil {
			return nil, err
		}
		if q == nil { // expired
			if err := p.State.PumpUnindex(ctx, quarantineIndex, m); err != nil {
				return nil, err
			}
			continue
		}
		out = append(out, *q)
	}
	slices.SortFunc(out, func(x, y Quarantine) int { return x.Since.Compare(y.Since) })
	return out, nil
}

// Release ends a quarantine; the range is not quarantined again for cooldown. It reports whether
// there was one.
func (p *Pumping) Release(ctx context.Context, cfg config.Pumping, tenant, rng string) (bool, error) {
	found, err := p.State.PumpDel(ctx, quarantineKey(tenant, rng))
	if err != nil || !found {
		return false, err
	}
	if err := p.State.PumpUnindex(ctx, quarantineIndex, tenant+"|"+rng); err != nil {
		return true, err
	}
	_, err = p.State.PumpPut(ctx, "pump|r|"+tenant+"|"+rng, "1", cfg.Cooldown.D(), false)
	return true, err
}
