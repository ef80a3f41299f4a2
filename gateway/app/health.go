package app

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/dispatch"
	"github.com/smsgate/smsgate/gateway/httpapi"
	"github.com/smsgate/smsgate/gateway/store"
)

// Delivery-rate-aware routing. A provider's API can answer 200 while nothing reaches phones in one
// country; breakers cannot see that. Every replica recomputes, from the shared message log, each
// (provider, country, channel)'s delivery rate over a sliding window, and chains for that country
// and channel put a provider that fell below min_rate behind the healthy ones. A probe share
// still tries it first so that its recovery shows; it is restored at min_rate + margin.

// healthKey is a provider, a destination country and a channel: SMS and voice are measured apart
// (see aggregateHealth).
type healthKey struct {
	provider, country string
	voice             bool
}

// channel is k's channel as the metrics and logs name it.
func (k healthKey) channel() string {
	if k.voice {
		return string(gateway.Voice)
	}
	return string(gateway.SMS)
}

type healthState struct {
	// rate is every tenant's messages together; tenantRate is what decides (see healthEvidence).
	rate, tenantRate float64
	samples          int
	demoted          bool
	// probes counts messages of the country while demoted, to send every n-th one to it first.
	probes atomic.Uint64
}

// healthTable is the current picture, replaced whole by each refresh.
type healthTable struct {
	mu sync.RWMutex
	m  map[healthKey]*healthState
}

// healthView is a copy of one healthState, read under the lock (the refresh rewrites states).
type healthView struct {
	rate, tenantRate float64
	samples          int
	demoted          bool
	probes           *atomic.Uint64
}

// view returns a copy of k's state; ok is false when there is none.
func (h *healthTable) view(k healthKey) (v healthView, ok bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	st := h.m[k]
	if st == nil {
		return v, false
	}
	return healthView{rate: st.rate, tenantRate: st.tenantRate, samples: st.samples, demoted: st.demoted, probes: &st.probes}, true
}

// reports reports whether provider mi asks for delivery reports (asksReports): only then does a
// message without a final report count against it.
func reports(mi *memberInfo) bool {
	return asksReports(mi.member.Provider(), mi.callback)
}

// healthEvidence is one (provider, country)'s messages over the window, all tenants together.
type healthEvidence struct {
	delivered, samples int
	// tenantRate is the rate that demotes and restores: the weighted median of the tenants' own
	// rates, each tenant weighing its messages but never more than min_samples of them. No tenant
	// can move it past the others: not down, by sending to numbers that never receive (a bad
	// list, or SMS pumping), and not up, by a large volume to numbers that do or by reporting its
	// own codes used, which would keep a provider that stopped delivering for the other tenants
	// in their chains. It moves when tenants holding more than half the weight see it move.
	tenantRate float64
}

func (e healthEvidence) rate() float64 {
	if e.samples == 0 {
		return 0
	}
	return float64(e.delivered) / float64(e.samples)
}

// demote reports whether the evidence demotes the provider for the country.
func (e healthEvidence) demote(minSamples int, minRate float64) bool {
	return e.samples >= minSamples && e.tenantRate < minRate
}

// tenantVote is one tenant's rate and the weight it carries in tenantRate.
type tenantVote struct {
	rate   float64
	weight int
}

// weightedMedian is the smallest rate at which the votes at or below it carry more than half
// the weight: it is below a threshold exactly when the votes below the threshold carry more
// than half. A tie (two tenants of equal weight) resolves to the higher rate, so a provider is
// not demoted on one tenant's word against another's. votes is sorted in place.
func weightedMedian(votes []tenantVote) float64 {
	_, hi := weightedMiddle(votes)
	return hi
}

// weightedMiddle returns the smallest rate at which the votes at or below it carry half the
// weight or more (lo), and the smallest at which they carry more than half (hi): the same rate
// but where the votes split into two halves of equal weight, as two tenants do. votes is sorted
// in place.
func weightedMiddle(votes []tenantVote) (lo, hi float64) {
	slices.SortFunc(votes, func(x, y tenantVote) int { return cmp.Compare(x.rate, y.rate) })
	total := 0
	for _, v := range votes {
		total += v.weight
	}
	cum, half := 0, false
	for _, v := range votes {
		cum += v.weight
		if !half && 2*cum >= total {
			lo, half = v.rate, true
		}
		if 2*cum > total {
			return lo, v.rate
		}
	}
	return 0, 0
}

