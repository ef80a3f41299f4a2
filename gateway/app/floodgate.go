package app

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/smsgate/smsgate/gateway/config"
)

// The state store (Redis) is shared by every replica and every tenant, and every send costs it a
// few round trips, even one its rate limits then refuse: the claim against duplicates, the limit
// checks. A tenant flooding a replica would make Redis slow for everyone, and past
// state.redis.timeout its breaker opens and, with state.on_error open, the limits are off for
// every tenant: the flood would walk around the abuse rules it set off.
//
// So, with a shared state store, each replica keeps in front of it a flood gate per tenant: a
// bucket in this process of twice the tenant's per_tenant limit (twice the burst, twice the
// rate). A tenant within its limit never reaches it: its sends on this replica are a part of what
// its limit lets through, and the sends its limit does not count (replays of an idempotency key,
// coalesced duplicates) would have to add as many again. A flood beyond it is refused here, with
// the answer the shared limit gives (429 rate_limited, Retry-After), without a round trip to
// Redis. Without per_tenant there is no gate: set it (the deployment templates do).

// floodRefused is the gate's refusal of a send of tn, or nil when it passes (or there is none).
func (a *App) floodRefused(tn *tenant) *flightResult {
	l := tn.rules.Limits.PerTenant
	ok, wait := a.gated("t", tn.name, l)
	if ok {
		return nil
	}
	a.metrics.PolicyRejections.WithLabelValues(tn.name, "per_tenant").Inc()
	rep := errReply(http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("rate limit per_tenant (%s) exceeded", l))
	rep.RetryAfter = wait
	return &flightResult{reply: rep, outcome: "rate_limited"}
}

// gated takes a token of tenant's flood gate for limit l (kind names the limit): false, with how
// long to wait, when the calls beyond twice l are refused here; true when there is no gate (no
// shared state store, or no limit). The same gate stands in front of rate_limits.api.
func (a *App) gated(kind, tenant string, l *config.Limit) (bool, time.Duration) {
	if a.flights == nil || l == nil || l.N == 0 {
		return true, 0
	}
	gate := config.Limit{N: 2 * l.N, Per: l.Per}
	key := kind + "|" + strconv.Itoa(l.N) + "/" + strconv.FormatInt(int64(l.Per), 10) + "|" + tenant
	ok, wait, _ := a.gate.Allow(context.Background(), key, gate) // in memory: never fails
	return ok, wait
}
