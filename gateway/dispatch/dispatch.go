// Package dispatch sends a message along a provider chain: each provider behind its own circuit
// breakers (sony/gobreaker/v2), one per channel (SMS and voice are different products at every
// provider, with outages of their own, so a voice outage must not open the breaker of every
// tenant's SMS), and its own per-attempt timeout inside the request's deadline. When several
// tenants share the providers, each tenant also has its own breakers, and the shared ones count
// only failures another tenant corroborates (see owns.go).
// Errors are classified (see gateway.Class): recipient problems stop the chain; provider problems
// and open breakers move on to the next provider; destination problems (this provider cannot reach
// this number) move on without counting against the breaker; throttling (HTTP 429 and the like)
// moves on without counting either, and the tenant whose send was throttled holds off that
// provider for a while (Member.holds), so that one tenant's flood neither opens a breaker every
// tenant shares nor keeps drawing the provider's refusals; a provider that cannot send the
// message (its capabilities) is skipped without being called; a caller that went away stops
// without counting.
package dispatch

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/smsgate/smsgate/gateway"
)

// Attempt outcomes, as they appear in responses, the message log and metric labels.
const (
	OutcomeSent        = "sent"
	OutcomeRecipient   = "recipient_error"
	OutcomeProvider    = "provider_error"
	OutcomeDestination = "destination_error"
	OutcomeThrottled   = "throttled"
	OutcomeTimeout     = "timeout"
	OutcomeUnavailable = "unavailable"
	OutcomeSkipped     = "skipped"
	OutcomeCancelled   = "cancelled"
)

// Observer receives dispatch events for metrics. Calls must be fast and must not block:
// OnBreakerChange runs under the breaker's lock.
type Observer interface {
	OnAttempt(provider, outcome string, d time.Duration)
	OnBreakerChange(provider, channel string, from, to gobreaker.State)
	// OnTenantBreakerChange is the same for one tenant's own breaker (Chain.Shared); it is also
	// called once from closed to closed when the breaker is made, on the tenant's first send.
	OnTenantBreakerChange(provider, channel, tenant string, from, to gobreaker.State)
	OnFailover(from, to string)
}

// BreakerSettings configures one member's breaker. The config package fills every field with
// smsgate's defaults before they get here; the zero value of each field means what it says below.
type BreakerSettings struct {
	// ConsecutiveFailures opens the breaker after this many failures in a row (0: never by count).
	ConsecutiveFailures uint32
	// FailureRatio opens the breaker when failures/(successes+failures) reaches it (0: never by ratio)...
	FailureRatio float64
	// MinRequests ...once at least this many calls were counted in Interval (0: from the first call).
	MinRequests uint32
	// OpenTimeout is how long the breaker stays open before a half-open probe (0: gobreaker's 60s).
	OpenTimeout time.Duration
	// Interval is the closed-state window after which counts reset (0: never).
	Interval time.Duration
	// HalfOpenRequests is how many probes may pass while half-open (0: one).
	HalfOpenRequests uint32
}

// Member is one provider as the dispatcher uses it: the driver, its timeout, its breakers (one
// per channel, see Channels) and its recent statistics. Members outlive a config reload when their
// config did not change.
type Member struct {
	name     string
	provider gateway.Provider
	timeout  time.Duration
	breakers [2]*gobreaker.CircuitBreaker[gateway.Result]
	// owns are each tenant's own breakers of this provider (see Chain.Shared).
	owns     owns
	disabled atomic.Bool
	stats    stats
	holds    holds
}

// MemberOptions configures NewMember.
type MemberOptions struct {
	// Name is the provider's configured name.
	Name string
	// Provider is the driver.
	Provider gateway.Provider
	// Timeout is the per-attempt timeout; 0 means only the request deadline applies.
	Timeout time.Duration
	// Breaker configures the circuit breaker.
	Breaker BreakerSettings
	// Observer gets breaker state changes; nil means none.
	Observer Observer
	// Disabled starts the member drained.
	Disabled bool
}

// Channels are the message types that have a breaker each, in the order of Member.breakers.
var Channels = [2]gateway.MessageType{gateway.SMS, gateway.Voice}

func channel(t gateway.MessageType) int {
	if t == gateway.Voice {
		return 1
	}
	return 0
}

