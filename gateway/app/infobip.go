package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	start := time.Now()
	rt := a.rt.Load()
	kind := kindOf(c.Path)
	tn, ok := a.tenantByKey(rt, c.Key)
	if c.Key == "" || !ok {
		a.metrics.Requests.WithLabelValues("", "", "unauthorized").Inc()
		return ibReply(http.StatusUnauthorized, kind, "UNAUTHORIZED", "Invalid login details")
	}
	switch c.Path {
	case httpapi.InfobipConversionPath:
		return a.infobipConversion(ctx, tn, kind, c.MessageID)
	case httpapi.InfobipPreviewPath:
		return a.infobipPreview(ctx, tn, kind, c.Body)
	}
	if reports, logs := strings.HasSuffix(c.Path, "/reports"), strings.HasSuffix(c.Path, "/logs"); reports || logs {
		ctx, end, err := a.beginRead(ctx, tn.name)
		if err != nil {
			return readRefused(kind, err)
		}
		defer end()
		if reports {
			return a.infobipReports(ctx, tn, kind, c.Query)
		}
		return a.infobipLogs(ctx, tn, kind, c.Query)
	}
	var dests []ib.Destination
	var err error
	if strings.HasSuffix(c.Path, "/text/query") {
		dests, err = ib.ParseQuery(c.Query)
	} else {
		dests, err = ib.Parse(kind, c.Path == "/tts/3/single", c.Body)
	}
	// A request refused whole sends nothing: counted and logged as one invalid_request of the
	// tenant, with the refusal's text (fixed, holding nothing of the request).
	refuse := func(status int, id, text string) httpapi.Reply {
		a.finish(start, httpapi.SendRequest{RequestID: c.RequestID}, tn.name,
			flightResult{reply: httpapi.Reply{Status: status}, outcome: "invalid_request", why: text}, "", false)
		return ibReply(status, kind, id, text)
	}
	var pe *ib.Error
	if errors.As(err, &pe) {
		return refuse(pe.Status, pe.ID, pe.Text)
	}
	for _, d := range dests {
		if d.NotifyURL != "" && !notifyAllowed(tn, d.NotifyURL) {
			return refuse(http.StatusBadRequest, "BAD_REQUEST", "the notify URL's host is not one this account may receive reports at (tenants[].notify_hosts)")
		}
	}
	// Each destination sent at once is a send in flight: the request runs as many at a time as its
	// tenant's share of server.max_in_flight admits, up to compatParallel, and is shed when it
	// admits none.
	places := a.admitUpTo(*rt.cfg.Server.MaxInFlight, tn, min(max(len(dests), 1), compatParallel))
	if places == 0 {
		a.metrics.Requests.WithLabelValues(tn.name, "", "overloaded").Inc()
		rep := ibReply(http.StatusServiceUnavailable, kind, "SERVICE_UNAVAILABLE", "this replica is running server.max_in_flight sends and this account holds its fair share of them; retry shortly")
		rep.RetryAfter = time.Second
		return rep
	}
	defer a.releaseN(tn, places)
	if len(dests) > 1 && dests[0].BulkID == "" {
		bulk := madeBulkID(rt, tn.name, c.IdempotencyKey)
		for i := range dests {
			dests[i].BulkID = bulk
		}
	}
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.Server.RequestTimeout.D())
	defer cancel()
	results := make([]ib.Result, len(dests))
	sem := make(chan struct{}, places)
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
	if status == http.StatusOK {
		a.releaseReports(ctx, tn, results)
	}
	return httpapi.Reply{Status: status, Body: body, RetryAfter: retry}
}

// madeBulkID is the bulkId of a request of several destinations that names none: Infobip makes
// one up and returns it, and callers poll reports and logs by it. With an Idempotency-Key it is
// the same on every retry of the request (a retry's destinations then carry the same bulkId, so
// their bodies match the first try's, and the answer repeats it); without one it is new.
func madeBulkID(rt *runtime, tenant, idempotencyKey string) string {
	if idempotencyKey == "" {
		return "bulk_" + strings.TrimPrefix(newID(time.Now()), "msg_")
	}
	h := rt.mac("bulk", tenant, idempotencyKey)
	return "bulk_" + hex.EncodeToString(h[:14])
}