// aggregateHealth sums the per-tenant rows of the message log per (provider, country, channel)
// and weighs the tenants' rates (see healthEvidence). Messages still without a final report after
// report_timeout count only for providers for which countPending is true (those that send
// reports). A voice call reported undelivered (busy, not answered) does not count at all: that is
// the callee's doing, and would demote a provider for its users' habits. A call's rate is its
// delivered share of the calls that were answered, failed, or got no report.
func aggregateHealth(rows []store.HealthRow, minSamples int, countPending func(provider string) bool) map[healthKey]healthEvidence {
	type counts struct{ delivered, samples int }
	type tally struct {
		counts
		tenants map[string]*counts
	}
	t := map[healthKey]*tally{}
	for _, r := range rows {
		k := healthKey{r.Provider, r.Country, r.Voice}
		x := t[k]
		if x == nil {
			x = &tally{tenants: map[string]*counts{}}
			t[k] = x
		}
		bad := r.Failed
		if !r.Voice {
			bad += r.Undelivered
		}
		if countPending(r.Provider) {
			bad += r.Pending
		}
		if r.Delivered+bad == 0 {
			continue
		}
		c := x.tenants[r.Tenant]
		if c == nil {
			c = &counts{}
			x.tenants[r.Tenant] = c
		}
		c.delivered += r.Delivered
		c.samples += r.Delivered + bad
		x.delivered += r.Delivered
		x.samples += r.Delivered + bad
	}
	out := make(map[healthKey]healthEvidence, len(t))
	for k, x := range t {
		if x.samples == 0 {
			continue
		}
		votes := make([]tenantVote, 0, len(x.tenants))
		for _, c := range x.tenants {
			votes = append(votes, tenantVote{rate: float64(c.delivered) / float64(c.samples), weight: min(c.samples, max(1, minSamples))})
		}
		out[k] = healthEvidence{delivered: x.delivered, samples: x.samples, tenantRate: weightedMedian(votes)}
	}
	return out
}

// refreshHealth recomputes every (provider, country) rate from the message log (or from
// another replica's read of it, healthRows) and applies the demotion rules (with hysteresis),
// its read bounded by the least budget.
func (a *App) refreshHealth(ctx context.Context) error {
	_, err := a.refreshHealthWithin(ctx, a.leastHealthBudget())
	return err
}

// refreshHealthWithin is refreshHealth with the read bounded by budget (a read it ended is a
// *cutError); read reports whether this replica read the message log.
func (a *App) refreshHealthWithin(ctx context.Context, budget time.Duration) (read bool, err error) {
	rt := a.rt.Load()
	dh := rt.cfg.Routing.DeliveryHealth
	now := a.now()
	rows, read, err := a.healthRows(ctx, now.Add(-dh.Window.D()), now.Add(-dh.ReportTimeout.D()), budget, dh.Refresh.D())
	if err != nil {
		return read, err
	}
	counted := aggregateHealth(rows, dh.MinSamples, func(provider string) bool {
		mi := rt.members[provider]
		return mi != nil && reports(mi)
	})
	seen := map[healthKey]bool{}
	a.health.mu.Lock()
	defer a.health.mu.Unlock()
	if a.health.m == nil {
		a.health.m = map[healthKey]*healthState{}
	}
	restoreSamples := max(1, dh.MinSamples/4)
	for k, ev := range counted {
		seen[k] = true
		st := a.health.m[k]
		if st == nil {
			st = &healthState{}
			a.health.m[k] = st
		}
		st.samples, st.rate, st.tenantRate = ev.samples, ev.rate(), ev.tenantRate
		switch {
		case !st.demoted && ev.demote(dh.MinSamples, dh.MinRate):
			st.demoted = true
			a.metrics.Demotions.WithLabelValues(k.provider, k.country, k.channel()).Inc()
			a.log.Warn("provider demoted for a country: delivery rate below min_rate", "provider", k.provider, "country", k.country, "channel", k.channel(),
				"tenant_rate", math.Round(st.tenantRate*1000)/1000, "rate", math.Round(st.rate*1000)/1000, "samples", st.samples)
		case st.demoted && st.samples >= restoreSamples && st.tenantRate >= dh.MinRate+dh.Margin:
			st.demoted = false
			a.log.Info("provider restored for a country: delivery rate recovered", "provider", k.provider, "country", k.country, "channel", k.channel(),
				"tenant_rate", math.Round(st.tenantRate*1000)/1000, "rate", math.Round(st.rate*1000)/1000, "samples", st.samples)
		}
		if st.samples >= dh.MinSamples {
			a.metrics.DeliveryRate.WithLabelValues(k.provider, k.country, k.channel()).Set(st.rate)
		} else {
			a.metrics.DeliveryRate.DeleteLabelValues(k.provider, k.country, k.channel())
		}
	}
	// No message in the window: no evidence either way, so nothing stays demoted.
	for k, st := range a.health.m {
		if !seen[k] {
			if st.demoted {
				a.log.Info("provider restored for a country: no messages left in the window", "provider", k.provider, "country", k.country, "channel", k.channel())
			}
			delete(a.health.m, k)
			a.metrics.DeliveryRate.DeleteLabelValues(k.provider, k.country, k.channel())
		}
	}
	return read, nil
}

