package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/httpapi"
	ib "github.com/smsgate/smsgate/gateway/infobipcompat"
	"github.com/smsgate/smsgate/gateway/intake"
	"github.com/smsgate/smsgate/gateway/store"
	"github.com/smsgate/smsgate/providers/infobip"
)

// kindOf maps a compat route to the API it belongs to.
func kindOf(path string) string {
	switch {
	case strings.HasPrefix(path, "/tts/"):
		return ib.TTS
	case strings.HasPrefix(path, "/sms/3/"):
		return ib.SMSv3
	}
	return ib.SMSv2
}

func ibReply(status int, kind, id, text string) httpapi.Reply {
	return httpapi.Reply{Status: status, Body: ib.ErrorBody(kind, id, text)}
}

// compatParallel bounds the destinations of one request sent at once.
const compatParallel = 8

// Infobip implements httpapi.Backend: the Infobip-compatible API. Each destination of each
// message is one smsgate send, through the same pipeline as /v1/send-phone-message.
func (a *App) Infobip(ctx context.Context, c httpapi.InfobipCall) httpapi.Reply {
	rt := a.rt.Load()
	kind := kindOf(c.Path)
	tn, ok := rt.tenants[sha256.Sum256([]byte(c.Key))]
	if c.Key == "" || !ok {
		a.metrics.Requests.WithLabelValues("", "", "unauthorized").Inc()
		return ibReply(http.StatusUnauthorized, kind, "UNAUTHORIZED", "Invalid login details")
	}
	if strings.HasSuffix(c.Path, "/reports") || strings.HasSuffix(c.Path, "/logs") {
		var rl *httpapi.RateLimited
		if errors.As(a.callRefused(ctx, tn.name), &rl) {
			rep := ibReply(http.StatusTooManyRequests, kind, "TOO_MANY_REQUESTS", rl.Message)
			rep.RetryAfter = rl.RetryAfter
			return rep
		}
	}
	switch {
	case strings.HasSuffix(c.Path, "/reports"):
		return a.infobipReports(ctx, tn, kind, c.Query)
	case strings.HasSuffix(c.Path, "/logs"):
		return a.infobipLogs(ctx, tn, kind, c.Query)
	}
	var dests []ib.Destination
	var err error
	if strings.HasSuffix(c.Path, "/text/query") {
		dests, err = ib.ParseQuery(c.Query)
	} else {
		dests, err = ib.Parse(kind, c.Path == "/tts/3/single", c.Body)
	}
	var pe *ib.Error
	if errors.As(err, &pe) {
		return ibReply(pe.Status, kind, pe.ID, pe.Text)
	}
	for _, d := range dests {
		if d.NotifyURL != "" && !notifyAllowed(tn, d.NotifyURL) {
			return ibReply(http.StatusBadRequest, kind, "BAD_REQUEST", "the notify URL's host is not one this account may receive reports at (tenants[].notify_hosts)")
		}
	}
	if !a.admit(*rt.cfg.Server.MaxInFlight, tn) {
		a.metrics.Requests.WithLabelValues(tn.name, "", "overloaded").Inc()
		rep := ibReply(http.StatusServiceUnavailable, kind, "SERVICE_UNAVAILABLE", "this replica is running server.max_in_flight sends and this account holds its fair share of them; retry shortly")
		rep.RetryAfter = time.Second
		return rep
	}
	defer a.release(tn)
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.Server.RequestTimeout.D())
	defer cancel()
	results := make([]ib.Result, len(dests))
	sem := make(chan struct{}, compatParallel)
	var wg sync.WaitGroup
	for i, d := range dests {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = a.infobipSendOne(ctx, rt, tn, kind, i, d, c)
		}()
	}
	wg.Wait()
	bulk := ""
	if len(dests) > 0 {
		bulk = dests[0].BulkID
	}
	status, body, retry := ib.Answer(kind, bulk, results)
	return httpapi.Reply{Status: status, Body: body, RetryAfter: retry}
}

