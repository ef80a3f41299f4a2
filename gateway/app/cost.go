package app

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/dispatch"
	"github.com/smsgate/smsgate/gateway/httpapi"
	"github.com/smsgate/smsgate/gateway/policy"
	"github.com/smsgate/smsgate/gateway/store"
)

// Least-cost routing. Each (provider, country) has a price in one reporting currency
// (routing.least_cost.currency): what the provider's delivery reports said SMS messages cost over
// routing.least_cost.window (a moving average read from the shared message log, so every replica
// ranks alike: each tenant's average, then their median, so that no tenant moves it: tenantsPrice)
// once there are min_reports of them, else the configured price for the country, else the
// provider's configured default. A voice call has a price of its own, configured only
// (voice_prices). A route with strategy least_cost tries its providers
// cheapest first among those at or above the delivery floor for the country; the others keep
// their configured order behind them. Failover, breakers and capabilities then work on that
// order exactly as on a configured one.

// Price sources, as /v1/providers and the attempt notes show them.
const (
	priceReported   = "reported"
	priceConfigured = "configured"
	priceDefault    = "default"
)

type priceInfo struct {
	// value is in the reporting currency.
	value   float64
	source  string
	reports int
}

// priceTable is the current picture, replaced whole on each refresh and reload: a sheet of
// prices per SMS part (configured, or reported) and one per minute of a voice call (configured:
// a reported call's price depends on its length, so it is no minute's price).
type priceTable struct {
	currency   string
	sms, voice priceSheet
}

// priceKey is a provider and a destination country.
type priceKey struct{ provider, country string }

// priceSheet is one kind of price, per provider and country, and per provider by default.
type priceSheet struct {
	m   map[priceKey]priceInfo
	def map[string]priceInfo
	// highest is the highest configured price of any provider and country.
	highest float64
}

func (t *priceTable) sheet(typ gateway.MessageType) *priceSheet {
	if typ == gateway.Voice {
		return &t.voice
	}
	return &t.sms
}

// estimate is what a message of type typ sent by provider to country as parts parts counts
// against a spend limit: its price, or when it has none the highest configured price (so a tenant
// cannot spend unseen by sending where no price is known), times the parts of an SMS (a price is
// per part, as providers bill) or the minutes of a call (messageParts); for a voice call without
// a price the highest of either kind, since a call costs more than a message.
func (t *priceTable) estimate(provider, country string, typ gateway.MessageType, parts int) float64 {
	n := float64(max(1, parts))
	if p, ok := t.lookup(provider, country, typ); ok {
		return p.value * n
	}
	if t == nil {
		return 0
	}
	if typ == gateway.Voice {
		return max(t.voice.highest, t.sms.highest) * n
	}
	return t.sms.highest * n
}

// spokenPerMinute is how many characters a call is counted to read aloud in a minute: about 150
// words a minute, text-to-speech's usual pace, rounded down (a slower count counts more minutes).
const spokenPerMinute = 800

// pauseChars is what a comma counts as, in characters read aloud: Infobip's calls pause half a
// second at each (its documented way to lengthen a call), about 7 characters at spokenPerMinute.
// Two commas with nothing spoken between them, and SSML markup, are refused in voice texts
// (intake.Check).
const pauseChars = 7

// messageParts is what msg counts as against prices: the parts an SMS is sent as
// (gateway.SMSParts), or the minutes of a call (voice prices are per minute): one for a call that
// speaks a code (twice, a few seconds), else the minutes its text takes read aloud, its commas'
// pauses included. Counted as one call, a text of 1,600 characters read aloud (two minutes)
// spent twice a spend limit.
func messageParts(msg *gateway.Message) int {
	if msg.Type != gateway.Voice {
		return gateway.SMSParts(msg.Text)
	}
	if gateway.ExtractCode(msg.Text, msg.Code) != "" {
		return 1
	}
	spoken := utf8.RuneCountInString(msg.Text) + pauseChars*strings.Count(msg.Text, ",")
	return max(1, (spoken+spokenPerMinute-1)/spokenPerMinute)
}