// healthPace: a refresh waits at least this many times the last one's read before it reads
// again. The read is every message of the window, so it grows with traffic (about 1.5 µs a message
// on SQLite: 2.7 s at 1,000 sends a second, more CPU than the sends themselves at the default
// 10 s); paced, it never takes more than about a tenth of a core, and demotions come at most that
// much later (report_timeout, 10 minutes, dominates them anyway).
const healthPace = 10

// healthWait is how long the loop waits before the next refresh, the last read having taken took.
func healthWait(refresh, took time.Duration) time.Duration {
	return max(refresh, healthPace*took)
}

// healthBudget bounds a read of the window while reads take less than a third of it. A read cut
// by its bound doubles the next one's (up to healthBudgetMax), and one that ends makes the next
// one's three times what it took: a window that outgrew 10 s (about 7 million messages on
// SQLite, 4,000 sends a second) is still read, paced by healthWait, instead of being cut at the
// same bound at every refresh, which would have left routing on rates that never change again.
const (
	healthBudget    = 10 * time.Second
	healthBudgetMax = 10 * time.Minute
)

// nextHealthBudget is the bound of the read after one bounded by budget that took took; cut says
// whether the bound ended it; least is the least bound (healthBudget).
func nextHealthBudget(least, budget, took time.Duration, cut bool) time.Duration {
	if cut {
		return min(2*budget, healthBudgetMax)
	}
	return min(max(least, 3*took), healthBudgetMax)
}

// healthLoop refreshes the table every routing.delivery_health.refresh (paced by healthWait)
// until stop closes.
func (a *App) healthLoop(stop <-chan struct{}) {
	var took time.Duration
	least := a.leastHealthBudget()
	budget := least
	for {
		rt := a.rt.Load()
		t := time.NewTimer(healthWait(rt.cfg.Routing.DeliveryHealth.Refresh.D(), took))
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		if *rt.cfg.Routing.DeliveryHealth.Enabled {
			start := time.Now()
			read, err := a.refreshHealthWithin(a.background(), budget)
			took = time.Since(start)
			if err != nil && err != errReadElsewhere && !a.quietRead(err) {
				a.log.Warn("delivery health could not be refreshed from the message log", "err", err.Error(), "budget", budget.String())
			}
			if !read {
				// Another replica read the window (and paces the next read): refresh again
				// after refresh.
				took = 0
			}
			budget = nextHealthBudget(least, budget, took, wasCut(err))
		}
	}
}

// healthOn reports whether delivery-rate-aware routing applies to route r.
func healthOn(cfg *config.Config, r *config.Route) bool {
	if r != nil && r.DeliveryHealth != nil {
		return *r.DeliveryHealth
	}
	return *cfg.Routing.DeliveryHealth.Enabled
}

// reorder orders a route's members for a message to country. With strategy ordered, the members
// demoted for country go behind the healthy ones, in their order, except for the probe share,
// which keeps the configured order. With least_cost, see cheapest. notes says why, per provider,
// for the attempts and the message log.
func (a *App) reorder(rt *runtime, route string, country string, typ gateway.MessageType, members []*dispatch.Member) ([]*dispatch.Member, map[string]string) {
	var rc *config.Route
	for i := range rt.cfg.Routes {
		if rt.cfg.Routes[i].Name == route {
			rc = &rt.cfg.Routes[i]
		}
	}
	// Each channel has its own delivery health (see aggregateHealth).
	on, voice := healthOn(rt.cfg, rc), typ == gateway.Voice
	if rc != nil && rc.Strategy == "least_cost" {
		return a.cheapest(rt, country, typ, members, on)
	}
	if !on {
		return members, nil
	}
	// The common case, nothing demoted for this country, allocates nothing.
	if !slices.ContainsFunc(members, func(m *dispatch.Member) bool {
		st, ok := a.health.view(healthKey{m.Name(), country, voice})
		return ok && st.demoted
	}) {
		return members, nil
	}
	dh := rt.cfg.Routing.DeliveryHealth
	var healthy, demoted []*dispatch.Member
	var probes *atomic.Uint64
	notes := map[string]string{}
	for _, m := range members {
		st, ok := a.health.view(healthKey{m.Name(), country, voice})
		if !ok || !st.demoted {
			healthy = append(healthy, m)
			continue
		}
		if probes == nil {
			probes = st.probes
		}
		demoted = append(demoted, m)
		notes[m.Name()] = demotedNote(country, st, dh.MinRate)
	}
	if len(demoted) == 0 || len(healthy) == 0 {
		return members, notes
	}
	if probe(dh, probes) {
		for name := range notes {
			notes[name] = "probe: " + notes[name] + "; tried in its place to see recovery"
		}
		return members, notes
	}
	return append(healthy, demoted...), notes
}

