package app

import (
	"context"
	"maps"
	"time"

	"github.com/smsgate/smsgate/gateway/httpapi"
)

// An operator drains a provider with POST /v1/providers/{name}/disable. Behind a load balancer
// that call reaches one replica, and the drain is needed on all of them: a provider that flaps
// goes on costing a timeout on every replica that did not get the call. With state.driver redis
// the drains are kept in one Redis hash (one field per drained provider, no expiry: a drain lasts
// until an operator ends it, and its size is bounded by the config's providers). Every replica
// reads it at start and every drainPoll, so a drain sent to one replica reaches the others within
// a second, and a replica started later starts drained. With state.driver memory the drains are
// this replica's own.
//
// A provider is disabled when the config says disabled: true or an operator drained it; enabling
// ends the drain only, so a provider the config disables stays disabled (409 disabled_in_config).

// drainPoll is how often a replica reads the shared drains.
const drainPoll = time.Second

// drainKey is the Redis hash of the shared drains (its fields: provider names).
func (a *App) drainKey() string { return a.statePrefix + "drains" }

// setDrain records that an operator drained (true) or restored (false) provider: in Redis when
// the state is shared, then in this replica's set. drainMu is held throughout, so a poll that read
// Redis before the write cannot put the old set back after it.
func (a *App) setDrain(provider string, drained bool) error {
	a.drainMu.Lock()
	defer a.drainMu.Unlock()
	if a.stateClient != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		if drained {
			err = a.stateClient.HSet(ctx, a.drainKey(), provider, time.Now().UTC().Format(time.RFC3339)).Err()
		} else {
			err = a.stateClient.HDel(ctx, a.drainKey(), provider).Err()
		}
		if err != nil {
			a.stateError("drains", err)
			return httpapi.ErrStateUnavailable
		}
	}
	if drained {
		a.drained[provider] = true
	} else {
		delete(a.drained, provider)
	}
	a.applyDrains(a.rt.Load(), "operator")
	return nil
}

// readDrains replaces this replica's drains by the shared ones and applies any change. A state
// store that does not answer leaves them as they were (counted in smsgate_state_errors_total).
func (a *App) readDrains() {
	a.drainMu.Lock()
	defer a.drainMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	names, err := a.stateClient.HKeys(ctx, a.drainKey()).Result()
	if err != nil {
		a.stateError("drains", err)
		return
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	if maps.Equal(set, a.drained) {
		return
	}
	a.drained = set
	a.applyDrains(a.rt.Load(), "operator on another replica")
}

// applyDrains disables each of rt's providers that its config disables or an operator drained,
// and enables the others, logging each change with by (who changed it). Callers hold drainMu.
func (a *App) applyDrains(rt *runtime, by string) {
	for _, name := range rt.order {
		mi := rt.members[name]
		want := mi.cfgDisabled || a.drained[name]
		if mi.member.Disabled() != want {
			mi.member.SetDisabled(want)
			a.log.Warn("provider drain changed", "provider", name, "disabled", want, "by", by)
		}
		a.metrics.ProviderDisabled.WithLabelValues(name).Set(boolGauge(want))
		a.metrics.ProviderDrained.WithLabelValues(name).Set(boolGauge(a.drained[name]))
	}
}