// NewMember wraps a driver with its breakers.
func NewMember(o MemberOptions) *Member {
	m := &Member{name: o.Name, provider: o.Provider, timeout: o.Timeout}
	for i, ch := range Channels {
		var onChange func(from, to gobreaker.State)
		if obs := o.Observer; obs != nil {
			onChange = func(from, to gobreaker.State) { obs.OnBreakerChange(o.Name, string(ch), from, to) }
		}
		// The shared breaker leaves out a failure no other tenant corroborates (errAlone).
		m.breakers[i] = newBreaker(o.Name+"/"+string(ch), o.Breaker, errAlone, onChange)
	}
	m.owns = owns{member: o.Name, settings: o.Breaker, observer: o.Observer, window: evidenceWindow(o.Breaker)}
	m.disabled.Store(o.Disabled)
	return m
}

// newBreaker is a breaker with settings b that counts provider failures only (see the package
// comment): it leaves out the errors that say nothing of the provider's health (uncounted) and
// those that wrap exclude.
func newBreaker(name string, b BreakerSettings, exclude error, onChange func(from, to gobreaker.State)) *gobreaker.CircuitBreaker[gateway.Result] {
	st := gobreaker.Settings{
		Name:        name,
		MaxRequests: b.HalfOpenRequests,
		Interval:    b.Interval,
		Timeout:     b.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if b.ConsecutiveFailures > 0 && c.ConsecutiveFailures >= b.ConsecutiveFailures {
				return true
			}
			counted := c.TotalSuccesses + c.TotalFailures
			return b.FailureRatio > 0 && counted >= b.MinRequests && counted > 0 &&
				float64(c.TotalFailures)/float64(counted) >= b.FailureRatio
		},
		IsSuccessful: succeeded,
		IsExcluded: func(err error) bool {
			return uncounted(err) || errors.Is(err, exclude)
		},
	}
	if onChange != nil {
		st.OnStateChange = func(_ string, from, to gobreaker.State) { onChange(from, to) }
	}
	return gobreaker.NewCircuitBreaker[gateway.Result](st)
}

// succeeded says whether a breaker counts err as a success: none, or the recipient's problem.
func succeeded(err error) bool {
	return err == nil || gateway.ClassOf(err) == gateway.ClassRecipient
}

// uncounted says whether err says nothing about the provider's health: the request's own
// deadline, a caller that went away, a destination error, throttling.
func uncounted(err error) bool {
	c := gateway.ClassOf(err)
	return errors.Is(err, errExcluded) || c == gateway.ClassCancelled || c == gateway.ClassDestination || c == gateway.ClassThrottled
}

// Name returns the provider's name.
func (m *Member) Name() string { return m.name }

// Provider returns the driver.
func (m *Member) Provider() gateway.Provider { return m.provider }

// State returns the worse of the channels' breaker states (open, then half-open, then closed).
func (m *Member) State() gobreaker.State {
	worst := gobreaker.StateClosed
	for _, b := range m.breakers {
		switch st := b.State(); {
		case st == gobreaker.StateOpen:
			return st
		case st == gobreaker.StateHalfOpen:
			worst = st
		}
	}
	return worst
}

// ChannelState returns the state of the breaker of message type t.
func (m *Member) ChannelState(t gateway.MessageType) gobreaker.State {
	return m.breakers[channel(t)].State()
}

// Forget drops what the member keeps of tenant (its own breakers, a hold-off), for a tenant that
// left the config: a team renaming its tenants at each change would otherwise add to it without
// end.
func (m *Member) Forget(tenant string) {
	m.owns.forget(tenant)
	m.holds.clear(tenant)
}

// SetDisabled drains (true) or restores (false) the member.
func (m *Member) SetDisabled(v bool) { m.disabled.Store(v) }

// Disabled reports whether the member is drained.
func (m *Member) Disabled() bool { return m.disabled.Load() }

// Available reports whether a send could reach the provider now (not disabled, the breaker of at
// least one channel not open).
func (m *Member) Available() bool {
	if m.Disabled() {
		return false
	}
	for _, b := range m.breakers {
		if b.State() != gobreaker.StateOpen {
			return true
		}
	}
	return false
}

