package app

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/httpapi"
	"github.com/smsgate/smsgate/gateway/policy"
)

// quarantined applies a quarantine in force for the message's range with the tenant's current
// action (a reload that changes it applies to quarantines already raised): block answers 403
// suspected_pumping, throttle holds the range to policy.pumping.throttle (429), alert lets it
// through. It returns the refusal, or nil when the send goes on.
func (a *App) quarantined(ctx context.Context, tn *tenant, rng string) *flightResult {
	if tn.pumping.Action == "alert" {
		return nil // nothing to refuse: no state read on the send path (the default action)
	}
	refuse := func(rep httpapi.Reply, code string) *flightResult { return &flightResult{reply: rep, outcome: code} }
	unavailable := func(err error) *flightResult {
		if !a.stateError("pumping", err) {
			return nil
		}
		return refuse(errReply(http.StatusServiceUnavailable, "policy_unavailable", "pumping quarantines could not be checked"), "policy_unavailable")
	}
	q, err := a.pumping.Check(ctx, tn.name, rng)
	if err != nil {
		return unavailable(err)
	}
	if q == nil {
		return nil
	}
	switch tn.pumping.Action {
	case "block":
		a.metrics.PolicyRejections.WithLabelValues(tn.name, "suspected_pumping").Inc()
		return refuse(errReply(http.StatusForbidden, "suspected_pumping", fmt.Sprintf("sends to this number range (%s) are suspended until %s: suspected SMS pumping (%s)",
			rng, q.Until.Format(time.RFC3339), q.Reason)), "suspected_pumping")
	case "throttle":
		ok, wait, err := a.checker.Limiter.Allow(ctx, policy.LimitKey("pump", *tn.pumping.Throttle, tn.name, rng), *tn.pumping.Throttle)
		if err != nil {
			return unavailable(err)
		}
		if !ok {
			a.metrics.PolicyRejections.WithLabelValues(tn.name, "pumping_throttle").Inc()
			rep := errReply(http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("sends to this number range (%s) are throttled to %s until %s: suspected SMS pumping",
				rng, tn.pumping.Throttle, q.Until.Format(time.RFC3339)))
			rep.RetryAfter = wait
			return refuse(rep, "rate_limited")
		}
	}
	return nil
}

// recordPumping counts a sent message for its range and raises a new quarantine: a metric, a
// warning and the admin API.
func (a *App) recordPumping(ctx context.Context, tn *tenant, msg *gateway.Message, rng string) {
	q, err := a.pumping.Record(context.WithoutCancel(ctx), tn.pumping, tn.name, msg.Country, rng)
	if err != nil {
		a.stateError("pumping", err)
		return
	}
	if q != nil {
		a.metrics.Quarantines.WithLabelValues(tn.name, q.Country, q.Action).Inc()
		a.log.Warn("number range quarantined: suspected SMS pumping", "tenant", tn.name, "country", q.Country, "range", q.Range,
			"action", q.Action, "until", q.Until, "reason", q.Reason)
	}
}

// Quarantines implements httpapi.Backend.
func (a *App) Quarantines(ctx context.Context) ([]policy.Quarantine, error) {
	return a.pumping.List(ctx)
}

// ReleaseQuarantine implements httpapi.Backend.
func (a *App) ReleaseQuarantine(ctx context.Context, tenantName, rng string) error {
	rt := a.rt.Load()
	for i := range rt.cfg.Tenants {
		t := &rt.cfg.Tenants[i]
		if t.Name != tenantName {
			continue
		}
		ok, err := a.pumping.Release(ctx, rt.cfg.EffectivePumping(t), tenantName, rng)
		if err != nil {
			return err
		}
		if !ok {
			return httpapi.ErrNotFound
		}
		a.log.Warn("pumping quarantine released by operator", "tenant", tenantName, "range", rng)
		return nil
	}
	return httpapi.ErrNotFound
}
