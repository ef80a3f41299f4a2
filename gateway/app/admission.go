package app

import (
	"net/http"
	"sync/atomic"
	"time"
)

// Admission: a replica runs at most server.max_in_flight sends at once before it sheds load, and
// then it sheds only the tenants holding more than their fair share of them (the cap divided by
// the tenants with sends in flight). A tenant flooding a replica, or stuck behind a provider that
// hangs, fills its own share and is answered 503 overloaded at once, cheaply; the other tenants'
// sends are still admitted. Below the cap nothing is refused, so the cap costs a quiet replica
// two atomic additions per send. A tenant under its share (at least one send) is admitted even
// above the cap, so the total stays under twice the cap plus the number of tenants.
type admission struct {
	total, busy atomic.Int64
}

// admit counts one send of tn in (counted), or reports that it must be shed (!ok). With no cap
// nothing is counted. release must be called once the send has finished when counted is true.
func (a *App) admit(limit int, tn *tenant) (ok, counted bool) {
	if limit <= 0 {
		return true, false
	}
	n := tn.inflight.Add(1)
	if n == 1 {
		a.admission.busy.Add(1)
	}
	total := a.admission.total.Add(1)
	// A tenant's share is at least one send, so with more busy tenants than the cap each still
	// gets one through.
	if total > int64(limit) && n > max(1, int64(limit)/max(1, a.admission.busy.Load())) {
		a.release(tn)
		return false, false
	}
	return true, true
}

// release counts a send of tn out (admit counted it).
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