// Stats returns the member's recent statistics.
func (m *Member) Stats() Stats { return m.stats.snapshot() }

// errExcluded marks an attempt cut short by the request's own deadline, not the provider's
// timeout: the provider got less than its due, so the breaker does not count it.
var errExcluded = errors.New("request deadline reached during attempt")

type excludedErr struct{ err error }

func (e excludedErr) Error() string   { return e.err.Error() }
func (e excludedErr) Unwrap() []error { return []error{e.err, errExcluded} }

// Attempt records one try of one provider.
type Attempt struct {
	Provider string
	Outcome  string
	// Code is the provider's own error or status name.
	Code string
	// Error is a short, safe description; empty on success.
	Error    string
	Duration time.Duration
}

// Chain is what to try, in order.
type Chain struct {
	// Members are the providers in order.
	Members []*Member
	// Start is the index of the first member to try (resend escalation), taken modulo
	// len(Members); earlier ones are tried last.
	Start int
	// FailoverOnTimeout moves on after a failure that may have sent the message (gateway.Error's
	// MaybeSent). A request that never left always fails over.
	FailoverOnTimeout bool
	// Shared says that more than one tenant sends through these providers: then a failure of
	// the tenant's send counts for the breaker every tenant shares only when another tenant saw
	// one too, and always for the tenant's own breaker (see owns).
	Shared bool
	// Pace, when set, says whether a provider's account has room for the tenant's send of type
	// typ now (its configured throughput and the tenant's share of it) and, if not, when it
	// will. A send it refuses skips the provider like a throttled one.
	Pace func(ctx context.Context, provider, tenant string, typ gateway.MessageType) (bool, time.Duration)
}

// Outcome is the result of Send.
type Outcome struct {
	// Provider is the member that accepted the message, empty on failure.
	Provider string
	Result   gateway.Result
	Attempts []Attempt
	// Err is nil on success; otherwise its class says why: Recipient, Provider (all failed or a
	// maybe-sent failure that must not fail over; also when the last failure was a destination
	// error), Unavailable (nothing could be tried: breakers open, disabled, or no provider can send
	// this message), Cancelled.
	Err *gateway.Error
	// BudgetSpent is true when the request deadline ran out before a provider accepted.
	BudgetSpent bool
}

