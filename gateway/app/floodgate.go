package app

import (
	"context"

	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/policy"
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

// gated takes a token of tenant's flood gate in front of its limit l named name (per_tenant for
// sends, api for other calls): the limit's refusal when the requests beyond twice l are refused
// here, nil when they pass or there is no gate (no shared state store, or no limit).
func (a *App) gated(name, tenant string, l *config.Limit) *policy.Rejection {
	if a.flights == nil || !l.Active() {
		return nil
	}
	gate := config.Limit{N: 2 * l.N, Per: l.Per}
	ok, wait, _ := a.gate.Allow(context.Background(), policy.LimitKey(name, *l, tenant, ""), gate) // in memory: never fails
	if ok {
		return nil
	}
	return policy.LimitRefused(name, l, wait)
}