// infobipSendOne sends one destination and says what became of it.
func (a *App) infobipSendOne(ctx context.Context, rt *runtime, tn *tenant, kind string, i int, d ib.Destination, c httpapi.InfobipCall) ib.Result {
	start := time.Now()
	typ := gateway.SMS
	if d.Voice {
		typ = gateway.Voice
	}
	req := &intake.Request{Shape: kind, Recipient: d.To, Text: d.Text, Type: typ, Language: d.Language, From: d.From}
	// The destination's own canonical body: what the coalescing and the Idempotency-Key compare.
	body, _ := json.Marshal(d)
	r := httpapi.SendRequest{Body: body, RequestID: c.RequestID}
	if c.IdempotencyKey != "" {
		r.IdempotencyKey = c.IdempotencyKey + "#" + strconv.Itoa(i)
	}
	var res flightResult
	to, shared := "", false
	if err := intake.Check(req); err != nil {
		res = intakeFailure(err)
	} else {
		res, to, shared = a.sendOne(ctx, rt, tn, r, req, &compat{source: kind, reference: d.Reference, bulkID: d.BulkID,
			callbackData: d.CallbackData, notifyURL: d.NotifyURL})
	}
	a.finish(start, r, tn.name, res, to, shared)
	out := ib.Result{Destination: d, HTTPStatus: res.reply.Status, RetryAfter: res.reply.RetryAfter}
	var ans struct {
		ID    string         `json:"id"`
		Error *ErrorJSONBody `json:"error"`
	}
	_ = json.Unmarshal(res.reply.Body, &ans)
	out.MessageID = ans.ID
	if ans.Error != nil {
		out.Code = ans.Error.Code
	}
	out.Status = ib.StatusFor(out.HTTPStatus, out.Code)
	return out
}

// notifyAllowed reports whether raw is an http(s) URL whose host (or host:port) the tenant lists.
func notifyAllowed(tn *tenant, raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return false
	}
	return tn.notifyHosts[strings.ToLower(u.Host)] || tn.notifyHosts[strings.ToLower(u.Hostname())]
}

func limitOf(q url.Values, def, most int) int {
	n, err := strconv.Atoi(q.Get("limit"))
	if err != nil || n <= 0 {
		return def
	}
	return min(n, most)
}

// compatMessages is compatMessage of each record.
func compatMessages(recs []*store.Record) []ib.Message {
	ms := make([]ib.Message, len(recs))
	for i, r := range recs {
		ms[i] = compatMessage(r)
	}
	return ms
}

func compatMessage(r *store.Record) ib.Message {
	m := ib.Message{ID: r.ID, Reference: r.Reference, BulkID: r.BulkID, To: strings.TrimPrefix(r.Recipient, "+"), CallbackData: r.CallbackData,
		Status: r.Status, Error: r.Error, Price: r.Price, Currency: r.Currency, SentAt: r.CreatedAt, ProviderStatus: r.ProviderStatus, Source: r.Source}
	if r.DeliveredAt != nil {
		m.DoneAt = *r.DeliveredAt
	}
	return m
}

// infobipReports hands out final delivery reports once (GET /sms/{1,3}/reports), for messages
// whose reports are not pushed to a notify URL.
func (a *App) infobipReports(ctx context.Context, tn *tenant, kind string, q url.Values) httpapi.Reply {
	recs, err := a.store.Take(ctx, store.TakeQuery{Tenant: tn.name, BulkID: q.Get("bulkId"), ID: q.Get("messageId"), Limit: limitOf(q, 50, 1000)})
	if err != nil {
		return ibReply(http.StatusInternalServerError, kind, "GENERAL_ERROR", "the message log could not be read; retry")
	}
	return httpapi.Reply{Status: http.StatusOK, Body: ib.Reports(kind, compatMessages(recs))}
}

// generalStatus maps Infobip's generalStatus filter to the message log's status.
var generalStatus = map[string]string{"PENDING": gateway.StatusSent, "DELIVERED": gateway.StatusDelivered,
	"UNDELIVERABLE": gateway.StatusUndelivered, "REJECTED": gateway.StatusFailed, "EXPIRED": gateway.StatusUndelivered}

// infobipLogs serves GET /sms/{1,3}/logs from the message log, tenant-scoped.
func (a *App) infobipLogs(ctx context.Context, tn *tenant, kind string, q url.Values) httpapi.Reply {
	sq := store.Query{Tenant: tn.name, Compat: true, BulkID: q.Get("bulkId"), ID: q.Get("messageId"), Limit: limitOf(q, 50, 1000)}
	if gs := q.Get("generalStatus"); gs != "" {
		sq.Status = generalStatus[strings.ToUpper(gs)]
		if sq.Status == "" {
			return ibReply(http.StatusBadRequest, kind, "BAD_REQUEST", "generalStatus must be PENDING, DELIVERED, UNDELIVERABLE, REJECTED or EXPIRED")
		}
	}
	for key, dst := range map[string]*time.Time{"sentSince": &sq.Since, "sentUntil": &sq.Until} {
		if v := q.Get(key); v != "" {
			t, err := infobip.ParseTime(v)
			if err != nil {
				return ibReply(http.StatusBadRequest, kind, "BAD_REQUEST", key+" is not a time such as 2026-11-30T12:00:00.000+0000")
			}
			*dst = t
		}
	}
	recs, err := a.store.List(ctx, sq)
	if err != nil {
		return ibReply(http.StatusInternalServerError, kind, "GENERAL_ERROR", "the message log could not be read; retry")
	}
	return httpapi.Reply{Status: http.StatusOK, Body: ib.Logs(kind, compatMessages(recs))}
}

