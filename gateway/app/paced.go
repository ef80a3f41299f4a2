package app

import (
	"context"
	"time"

	"github.com/smsgate/smsgate/gateway"
)

// pace builds dispatch.Chain.Pace for runtime rt (nil when no provider is paced), once per load: a
// provider's account has a throughput every tenant's sends share (providers[].throughput); without
// pacing, one tenant's burst used it up and the provider throttled whichever tenant's send came
// next. Each send takes a token of it from the policy state (so with Redis the replicas share
// them), beyond its tenant's share only from what lies above the others' part
// (policy.Checker.Pace); a send with none skips the provider for the next in its chain. A state
// store that fails lets the send through: throughput is the provider's to enforce, and it will.
func (a *App) pace(rt *runtime) func(ctx context.Context, provider, tenant string, typ gateway.MessageType) (bool, time.Duration) {
	if !rt.paced {
		return nil
	}
	return func(ctx context.Context, provider, tenant string, typ gateway.MessageType) (bool, time.Duration) {
		mi := rt.members[provider]
		if mi == nil {
			return true, 0
		}
		l, bucket := mi.throughput, provider
		if typ == gateway.Voice && mi.voiceThroughput != nil {
			l, bucket = mi.voiceThroughput, provider+"|voice" // calls paced on their own
		}
		if l == nil {
			return true, 0
		}
		ok, wait, err := a.checker.Pace(ctx, bucket, tenant, *l, mi.share)
		if err != nil {
			a.metrics.StateErrors.WithLabelValues("throughput").Inc()
			return true, 0
		}
		if !ok {
			a.metrics.Paced.WithLabelValues(provider, tenant).Inc()
		}
		return ok, wait
	}
}
