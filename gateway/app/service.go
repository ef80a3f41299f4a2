package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/dispatch"
	"github.com/smsgate/smsgate/gateway/httpapi"
	"github.com/smsgate/smsgate/gateway/intake"
	"github.com/smsgate/smsgate/gateway/policy"
	"github.com/smsgate/smsgate/gateway/routing"
	"github.com/smsgate/smsgate/gateway/store"
)

// SendResponse is the JSON body of a send: on success, and (with Error set) on failure after
// routing, so the caller sees every attempt.
type SendResponse struct {
	ID                string         `json:"id,omitempty"`
	Status            string         `json:"status,omitempty"`
	Provider          string         `json:"provider,omitempty"`
	ProviderMessageID string         `json:"provider_message_id,omitempty"`
	Route             string         `json:"route,omitempty"`
	Attempts          []AttemptJSON  `json:"attempts,omitempty"`
	Error             *ErrorJSONBody `json:"error,omitempty"`
}

// AttemptJSON is one attempt in a response.
type AttemptJSON struct {
	Provider   string `json:"provider"`
	Outcome    string `json:"outcome"`
	Code       string `json:"code,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	// Note says when the chain was reordered around this provider (delivery health), and why.
	Note string `json:"note,omitempty"`
}

// ErrorJSONBody is {"code","message"}.
type ErrorJSONBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type flightResult struct {
	// remote is true for an answer that another replica's run of the same request produced.
	remote bool
	reply  httpapi.Reply
	// bodyHash is an HMAC of the request body (it holds the code), never a plain hash.
	bodyHash [32]byte
	// log fields of the request that ran.
	route, provider, outcome string
	// why is the refusal's message, logged, for a request refused before it named a recipient
	// (its shape, a field, its client id, the number's form, a sender): fixed texts that hold
	// nothing of the request, which tell an operator what a tenant's callers get wrong.
	why string
}

func (a *App) now() time.Time {
	if a.opts.Now != nil {
		return a.opts.Now()
	}
	if a.opts.ReplicaClock != nil {
		return a.opts.ReplicaClock()
	}
	return time.Now()
}

func errReply(status int, code, msg string) httpapi.Reply {
	return httpapi.Reply{Status: status, Body: httpapi.ErrorJSON(code, msg)}
}

// Authenticate implements httpapi.Backend.
func (a *App) Authenticate(key string) (httpapi.Tenant, bool) {
	t, ok := a.tenantByKey(a.rt.Load(), key)
	if !ok {
		return httpapi.Tenant{}, false
	}
	return httpapi.Tenant{Name: t.name}, true
}

// tenantByKey finds the tenant an API key belongs to, and counts a call made with a key being
// rotated out. The key's SHA-256 is the map key, so lookup time does not depend on how much of a
// guessed key is right.
func (a *App) tenantByKey(rt *runtime, key string) (*tenant, bool) {
	k, ok := rt.keys[sha256.Sum256([]byte(key))]
	if k.previous {
		a.metrics.PreviousKeys.WithLabelValues(k.tenant.name).Inc()
	}
	return k.tenant, ok
}

// Send implements httpapi.Backend: the whole pipeline of one request.
func (a *App) Send(ctx context.Context, r httpapi.SendRequest) httpapi.Reply {
	start := time.Now()
	rt := a.rt.Load()
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.Server.RequestTimeout.D())
	defer cancel()
	tn, ok := a.tenantByKey(rt, r.APIKey)
	if !ok {
		msg := "unknown API key"
		if r.APIKey == "" {
			msg = httpapi.MissingKey
		}
		return a.finish(start, r, "", flightResult{reply: errReply(http.StatusUnauthorized, "unauthorized", msg), outcome: "unauthorized"}, "", false)
	}
	if !a.admit(*rt.cfg.Server.MaxInFlight, tn) {
		return a.finish(start, r, tn.name, overloaded(), "", false)
	}
	defer a.release(tn)
	req, err := intake.Decode(r.Body)
	if err != nil {
		return a.finish(start, r, tn.name, intakeFailure(err), "", false)
	}
	res, to, shared := a.sendOne(ctx, rt, tn, r, req, nil)
	return a.finish(start, r, tn.name, res, to, shared)
}

// compat is what a send through the Infobip-compatible API adds to its record.
type compat struct {
	source, reference, bulkID, callbackData, notifyURL string
}

// sendOne runs one decoded request through the pipeline: client and number checks, coalescing
// (within this process and, with Redis, across replicas), then process. It returns the result
// and the recipient (for the log line) and whether the result was shared.
func (a *App) sendOne(ctx context.Context, rt *runtime, tn *tenant, r httpapi.SendRequest, req *intake.Request, x *compat) (flightResult, string, bool) {
	if tn.clientIDs != nil && !tn.clientIDs[req.ClientID] {
		const why = "this API key may not send for this client_id"
		return flightResult{reply: errReply(http.StatusForbidden, "client_not_allowed", why), outcome: "client_not_allowed", why: why}, "", false
	}
	num, err := intake.NormalizeNumber(req.Recipient, tn.acceptUnrecognized)
	if err != nil {
		return intakeFailure(err), "", false
	}
	msg := &gateway.Message{Tenant: tn.name, ClientID: req.ClientID, To: num.E164, Country: num.Country, AlsoIn: num.AlsoIn, NumberType: num.Type, Type: req.Type,
		Text: req.Text, Code: req.Code, Action: req.Action, Language: req.Language, IP: req.IP}
	if tn.allowSender && req.From != "" {
		if err := intake.CheckSender(req.From); err != nil {
			return intakeFailure(err), "", false
		}
		msg.From = req.From // else the route's provider picks its configured sender
		if tn.senders != nil {
			from, ok := tn.senders[gateway.SenderKey(req.From)]
			if !ok {
				// The sender is not repeated: it may be a phone number.
				const why = "this tenant may not send as this sender (tenants.allowed_senders)"
				return flightResult{reply: errReply(http.StatusForbidden, "sender_not_allowed", why), outcome: "sender_not_allowed", why: why}, "", false
			}
			msg.From = from
		}
	}
	bodyHash := rt.mac("body", string(r.Body))
	var key string
	if r.IdempotencyKey != "" {
		if len(r.IdempotencyKey) > 255 {
			return flightResult{reply: errReply(http.StatusBadRequest, "invalid_request", "Idempotency-Key is longer than 255 characters"), outcome: "invalid_request"}, msg.To, false
		}
		key = "k|" + tn.name + "|" + r.IdempotencyKey
	} else {
		// Two senders are two messages; a request naming none keeps the key it always had, so
		// that replicas of the build before this one still coalesce with this one.
		var h [32]byte
		if msg.From == "" {
			h = rt.mac("coalesce", msg.To, string(msg.Type), msg.Text, msg.Code)
		} else {
			h = rt.mac("coalesce", msg.To, string(msg.Type), msg.Text, msg.Code, msg.From)
		}
		key = "c|" + tn.name + "|" + hex.EncodeToString(h[:])
	}
	if rej := a.gated("per_tenant", tn.name, tn.rules.Limits.PerTenant); rej != nil {
		return a.refused(tn, rej), msg.To, false
	}
	// The shared send runs detached from every caller (a waiting duplicate must not inherit the
	// first caller's disconnect, and no disconnect may abort a provider call in flight), bounded by
	// the request budget. Each caller waits for it or for its own deadline.
	deadline, _ := ctx.Deadline()
	res, shared, err := a.flight.Do(ctx, key, func() flightResult {
		a.inflight.Add(1)
		defer a.inflight.Add(-1)
		dctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
		defer cancel()
		if a.flights != nil {
			return a.sharedRun(dctx, key, bodyHash, func() flightResult { return a.process(dctx, rt, tn, msg, r.IdempotencyKey, bodyHash, x) })
		}
		return a.process(dctx, rt, tn, msg, r.IdempotencyKey, bodyHash, x)
	})
	switch {
	case errors.Is(err, context.Canceled):
		return flightResult{reply: errReply(http.StatusServiceUnavailable, "cancelled", "the caller went away; the send goes on and is recorded"), outcome: "cancelled"}, msg.To, shared
	case err != nil:
		return flightResult{reply: errReply(http.StatusGatewayTimeout, "deadline_exceeded", "the request budget ran out while the send was still running; it goes on and is recorded"), outcome: "deadline_exceeded"}, msg.To, shared
	}
	if res.reply.Status == 0 {
		// The run this request waited for panicked: answer a JSON 500.
		res = flightResult{reply: errReply(http.StatusInternalServerError, "internal", "internal error"), outcome: "internal"}
	}
	if (shared || res.remote) && r.IdempotencyKey != "" && res.bodyHash != bodyHash {
		res = flightResult{reply: errReply(http.StatusConflict, "idempotency_conflict", "this Idempotency-Key was used with a different body"), outcome: "idempotency_conflict"}
	}
	return res, msg.To, shared
}

// flightAnswerKeep is how long a shared run's answer stays for replicas still polling for it.
const flightAnswerKeep = 3 * time.Second

// flightPoll is how often a replica waiting on another's run looks for its answer.
const flightPoll = 20 * time.Millisecond

// sharedRun coalesces a request across replicas (state.driver redis): the replica that claims
// key runs it and stores the answer; the others wait for that answer or their own deadline. If
// the claimant dies, its claim expires and a waiter claims the request itself. When Redis fails,
// state.on_error decides: open runs the request here, closed answers 503.
func (a *App) sharedRun(ctx context.Context, key string, bodyHash [32]byte, run func() flightResult) flightResult {
	dl, _ := ctx.Deadline()
	for {
		token, won, err := a.flights.Claim(ctx, key, time.Until(dl)+time.Second)
		if err != nil {
			if a.stateError("flight_claim", err) {
				return flightResult{reply: errReply(http.StatusServiceUnavailable, "policy_unavailable", "duplicate detection across replicas failed"), bodyHash: bodyHash, outcome: "policy_unavailable"}
			}
			return run()
		}
		if won {
			res := run()
			ans := &policy.Replay{BodyHash: res.bodyHash, Status: res.reply.Status, Body: res.reply.Body}
			if err := a.flights.Finish(context.WithoutCancel(ctx), key, token, ans, flightAnswerKeep); err != nil {
				a.stateError("flight_finish", err)
			}
			return res
		}
		for {
			ans, found, held, err := a.flights.Answer(ctx, key)
			if err != nil {
				a.stateError("flight_answer", err)
			}
			if found {
				return flightResult{remote: true, reply: httpapi.Reply{Status: ans.Status, Body: ans.Body}, bodyHash: ans.BodyHash, outcome: "coalesced"}
			}
			if err == nil && !held {
				break // the claimant is gone without an answer: claim it here
			}
			select {
			case <-ctx.Done():
				return flightResult{reply: errReply(http.StatusGatewayTimeout, "deadline_exceeded", "the request budget ran out while another replica ran an identical request"), bodyHash: bodyHash, outcome: "deadline_exceeded"}
			case <-time.After(flightPoll):
			}
		}
	}
}

// finish logs the request line, counts it, and returns the reply.
func (a *App) finish(start time.Time, r httpapi.SendRequest, tenant string, res flightResult, to string, shared bool) httpapi.Reply {
	d := time.Since(start)
	a.metrics.Requests.WithLabelValues(tenant, res.route, res.outcome).Inc()
	a.metrics.RequestDuration.WithLabelValues(res.outcome).Observe(d.Seconds())
	level := slog.LevelInfo
	switch {
	case res.outcome == "overloaded":
		// Shed at once and counted (smsgate_requests_total, SmsgateOverloaded): a line each would
		// make the shedding of a flood cost as much as serving it.
		level = slog.LevelDebug
	case res.reply.Status >= 500:
		level = slog.LevelWarn
	}
	if !a.log.Enabled(context.Background(), level) {
		return res.reply
	}
	left := 0
	if res.reply.Status >= 400 { // an error: bounded per tenant and outcome (loglines.go)
		var ok bool
		if ok, left = a.errorLine("send|" + tenant + "|" + res.outcome); !ok {
			return res.reply
		}
	}
	// Typed attributes: the key-value form boxed each value and converted it back.
	attrs := make([]slog.Attr, 0, 11)
	attrs = append(attrs, slog.String("request_id", r.RequestID), slog.String("tenant", tenant), slog.String("route", res.route),
		slog.String("provider", res.provider), slog.String("outcome", res.outcome), slog.Int("status", res.reply.Status),
		slog.Int64("latency_ms", d.Milliseconds()))
	if to != "" {
		attrs = append(attrs, slog.String("to", gateway.MaskPhone(to)))
	}
	if res.why != "" {
		attrs = append(attrs, slog.String("error", res.why))
	}
	if shared {
		attrs = append(attrs, slog.Bool("coalesced", true))
	}
	if left > 0 {
		attrs = append(attrs, slog.Int("suppressed", left))
	}
	a.log.LogAttrs(context.Background(), level, "send", attrs...)
	return res.reply
}

// refused counts policy's refusal of a send of tn and answers it: 429 for a limit, 403 for a
// list.
func (a *App) refused(tn *tenant, rej *policy.Rejection) flightResult {
	a.metrics.PolicyRejections.WithLabelValues(tn.name, rej.Reason).Inc()
	status := http.StatusForbidden
	if rej.Code == "rate_limited" {
		status = http.StatusTooManyRequests
	}
	rep := errReply(status, rej.Code, rej.Message)
	rep.RetryAfter = rej.RetryAfter
	return flightResult{reply: rep, outcome: rej.Code}
}

// stateError counts and logs a failed call to the policy state store and reports whether the
// request must stop (state.on_error: closed). With on_error open the check is skipped.
func (a *App) stateError(op string, err error) bool {
	a.metrics.StateErrors.WithLabelValues(op).Inc()
	// While the store is down every send fails here, some twice: the lines are bounded like errors.
	if ok, left := a.errorLine("state|" + op); ok {
		a.log.Error("policy state store failed", append([]any{"op", op, "fail_open", a.failOpen, "err", err.Error()}, leftOut(left)...)...)
	}
	return !a.failOpen
}

// intakeFailure answers a request the intake refused: 400 with the intake's own code.
func intakeFailure(err error) flightResult {
	code, msg := "invalid_request", "the request could not be read"
	var ie *intake.Error
	if errors.As(err, &ie) {
		code, msg = ie.Code, ie.Message
	}
	return flightResult{reply: errReply(http.StatusBadRequest, code, msg), outcome: code, why: msg}
}

var idSeq atomic.Uint32

// newID returns "msg_" + milliseconds + a per-process sequence + random bytes: ids sort by
// creation time, also within one millisecond on one replica (the listing's tie-breaker).
func newID(now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("msg_%012x%04x%s", now.UnixMilli(), idSeq.Add(1)&0xffff, hex.EncodeToString(b[:]))
}

// process runs once per coalesced group: replay, policy, route, dispatch, record.
func (a *App) process(ctx context.Context, rt *runtime, tn *tenant, msg *gateway.Message, idemKey string, bodyHash [32]byte, x *compat) flightResult {
	res := a.runSend(ctx, rt, tn, msg, idemKey, bodyHash, x)
	res.bodyHash = bodyHash
	return res
}

// runSend is process without the body's hash in its result.
func (a *App) runSend(ctx context.Context, rt *runtime, tn *tenant, msg *gateway.Message, idemKey string, bodyHash [32]byte, x *compat) flightResult {
	if a.refuseSends && a.store.Full() {
		// The operator chose a complete log over sending: nothing is sent that could not be recorded.
		return flightResult{reply: errReply(http.StatusServiceUnavailable, "store_unavailable", "the message log is failing and its retry buffer is full; sends are refused (storage.backlog_full: refuse_sends)"),
			outcome: "store_unavailable"}
	}
	replayKey := policy.ReplayKey(tn.name, idemKey)
	if idemKey != "" {
		if res, done := a.replayed(ctx, replayKey, bodyHash); done {
			return res
		}
	}
	route := rt.routes.Match(msg)
	pm := &permit{tn: tn, msg: msg, parts: messageParts(msg), rng: policy.PumpRange(msg.To, msg.Country, tn.pumping.RangeDigits)}
	if refusal := a.checkPolicy(ctx, route, pm); refusal != nil {
		return *refusal
	}
	members := make([]*dispatch.Member, 0, len(route.Providers))
	for _, name := range route.Providers {
		members = append(members, rt.members[name].member)
	}
	members, notes := a.reorder(rt, route.Name, msg.Country, msg.Type, members)
	now := a.now()
	msg.ID = newID(now)
	chain := dispatch.Chain{Members: members, FailoverOnTimeout: route.FailoverOnTimeout, Shared: len(rt.byName) > 1, Pace: rt.pace}
	pm.resend = a.resendStart(ctx, rt, tn, msg, &chain)
	out := dispatch.Send(ctx, msg, chain, a.metrics)

	resp := SendResponse{ID: msg.ID, Route: route.Name, Provider: out.Provider, ProviderMessageID: out.Result.ProviderMessageID,
		Attempts: make([]AttemptJSON, len(out.Attempts))}
	rec := &store.Record{ID: msg.ID, Tenant: tn.name, ClientID: msg.ClientID, Route: route.Name, MessageType: string(msg.Type),
		Action: msg.Action, Country: msg.Country, Recipient: gateway.MaskPhone(msg.To), Range: pm.rng, Provider: out.Provider,
		ProviderMessageID: out.Result.ProviderMessageID, ProviderStatus: out.Result.Status, Attempts: make([]store.Attempt, len(out.Attempts)),
		CreatedAt: now.UTC(), UpdatedAt: a.now().UTC(), Parts: pm.parts}
	if rt.cfg.Storage.StoreFullNumbers {
		rec.Recipient = msg.To
	}
	if x != nil {
		rec.Source, rec.Reference, rec.BulkID, rec.CallbackData, rec.NotifyURL = x.source, x.reference, x.bulkID, x.callbackData, x.notifyURL
	}
	for i, at := range out.Attempts {
		// Drivers already remove their own secrets; this catches any configured secret a provider
		// echoed that its driver did not know about, before the reply, the log or the record.
		resp.Attempts[i] = AttemptJSON{Provider: at.Provider, Outcome: at.Outcome, Code: rt.scrub(at.Code), Error: rt.scrub(at.Error), DurationMS: at.Duration.Milliseconds(),
			Note: notes[at.Provider]}
		rec.Attempts[i] = store.Attempt(resp.Attempts[i])
	}
	status, outcome := http.StatusOK, "sent"
	if out.Err == nil {
		resp.Status, rec.Status = gateway.StatusSent, gateway.StatusSent
		a.sent(ctx, pm, out.Provider)
	} else {
		if tn.spend() != nil {
			a.settleSpend(context.WithoutCancel(ctx), tn, pm.reserved, 0) // not sent: costs nothing
		}
		e := out.Err
		var code, text string
		status, code, text, rec.Status = failure(rt, e, out.BudgetSpent)
		rec.Error = rt.scrub(e.Code)
		if x != nil {
			// The Infobip-compatible answer gives this message's id only if another destination
			// of the request was sent; until then its report is neither pulled nor pushed.
			rec.ReportTaken, rec.ReportHeld = true, true
		}
		resp.Status = rec.Status
		resp.Error = &ErrorJSONBody{Code: code, Message: text}
		outcome = code
	}
	a.commit(ctx, rec)
	body, _ := json.Marshal(resp)
	res := flightResult{reply: httpapi.Reply{Status: status, Body: body}, route: route.Name, provider: out.Provider, outcome: outcome}
	if status == http.StatusTooManyRequests {
		res.reply.RetryAfter = max(out.Err.RetryAfter, time.Second)
	}
	// Replay final answers only: a 5xx or a 429 must let the caller's later retry send.
	if idemKey != "" && status < 500 && status != http.StatusTooManyRequests {
		if err := a.replays.Put(context.WithoutCancel(ctx), replayKey, &policy.Replay{BodyHash: bodyHash, Status: status, Body: body}, rt.cfg.Policy.Idempotency.TTL.D()); err != nil {
			a.stateError("idempotency_put", err)
		}
	}
	return res
}

// replayed answers a request whose Idempotency-Key (replayKey) already has a final answer: that
// answer, or a conflict when the key came with another body. done is false when there is none,
// or when reading failed and state.on_error is open.
func (a *App) replayed(ctx context.Context, replayKey string, bodyHash [32]byte) (res flightResult, done bool) {
	rep, ok, err := a.replays.Get(ctx, replayKey)
	switch {
	case err != nil && a.stateError("idempotency_get", err):
		return flightResult{reply: errReply(http.StatusServiceUnavailable, "policy_unavailable", "idempotency records could not be read"), outcome: "policy_unavailable"}, true
	case err != nil || !ok:
		return flightResult{}, false
	case rep.BodyHash != bodyHash:
		return flightResult{reply: errReply(http.StatusConflict, "idempotency_conflict", "this Idempotency-Key was used with a different body"), outcome: "idempotency_conflict"}, true
	}
	return flightResult{reply: httpapi.Reply{Status: rep.Status, Body: rep.Body}, outcome: "replayed"}, true
}

// permit is a send that its tenant's policy let through: what it holds against the tenant's
// limits and counters, settled once it is known whether it went, and through which provider.
type permit struct {
	tn  *tenant
	msg *gateway.Message
	// parts is how many SMS parts msg takes (1 for voice).
	parts int
	// rng is msg's number range, which pumping detection counts and quarantines.
	rng string
	// reserved is what the tenant's spend limit reserved for the send; 0 without a spend limit,
	// or when the limit could not be checked.
	reserved float64
	// resend is what resend escalation learnt; its zero value when escalation is off.
	resend resend
}

// checkPolicy applies the tenant's policy to pm's message before anything is sent: its rules and
// limits, and the quarantine of its number range when pumping detection is on. With a spend
// limit, the check reserves what the send may cost (the highest price of the route's providers,
// for its parts) into pm.reserved. It returns the answer to a send that may not go, nil for one
// that may.
func (a *App) checkPolicy(ctx context.Context, route *routing.Route, pm *permit) *flightResult {
	tn, msg := pm.tn, pm.msg
	var price float64
	if tn.spend() != nil {
		prices := a.prices.Load()
		for _, name := range route.Providers {
			price = max(price, prices.estimate(name, msg.Country, msg.Type, pm.parts))
		}
	}
	rej, err := a.checker.Check(ctx, tn.rules, msg, price)
	if err != nil && a.stateError("rate_limit", err) {
		return &flightResult{reply: errReply(http.StatusServiceUnavailable, "policy_unavailable", "rate limits could not be checked"), outcome: "policy_unavailable"}
	}
	if rej != nil {
		res := a.refused(tn, rej)
		return &res
	}
	if err == nil && tn.spend() != nil {
		pm.reserved = price
	}
	if *tn.pumping.Enabled {
		if refused := a.quarantined(ctx, tn, pm.rng); refused != nil {
			a.settleSpend(context.WithoutCancel(ctx), tn, pm.reserved, 0)
			return refused
		}
	}
	return nil
}

// resend is what resendStart learnt: the key of the recipient's code in the shared state
// (empty when escalation is off), when this send started by the shared state's clock, and how
// long the provider that sends it is remembered.
type resend struct {
	key    string
	sent   time.Time
	within time.Duration
}

// resendStart applies resend escalation (policy.resend_escalation) to chain: a code sent again to
// the same recipient within the window starts at the provider after the one that sent it last.
func (a *App) resendStart(ctx context.Context, rt *runtime, tn *tenant, msg *gateway.Message, chain *dispatch.Chain) resend {
	esc := rt.cfg.Policy.ResendEscalation
	if !*esc.Enabled || len(chain.Members) < 2 {
		return resend{}
	}
	r := resend{sent: a.stateNow(), within: esc.Within.D()}
	h := rt.mac("resend", tn.name, msg.To, gateway.ExtractCode(msg.Text, msg.Code))
	r.key = policy.ResendKey(tn.name, hex.EncodeToString(h[:]))
	last, at, ok, err := a.resends.Last(ctx, r.key)
	if err != nil {
		a.stateError("resend_get", err)
	}
	if err == nil && ok {
		if gap := r.sent.Sub(at); gap >= esc.After.D() && gap < esc.Within.D() {
			if i := slices.IndexFunc(chain.Members, func(m *dispatch.Member) bool { return m.Name() == last }); i >= 0 {
				chain.Start = i + 1 // past the last member, dispatch wraps round to the first
			}
		}
	}
	return r
}

// sent does what follows a send that provider accepted: the spend reservation settled at its
// price, the pumping counters of its range, and the provider remembered for resend escalation.
func (a *App) sent(ctx context.Context, pm *permit, provider string) {
	tn, msg := pm.tn, pm.msg
	if tn.spend() != nil {
		a.settleSpend(context.WithoutCancel(ctx), tn, pm.reserved, a.prices.Load().estimate(provider, msg.Country, msg.Type, pm.parts))
	}
	if *tn.pumping.Enabled {
		a.recordPumping(ctx, tn, msg, pm.rng)
	}
	if r := pm.resend; r.key != "" {
		if err := a.resends.Record(ctx, r.key, provider, r.sent, r.within); err != nil {
			a.stateError("resend_put", err)
		}
	}
}

// failure maps a send that failed (e; budgetSpent when the request's deadline ran out first) to
// the answer's status and error code and message, and the record's status. e.Timeout is set on a
// provider's timeout that stopped the chain (failover_on_timeout off) and on a spent deadline
// (budgetSpent too); a chain that failed over ends in an error of its own, never marked.
func failure(rt *runtime, e *gateway.Error, budgetSpent bool) (status int, code, text string, recStatus string) {
	recStatus, text = gateway.StatusFailed, rt.scrub(e.Message)
	switch {
	case e.Class == gateway.ClassRecipient:
		status, code = http.StatusUnprocessableEntity, "recipient_rejected"
		recStatus = gateway.StatusRejected
		if e.Code != "" {
			text = "the provider rejected the destination (" + rt.scrub(e.Code) + ")"
		}
	case e.Class == gateway.ClassUnavailable:
		status, code = http.StatusServiceUnavailable, "no_provider_available"
	case e.Class == gateway.ClassThrottled:
		// This tenant's sends, not the service: the caller may try again after the wait.
		status, code = http.StatusTooManyRequests, "provider_throttled"
	case e.Class == gateway.ClassCancelled:
		status, code = http.StatusServiceUnavailable, "cancelled"
	case budgetSpent || e.Timeout:
		status, code = http.StatusGatewayTimeout, "deadline_exceeded"
	default:
		status, code = http.StatusBadGateway, "all_providers_failed"
	}
	return status, code, text, recStatus
}

// commit writes rec into the message log. Group commit: the answer waits for the record's batch
// to commit (storage.commit_timeout), so a replica killed after answering has lost no record.
// Past that bound the answer goes anyway and the record waits in the retry buffer. Written
// outside the request's context: the record must not be lost when the caller goes away. A record
// the database refuses for its data is given up alone (and counted as dropped) instead of
// stopping the log for every tenant. While the database is down every send ends here: the lines
// are bounded like errors.
func (a *App) commit(ctx context.Context, rec *store.Record) {
	if err := a.store.Insert(context.WithoutCancel(ctx), rec); errors.Is(err, store.ErrRefused) {
		if ok, left := a.errorLine("store|refused"); ok {
			a.log.Error("message log refused the record; it is not kept", append([]any{"id", rec.ID, "err", err.Error()}, leftOut(left)...)...)
		}
	} else if err != nil {
		a.metrics.LogCommitTimeouts.Inc()
		if ok, left := a.errorLine("store|uncommitted"); ok {
			a.log.Error("message log insert not committed before the answer", append([]any{"id", rec.ID, "err", err.Error()}, leftOut(left)...)...)
		}
	}
}