func (t *priceTable) lookup(provider, country string, typ gateway.MessageType) (priceInfo, bool) {
	if t == nil {
		return priceInfo{}, false
	}
	s := t.sheet(typ)
	if p, ok := s.m[priceKey{provider, country}]; ok {
		return p, true
	}
	p, ok := s.def[provider]
	return p, ok
}

// configure adds provider's configured prices p (nil: none) to the sheet.
func (s *priceSheet) configure(lc config.LeastCost, provider string, p *config.Prices) {
	if p == nil {
		return
	}
	if p.Default != nil {
		v, _ := convert(lc, *p.Default, p.Currency) // validated: convertible
		s.def[provider] = priceInfo{value: v, source: priceDefault}
		s.highest = max(s.highest, v)
	}
	for cc, pv := range p.Countries {
		v, _ := convert(lc, pv, p.Currency)
		s.m[priceKey{provider, cc}] = priceInfo{value: v, source: priceConfigured}
		s.highest = max(s.highest, v)
	}
}

// convert turns v in cur into the reporting currency; ok is false for a currency without a rate.
func convert(lc config.LeastCost, v float64, cur string) (float64, bool) {
	if cur == lc.Currency {
		return v, true
	}
	r, ok := lc.Rates[cur]
	return v * r, ok
}

// buildPrices merges the configured prices of cfg with the reported ones in rows. It returns the
// currencies of reported prices it could not convert (they are left out).
func buildPrices(cfg *config.Config, rows []store.PriceRow) (*priceTable, []string) {
	lc := cfg.Routing.LeastCost
	t := &priceTable{currency: lc.Currency}
	for _, s := range []*priceSheet{&t.sms, &t.voice} {
		s.m, s.def = map[priceKey]priceInfo{}, map[string]priceInfo{}
	}
	known := map[string]bool{}
	for _, p := range cfg.Providers {
		known[p.Name] = true
		t.sms.configure(lc, p.Name, p.Prices)
		t.voice.configure(lc, p.Name, p.VoicePrices)
	}
	type sum struct {
		total float64
		n     int
	}
	type tenantKey struct {
		priceKey
		tenant string
	}
	perTenant := map[tenantKey]*sum{}
	var skipped []string
	for _, r := range rows {
		if !known[r.Provider] {
			continue
		}
		v, ok := convert(lc, r.Sum, r.Currency)
		if !ok {
			if !slices.Contains(skipped, r.Currency) {
				skipped = append(skipped, r.Currency)
			}
			continue
		}
		k := tenantKey{priceKey{r.Provider, r.Country}, r.Tenant}
		if perTenant[k] == nil {
			perTenant[k] = &sum{}
		}
		perTenant[k].total += v
		perTenant[k].n += r.N
	}
	// The price is the median of the tenants' averages: one tenant sending to expensive ranges
	// (or pumped ones) cannot move the price, and so the order, of every tenant's traffic.
	votes, counts := map[priceKey][]tenantVote{}, map[priceKey]int{}
	for k, s := range perTenant {
		votes[k.priceKey] = append(votes[k.priceKey], tenantVote{rate: s.total / float64(s.n), weight: min(s.n, max(1, lc.MinReports))})
		counts[k.priceKey] += s.n
	}
	for k, vs := range votes {
		if counts[k] >= lc.MinReports {
			prior, hasPrior := t.lookup(k.provider, k.country, gateway.SMS)
			t.sms.m[k] = priceInfo{value: tenantsPrice(vs, prior.value, hasPrior), source: priceReported, reports: counts[k]}
		}
	}
	return t, skipped
}