// notifier pushes final delivery reports of the Infobip-compatible API to the notify URLs their
// senders gave, with bounded retries. Jobs live in memory: a push still pending when its replica
// dies is lost, but the report stays in the message log (GET /v1/messages, /sms/1/logs).
//
// Each tenant has its own queue (at most notifyQueueMax jobs) and its own workers (at most
// notifyWorkers, started when jobs arrive, gone when its queue is empty): a tenant whose endpoint
// hangs or fails delays and drops only its own pushes, never another tenant's.
type notifier struct {
	a      *App
	client *http.Client
	// Backoff is the wait before each retry; its length bounds the attempts.
	backoff []time.Duration
	wg      sync.WaitGroup

	mu     sync.Mutex
	closed bool
	queues map[string]*notifyQueue // by tenant; present while it has jobs or workers
}

// notifyQueue is one tenant's pending pushes and how many workers serve them.
type notifyQueue struct {
	jobs    []notifyJob
	workers int
}

type notifyJob struct {
	url  string
	body []byte
}

const (
	// notifyQueueMax bounds one tenant's pending pushes; more are dropped, counted and logged.
	notifyQueueMax = 1024
	// notifyWorkers bounds one tenant's pushes in flight.
	notifyWorkers = 4
)

func newNotifier(a *App) *notifier {
	return &notifier{a: a, backoff: []time.Duration{time.Second, 5 * time.Second}, queues: map[string]*notifyQueue{},
		client: &http.Client{Timeout: 5 * time.Second,
			// Never follow a redirect: the allow list names where reports may go.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// push queues a report for tenant's notify URL.
func (n *notifier) push(tenant, url string, body []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	q := n.queues[tenant]
	if n.closed || q != nil && len(q.jobs) >= notifyQueueMax {
		n.a.metrics.Notify.WithLabelValues("dropped").Inc()
		if ok, left := n.a.errorLine("notify|" + tenant); ok {
			n.a.log.Error("delivery report push dropped: the tenant's queue is full or the gateway is stopping", append([]any{"tenant", tenant}, leftOut(left)...)...)
		}
		return
	}
	if q == nil {
		q = &notifyQueue{}
		n.queues[tenant] = q
	}
	q.jobs = append(q.jobs, notifyJob{url, body})
	if q.workers < notifyWorkers {
		q.workers++
		n.wg.Add(1)
		go n.run(tenant, q)
	}
}

// run pushes tenant's jobs until its queue is empty.
func (n *notifier) run(tenant string, q *notifyQueue) {
	defer n.wg.Done()
	for {
		n.mu.Lock()
		if len(q.jobs) == 0 {
			if q.workers--; q.workers == 0 {
				delete(n.queues, tenant)
			}
			n.mu.Unlock()
			return
		}
		j := q.jobs[0]
		q.jobs[0] = notifyJob{}
		q.jobs = q.jobs[1:]
		n.mu.Unlock()
		n.deliver(j)
	}
}

// deliver posts one job, retrying after each backoff.
func (n *notifier) deliver(j notifyJob) {
	for attempt := 0; ; attempt++ {
		err := n.post(j)
		if err == nil {
			n.a.metrics.Notify.WithLabelValues("ok").Inc()
			return
		}
		if attempt >= len(n.backoff) {
			n.a.metrics.Notify.WithLabelValues("failed").Inc()
			n.a.log.Warn("delivery report push failed", "host", hostOf(j.url), "attempts", attempt+1, "err", err.Error())
			return
		}
		n.a.metrics.Notify.WithLabelValues("retry").Inc()
		time.Sleep(n.backoff[attempt])
	}
}

func (n *notifier) post(j notifyJob) error {
	req, err := http.NewRequest(http.MethodPost, j.url, bytes.NewReader(j.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := n.client.Do(req)
	if err != nil {
		return errors.New("could not reach the notify URL")
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("the notify URL answered %d", res.StatusCode)
	}
	return nil
}

// close stops taking jobs and waits up to d for the queues to drain.
func (n *notifier) close(d time.Duration) {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return ""
}

// notifyReports pushes the final reports of compat messages that asked for them, after the
// reports were recorded.
func (a *App) notifyReports(ctx context.Context, reps []gateway.DeliveryReport) {
	rt := a.rt.Load()
	for _, rep := range reps {
		rec, err := a.store.Find(ctx, rep.Provider, rep.MessageID, rep.ProviderMessageID)
		if err != nil || rec.Source == "" || rec.NotifyURL == "" || !rec.Final() {
			continue
		}
		if tn := rt.byName[rec.Tenant]; tn == nil || !notifyAllowed(tn, rec.NotifyURL) {
			continue // the tenant's allow list changed since the send
		}
		a.notifier.push(rec.Tenant, rec.NotifyURL, ib.Reports(rec.Source, []ib.Message{compatMessage(rec)}))
	}
}