// Send tries the chain in order until a provider accepts, a recipient error stops it, or the
// context ends. obs may be nil.
func Send(ctx context.Context, msg *gateway.Message, ch Chain, obs Observer) Outcome {
	var out Outcome
	n := len(ch.Members)
	out.Attempts = make([]Attempt, 0, n)
	var lastErr *gateway.Error
	prevFailed := ""
	skipped := 0
	// throttled counts the members that throttled this tenant (now or in a hold-off), failed
	// whether another member failed otherwise; wait is the shortest hold-off among them.
	throttled, failed := 0, false
	var wait time.Duration
	for i := 0; i < n; i++ {
		m := ch.Members[(ch.Start+i)%n]
		if ctx.Err() != nil {
			break
		}
		if ok, why := m.provider.Capabilities().Supports(msg); !ok {
			// Not called, not counted: a type or language this provider cannot handle says nothing
			// about its health, and must not open a breaker that every tenant shares.
			a := Attempt{Provider: m.name, Outcome: OutcomeSkipped, Code: "unsupported", Error: m.name + " " + why}
			out.Attempts = append(out.Attempts, a)
			if obs != nil {
				obs.OnAttempt(m.name, a.Outcome, 0)
			}
			skipped++
			continue
		}
		// skip records a provider left out for this tenant's rate, not called, for left more.
		skip := func(code, why string, left time.Duration) {
			a := Attempt{Provider: m.name, Outcome: OutcomeThrottled, Code: code, Error: m.name + why + left.Round(time.Millisecond).String()}
			out.Attempts = append(out.Attempts, a)
			if obs != nil {
				obs.OnAttempt(m.name, a.Outcome, 0)
			}
			throttled++
			wait = shorter(wait, left)
			prevFailed = m.name
		}
		if left := m.holds.left(msg.Tenant, time.Now()); left > 0 {
			// This provider throttled this tenant's sends a moment ago, and more of them would
			// only draw more refusals from a throughput every tenant shares.
			skip("held_off", " throttled this tenant's sends; it is left alone for ", left)
			continue
		}
		if ch.Pace != nil && m.mayCall(msg.Tenant, channel(msg.Type), ch.Shared) {
			// The account's throughput, or this tenant's share of it, is used up for now: calling
			// would draw a refusal, or take what the other tenants need. A send its breakers or a
			// drain will refuse takes no token: it will not call the provider.
			if ok, left := ch.Pace(ctx, m.name, msg.Tenant, msg.Type); !ok {
				skip("throughput", "'s throughput for this tenant is used up for ", left)
				continue
			}
		}
		if prevFailed != "" && obs != nil {
			obs.OnFailover(prevFailed, m.name)
		}
		a, res, err := m.attempt(ctx, msg, i-skipped, ch.Shared)
		out.Attempts = append(out.Attempts, a)
		if obs != nil {
			obs.OnAttempt(m.name, a.Outcome, a.Duration)
		}
		if err == nil {
			out.Provider, out.Result = m.name, res
			return out
		}
		switch err.Class {
		case gateway.ClassRecipient, gateway.ClassCancelled, gateway.ClassCaller:
			out.Err = err
			return out
		case gateway.ClassThrottled:
			throttled++
			wait = shorter(wait, err.RetryAfter)
		case gateway.ClassProvider, gateway.ClassDestination:
			lastErr, failed = err, true
			if err.MaybeSent && !ch.FailoverOnTimeout {
				out.Err = err
				out.BudgetSpent = ctx.Err() != nil
				return out
			}
		}
		prevFailed = m.name
	}
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		out.Err = &gateway.Error{Class: gateway.ClassCancelled, Code: "cancelled", Message: "the caller went away"}
	case ctx.Err() != nil:
		out.BudgetSpent = true
		out.Err = &gateway.Error{Class: gateway.ClassProvider, Code: "deadline", Message: "the request budget ran out before a provider accepted", Timeout: true}
	case throttled > 0 && !failed:
		out.Err = &gateway.Error{Class: gateway.ClassThrottled, Code: "throttled", RetryAfter: wait,
			Message: "the providers of this route are throttling this tenant's sends"}
	case lastErr != nil:
		out.Err = &gateway.Error{Class: gateway.ClassProvider, Code: lastErr.Code, Message: "every provider failed; last: " + lastErr.Message, HTTPStatus: lastErr.HTTPStatus}
	case skipped == n:
		out.Err = &gateway.Error{Class: gateway.ClassUnavailable, Code: "unsupported", Message: "no provider of this route can send this message (" + string(msg.Type) + ")"}
	default:
		out.Err = &gateway.Error{Class: gateway.ClassUnavailable, Code: "no_provider", Message: "no provider is available (breakers open or disabled)"}
	}
	return out
}