// releaseReports hands out the reports of the destinations that failed at send in a request
// answered 200: the answer gives their ids (status REJECTED), so, as with Infobip, a final report
// follows for each, pushed to its notify URL or pulled. A request answered with an error gives no
// id, and its failed messages' reports stay held (store.Record.ReportHeld).
func (a *App) releaseReports(ctx context.Context, tn *tenant, results []ib.Result) {
	var ids []string
	for _, r := range results {
		if r.HTTPStatus != http.StatusOK && r.MessageID != "" {
			ids = append(ids, r.MessageID)
		}
	}
	if len(ids) == 0 {
		return
	}
	if err := a.store.Release(context.WithoutCancel(ctx), ids); err != nil {
		if ok, left := a.errorLine("store|release"); ok {
			a.log.Error("message log: failed messages' reports not released before the answer", append([]any{"tenant", tn.name, "messages", len(ids),
				"err", err.Error()}, leftOut(left)...)...)
		}
		return
	}
	a.notifier.sweepSoon() // a push may have fallen due
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

// limitOf is the caller's limit as the message log takes it: the store's page size applies (50
// when it is not a positive number, at most 1000).
func limitOf(q url.Values) int {
	n, _ := strconv.Atoi(q.Get("limit"))
	return n
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
	m := ib.Message{ID: r.ID, BulkID: r.BulkID, To: strings.TrimPrefix(r.Recipient, "+"), CallbackData: r.CallbackData,
		Status: r.Status, Error: r.Error, Price: r.Price, Currency: r.Currency, SentAt: r.CreatedAt}
	if r.MessageType == string(gateway.SMS) {
		m.Parts = r.Parts // a call's are its minutes
	}
	switch {
	case r.DeliveredAt != nil:
		m.DoneAt = *r.DeliveredAt
	case r.Final(): // failed at send: done when the last provider gave up
		m.DoneAt = r.UpdatedAt
	}
	return m
}

// readRefused answers a call other than a send that was refused or could not read the message
// log: 429 when the tenant is over rate_limits.api or its share of the reads, else
// logUnavailable.
func readRefused(kind string, err error) httpapi.Reply {
	if rl := (*httpapi.RateLimited)(nil); errors.As(err, &rl) {
		rep := ibReply(http.StatusTooManyRequests, kind, "TOO_MANY_REQUESTS", rl.Message)
		rep.RetryAfter = rl.RetryAfter
		return rep
	}
	return logUnavailable(kind)
}

// infobipConversion serves POST /ct/1/log/end/{messageId}, Infobip's conversion tracking: the
// caller says a message's code was used, as POST /v1/messages/{id}/verified does (the message
// counts as delivered for its provider, and as used for pumping detection's conversion).
// messageId is smsgate's id, which the sends answer, or the caller's own (the newest message sent
// with it), which Infobip would have answered. The answer's processKey is a random token, as
// Infobip's is opaque.
func (a *App) infobipConversion(ctx context.Context, tn *tenant, kind, id string) httpapi.Reply {
	err := store.ErrNotFound // no message holds an id longer than a send may give
	if id != "" && len(id) <= ib.MaxMessageID {
		err = a.verified(ctx, tn.name, id, true)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ibReply(http.StatusNotFound, kind, "NOT_FOUND", "no message with this messageId for this account")
	case errors.Is(err, httpapi.ErrNotSent):
		return ibReply(http.StatusBadRequest, kind, "BAD_REQUEST", "no provider accepted this message: it has no code to use")
	case err != nil:
		return readRefused(kind, err)
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	body, _ := json.Marshal(map[string]string{"processKey": strings.ToUpper(hex.EncodeToString(key[:]))})
	return httpapi.Reply{Status: http.StatusOK, Body: body}
}

// infobipPreview serves POST /sms/1/preview, Infobip's SMS preview: the parts a text is sent as
// and the characters left in the last one, as smsgate sends it (infobipcompat.Preview). It sends
// nothing and reads no log, but it is a call other than a send, held to rate_limits.api.
func (a *App) infobipPreview(ctx context.Context, tn *tenant, kind string, body []byte) httpapi.Reply {
	if err := a.callRefused(ctx, tn.name); err != nil {
		return readRefused(kind, err)
	}
	text, pe := ib.ParsePreview(body)
	if pe != nil {
		return ibReply(pe.Status, kind, pe.ID, pe.Text)
	}
	return httpapi.Reply{Status: http.StatusOK, Body: ib.Preview(text)}
}

// logUnavailable answers a reports or logs call whose message log read failed (down, or not
// answering within server.request_timeout): 503 with Retry-After, a retry may work.
func logUnavailable(kind string) httpapi.Reply {
	rep := ibReply(http.StatusServiceUnavailable, kind, "SERVICE_UNAVAILABLE", "the message log could not be read; retry")
	rep.RetryAfter = time.Second
	return rep
}

// infobipReports hands out final delivery reports once (GET /sms/{1,3}/reports), for messages
// whose reports are not pushed to a notify URL.
func (a *App) infobipReports(ctx context.Context, tn *tenant, kind string, q url.Values) httpapi.Reply {
	recs, err := a.store.Take(ctx, store.TakeQuery{Tenant: tn.name, BulkID: q.Get("bulkId"), ID: q.Get("messageId"), Limit: limitOf(q)})
	if err != nil {
		return logUnavailable(kind)
	}
	return httpapi.Reply{Status: http.StatusOK, Body: ib.Reports(kind, compatMessages(recs))}
}

// generalStatus maps Infobip's generalStatus filter to the message log's statuses whose logs are
// in that group (infobipcompat.ReportStatus): REJECTED is a message no provider took and one a
// provider refused the destination of.
var generalStatus = map[string][]string{"PENDING": {gateway.StatusSent}, "DELIVERED": {gateway.StatusDelivered},
	"UNDELIVERABLE": {gateway.StatusUndelivered}, "REJECTED": {gateway.StatusFailed, gateway.StatusRejected}, "EXPIRED": {gateway.StatusUndelivered}}

// infobipLogs serves GET /sms/{1,3}/logs from the message log, tenant-scoped.
func (a *App) infobipLogs(ctx context.Context, tn *tenant, kind string, q url.Values) httpapi.Reply {
	sq := store.Query{Tenant: tn.name, Compat: true, BulkID: q.Get("bulkId"), ID: q.Get("messageId"), Limit: limitOf(q)}
	if gs := q.Get("generalStatus"); gs != "" {
		sq.Statuses = generalStatus[strings.ToUpper(gs)]
		if sq.Statuses == nil {
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
		return logUnavailable(kind)
	}
	return httpapi.Reply{Status: http.StatusOK, Body: ib.Logs(kind, compatMessages(recs))}
}