// tenantsPrice is the weighted median of the tenants' average prices (tenantVote's rate), each
// tenant weighing its reports but never more than min_reports of them, as delivery health weighs
// rates: one tenant's volume outvotes nobody, and a tenant with one dear message abroad does not
// count as much as one that sends there every day. Where the votes split in two halves of equal
// weight (two tenants), it is one tenant's word against another's (a mean would let either move
// the price halfway to its own): the price is then the nearer of the two middle averages to the
// configured price (the operator's word), or without one the lower, since the dear one is what a
// tenant sending to pumped or premium ranges reports. votes is sorted in place.
func tenantsPrice(votes []tenantVote, configured float64, hasConfigured bool) float64 {
	lo, hi := weightedMiddle(votes)
	if hasConfigured && math.Abs(hi-configured) < math.Abs(lo-configured) {
		return hi
	}
	return lo
}

// charge adds a price a delivery report recorded to smsgate_spend_total. The currency comes from
// the provider's report: anything but an ISO 4217-shaped code is counted as XXX, so a bad report
// cannot mint label values.
func (a *App) charge(c store.Charge) {
	cur := c.Currency
	if len(cur) != 3 || strings.Trim(cur, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		cur = "XXX"
	}
	a.metrics.Spend.WithLabelValues(c.Provider, c.Country, cur).Add(c.Price)
	rt := a.rt.Load()
	if tn := rt.byName[c.Tenant]; tn != nil && tn.spend() != nil {
		// Off the message log's writer, which runs this: a state-store call must not hold up
		// every tenant's records.
		a.reconciling.Add(1)
		go func() {
			defer a.reconciling.Done()
			a.reconcileSpend(rt.cfg, tn, c)
		}()
	}
}

// reconcileSpend charges a spend-limited tenant what a delivery report says a message cost beyond
// what its send was charged (its provider's price for the country, as the price table has it
// now): pumping to a premium range costs more than the country's usual price, and the limit must
// count what was really spent.
func (a *App) reconcileSpend(cfg *config.Config, tn *tenant, c store.Charge) {
	v, ok := convert(cfg.Routing.LeastCost, c.Price, c.Currency)
	if !ok {
		return
	}
	if extra := v - a.prices.Load().estimate(c.Provider, c.Country, c.Type, c.Parts); extra > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.settleSpend(ctx, tn, 0, extra) // nothing was reserved for it
	}
}

// settleSpend settles a send's reservation (reserved, what Check took from tn's spend bucket) once
// what the send cost is known (0 when it was not sent): the bucket is charged the difference, or
// given it back, and smsgate_tenant_spend_estimated_total counts the cost (also when the bucket
// could not be charged: the message was sent all the same). A report's price beyond the estimate
// is settled the same way, with nothing reserved.
func (a *App) settleSpend(ctx context.Context, tn *tenant, reserved, cost float64) {
	s := tn.spend()
	if s == nil {
		return
	}
	if d := cost - reserved; d != 0 {
		if err := a.checker.Spends.Charge(ctx, policy.SpendKey(tn.name, *s), *s, d); err != nil {
			a.stateError("spend_charge", err)
		}
	}
	if cost > 0 {
		a.metrics.EstimatedSpend.WithLabelValues(tn.name).Add(cost)
	}
}

// usesPrices reports whether cfg reads reported prices: a route ranks by price, or a spend limit
// counts them.
func usesPrices(cfg *config.Config) bool {
	if slices.ContainsFunc(cfg.Routes, func(r config.Route) bool { return r.Strategy == "least_cost" }) {
		return true
	}
	for i := range cfg.Tenants {
		if cfg.EffectiveLimits(&cfg.Tenants[i]).Spend.Active() {
			return true
		}
	}
	return false
}

