package app

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/dispatch"
	"github.com/smsgate/smsgate/gateway/httpapi"
	"github.com/smsgate/smsgate/gateway/store"
)

// Admin implements httpapi.Backend: token must be server.admin_token or one of
// server.previous_admin_tokens. Every token is compared in constant time, so the answer's timing
// says nothing about which one came close. A call with a previous token is logged: once there are
// none for long enough, the old token can go.
func (a *App) Admin(token string) (enabled, ok bool) {
	srv := &a.rt.Load().cfg.Server
	if srv.AdminToken == "" {
		return false, false
	}
	current := subtle.ConstantTimeCompare([]byte(token), []byte(srv.AdminToken.Reveal()))
	previous := 0
	for _, p := range srv.PreviousAdminTokens {
		previous |= subtle.ConstantTimeCompare([]byte(token), []byte(p.Reveal()))
	}
	if previous == 1 { // never the current one too: validation refuses a previous token equal to it
		a.log.Warn("admin call with one of server.previous_admin_tokens; move the caller to server.admin_token")
	}
	return true, current|previous == 1
}

// PublicURL implements httpapi.Backend.
func (a *App) PublicURL() string { return a.rt.Load().cfg.Server.PublicURL }

// MaxBodyBytes implements httpapi.Backend.
func (a *App) MaxBodyBytes() int64 { return a.rt.Load().cfg.Server.MaxBodyBytes }

// callRefused takes one token of tenant's rate_limits.api bucket for a call other than a send;
// it is the refusal when there is none. A state store that fails lets the call through (counted).
func (a *App) callRefused(ctx context.Context, tenant string) error {
	tn := a.rt.Load().byName[tenant]
	if tn == nil {
		return nil
	}
	rej := a.gated("api", tn.name, tn.rules.Limits.API)
	if rej == nil {
		var err error
		if rej, err = a.checker.AllowCall(ctx, tn.name, tn.rules); err != nil {
			a.stateError("rate_limit", err)
			return nil
		}
	}
	if rej == nil {
		return nil
	}
	a.metrics.PolicyRejections.WithLabelValues(tn.name, rej.Reason).Inc()
	return &httpapi.RateLimited{Message: rej.Message, RetryAfter: rej.RetryAfter}
}

// readsPerTenant is how many calls reading the message log one tenant may have running on a
// replica. The pool those reads use is every tenant's (6 connections on PostgreSQL by default, 4
// on SQLite), and a slow read (a filter no index serves, over a large tenant's month of records)
// could otherwise hold all of it for its whole budget. The reads every tenant relies on
// (delivery reports' look-ups, delivery health, prices, pushes) have a pool of their own.
const readsPerTenant = 2

// beginRead admits a tenant's call that reads the message log: one token of its rate_limits.api,
// then a place in the read gate (at most readsPerTenant of the tenant's, at most the read pool's
// size of all tenants', the tenant holding the fewest served first), waited for (holding no
// connection) within server.request_timeout, the call's budget as it is a send's: a database
// that stopped answering costs the caller a 503 in seconds. A call that got no place within the
// budget is refused: 429 when its own tenant's reads held its places, the error of a log that
// could not be read (503) when other tenants' reads held the pool. end gives the place back.
func (a *App) beginRead(ctx context.Context, tenant string) (_ context.Context, end func(), err error) {
	if err := a.callRefused(ctx, tenant); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.rt.Load().cfg.Server.RequestTimeout.D())
	if err := a.reads.acquire(ctx, tenant); err != nil {
		cancel()
		if we := (*readWaitError)(nil); errors.As(err, &we) && we.own {
			a.metrics.PolicyRejections.WithLabelValues(tenant, "reads_in_flight").Inc()
			return nil, nil, &httpapi.RateLimited{Message: fmt.Sprintf("this tenant's %d reads of the message log running on this replica took the whole budget; retry when they have finished", readsPerTenant),
				RetryAfter: time.Second}
		}
		return nil, nil, err
	}
	return ctx, func() {
		a.reads.release(tenant)
		cancel()
	}, nil
}

// Message implements httpapi.Backend.
func (a *App) Message(ctx context.Context, tenant, id string) (*store.Record, error) {
	ctx, end, err := a.beginRead(ctx, tenant)
	if err != nil {
		return nil, err
	}
	defer end()
	return a.store.Get(ctx, tenant, id)
}

// Verified implements httpapi.Backend: the tenant reports that the message's code was used, the
// strongest sign of delivery there is; it counts as delivered for the provider that sent it. A
// message reported used before is not written again.
func (a *App) Verified(ctx context.Context, tenant, id string) error {
	return a.verified(ctx, tenant, id, false)
}

