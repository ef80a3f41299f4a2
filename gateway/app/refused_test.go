package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/store"
	"github.com/smsgate/smsgate/providers/mock"
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
	t.Parallel()
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

// unavailableReports is a test driver: the mock, taking delivery reports it can never check now,
// as the AWS driver cannot while SNS's certificate is out of reach.
type unavailableReports struct{ *mock.Provider }

type unavailableConfig struct{ mock.Config }

func (unavailableReports) Webhook() gateway.Webhook {
	return gateway.Webhook{Methods: []string{http.MethodPost}, Auth: "none: a test driver"}
}

func (unavailableReports) ParseReports(*http.Request, []byte, string) ([]gateway.DeliveryReport, error) {
	return nil, &gateway.Error{Class: gateway.ClassUnavailable, Code: "certificate", Message: "the signing certificate could not be fetched now"}
}

func (unavailableReports) AsksReports() bool { return true }

// TestAReportThatCannotBeCheckedNowIsAskedAgain: a sound report the driver cannot check just now
// is answered 503 report_unavailable, which providers retry, never a 4xx, which they take as
// final and drop; it is counted unavailable and logged, bounded.
func TestAReportThatCannotBeCheckedNowIsAskedAgain(t *testing.T) {
	// Not parallel: adds a driver to the package's registry (see start).
	drivers["test-unavailable"] = register(func(c unavailableConfig, d gateway.Deps) unavailableReports {
		return unavailableReports{mock.New(c.Config, d)}
	})
	t.Cleanup(func() { delete(drivers, "test-unavailable") })
	h := start(t, `
tenants: [{name: acme, api_key: acme-key-0123456789}]
providers: [{name: sns, type: test-unavailable}]
routes: [{name: default, providers: [sns]}]
`, Options{})
	for range 3 {
		r := h.do("POST", "/v1/dlr/test-unavailable/sns", "", `{}`)
		if r.Status != http.StatusServiceUnavailable || r.Body["error"].(map[string]any)["code"] != "report_unavailable" {
			t.Fatalf("%d %s, want 503 report_unavailable", r.Status, r.Raw)
		}
	}
	if n := testutil.ToFloat64(h.app.metrics.DeliveryReports.WithLabelValues("sns", "unavailable")); n != 3 {
		t.Errorf("counted %v unavailable, want 3", n)
	}
	if n := len(logLines(t, h, "delivery report not taken now; the provider is asked to retry")); n != 3 {
		t.Errorf("%d log lines, want 3", n)
	}
}

// downBackend is a message log backend whose database fails every write while down is set.
type downBackend struct {
	store.Backend
	down atomic.Bool
}

func (d *downBackend) Apply(ctx context.Context, ops []store.Op) ([]store.Charge, error) {
	if d.down.Load() {
		return nil, errors.New("connection refused (simulated)")
	}
	return d.Backend.Apply(ctx, ops)
}

// TestRefuseSendsKeepsTheLogComplete: with storage.backlog_full: refuse_sends, once the retry
// buffer holds all it may while the database fails, new sends are answered 503 store_unavailable
// without calling a provider (the operator chose a complete log over sending); the records held
// are written once the database is back, and sends go again.
func TestRefuseSendsKeepsTheLogComplete(t *testing.T) {
	t.Parallel()
	db := &downBackend{}
	h := start(t, `
storage: {driver: sqlite, path: $DIR/log.db, retry_buffer: 2, backlog_full: refuse_sends, commit_timeout: 50ms}
policy: {rate_limits: {per_recipient: 0}}
tenants: [{name: acme, api_key: acme-key}]
providers: [{name: m, type: mock}]
routes: [{name: default, providers: [m]}]
`, Options{WrapBackend: func(b store.Backend) store.Backend { db.Backend = b; return db }})
	sent := func() float64 { return testutil.ToFloat64(h.app.MetricSet().Attempts.WithLabelValues("m", "sent")) }
	send := func(i int) response {
		return h.send("acme-key", strings.Replace(actionBody, "555-0104", fmt.Sprintf("555-%04d", 100+i), 1))
	}
	db.down.Store(true)
	var held []string
	for i := range 2 {
		r := send(i)
		if r.Status != 200 {
			t.Fatalf("send %d while the buffer has room: %d %s", i, r.Status, r.Raw)
		}
		held = append(held, r.Body["id"].(string))
	}
	waitUntil(t, "the retry buffer full", h.app.store.Full)
	if r := send(2); r.Status != 503 || errCode(r) != "store_unavailable" {
		t.Errorf("a send with the buffer full: %d %s, want 503 store_unavailable", r.Status, r.Raw)
	}
	if n := sent(); n != 2 {
		t.Errorf("the provider sent %v messages, want 2 (none that could not be recorded)", n)
	}
	db.down.Store(false)
	waitUntil(t, "the held records written", func() bool { return !h.app.store.Full() && h.app.store.Backlog() == 0 })
	for _, id := range held {
		if r := h.do("GET", "/v1/messages/"+id, "acme-key", ""); r.Status != 200 {
			t.Errorf("held record %s: %d %s", id, r.Status, r.Raw)
		}
	}
	if r := send(3); r.Status != 200 {
		t.Errorf("a send once the database is back: %d %s", r.Status, r.Raw)
	}
}

// With storage.backlog_full at its default, drop_oldest, a full retry buffer stops no send: the
// provider is called, the caller gets its answer, and the oldest records held are dropped and
// counted, as is each answer that went before its record was committed.
func TestABacklogFullOfRecordsDropsTheOldestAndKeepsSending(t *testing.T) {
	t.Parallel()
	db := &downBackend{}
	h := start(t, `
storage: {driver: sqlite, path: $DIR/log.db, retry_buffer: 2, commit_timeout: 50ms}
policy: {rate_limits: {per_recipient: 0}}
tenants: [{name: acme, api_key: acme-key}]
providers: [{name: m, type: mock}]
routes: [{name: default, providers: [m]}]
`, Options{WrapBackend: func(b store.Backend) store.Backend { db.Backend = b; return db }})
	db.down.Store(true)
	for i := range 2 {
		if r := h.send("acme-key", strings.Replace(actionBody, "555-0104", fmt.Sprintf("555-%04d", 100+i), 1)); r.Status != 200 {
			t.Fatalf("send %d while the buffer has room: %d %s", i, r.Status, r.Raw)
		}
	}
	waitUntil(t, "the retry buffer full", h.app.store.Full)
	if r := h.send("acme-key", strings.Replace(actionBody, "555-0104", "555-0199", 1)); r.Status != 200 || r.Body["status"] != "sent" {
		t.Errorf("a send with the buffer full: %d %s, want it sent", r.Status, r.Raw)
	}
	m := h.app.MetricSet()
	if n := testutil.ToFloat64(m.Attempts.WithLabelValues("m", "sent")); n != 3 {
		t.Errorf("the provider sent %v messages, want 3", n)
	}
	waitUntil(t, "the oldest record dropped", func() bool { return testutil.ToFloat64(m.LogDropped) >= 1 })
	if n := testutil.ToFloat64(m.LogCommitTimeouts); n != 3 {
		t.Errorf("%v answers counted as going before their record was committed, want 3", n)
	}
}