func (m *Member) attempt(ctx context.Context, msg *gateway.Message, position int, shared bool) (Attempt, gateway.Result, *gateway.Error) {
	a := Attempt{Provider: m.name}
	if m.Disabled() {
		a.Outcome, a.Code, a.Error = OutcomeUnavailable, "disabled", "provider disabled by an operator"
		return a, gateway.Result{}, &gateway.Error{Class: gateway.ClassUnavailable, Code: "disabled", Message: a.Error}
	}
	actx, cancel := ctx, context.CancelFunc(func() {})
	if m.timeout > 0 {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > m.timeout {
			actx, cancel = context.WithTimeout(ctx, m.timeout)
		}
	}
	defer cancel()
	attemptMsg := *msg
	attemptMsg.Attempt = position
	start := time.Now()
	call := func() (gateway.Result, error) {
		r, err := m.provider.Send(actx, &attemptMsg)
		if err != nil && actx.Err() != nil {
			// The attempt's context ended: classify by whose deadline it was.
			if errors.Is(ctx.Err(), context.Canceled) {
				return r, &gateway.Error{Class: gateway.ClassCancelled, Code: "cancelled", Message: "the caller went away", Err: err}
			}
			// A driver on the shared HTTP kit says whether the request had left; without that
			// knowledge the message may have been sent.
			te := &gateway.Error{Class: gateway.ClassProvider, Code: "timeout", Message: "provider did not answer in time", Timeout: true, MaybeSent: true, Err: err}
			var de *gateway.Error
			if errors.As(err, &de) && de.Timeout {
				te.Code, te.Message, te.MaybeSent = de.Code, de.Message, de.MaybeSent
			}
			if ctx.Err() != nil {
				// The request's deadline, not the provider's timeout (which ended actx alone).
				return r, excludedErr{te}
			}
			return r, te
		}
		if err != nil {
			return r, refusal(err, attemptMsg.From != "" || attemptMsg.Type == gateway.Voice && attemptMsg.Language != "")
		}
		return r, nil
	}
	c := channel(msg.Type)
	var res gateway.Result
	var err error
	ownOpen := false
	if shared {
		res, err, ownOpen = m.owns.execute(msg.Tenant, c, m.breakers[c], call)
	} else {
		res, err = m.breakers[c].Execute(call)
	}
	a.Duration = time.Since(start)
	if err == nil {
		a.Outcome = OutcomeSent
		m.stats.add(true, a.Duration, "")
		m.holds.clear(msg.Tenant)
		return a, res, nil
	}
	if refused(err) {
		a.Outcome, a.Code, a.Error = OutcomeUnavailable, "breaker_open", "circuit breaker is open"
		if ownOpen {
			a.Code, a.Error = "tenant_breaker_open", "this tenant's own circuit breaker for the provider is open"
		}
		a.Duration = 0
		return a, gateway.Result{}, &gateway.Error{Class: gateway.ClassUnavailable, Code: a.Code, Message: a.Error}
	}
	ge := gateway.AsError(err)
	a.Code, a.Error = ge.Code, ge.Message
	switch {
	case ge.Class == gateway.ClassRecipient:
		a.Outcome = OutcomeRecipient
	case ge.Class == gateway.ClassCancelled:
		a.Outcome = OutcomeCancelled
	case ge.Class == gateway.ClassDestination:
		a.Outcome = OutcomeDestination
	case ge.Class == gateway.ClassThrottled:
		a.Outcome = OutcomeThrottled
		// The error now carries the hold-off this tenant got, the provider's Retry-After or ours.
		t := *ge
		t.RetryAfter = m.holds.add(msg.Tenant, ge.RetryAfter, time.Now())
		ge = &t
	case ge.Timeout:
		a.Outcome = OutcomeTimeout
	default:
		a.Outcome = OutcomeProvider
	}
	if ge.Class != gateway.ClassCancelled && ge.Class != gateway.ClassDestination {
		m.stats.add(ge.Class == gateway.ClassRecipient, a.Duration, ge.Class.String())
	}
	return a, gateway.Result{}, ge
}

// refusal reclassifies a provider's refusal of this request, as opposed to a failure of the
// provider, as a destination error: the next provider is tried and the breaker that every tenant
// shares is not touched, because what one tenant sends must not open it.
//
//   - HTTP 400, 413, 414 and 422 are the request's by definition: its content (a text too long or
//     in characters this provider refuses, a voice text over its limit), whatever the tenant put
//     in it. A driver bug would draw them for every request; failing over at once still serves them.
//   - With a choice of the tenant's own that the provider may not take (chosen: a sender,
//     tenants.allow_sender, or the language of a voice message), any other 4xx but authentication,
//     proxy authentication, timeout and throttling, and a refusal inside a 2xx answer (Vonage
//     answers an unknown sender with a 200), may be that choice's fault too. Without such a choice
//     the same answers are the provider's.
//
// A timeout, a failure that may have sent the message, and every other class are left as they are.
func refusal(err error, chosen bool) error {
	ge := gateway.AsError(err)
	if ge.Class != gateway.ClassProvider || ge.Timeout || ge.MaybeSent {
		return err
	}
	why := ""
	switch s := ge.HTTPStatus; {
	case s == http.StatusBadRequest, s == http.StatusRequestEntityTooLarge, s == http.StatusRequestURITooLong, s == http.StatusUnprocessableEntity:
		why = "refused this request: "
	case !chosen:
		return err
	case s == http.StatusUnauthorized, s == http.StatusForbidden, s == http.StatusProxyAuthRequired, s == http.StatusRequestTimeout,
		s == http.StatusTooManyRequests:
		return err
	case s >= 400 && s < 500, s >= 200 && s < 300:
		why = "refused with the sender or language the request chose: "
	default:
		return err
	}
	d := *ge
	d.Class = gateway.ClassDestination
	d.Message = why + ge.Message
	return &d
}