func demotedNote(country string, st healthView, minRate float64) string {
	return fmt.Sprintf("demoted for %s: delivery rate %.2f (the tenants' median) below %.2f over %d messages", country, st.tenantRate, minRate, st.samples)
}

// probe reports whether this message is one of the probe share that still tries a demoted
// provider first (every 1/probe_share-th message of the country).
func probe(dh config.DeliveryHealth, probes *atomic.Uint64) bool {
	share := *dh.ProbeShare
	if share <= 0 || probes == nil {
		return false
	}
	return probes.Add(1)%uint64(math.Round(1/share)) == 0
}

// countryHealth is what GET /v1/providers shows of a provider's delivery health on a channel.
func (a *App) countryHealth(provider string, voice bool) []httpapi.CountryHealth {
	a.health.mu.RLock()
	defer a.health.mu.RUnlock()
	var out []httpapi.CountryHealth
	for k, st := range a.health.m {
		if k.provider == provider && k.voice == voice {
			out = append(out, httpapi.CountryHealth{Country: k.country, Rate: math.Round(st.rate*1000) / 1000, TenantRate: math.Round(st.tenantRate*1000) / 1000,
				Samples: st.samples, Demoted: st.demoted})
		}
	}
	slices.SortFunc(out, func(x, y httpapi.CountryHealth) int { return strings.Compare(x.Country, y.Country) })
	return out
}

// Demotion is a provider that delivery health would move behind the others for a country.
type Demotion struct {
	Provider string `json:"provider"`
	// Rate is the tenants' rate (see healthEvidence), the one that demotes.
	Rate    float64 `json:"rate"`
	Samples int     `json:"samples"`
}

// RoutePlan is the order a message to a country would try a route's providers in now, and why
// (for `smsgate route`).
type RoutePlan struct {
	Strategy  string   `json:"strategy"`
	Providers []string `json:"providers"`
	// Demoted are the route's providers whose delivery rate to the country (the tenants' rate) is
	// below min_rate.
	Demoted []Demotion `json:"demoted,omitempty"`
	// Costs are each provider's price and least-cost rank (strategy least_cost only).
	Costs map[string]*httpapi.Cost `json:"costs,omitempty"`
}

// openLogAsIs opens the message log of cfg as it is, without migrating it (a tool that reads must
// not change the schema under running replicas of another build), when it exists (a SQLite file
// that is there, or the PostgreSQL of storage.dsn); nil when there is none.
func openLogAsIs(ctx context.Context, cfg *config.Config) (store.Backend, error) {
	switch cfg.Storage.Driver {
	case "sqlite":
		if _, err := os.Stat(cfg.Storage.Path); err != nil {
			return nil, nil
		}
		s, err := store.OpenSQLiteAsIs(ctx, cfg.Storage.Path, sqliteOptions(cfg.Storage))
		if err != nil {
			return nil, err
		}
		return s, nil
	case "postgres":
		p, err := store.OpenPostgresAsIs(ctx, cfg.Storage.DSN.Reveal())
		if err != nil {
			return nil, err
		}
		return p, nil
	}
	return nil, nil
}

// Migrate applies the message log's migrations of cfg, as serve does at start, and returns the
// schema version it is at and, when that is newer than this build knows (a rollback), the
// version this build knows (else 0). log gets the progress of long migrations. With
// storage.driver memory there is nothing to migrate: 0, 0.
func Migrate(ctx context.Context, cfg *config.Config, log *slog.Logger) (version, known int, err error) {
	b, err := openMigrated(ctx, cfg.Storage, log)
	if b == nil || err != nil {
		return 0, 0, err
	}
	defer b.Close()
	_, known = b.Ahead()
	version, err = b.SchemaVersion(ctx)
	return version, known, err
}

// migrated is a database message log opened with its migrations applied.
type migrated interface {
	store.Backend
	SchemaVersion(context.Context) (int, error)
	Ahead() (int, int)
}