// refreshPrices reads the reported prices of the window from the message log (only when a route
// ranks by price or a spend limit counts them; through priceWindow, which reads again only the
// newest part) and rebuilds the table with the running config.
func (a *App) refreshPrices(ctx context.Context) error {
	rt := a.rt.Load()
	var rows []store.PriceRow
	if usesPrices(rt.cfg) {
		var err error
		start := time.Now()
		rows, err = a.priceWin.read(ctx, a.store, a.now(), rt.cfg.Routing.LeastCost.Window.D())
		a.metrics.WindowRead("prices", time.Since(start), err)
		if err != nil {
			return err
		}
	} else {
		a.priceWin.reset()
	}
	a.priceRows.Store(&rows)
	a.rebuildPrices()
	return nil
}

// priceBuckets is how many buckets of creation time the least-cost window is read in, and
// priceSettle how many of the newest are read again at every refresh: a price comes with the
// delivery report, usually within minutes of the send. Older buckets are read once and kept as
// read. With the default 24 h window a bucket is 10 minutes, so a price reported more than 20 to
// 30 minutes after its send is left out of the averages (spend limits count it all the same: they
// are charged from each report as it comes). The window is the buckets it overlaps: up to one
// bucket longer.
const (
	priceBuckets = 144
	priceSettle  = 2
)

// priceReader is the message log's Prices.
type priceReader interface {
	Prices(ctx context.Context, since, until time.Time) ([]store.PriceRow, error)
}

// priceWindow keeps the reported prices of the least-cost window's settled buckets, so that a
// refresh reads the message log's newest part and at most a bucket or two more, not every
// message of the window (at 100 sends a second, 8.6 million messages in 24 hours, each refresh).
type priceWindow struct {
	mu     sync.Mutex
	width  time.Duration
	sealed map[int64][]store.PriceRow // by bucket number: start = number × width
}

// read returns the rows of the window ending at now: the settled buckets, each read once, and
// one read of the newest priceSettle buckets and beyond. A failed read keeps the buckets read
// before it, so that a window too large for one refresh's budget is read over several.
func (w *priceWindow) read(ctx context.Context, r priceReader, now time.Time, window time.Duration) ([]store.PriceRow, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	width := max(window/priceBuckets, time.Millisecond)
	if width != w.width || w.sealed == nil {
		w.width, w.sealed = width, map[int64][]store.PriceRow{}
	}
	num := func(t time.Time) int64 { return t.UnixNano() / int64(width) }
	start := func(n int64) time.Time { return time.Unix(0, n*int64(width)) }
	lo, recent := num(now.Add(-window)), num(now)-priceSettle
	for n := range w.sealed {
		if n < lo {
			delete(w.sealed, n)
		}
	}
	var out []store.PriceRow
	for n := lo; n < recent; n++ {
		rows, ok := w.sealed[n]
		if !ok {
			var err error
			if rows, err = r.Prices(ctx, start(n), start(n+1)); err != nil {
				return nil, err
			}
			w.sealed[n] = rows
		}
		out = append(out, rows...)
	}
	rows, err := r.Prices(ctx, start(max(lo, recent)), time.Time{})
	if err != nil {
		return nil, err
	}
	return append(out, rows...), nil
}

// reset forgets what was read (no route ranks by price, no spend limit counts prices).
func (w *priceWindow) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sealed = nil
}

// rebuildPrices applies the running config's prices to the last reported ones (at start, reload
// and each refresh; serialised, so that a refresh never stores a table of the config before).
func (a *App) rebuildPrices() {
	a.priceMu.Lock()
	defer a.priceMu.Unlock()
	cfg := a.rt.Load().cfg
	var rows []store.PriceRow
	if p := a.priceRows.Load(); p != nil {
		rows = *p
	}
	t, skipped := buildPrices(cfg, rows)
	if len(skipped) > 0 {
		a.log.Warn("reported prices left out of least-cost routing: no rate for their currency in routing.least_cost.rates", "currencies", skipped)
	}
	a.prices.Store(t)
}

// priceLoop refreshes the prices every routing.least_cost.refresh until stop closes.
func (a *App) priceLoop(stop <-chan struct{}) {
	for {
		t := time.NewTimer(a.rt.Load().cfg.Routing.LeastCost.Refresh.D())
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(a.background(), 10*time.Second)
		a.logPricesError(a.refreshPrices(ctx))
		cancel()
	}
}