// Stats are a member's recent results (the last 100 attempts that reached the provider).
type Stats struct {
	Attempts     int
	SuccessRatio float64
	AvgLatency   time.Duration
	LastError    string
	LastErrorAt  time.Time
}

const statsWindow = 100

type stats struct {
	mu          sync.Mutex
	ok          [statsWindow]bool
	lat         [statsWindow]time.Duration
	n, next     int
	lastErr     string
	lastErrTime time.Time
}

func (s *stats) add(ok bool, d time.Duration, errClass string) {
	s.mu.Lock()
	s.ok[s.next], s.lat[s.next] = ok, d
	s.next = (s.next + 1) % statsWindow
	if s.n < statsWindow {
		s.n++
	}
	if errClass != "" && !ok {
		s.lastErr, s.lastErrTime = errClass, time.Now()
	}
	s.mu.Unlock()
}

func (s *stats) snapshot() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Attempts: s.n, LastError: s.lastErr, LastErrorAt: s.lastErrTime}
	if s.n == 0 {
		return st
	}
	good := 0
	var sum time.Duration
	for i := 0; i < s.n; i++ {
		if s.ok[i] {
			good++
		}
		sum += s.lat[i]
	}
	st.SuccessRatio = float64(good) / float64(s.n)
	st.AvgLatency = sum / time.Duration(s.n)
	return st
}

// Hold-offs after throttling. A provider's Retry-After is taken within [holdMin, holdMax]; without
// one the hold-off starts at holdMin and doubles with each throttle that follows a hold-off, up to
// holdCap. A tenant that stays clear of the provider for holdForget starts again from holdMin.
const (
	holdMin    = time.Second
	holdCap    = 30 * time.Second
	holdMax    = time.Minute
	holdForget = 2 * time.Minute
)

// holds are the tenants that hold off one provider after it throttled their sends. A provider's
// throughput is the account's, shared by every tenant: the hold-off falls on the tenant whose send
// was refused, so a flooding tenant soon stops reaching the provider while the others go on
// using it. Kept per replica (each learns from its own answers); keyed by tenant name, each
// forgotten two minutes after its hold-off or when its tenant leaves the config.
type holds struct {
	mu sync.Mutex
	m  map[string]hold
	// n is len(m), read without the lock: a send pays nothing while no tenant is held off.
	n atomic.Int32
}

type hold struct {
	until  time.Time
	streak int
}

// left is how long tenant is still to hold off; 0 when it is not held off.
func (h *holds) left(tenant string, now time.Time) time.Duration {
	if h.n.Load() == 0 {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.m[tenant]
	if !ok {
		return 0
	}
	if now.Sub(e.until) >= holdForget {
		h.drop(tenant)
		return 0
	}
	return max(e.until.Sub(now), 0)
}

// add holds tenant off after a throttled send and returns for how long.
func (h *holds) add(tenant string, retryAfter time.Duration, now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]hold{}
	}
	e, ok := h.m[tenant]
	switch {
	case !ok || now.Sub(e.until) >= holdForget:
		e.streak = 0
	case now.Before(e.until):
		// A send already in flight when the hold-off began: it says nothing new.
		return e.until.Sub(now)
	}
	d := min(holdMin<<min(e.streak, 5), holdCap)
	if retryAfter > 0 {
		d = min(max(retryAfter, holdMin), holdMax)
	}
	e.until, e.streak = now.Add(d), e.streak+1
	h.m[tenant] = e
	h.n.Store(int32(len(h.m)))
	return d
}

// clear ends tenant's hold-off after the provider took one of its sends.
func (h *holds) clear(tenant string) {
	if h.n.Load() == 0 {
		return
	}
	h.mu.Lock()
	h.drop(tenant)
	h.mu.Unlock()
}

func (h *holds) drop(tenant string) {
	delete(h.m, tenant)
	h.n.Store(int32(len(h.m)))
}

// shorter returns the shorter of two waits, a zero wait counting as unknown.
func shorter(a, b time.Duration) time.Duration {
	if a == 0 || b > 0 && b < a {
		return b
	}
	return a
}
