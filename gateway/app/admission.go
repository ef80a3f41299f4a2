package app

import (
	"context"
	"math"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/smsgate/smsgate/gateway/httpapi"
	"github.com/smsgate/smsgate/gateway/policy"
)

// Admission: a replica runs at most server.max_in_flight sends at once before it sheds load, and
// then it sheds only the tenants holding more than their fair share of them (the cap divided by
// the tenants with sends in flight). A tenant flooding a replica, or stuck behind a provider that
// hangs, fills its own share and is answered 503 overloaded at once, cheaply; the other tenants'
// sends are still admitted. Below the cap nothing is refused, so the cap costs a quiet replica
// two atomic additions per send (counted with no cap too: GET /v1/admin/tenants shows them). A tenant under its share (at least one send) is admitted even
// above the cap, so the total stays under twice the cap plus the number of tenants.
type admission struct {
	total, busy atomic.Int64
}

// admit counts one send of tn in, or reports that it must be shed (limit 0: never). release must
// be called once the send has finished when admit returned true.
func (a *App) admit(limit int, tn *tenant) bool {
	n := tn.inflight.Add(1)
	if n == 1 {
		a.admission.busy.Add(1)
	}
	total := a.admission.total.Add(1)
	// A tenant's share is at least one send, so with more busy tenants than the cap each still
	// gets one through.
	if limit > 0 && total > int64(limit) && n > max(1, int64(limit)/max(1, a.admission.busy.Load())) {
		a.release(tn)
		return false
	}
	return true
}

// admitUpTo admits up to n sends of tn at once, each as admit does, and returns how many it
// admitted (0: the request is shed). A request of the Infobip-compatible API runs that many of its
// destinations at a time, so that its sends in flight count against its tenant's share as those of
// as many requests of one destination would. releaseN gives them back.
func (a *App) admitUpTo(limit int, tn *tenant, n int) int {
	for i := range n {
		if !a.admit(limit, tn) {
			return i
		}
	}
	return n
}

// releaseN counts n sends of tn out (admitUpTo admitted them).
func (a *App) releaseN(tn *tenant, n int) {
	for range n {
		a.release(tn)
	}
}

// release counts a send of tn out (admit admitted it).
func (a *App) release(tn *tenant) {
	if tn.inflight.Add(-1) == 0 {
		a.admission.busy.Add(-1)
	}
	a.admission.total.Add(-1)
}

// overloaded is the answer to a shed send.
func overloaded() flightResult {
	rep := errReply(http.StatusServiceUnavailable, "overloaded",
		"this replica is running server.max_in_flight sends and this tenant holds its fair share of them; retry shortly")
	rep.RetryAfter = time.Second
	return flightResult{reply: rep, outcome: "overloaded"}
}

// Tenants implements httpapi.Backend: every tenant, in config order, with its sends in flight on
// this replica and what it has used of its spend limit (all spend limits read at once).
func (a *App) Tenants(ctx context.Context) ([]httpapi.TenantStatus, error) {
	rt := a.rt.Load()
	out := make([]httpapi.TenantStatus, 0, len(rt.cfg.Tenants))
	var buckets []policy.SpendBucket
	var spent []int // indexes in out of the tenants in buckets
	for _, t := range rt.cfg.Tenants {
		tn := rt.byName[t.Name]
		ts := httpapi.TenantStatus{Name: tn.name, InFlight: tn.inflight.Load()}
		if s := tn.spend(); s != nil {
			buckets = append(buckets, policy.SpendBucket{Key: policy.SpendKey(tn.name, *s), Limit: *s})
			spent = append(spent, len(out))
			ts.Spend = &httpapi.SpendStatus{Limit: s.String(), Currency: rt.cfg.Routing.LeastCost.Currency}
		}
		out = append(out, ts)
	}
	used, err := a.checker.Spends.Used(ctx, buckets)
	if err != nil {
		return nil, err
	}
	for i, u := range used {
		out[spent[i]].Spend.Used = math.Round(u*1e6) / 1e6
	}
	return out, nil
}