// logPricesError logs a failed read of reported prices, unless the log is not reached yet.
func (a *App) logPricesError(err error) {
	if err != nil && !a.quietRead(err) {
		a.log.Warn("reported prices could not be read from the message log", "err", err.Error())
	}
}

// healthLookup reads one (provider, country, channel)'s delivery health.
type healthLookup func(healthKey) (healthView, bool)

// floorNote says why provider is not ranked by price for country ("" when it is): demoted, or
// its delivery rate there (the tenants' rate, as for demotion) is below routing.least_cost.floor.
func floorNote(cfg *config.Config, health healthLookup, provider, country string, voice bool) (note string, demoted bool, probes *atomic.Uint64) {
	st, ok := health(healthKey{provider, country, voice})
	if !ok {
		return "", false, nil
	}
	dh, lc := cfg.Routing.DeliveryHealth, cfg.Routing.LeastCost
	switch {
	case st.demoted:
		return demotedNote(country, st, dh.MinRate), true, st.probes
	case st.samples >= dh.MinSamples && st.tenantRate < lc.Floor:
		return fmt.Sprintf("below the delivery floor for %s: rate %.2f (the tenants' median) under %.2f over %d messages; not ranked by price", country, st.tenantRate, lc.Floor, st.samples), false, nil
	}
	return "", false, nil
}

// costOrder is the least_cost order of providers for a country: ranked (at or above the floor,
// with a price; cheapest first, ties in configured order), then unpriced, then below the floor
// (both in configured order). notes holds a reason for every provider not ranked.
type costOrder struct {
	ranked   []string
	prices   []priceInfo
	unpriced []string
	below    []string
	demoted  []string
	probes   *atomic.Uint64
	notes    map[string]string
}

func orderByCost(cfg *config.Config, pt *priceTable, health healthLookup, country string, typ gateway.MessageType, names []string, healthOn bool) costOrder {
	var o costOrder
	note := func(name, s string) {
		if o.notes == nil {
			o.notes = map[string]string{}
		}
		o.notes[name] = s
	}
	for _, name := range names {
		if healthOn {
			if n, demoted, probes := floorNote(cfg, health, name, country, typ == gateway.Voice); n != "" {
				o.below = append(o.below, name)
				if demoted {
					o.demoted = append(o.demoted, name)
					if o.probes == nil {
						o.probes = probes
					}
				}
				note(name, n)
				continue
			}
		}
		p, ok := pt.lookup(name, country, typ)
		if !ok {
			o.unpriced = append(o.unpriced, name)
			note(name, "no "+priceWord(typ)+" for "+country+"; tried after the priced providers")
			continue
		}
		// Insertion keeps ties in the configured order (stable).
		i := len(o.ranked)
		for i > 0 && o.prices[i-1].value > p.value {
			i--
		}
		o.ranked = slices.Insert(o.ranked, i, name)
		o.prices = slices.Insert(o.prices, i, p)
	}
	return o
}