// verified is Verified; with byReference, id may also be the caller's own messageId of the
// Infobip-compatible API (the newest message sent with it).
func (a *App) verified(ctx context.Context, tenant, id string, byReference bool) error {
	ctx, end, err := a.beginRead(ctx, tenant)
	if err != nil {
		return err
	}
	defer end()
	var rec *store.Record
	if byReference {
		var recs []*store.Record
		if recs, err = a.store.List(ctx, store.Query{Tenant: tenant, ID: id, Limit: 1}); err == nil && len(recs) == 0 {
			err = store.ErrNotFound
		} else if err == nil {
			rec = recs[0]
		}
	} else {
		rec, err = a.store.Get(ctx, tenant, id)
	}
	if err != nil {
		return err
	}
	if rec.Provider == "" {
		return httpapi.ErrNotSent
	}
	if rec.ProviderStatus == verifiedStatus {
		return nil
	}
	if err := a.store.Report(context.WithoutCancel(ctx), &gateway.DeliveryReport{Provider: rec.Provider, MessageID: rec.ID,
		ProviderMessageID: rec.ProviderMessageID, Status: gateway.StatusDelivered, ProviderStatus: verifiedStatus}); err != nil {
		return err
	}
	a.metrics.CodesUsed.WithLabelValues(rec.Tenant).Inc()
	// The conversion signal of pumping detection, once per message (claimed in the shared state:
	// concurrent reports of the same code all reach this point).
	if err := a.pumping.Verified(context.WithoutCancel(ctx), a.rt.Load().cfg.Policy.Pumping, rec.Tenant, rec.ID, rec.Range, rec.CreatedAt); err != nil {
		a.stateError("pumping", err)
	}
	return nil
}

// verifiedStatus is the provider status a code reported used gives its record.
const verifiedStatus = "VERIFIED"

// Messages implements httpapi.Backend.
func (a *App) Messages(ctx context.Context, q store.Query) ([]*store.Record, error) {
	ctx, end, err := a.beginRead(ctx, q.Tenant)
	if err != nil {
		return nil, err
	}
	defer end()
	return a.store.List(ctx, q)
}

// Reports implements httpapi.Backend: it checks the request against the driver's declared
// webhook, authenticates and parses the reports, and hands them to the message log.
func (a *App) Reports(ctx context.Context, typ, name string, r *http.Request, body []byte, publicURL string) error {
	rt := a.rt.Load()
	mi, ok := rt.members[name]
	if !ok || mi.typ != typ {
		return httpapi.ErrNotFound
	}
	rr, ok := mi.member.Provider().(gateway.ReportReceiver)
	if !ok {
		return httpapi.ErrNotFound
	}
	wh := rr.Webhook()
	if !slices.Contains(wh.Methods, r.Method) {
		return httpapi.ErrMethodNotAllowed
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); len(wh.ContentTypes) > 0 && r.Method != http.MethodGet && !slices.Contains(wh.ContentTypes, mt) {
		a.metrics.DeliveryReports.WithLabelValues(name, "invalid").Inc()
		return httpapi.ErrMediaType
	}
	reps, err := rr.ParseReports(r, body, publicURL)
	if errors.Is(err, gateway.ErrChallenge) {
		// The provider's usual first post, before it sends its credentials: not logged.
		a.metrics.DeliveryReports.WithLabelValues(name, "challenged").Inc()
		return httpapi.ErrChallenge
	}
	if errors.Is(err, gateway.ErrUnauthenticated) {
		a.metrics.DeliveryReports.WithLabelValues(name, "unauthenticated").Inc()
		if ok, left := a.errorLine("report|" + name + "|unauthenticated"); ok {
			a.log.Warn("delivery report rejected", append([]any{"provider", name, "reason", "unauthenticated"}, leftOut(left)...)...)
		}
		return httpapi.ErrUnauthenticated
	}
	if ge := (*gateway.Error)(nil); errors.As(err, &ge) && ge.Class == gateway.ClassUnavailable {
		// Nothing wrong with the report: answered 503, which providers retry (most take a 4xx
		// as final and drop the report).
		a.metrics.DeliveryReports.WithLabelValues(name, "unavailable").Inc()
		if ok, left := a.errorLine("report|" + name + "|unavailable"); ok {
			a.log.Warn("delivery report not taken now; the provider is asked to retry", append([]any{"provider", name, "err", err.Error()}, leftOut(left)...)...)
		}
		return httpapi.ErrReportUnavailable
	}
	if err != nil {
		a.metrics.DeliveryReports.WithLabelValues(name, "invalid").Inc()
		if ok, left := a.errorLine("report|" + name + "|invalid"); ok {
			a.log.Warn("delivery report rejected", append([]any{"provider", name, "reason", "invalid", "err", err.Error()}, leftOut(left)...)...)
		}
		return httpapi.ErrBadRequest
	}
	for i := range reps {
		reps[i].Provider = name
		// A report's texts are the provider's, as its answers' are: one that quotes the number or
		// echoes a secret is cleaned as those are (gateway.SafeText) before the log keeps it.
		reps[i].Error = gateway.OneLine(rt.scrub(reps[i].Error))
		reps[i].ProviderStatus = gateway.OneLine(rt.scrub(reps[i].ProviderStatus))
		if err := a.store.Report(context.WithoutCancel(ctx), &reps[i]); errors.Is(err, store.ErrRefused) {
			// Sending it again would not help: answer the provider, keep the rest.
			a.log.Error("message log refused a delivery report; it is not kept", "provider", name, "err", err.Error())
			continue
		} else if err != nil {
			return err
		}
		a.metrics.DeliveryReports.WithLabelValues(name, reps[i].Status).Inc()
	}
	a.notifyReports(reps)
	return nil
}