// openMigrated opens the message log cfg names and applies its migrations, as serve does at
// start but at once: an error when it cannot be reached. With driver memory: nil, nil.
func openMigrated(ctx context.Context, cfg config.Storage, log *slog.Logger) (migrated, error) {
	var (
		b   migrated
		err error
	)
	switch cfg.Driver {
	case "sqlite":
		b, err = store.OpenSQLiteWith(ctx, cfg.Path, sqliteOptions(cfg), log)
	case "postgres":
		b, err = store.OpenPostgres(ctx, cfg.DSN.Reveal(), log)
	default:
		return nil, nil
	}
	if err != nil { // not b: a nil pointer in an interface is not nil
		return nil, err
	}
	return b, nil
}

// plannedReports is, for Plan, whether a provider of cfg asks for delivery reports, as serve
// decides it (reports): each provider is built as serve builds it, once, the first time a row of
// its messages is read; a provider the config no longer has asks for none.
func plannedReports(cfg *config.Config) func(provider string) bool {
	asks := map[string]bool{}
	return func(provider string) bool {
		v, ok := asks[provider]
		if !ok {
			if i := providerIndex(cfg, provider); i >= 0 {
				callback := callbackURL(cfg, &cfg.Providers[i])
				v = asksReports(buildDriver(cfg, i, gateway.Deps{Name: provider, CallbackURL: callback}), callback)
			}
			asks[provider] = v
		}
		return v
	}
}

// Plan reads the message log of cfg (when there is one) for delivery health and reported prices,
// and orders route's providers for a message to country as a running gateway would now (without
// the probe share, and without hysteresis: the rates alone decide).
func Plan(ctx context.Context, cfg *config.Config, route, country string, typ gateway.MessageType, now time.Time) (*RoutePlan, error) {
	var rc *config.Route
	for i := range cfg.Routes {
		if cfg.Routes[i].Name == route {
			rc = &cfg.Routes[i]
		}
	}
	if rc == nil {
		return nil, fmt.Errorf("no route %q", route)
	}
	plan := &RoutePlan{Strategy: rc.Strategy, Providers: rc.Providers}
	on, cheap, voice := healthOn(cfg, rc), rc.Strategy == "least_cost", typ == gateway.Voice
	b, err := openLogAsIs(ctx, cfg)
	if err != nil {
		return plan, err
	}
	var healthRows []store.HealthRow
	var priceRows []store.PriceRow
	if b != nil {
		defer b.Close()
		dh := cfg.Routing.DeliveryHealth
		if on {
			if healthRows, err = b.Health(ctx, now.Add(-dh.Window.D()), now.Add(-dh.ReportTimeout.D())); err != nil {
				return plan, err
			}
		}
		if cheap {
			if priceRows, err = b.Prices(ctx, now.Add(-cfg.Routing.LeastCost.Window.D()), time.Time{}); err != nil {
				return plan, err
			}
		}
	}
	dh := cfg.Routing.DeliveryHealth
	views := map[healthKey]healthView{}
	for k, ev := range aggregateHealth(healthRows, dh.MinSamples, plannedReports(cfg)) {
		if k.country != country || k.voice != voice {
			continue
		}
		v := healthView{rate: ev.rate(), tenantRate: ev.tenantRate, samples: ev.samples, demoted: ev.demote(dh.MinSamples, dh.MinRate)}
		views[k] = v
		if v.demoted && slices.Contains(rc.Providers, k.provider) {
			plan.Demoted = append(plan.Demoted, Demotion{Provider: k.provider, Rate: math.Round(v.tenantRate*1000) / 1000, Samples: v.samples})
		}
	}
	slices.SortFunc(plan.Demoted, func(x, y Demotion) int { return strings.Compare(x.Provider, y.Provider) })
	lookup := func(k healthKey) (healthView, bool) { v, ok := views[k]; return v, ok }
	if cheap {
		pt, _ := buildPrices(cfg, priceRows)
		o := orderByCost(cfg, pt, lookup, country, typ, rc.Providers, on)
		plan.Providers = o.order(false)
		plan.Costs = costs(cfg, pt, lookup, country, typ, rc.Providers, on)
		return plan, nil
	}
	var healthy, demoted []string
	for _, p := range rc.Providers {
		if v, ok := lookup(healthKey{p, country, voice}); ok && v.demoted {
			demoted = append(demoted, p)
		} else {
			healthy = append(healthy, p)
		}
	}
	plan.Providers = append(healthy, demoted...) // all or none demoted: the configured order
	return plan, nil
}