// order is the whole order: probed demoted providers first when probe, then ranked, unpriced
// and below the floor.
func (o *costOrder) order(probe bool) []string {
	out := make([]string, 0, len(o.ranked)+len(o.unpriced)+len(o.below))
	if probe {
		out = append(out, o.demoted...)
	}
	for _, group := range [][]string{o.ranked, o.unpriced, o.below} {
		for _, name := range group {
			if !probe || !slices.Contains(o.demoted, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

func (p priceInfo) String(currency string) string {
	s := fmt.Sprintf("%.4f %s, %s", p.value, currency, p.source)
	if p.source == priceReported {
		s += fmt.Sprintf(" (average of %d reports)", p.reports)
	}
	return s
}

// cheapest is reorder for strategy least_cost. A probe share of the country's messages still
// tries a demoted provider first, as with ordered routes, to see it recover.
func (a *App) cheapest(rt *runtime, country string, typ gateway.MessageType, members []*dispatch.Member, healthOn bool) ([]*dispatch.Member, map[string]string) {
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = m.Name()
	}
	pt := a.prices.Load()
	o := orderByCost(rt.cfg, pt, a.health.view, country, typ, names, healthOn)
	probing := len(o.demoted) > 0 && len(o.demoted) < len(members) && probe(rt.cfg.Routing.DeliveryHealth, o.probes)
	if probing {
		for _, name := range o.demoted {
			o.notes[name] = "probe: " + o.notes[name] + "; tried first to see recovery"
		}
	}
	order := o.order(probing)
	out := make([]*dispatch.Member, len(order))
	for i, name := range order {
		out[i] = members[slices.Index(names, name)]
	}
	if len(o.ranked) > 0 && o.ranked[0] != names[0] {
		// A ranked provider has no note yet: notes are for the unranked.
		if o.notes == nil {
			o.notes = map[string]string{}
		}
		o.notes[o.ranked[0]] = "least_cost: cheapest for " + country + " at " + o.prices[0].String(pt.currency) + priceUnit(typ)
	}
	return out, o.notes
}

// providerPrices is what GET /v1/providers shows of a provider's prices of typ: its default and
// every country with a configured or reported price, in the reporting currency.
func (a *App) providerPrices(provider string, typ gateway.MessageType) []httpapi.CountryPrice {
	pt := a.prices.Load()
	if pt == nil {
		return nil
	}
	s := pt.sheet(typ)
	var out []httpapi.CountryPrice
	if p, ok := s.def[provider]; ok {
		out = append(out, httpapi.CountryPrice{Country: "*", Price: round6(p.value), Currency: pt.currency, Source: p.source})
	}
	for k, p := range s.m {
		if k.provider == provider {
			out = append(out, httpapi.CountryPrice{Country: k.country, Price: round6(p.value), Currency: pt.currency, Source: p.source, Reports: p.reports})
		}
	}
	slices.SortFunc(out, func(x, y httpapi.CountryPrice) int { return strings.Compare(x.Country, y.Country) })
	return out
}

func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// priceWord and priceUnit name a price of typ in notes.
func priceWord(typ gateway.MessageType) string {
	if typ == gateway.Voice {
		return "voice price"
	}
	return "price"
}

func priceUnit(typ gateway.MessageType) string {
	if typ == gateway.Voice {
		return " per minute of a call"
	}
	return ""
}

// costFor is what GET /v1/providers?country=CC shows: each provider's price for the country and
// its rank in least_cost order among every configured provider, or why it has none.
func (a *App) costFor(rt *runtime, country string) map[string]*httpapi.Cost {
	return costs(rt.cfg, a.prices.Load(), a.health.view, country, gateway.SMS, rt.order, *rt.cfg.Routing.DeliveryHealth.Enabled)
}

// costs is each of names' price of typ for country and rank in least_cost order, or why it has none.
func costs(cfg *config.Config, pt *priceTable, health healthLookup, country string, typ gateway.MessageType, names []string, healthOn bool) map[string]*httpapi.Cost {
	o := orderByCost(cfg, pt, health, country, typ, names, healthOn)
	out := map[string]*httpapi.Cost{}
	for _, name := range names {
		c := &httpapi.Cost{Country: country, Currency: pt.currency}
		if p, ok := pt.lookup(name, country, typ); ok {
			v := round6(p.value)
			c.Price, c.Source = &v, p.source
		}
		if i := slices.Index(o.ranked, name); i >= 0 {
			c.Rank = i + 1
			c.Note = fmt.Sprintf("rank %d of %d priced providers at or above the delivery floor for %s", i+1, len(o.ranked), country)
		} else {
			c.Note = o.notes[name]
		}
		out[name] = c
	}
	return out
}