// Providers implements httpapi.Backend.
func (a *App) Providers(country string) []httpapi.ProviderStatus {
	rt := a.rt.Load()
	var costs map[string]*httpapi.Cost
	if country != "" {
		costs = a.costFor(rt, country)
	}
	out := make([]httpapi.ProviderStatus, 0, len(rt.order))
	for _, name := range rt.order {
		mi := rt.members[name]
		st := mi.member.Stats()
		caps := mi.member.Provider().Capabilities()
		ps := httpapi.ProviderStatus{Name: name, Type: mi.typ, State: mi.member.State().String(), Disabled: mi.member.Disabled(),
			VoiceLanguages: caps.VoiceLanguages, Countries: caps.Countries,
			Attempts: st.Attempts, SuccessRatio: st.SuccessRatio, AvgLatencyMS: float64(st.AvgLatency.Microseconds()) / 1000, LastErrorClass: st.LastError}
		ps.Breakers = map[string]string{}
		for _, ch := range dispatch.Channels {
			ps.Breakers[string(ch)] = mi.member.ChannelState(ch).String()
		}
		for _, tb := range mi.member.TenantBreakers() {
			ps.TenantBreakers = append(ps.TenantBreakers, httpapi.TenantBreaker{Tenant: tb.Tenant, Channel: string(tb.Channel), State: tb.State.String()})
		}
		ps.Delivery, ps.VoiceDelivery = a.countryHealth(name, false), a.countryHealth(name, true)
		ps.Prices = a.providerPrices(name, gateway.SMS)
		ps.VoicePrices = a.providerPrices(name, gateway.Voice)
		ps.Cost = costs[name]
		if mi.throughput != nil {
			ps.Throughput = mi.throughput.String()
		}
		if mi.voiceThroughput != nil {
			ps.VoiceThroughput = mi.voiceThroughput.String()
		}
		if ps.Throughput != "" || ps.VoiceThroughput != "" {
			ps.TenantShare = mi.share
		}
		for _, t := range caps.Types {
			ps.Sends = append(ps.Sends, string(t))
		}
		if rr, ok := mi.member.Provider().(gateway.ReportReceiver); ok {
			wh := rr.Webhook()
			ps.Reports = &httpapi.ReportEndpoint{Path: "/v1/dlr/" + mi.typ + "/" + name, Methods: wh.Methods, Auth: wh.Auth}
		}
		if !st.LastErrorAt.IsZero() {
			ps.LastErrorAt = st.LastErrorAt.UTC().Format(time.RFC3339)
		}
		out = append(out, ps)
	}
	return out
}

// SetProviderDisabled implements httpapi.Backend: drain or restore a provider by hand.
func (a *App) SetProviderDisabled(name string, disabled bool) error {
	mi, ok := a.rt.Load().members[name]
	if !ok {
		return httpapi.ErrNotFound
	}
	if !disabled && mi.cfgDisabled {
		return httpapi.ErrDisabledInConfig
	}
	return a.setDrain(name, disabled) // drains.go
}

// Ready implements httpapi.Backend: the config is loaded and, unless every provider is disabled,
// one that is not can be tried. Open breakers are this replica's own (its path to the providers
// may be the broken one), so the load balancer may as well use another replica. Disabled providers
// are the same on every replica: when all are disabled, taking every replica out of the load
// balancer would change nothing for sends and would cut off the admin API, the one way to end a
// drain through it.
func (a *App) Ready() (bool, string) {
	rt := a.rt.Load()
	if rt == nil {
		return false, "no config loaded"
	}
	enabled := false
	for _, mi := range rt.members {
		if mi.member.Disabled() {
			continue
		}
		enabled = true
		if mi.member.Available() {
			return true, ""
		}
	}
	if !enabled {
		return true, ""
	}
	return false, "every provider that is not disabled has an open breaker"
}
