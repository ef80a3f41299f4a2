package app

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/store"
)

// refuser is a message log backend that refuses, for their data (store.ErrRefused), the records
// of client_id "refuse-me" and undeliverable reports.
type refuser struct{ store.Backend }

func (r refuser) Apply(ctx context.Context, ops []store.Op) ([]store.Charge, error) {
	for _, op := range ops {
		if op.Insert != nil && op.Insert.ClientID == "refuse-me" || op.Report != nil && op.Report.Status == gateway.StatusUndelivered {
			return nil, fmt.Errorf("value refused (simulated): %w", store.ErrRefused)
		}
	}
	return r.Backend.Apply(ctx, ops)
}

// TestRefusedRecordsAndReportsAreGivenUpAlone: when the database refuses one send's record, the
// send is still answered (the SMS went out), the record is counted as dropped (not as a commit
// timeout) and logged, and the next send's record is kept; a delivery report it refuses is
// answered 200, since the provider sending it again would not help.
func TestRefusedRecordsAndReportsAreGivenUpAlone(t *testing.T) {
	h, _, _ := startOnFakesWith(t, providersConfig, Options{WrapBackend: func(b store.Backend) store.Backend { return refuser{b} }})
	bad := h.send("acme-key", strings.Replace(actionBody, `"client_id":"abc123"`, `"client_id":"refuse-me"`, 1))
	good := h.send("acme-key", strings.Replace(actionBody, "555-0104", "555-0105", 1))
	if bad.Status != 200 || good.Status != 200 {
		t.Fatalf("sends: %d %s / %d %s", bad.Status, bad.Raw, good.Status, good.Raw)
	}
	badID, goodID := bad.Body["id"].(string), good.Body["id"].(string)
	if r := h.do("GET", "/v1/messages/"+goodID, "acme-key", ""); r.Status != 200 {
		t.Errorf("the next send's record: %d %s", r.Status, r.Raw)
	}
	if r := h.do("GET", "/v1/messages/"+badID, "acme-key", ""); r.Status != 404 {
		t.Errorf("the refused record: %d %s", r.Status, r.Raw)
	}
	m := h.app.MetricSet()
	if d, c := testutil.ToFloat64(m.LogDropped), testutil.ToFloat64(m.LogCommitTimeouts); d != 1 || c != 0 {
		t.Errorf("dropped %v, commit timeouts %v; want 1 and 0", d, c)
	}
	if r := h.do("POST", "/v1/dlr/infobip/infobip-eu?secret=hook-secret", "", reportBody(goodID, "UNDELIVERABLE", "")); r.Status != 200 {
		t.Errorf("a refused report: %d %s", r.Status, r.Raw)
	}
	logs := h.logs.String()
	for _, want := range []string{"message log refused the record", "message log refused a delivery report"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in the logs:\n%s", want, logs)
		}
	}
}
