package dispatch

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sony/gobreaker/v2"

	"github.com/smsgate/smsgate/gateway"
)

// fake is a provider whose behaviour a test sets and changes.
type fake struct {
	mu    sync.Mutex
	calls atomic.Int32
	fn    func(ctx context.Context) (gateway.Result, error)
	// caps are its capabilities; zero means sms and voice.
	caps gateway.Capabilities
}

func (f *fake) Capabilities() gateway.Capabilities {
	if len(f.caps.Types) == 0 {
		return gateway.SMSAndVoice
	}
	return f.caps
}

func (f *fake) Send(ctx context.Context, _ *gateway.Message) (gateway.Result, error) {
	f.calls.Add(1)
	f.mu.Lock()
	fn := f.fn
	f.mu.Unlock()
	return fn(ctx)
}

func (f *fake) set(fn func(ctx context.Context) (gateway.Result, error)) {
	f.mu.Lock()
	f.fn = fn
	f.mu.Unlock()
}

func ok(id string) func(context.Context) (gateway.Result, error) {
	return func(context.Context) (gateway.Result, error) { return gateway.Result{ProviderMessageID: id}, nil }
}

func failing(class gateway.Class, code string) func(context.Context) (gateway.Result, error) {
	return func(context.Context) (gateway.Result, error) {
		return gateway.Result{}, &gateway.Error{Class: class, Code: code, Message: "fake " + code}
	}
}

func hang(ctx context.Context) (gateway.Result, error) {
	<-ctx.Done()
	return gateway.Result{}, ctx.Err()
}

func member(name string, f *fake, timeout time.Duration, b BreakerSettings) *Member {
	return NewMember(MemberOptions{Name: name, Provider: f, Timeout: timeout, Breaker: b})
}

var strict = BreakerSettings{ConsecutiveFailures: 3, OpenTimeout: time.Hour}

func outcomes(o Outcome) []string {
	var s []string
	for _, a := range o.Attempts {
		s = append(s, a.Provider+":"+a.Outcome)
	}
	return s
}

func TestSendChain(t *testing.T) {
	tests := []struct {
		name         string
		first, next  func(context.Context) (gateway.Result, error)
		wantProvider string
		wantClass    *gateway.Class
		wantAttempts []string
	}{
		{name: "first accepts", first: ok("a1"), next: ok("b1"), wantProvider: "a", wantAttempts: []string{"a:sent"}},
		{name: "provider error fails over", first: failing(gateway.ClassProvider, "E500"), next: ok("b1"), wantProvider: "b",
			wantAttempts: []string{"a:provider_error", "b:sent"}},
		{name: "recipient error stops the chain", first: failing(gateway.ClassRecipient, "21211"), next: ok("b1"),
			wantClass: ptr(gateway.ClassRecipient), wantAttempts: []string{"a:recipient_error"}},
		{name: "all fail", first: failing(gateway.ClassProvider, "E500"), next: failing(gateway.ClassProvider, "20003"),
			wantClass: ptr(gateway.ClassProvider), wantAttempts: []string{"a:provider_error", "b:provider_error"}},
		{name: "caller error stops the chain", first: failing(gateway.ClassCaller, "BAD_SENDER"), next: ok("b1"),
			wantClass: ptr(gateway.ClassCaller), wantAttempts: []string{"a:provider_error"}},
		{name: "unclassified error is a provider error", first: func(context.Context) (gateway.Result, error) { return gateway.Result{}, errors.New("conn refused") },
			next: ok("b1"), wantProvider: "b", wantAttempts: []string{"a:provider_error", "b:sent"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := &fake{fn: tc.first}, &fake{fn: tc.next}
			ch := Chain{Members: []*Member{member("a", a, time.Second, strict), member("b", b, time.Second, strict)}, FailoverOnTimeout: true}
			out := Send(context.Background(), sms(), ch, nil)
			if out.Provider != tc.wantProvider {
				t.Errorf("provider = %q, want %q", out.Provider, tc.wantProvider)
			}
			if diff := cmp.Diff(tc.wantAttempts, outcomes(out)); diff != "" {
				t.Errorf("attempts (-want +got):\n%s", diff)
			}
			if (out.Err == nil) != (tc.wantClass == nil) || (out.Err != nil && out.Err.Class != *tc.wantClass) {
				t.Errorf("err = %v, want class %v", out.Err, tc.wantClass)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestBreakerOpensSkipsAndRecovers(t *testing.T) {
	a, b := &fake{fn: failing(gateway.ClassProvider, "E503")}, &fake{fn: ok("b")}
	ma := member("a", a, time.Second, BreakerSettings{ConsecutiveFailures: 3, OpenTimeout: 50 * time.Millisecond})
	ch := Chain{Members: []*Member{ma, member("b", b, time.Second, strict)}, FailoverOnTimeout: true}
	voice := &gateway.Message{Type: gateway.Voice}
	for i := 0; i < 3; i++ {
		if out := Send(context.Background(), sms(), ch, nil); out.Provider != "b" {
			t.Fatalf("send %d: provider %q", i, out.Provider)
		}
		if out := Send(context.Background(), voice, ch, nil); out.Provider != "b" {
			t.Fatalf("voice send %d: provider %q", i, out.Provider)
		}
	}
	if ma.State() != gobreaker.StateOpen || ma.Available() {
		t.Fatalf("breaker state after 3 failures of each channel = %v, available %v; want open, unavailable", ma.State(), ma.Available())
	}
	out := Send(context.Background(), sms(), ch, nil)
	if diff := cmp.Diff([]string{"a:unavailable", "b:sent"}, outcomes(out)); diff != "" {
		t.Errorf("open breaker not skipped (-want +got):\n%s", diff)
	}
	if got := a.calls.Load(); got != 6 {
		t.Errorf("provider a called %d times, want 6 (no call while open)", got)
	}
	// Recovery: after the open timeout one probe goes through (half-open) and closes the breaker.
	a.set(ok("a"))
	deadline := time.Now().Add(2 * time.Second)
	for ma.State() == gobreaker.StateOpen && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ma.State() != gobreaker.StateHalfOpen || !ma.Available() {
		t.Fatalf("state after open timeout = %v, available %v; want half-open, available (for a probe)", ma.State(), ma.Available())
	}
	if out := Send(context.Background(), sms(), ch, nil); out.Provider != "a" {
		t.Fatalf("half-open probe went to %q, want a", out.Provider)
	}
	if st := ma.ChannelState(gateway.SMS); st != gobreaker.StateClosed || ma.State() != gobreaker.StateHalfOpen {
		t.Errorf("after a good SMS probe: SMS %v, worst %v; want closed, half-open (voice has had no probe)", st, ma.State())
	}
}

func TestBreakerRatio(t *testing.T) {
	a := &fake{fn: ok("a")}
	ma := member("a", a, time.Second, BreakerSettings{FailureRatio: 0.5, MinRequests: 10, OpenTimeout: time.Hour})
	ch := Chain{Members: []*Member{ma}}
	// Alternate success and failure: never 3 in a row, but half of 10 fail.
	for i := 0; i < 10; i++ {
		if i%2 == 0 {
			a.set(ok("a"))
		} else {
			a.set(failing(gateway.ClassProvider, "E500"))
		}
		Send(context.Background(), sms(), ch, nil)
		if i < 9 && ma.State() != gobreaker.StateClosed {
			t.Fatalf("opened early after %d requests", i+1)
		}
	}
	if ma.State() != gobreaker.StateOpen {
		t.Errorf("state = %v, want open at ratio 0.5 over 10", ma.State())
	}
}

func TestRecipientErrorsDoNotTripBreaker(t *testing.T) {
	a := &fake{fn: failing(gateway.ClassRecipient, "REJECTED_DESTINATION")}
	ma := member("a", a, time.Second, BreakerSettings{ConsecutiveFailures: 2, OpenTimeout: time.Hour})
	for i := 0; i < 5; i++ {
		Send(context.Background(), sms(), Chain{Members: []*Member{ma}}, nil)
	}
	if ma.State() != gobreaker.StateClosed {
		t.Errorf("recipient errors opened the breaker")
	}
}

func TestPerAttemptTimeoutFailsOverInsideBudget(t *testing.T) {
	a, b := &fake{fn: hang}, &fake{fn: ok("b")}
	ch := Chain{Members: []*Member{member("a", a, 50*time.Millisecond, strict), member("b", b, time.Second, strict)}, FailoverOnTimeout: true}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out := Send(ctx, sms(), ch, nil)
	if out.Provider != "b" {
		t.Fatalf("provider = %q, want b; attempts %v", out.Provider, outcomes(out))
	}
	if diff := cmp.Diff([]string{"a:timeout", "b:sent"}, outcomes(out)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// The timed-out attempt took the provider's timeout (50 ms), not the request's budget (2 s).
	// The lower bound has slack: a CI run measured 48.4 ms, a timer firing a little before the
	// wall-clock reading taken after it was armed.
	if d := out.Attempts[0].Duration; d < 25*time.Millisecond || d > time.Second {
		t.Errorf("timed-out attempt took %v", d)
	}
}

func TestTimeoutWithoutFailover(t *testing.T) {
	a, b := &fake{fn: hang}, &fake{fn: ok("b")}
	ch := Chain{Members: []*Member{member("a", a, 30*time.Millisecond, strict), member("b", b, time.Second, strict)}, FailoverOnTimeout: false}
	out := Send(context.Background(), sms(), ch, nil)
	if out.Err == nil || !out.Err.Timeout || b.calls.Load() != 0 {
		t.Errorf("want a timeout error and no call to b; err=%v calls=%d", out.Err, b.calls.Load())
	}
}

func TestRequestBudgetSpent(t *testing.T) {
	for _, failover := range []bool{true, false} {
		a := &fake{fn: hang}
		ma := member("a", a, time.Second, BreakerSettings{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Millisecond)
		out := Send(ctx, sms(), Chain{Members: []*Member{ma}, FailoverOnTimeout: failover}, nil)
		cancel()
		if !out.BudgetSpent || out.Err == nil || !out.Err.Timeout {
			t.Fatalf("failover on timeout %v: want a timeout with the budget spent, got %+v", failover, out)
		}
		// The request's own deadline cut the attempt short: the provider is not blamed.
		if ma.State() != gobreaker.StateClosed {
			t.Errorf("failover on timeout %v: breaker opened on the request's deadline", failover)
		}
	}
}

func TestCallerCancelIsExcluded(t *testing.T) {
	a := &fake{fn: hang}
	ma := member("a", a, time.Second, BreakerSettings{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	out := Send(ctx, sms(), Chain{Members: []*Member{ma}}, nil)
	if out.Err == nil || out.Err.Class != gateway.ClassCancelled {
		t.Fatalf("err = %v, want cancelled", out.Err)
	}
	if ma.State() != gobreaker.StateClosed {
		t.Errorf("a cancelled call counted as a failure")
	}
	if c := ma.breakers[0].Counts(); c.TotalFailures != 0 || c.TotalSuccesses != 0 {
		t.Errorf("counts = %+v, want nothing counted", c)
	}
}

func TestDisabledAndStartIndex(t *testing.T) {
	a, b, c := &fake{fn: ok("a")}, &fake{fn: ok("b")}, &fake{fn: ok("c")}
	ma := member("a", a, time.Second, strict)
	ch := Chain{Members: []*Member{ma, member("b", b, time.Second, strict), member("c", c, time.Second, strict)}}
	ma.SetDisabled(true)
	out := Send(context.Background(), sms(), ch, nil)
	if diff := cmp.Diff([]string{"a:unavailable", "b:sent"}, outcomes(out)); diff != "" {
		t.Errorf("disabled (-want +got):\n%s", diff)
	}
	ma.SetDisabled(false)
	ch.Start = 2
	c.set(failing(gateway.ClassProvider, "x"))
	out = Send(context.Background(), sms(), ch, nil)
	if diff := cmp.Diff([]string{"c:provider_error", "a:sent"}, outcomes(out)); diff != "" {
		t.Errorf("start index wraps around (-want +got):\n%s", diff)
	}
	ch.Start = 3 // one past the last member (resend escalation after the last): the first
	out = Send(context.Background(), sms(), ch, nil)
	if diff := cmp.Diff([]string{"a:sent"}, outcomes(out)); diff != "" {
		t.Errorf("start index past the end (-want +got):\n%s", diff)
	}
}

func TestAllUnavailable(t *testing.T) {
	ma := member("a", &fake{fn: ok("a")}, time.Second, strict)
	ma.SetDisabled(true)
	out := Send(context.Background(), sms(), Chain{Members: []*Member{ma}}, nil)
	if out.Err == nil || out.Err.Class != gateway.ClassUnavailable {
		t.Errorf("err = %v, want unavailable", out.Err)
	}
}

type countingObserver struct {
	mu        sync.Mutex
	failovers []string
	changes   []string
}

func (o *countingObserver) OnAttempt(string, string, time.Duration) {}
func (o *countingObserver) OnBreakerChange(p, ch string, from, to gobreaker.State) {
	o.mu.Lock()
	o.changes = append(o.changes, p+"/"+ch+":"+from.String()+">"+to.String())
	o.mu.Unlock()
}
func (o *countingObserver) OnTenantBreakerChange(p, ch, tenant string, from, to gobreaker.State) {
	o.mu.Lock()
	o.changes = append(o.changes, p+"/"+ch+"/"+tenant+":"+from.String()+">"+to.String())
	o.mu.Unlock()
}
func (o *countingObserver) OnFailover(from, to string) {
	o.mu.Lock()
	o.failovers = append(o.failovers, from+">"+to)
	o.mu.Unlock()
}

func TestObserverAndConcurrency(t *testing.T) {
	obs := &countingObserver{}
	a, b := &fake{fn: failing(gateway.ClassProvider, "E500")}, &fake{fn: ok("b")}
	ma := NewMember(MemberOptions{Name: "a", Provider: a, Timeout: time.Second, Observer: obs, Breaker: BreakerSettings{ConsecutiveFailures: 5, OpenTimeout: time.Hour}})
	ch := Chain{Members: []*Member{ma, member("b", b, time.Second, strict)}, FailoverOnTimeout: true}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out := Send(context.Background(), sms(), ch, obs); out.Provider != "b" {
				t.Errorf("provider %q", out.Provider)
			}
		}()
	}
	wg.Wait()
	if len(obs.changes) != 1 || obs.changes[0] != "a/sms:closed>open" {
		t.Errorf("breaker changes = %v", obs.changes)
	}
	if len(obs.failovers) != 50 {
		t.Errorf("failovers = %d, want 50", len(obs.failovers))
	}
	if st := ma.Stats(); st.LastError != "provider" || st.SuccessRatio != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func sms() *gateway.Message { return &gateway.Message{Type: gateway.SMS} }

// voiceDown is a provider whose voice platform answers 503 while its SMS works.
type voiceDown struct{}

func (voiceDown) Capabilities() gateway.Capabilities { return gateway.SMSAndVoice }
func (voiceDown) Send(_ context.Context, m *gateway.Message) (gateway.Result, error) {
	if m.Type == gateway.Voice {
		return gateway.Result{}, &gateway.Error{Class: gateway.ClassProvider, Code: "503", HTTPStatus: 503, Message: "voice platform down"}
	}
	return gateway.Result{ProviderMessageID: "a"}, nil
}

// TestVoiceOutageLeavesSMSBreakerClosed: SMS and voice are different products at a provider,
// with outages of their own. Voice failures open the voice breaker only: the next SMS still goes
// to the provider, the next voice message goes straight to the backup.
func TestVoiceOutageLeavesSMSBreakerClosed(t *testing.T) {
	a, b := voiceDown{}, &fake{fn: ok("b")}
	obs := &countingObserver{}
	ma := NewMember(MemberOptions{Name: "a", Provider: a, Timeout: time.Second, Breaker: strict, Observer: obs})
	ch := Chain{Members: []*Member{ma, member("b", b, time.Second, strict)}}
	voice := &gateway.Message{Type: gateway.Voice}
	for range 3 {
		Send(context.Background(), voice, ch, nil)
	}
	if ma.ChannelState(gateway.Voice) != gobreaker.StateOpen || ma.ChannelState(gateway.SMS) != gobreaker.StateClosed || ma.State() != gobreaker.StateOpen || !ma.Available() {
		t.Fatalf("voice %v, sms %v, worst %v, available %v", ma.ChannelState(gateway.Voice), ma.ChannelState(gateway.SMS), ma.State(), ma.Available())
	}
	if diff := cmp.Diff([]string{"a:sent"}, outcomes(Send(context.Background(), sms(), ch, nil))); diff != "" {
		t.Errorf("sms after the voice outage (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a:unavailable", "b:sent"}, outcomes(Send(context.Background(), voice, ch, nil))); diff != "" {
		t.Errorf("voice after the voice outage (-want +got):\n%s", diff)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if diff := cmp.Diff([]string{"a/voice:closed>open"}, obs.changes); diff != "" {
		t.Errorf("breaker changes (-want +got):\n%s", diff)
	}
}

// TestUnsupportedIsSkippedNotCounted: a provider that cannot send the message's type is not
// called, not counted by its breaker, and listed as skipped; the next provider sends.
func TestUnsupportedIsSkippedNotCounted(t *testing.T) {
	a := &fake{fn: failing(gateway.ClassProvider, "NO_VOICE"), caps: gateway.SMSOnly}
	b := &fake{fn: ok("b1")}
	ma := member("a", a, time.Second, BreakerSettings{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
	ch := Chain{Members: []*Member{ma, member("b", b, time.Second, strict)}}
	for range 10 {
		out := Send(context.Background(), &gateway.Message{Type: gateway.Voice}, ch, nil)
		if out.Provider != "b" {
			t.Fatalf("provider %q, attempts %v", out.Provider, outcomes(out))
		}
		if out.Attempts[0].Code != "unsupported" || out.Attempts[0].Outcome != OutcomeSkipped {
			t.Fatalf("attempt %+v", out.Attempts[0])
		}
	}
	if a.calls.Load() != 0 || ma.State() != gobreaker.StateClosed || ma.breakers[1].Counts().Requests != 0 {
		t.Errorf("the skipped provider was called %d times, breaker %v %+v", a.calls.Load(), ma.State(), ma.breakers[1].Counts())
	}
	// Nothing in the chain can send it: unavailable, with its own code.
	out := Send(context.Background(), &gateway.Message{Type: gateway.Voice}, Chain{Members: []*Member{ma}}, nil)
	if out.Err == nil || out.Err.Class != gateway.ClassUnavailable || out.Err.Code != "unsupported" {
		t.Errorf("err = %v", out.Err)
	}
}

// TestDestinationErrorsFailOverWithoutTrippingBreaker: errors about one destination fail over,
// and however many there are, the breaker that every tenant shares stays closed.
func TestDestinationErrorsFailOverWithoutTrippingBreaker(t *testing.T) {
	a, b := &fake{fn: failing(gateway.ClassDestination, "21408")}, &fake{fn: ok("b1")}
	ma := member("a", a, time.Second, BreakerSettings{ConsecutiveFailures: 2, OpenTimeout: time.Hour})
	ch := Chain{Members: []*Member{ma, member("b", b, time.Second, strict)}}
	for range 10 {
		out := Send(context.Background(), sms(), ch, nil)
		if diff := cmp.Diff([]string{"a:destination_error", "b:sent"}, outcomes(out)); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	}
	if ma.State() != gobreaker.StateClosed {
		t.Errorf("destination errors opened the breaker")
	}
	out := Send(context.Background(), sms(), Chain{Members: []*Member{ma}}, nil)
	if out.Err == nil || out.Err.Class != gateway.ClassProvider || out.Err.Code != "21408" {
		t.Errorf("alone: err = %v, want a provider-class failure (502, not 422)", out.Err)
	}
}

// TestNeverSentAlwaysFailsOver: with failover_on_timeout off, a failure that may have sent stops
// the chain, but one that never left (refused, DNS, dial timeout) still fails over.
func TestNeverSentAlwaysFailsOver(t *testing.T) {
	notSent := func(context.Context) (gateway.Result, error) {
		return gateway.Result{}, &gateway.Error{Class: gateway.ClassProvider, Code: "CONNECT_TIMEOUT", Timeout: true}
	}
	maybe := func(context.Context) (gateway.Result, error) {
		return gateway.Result{}, &gateway.Error{Class: gateway.ClassProvider, Code: "CONNECTION_CLOSED", MaybeSent: true}
	}
	// atTimeout answers as the driver kit does when the attempt's timeout ends a call: a timeout
	// that says whether the request had left.
	atTimeout := func(maybeSent bool) func(context.Context) (gateway.Result, error) {
		return func(ctx context.Context) (gateway.Result, error) {
			<-ctx.Done()
			return gateway.Result{}, &gateway.Error{Class: gateway.ClassProvider, Code: "CONNECT_TIMEOUT", Timeout: true, MaybeSent: maybeSent}
		}
	}
	for _, tc := range []struct {
		name string
		fn   func(context.Context) (gateway.Result, error)
		want []string
	}{
		{"never sent", notSent, []string{"a:timeout", "b:sent"}},
		{"maybe sent", maybe, []string{"a:provider_error"}},
		{"never sent, at the attempt's timeout", atTimeout(false), []string{"a:timeout", "b:sent"}},
		{"maybe sent, at the attempt's timeout", atTimeout(true), []string{"a:timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := Chain{Members: []*Member{member("a", &fake{fn: tc.fn}, 30*time.Millisecond, strict), member("b", &fake{fn: ok("b")}, time.Second, strict)}}
			out := Send(context.Background(), sms(), ch, nil)
			if diff := cmp.Diff(tc.want, outcomes(out)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if out.BudgetSpent {
				t.Errorf("budget spent on a send with no deadline of its own")
			}
		})
	}
}

// TestChosenSenderRefusalsDoNotTripBreaker: a tenant that may choose its sender sends one a
// provider refuses (a 404 for an unknown origination identity, a refusal inside a 200), or a
// voice message in a language the provider does not speak. Each try fails over to the next
// provider, and the shared breaker stays closed however many there are; the same refusals without
// such a choice, and a chosen sender's 5xx, 401 or 429, are the provider's. A 400, 413 or 422 is
// the request's with or without a choice (a text too long for this provider, say).
func TestChosenSenderRefusalsDoNotTripBreaker(t *testing.T) {
	refuse := func(status int) func(context.Context) (gateway.Result, error) {
		return func(context.Context) (gateway.Result, error) {
			return gateway.Result{}, &gateway.Error{Class: gateway.ClassProvider, Code: "E" + strconv.Itoa(status), HTTPStatus: status, Message: "refused"}
		}
	}
	for _, tc := range []struct {
		status int
		from   string
		opens  bool
	}{
		{400, "MYBANK", false}, {404, "+15005550006", false}, {422, "X", false}, {200, "MYBANK", false},
		{404, "voice:xx", false}, {400, "", false}, {413, "", false}, {422, "", false},
		{404, "", true}, {200, "", true}, {402, "", true}, {500, "MYBANK", true}, {401, "MYBANK", true}, {429, "MYBANK", true}, {403, "MYBANK", true},
	} {
		a, b := &fake{fn: refuse(tc.status)}, &fake{fn: ok("b")}
		ma := member("a", a, time.Second, strict)
		ch := Chain{Members: []*Member{ma, member("b", b, time.Second, strict)}}
		msg := sms()
		msg.From = tc.from
		if tc.from == "voice:xx" {
			msg.From, msg.Type, msg.Language = "", gateway.Voice, "xx"
		}
		for range 5 {
			if out := Send(context.Background(), msg, ch, nil); out.Provider != "b" {
				t.Fatalf("%d from %q: provider %q, want the next one; %v", tc.status, tc.from, out.Provider, outcomes(out))
			}
		}
		if open := ma.State() == gobreaker.StateOpen; open != tc.opens {
			t.Errorf("%d from %q: breaker open = %v, want %v", tc.status, tc.from, open, tc.opens)
		}
	}
}

func throttle(retryAfter time.Duration) func(context.Context) (gateway.Result, error) {
	return func(context.Context) (gateway.Result, error) {
		return gateway.Result{}, &gateway.Error{Class: gateway.ClassThrottled, Code: "HTTP_429", HTTPStatus: 429, Message: "Too Many Requests", RetryAfter: retryAfter}
	}
}

func from(tenant string) *gateway.Message { return &gateway.Message{Type: gateway.SMS, Tenant: tenant} }

// TestThrottlingHoldsOffTheFloodNotTheOthers: a provider answers 429 while one tenant floods it.
// However many refusals, its breaker (which every tenant shares) stays closed; the flooding tenant
// stops calling it and goes to the next provider; another tenant still tries it, and once the
// flood has passed, sends through it.
func TestThrottlingHoldsOffTheFloodNotTheOthers(t *testing.T) {
	// A Retry-After of a minute: no hold-off may run out while the test runs on a slow machine.
	a, b := &fake{fn: throttle(time.Minute)}, &fake{fn: ok("b1")}
	ma := member("a", a, time.Second, BreakerSettings{ConsecutiveFailures: 2, OpenTimeout: time.Hour})
	ch := Chain{Members: []*Member{ma, member("b", b, time.Second, strict)}}
	obs := &countingObserver{}

	out := Send(context.Background(), from("flood"), ch, obs)
	if diff := cmp.Diff([]string{"a:throttled", "b:sent"}, outcomes(out)); diff != "" {
		t.Fatalf("first throttled send (-want +got):\n%s", diff)
	}
	for range 20 {
		out := Send(context.Background(), from("flood"), ch, obs)
		if diff := cmp.Diff([]string{"a:throttled", "b:sent"}, outcomes(out)); diff != "" || out.Attempts[0].Code != "held_off" {
			t.Fatalf("held off (-want +got):\n%s%+v", diff, out.Attempts[0])
		}
	}
	// A send held off the first provider is a failover too (smsgate_failovers_total).
	if n := len(obs.failovers); n != 21 || obs.failovers[20] != "a>b" {
		t.Errorf("failovers %v, want 21 of a>b", obs.failovers)
	}
	if n := a.calls.Load(); n != 1 {
		t.Errorf("the throttled tenant called the provider %d times, want 1 (held off after the first)", n)
	}
	if ma.State() != gobreaker.StateClosed {
		t.Fatalf("throttling opened the breaker every tenant shares")
	}
	// The provider still throttles (account-wide): the other tenant tries it and fails over.
	if out := Send(context.Background(), from("quiet"), ch, nil); out.Provider != "b" || a.calls.Load() != 2 {
		t.Errorf("quiet during the flood: %v, calls %d", outcomes(out), a.calls.Load())
	}
	// The flood's burst is over; the other tenant's hold-off ends with time, the flood's is longer.
	a.set(ok("a1"))
	ma.holds.mu.Lock()
	e := ma.holds.m["quiet"]
	e.until = time.Now()
	ma.holds.m["quiet"] = e
	ma.holds.mu.Unlock()
	if out := Send(context.Background(), from("quiet"), ch, nil); out.Provider != "a" {
		t.Errorf("quiet after the flood: %v, want the first provider", outcomes(out))
	}
	if _, held := ma.holds.m["quiet"]; held {
		t.Errorf("a send the provider took did not end the hold-off")
	}
	if out := Send(context.Background(), from("flood"), ch, nil); out.Provider != "b" {
		t.Errorf("flood still within its hold-off: %v", outcomes(out))
	}
}

// TestEveryProviderThrottling: when every provider of the chain throttles the tenant, the answer
// is a throttled error carrying the shortest wait; a provider failing otherwise makes it a
// provider error (502), as before.
func TestEveryProviderThrottling(t *testing.T) {
	ch := Chain{Members: []*Member{member("a", &fake{fn: throttle(5 * time.Second)}, time.Second, strict),
		member("b", &fake{fn: throttle(3 * time.Second)}, time.Second, strict)}}
	out := Send(context.Background(), from("t"), ch, nil)
	if out.Err == nil || out.Err.Class != gateway.ClassThrottled || out.Err.RetryAfter != 3*time.Second {
		t.Fatalf("err = %+v, want throttled with 3s", out.Err)
	}
	// Held off both now: nothing is called, and the wait is what is left of the shorter.
	out = Send(context.Background(), from("t"), ch, nil)
	if out.Err == nil || out.Err.Class != gateway.ClassThrottled || out.Err.RetryAfter <= 0 || out.Err.RetryAfter > 3*time.Second {
		t.Errorf("held off everywhere: err = %+v", out.Err)
	}
	mixed := Chain{Members: []*Member{member("a", &fake{fn: throttle(0)}, time.Second, strict),
		member("b", &fake{fn: failing(gateway.ClassProvider, "HTTP_503")}, time.Second, strict)}}
	if out := Send(context.Background(), from("t"), mixed, nil); out.Err == nil || out.Err.Class != gateway.ClassProvider || out.Err.Code != "HTTP_503" {
		t.Errorf("throttled then failed: err = %+v, want the provider error", out.Err)
	}
}

// TestHoldOffDurations: the provider's Retry-After within [1s, 60s]; without one 1s, doubling
// with each throttle after a hold-off, up to 30s; two quiet minutes start again from 1s; a send
// already in flight when the hold-off began does not lengthen it.
func TestHoldOffDurations(t *testing.T) {
	var h holds
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	if d := h.add("x", 5*time.Second, t0); d != 5*time.Second || h.left("x", t0.Add(2*time.Second)) != 3*time.Second {
		t.Errorf("Retry-After 5s: %v", d)
	}
	if d := h.add("x", time.Hour, t0.Add(time.Millisecond)); d != 5*time.Second-time.Millisecond {
		t.Errorf("a throttle inside the hold-off changed it: %v", d)
	}
	if d := h.add("y", time.Hour, t0); d != time.Minute {
		t.Errorf("Retry-After 1h: %v, want 60s", d)
	}
	if d := h.add("y2", time.Millisecond, t0); d != time.Second {
		t.Errorf("Retry-After 1ms: %v, want 1s", d)
	}
	var got []time.Duration
	now := t0
	for range 8 {
		d := h.add("z", 0, now)
		got = append(got, d)
		now = now.Add(d)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i := range want {
		want[i] *= time.Second
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("doubling (-want +got):\n%s", diff)
	}
	// now is where z's last hold-off ended: before two quiet minutes are over it is kept (and
	// read as 0 left, never less), at two it is dropped; a throttle after them starts from 1s,
	// whether or not a send looked at the hold-off first.
	if left := h.left("z", now.Add(holdForget-time.Nanosecond)); left != 0 || h.m["z"].streak == 0 {
		t.Errorf("a nanosecond short of two quiet minutes: left %v, hold-off %+v", left, h.m["z"])
	}
	if h.left("z", now.Add(holdForget)) != 0 || h.m["z"].streak != 0 {
		t.Errorf("two quiet minutes did not drop z's hold-off: %+v", h.m["z"])
	}
	if h.add("z", 0, now.Add(holdForget)) != time.Second {
		t.Errorf("two quiet minutes did not start again from 1s")
	}
	if _, ok := h.m["z"]; !ok || h.n.Load() != int32(len(h.m)) {
		t.Errorf("the new hold-off is not kept: %+v, n %d", h.m, h.n.Load())
	}
	h.add("w", 0, t0)
	h.add("w", 0, t0.Add(time.Second))
	if _, ok := h.m["w"]; !ok || h.m["w"].streak != 2 {
		t.Fatalf("w's streak: %+v", h.m["w"])
	}
	// w's second hold-off (2s) ended at t0+3s.
	later := t0.Add(3*time.Second + holdForget)
	if d := h.add("w", 0, later); d != time.Second {
		t.Errorf("a throttle two quiet minutes after the last hold-off, no send between: %v, want 1s", d)
	}
	n := h.n.Load()
	if h.left("w", later.Add(time.Second+holdForget-time.Nanosecond)) != 0 || h.n.Load() != n {
		t.Errorf("w's fresh hold-off, ended a moment ago, was dropped or read as time left")
	}
	h.clear("x")
	if h.left("x", t0) != 0 || h.n.Load() != int32(len(h.m)) {
		t.Errorf("clear: left %v, n %d, map %d", h.left("x", t0), h.n.Load(), len(h.m))
	}
}

// TestForgetDropsAHoldOff: a tenant that leaves the config leaves nothing behind, its hold-off
// included.
func TestForgetDropsAHoldOff(t *testing.T) {
	m := member("a", &fake{fn: throttle(time.Minute)}, time.Second, strict)
	Send(context.Background(), from("gone"), Chain{Members: []*Member{m}}, nil)
	if m.holds.left("gone", time.Now()) == 0 {
		t.Fatal("the throttled tenant is not held off")
	}
	m.Forget("gone")
	if len(m.holds.m) != 0 || m.holds.n.Load() != 0 {
		t.Errorf("after Forget: %d hold-offs kept, n %d", len(m.holds.m), m.holds.n.Load())
	}
}

// TestSendWithTheCallerGoneCallsNoProvider: a request whose caller went away before the chain
// began sends nothing, however ready its providers are.
func TestSendWithTheCallerGoneCallsNoProvider(t *testing.T) {
	a := &fake{fn: ok("a")}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := Send(ctx, sms(), Chain{Members: []*Member{member("a", a, time.Second, strict)}}, nil)
	if a.calls.Load() != 0 || out.Provider != "" || out.Err == nil || out.Err.Class != gateway.ClassCancelled {
		t.Errorf("calls %d, provider %q, err %v; want no call, cancelled", a.calls.Load(), out.Provider, out.Err)
	}
}

// attempts is a provider that records the position each message reached it at.
type attempts struct{ got []int }

func (p *attempts) Capabilities() gateway.Capabilities { return gateway.SMSAndVoice }
func (p *attempts) Send(_ context.Context, m *gateway.Message) (gateway.Result, error) {
	p.got = append(p.got, m.Attempt)
	return gateway.Result{ProviderMessageID: "x"}, nil
}

// TestAttemptIsThePositionAmongProvidersTried: a provider that cannot send the message is not
// one the message was tried at (TeleSign tells its provider it is a backup from position 1).
func TestAttemptIsThePositionAmongProvidersTried(t *testing.T) {
	p := &attempts{}
	voiceless := &fake{fn: ok("v"), caps: gateway.SMSOnly}
	last := NewMember(MemberOptions{Name: "p", Provider: p, Timeout: time.Second, Breaker: strict})
	Send(context.Background(), &gateway.Message{Type: gateway.Voice}, Chain{Members: []*Member{member("v", voiceless, time.Second, strict), last}}, nil)
	Send(context.Background(), sms(), Chain{Members: []*Member{member("f", &fake{fn: failing(gateway.ClassProvider, "E500")}, time.Second, strict), last}}, nil)
	if diff := cmp.Diff([]int{0, 1}, p.got); diff != "" {
		t.Errorf("positions (-want +got):\n%s", diff)
	}
}

// TestTheLastFailureKeepsItsStatus: every provider failed, and the answer says how the last did.
func TestTheLastFailureKeepsItsStatus(t *testing.T) {
	down := func(context.Context) (gateway.Result, error) {
		return gateway.Result{}, &gateway.Error{Class: gateway.ClassProvider, Code: "E503", HTTPStatus: 503, Message: "down"}
	}
	out := Send(context.Background(), sms(), Chain{Members: []*Member{member("a", &fake{fn: down}, time.Second, strict)}}, nil)
	if out.Err == nil || out.Err.Code != "E503" || out.Err.HTTPStatus != 503 || out.Err.Message != "every provider failed; last: down" {
		t.Errorf("err = %+v", out.Err)
	}
}

// TestAnOpenBreakerTakesNoTime: a send its breaker refused never reached the provider, and its
// attempt says it took no time.
func TestAnOpenBreakerTakesNoTime(t *testing.T) {
	m := member("a", &fake{fn: failing(gateway.ClassProvider, "E500")}, time.Second, BreakerSettings{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
	ch := Chain{Members: []*Member{m}}
	Send(context.Background(), sms(), ch, nil)
	out := Send(context.Background(), sms(), ch, nil)
	if len(out.Attempts) != 1 || out.Attempts[0].Code != "breaker_open" || out.Attempts[0].Duration != 0 {
		t.Errorf("attempts %+v", out.Attempts)
	}
}

// TestStatsCountWhatReachedTheProvider: a member's statistics hold the last 100 attempts that
// said something of the provider: a recipient's problem is the provider working, a destination
// it cannot reach is left out, and so is a caller that went away.
func TestStatsCountWhatReachedTheProvider(t *testing.T) {
	f := &fake{}
	m := member("a", f, time.Second, BreakerSettings{})
	ch := Chain{Members: []*Member{m}}
	for _, fn := range []func(context.Context) (gateway.Result, error){
		ok("a"), failing(gateway.ClassRecipient, "21211"), failing(gateway.ClassDestination, "21408"), failing(gateway.ClassProvider, "E500"),
	} {
		f.set(fn)
		Send(context.Background(), sms(), ch, nil)
	}
	st := m.Stats()
	if st.Attempts != 3 || st.SuccessRatio != 2.0/3 || st.LastError != "provider" || st.LastErrorAt.IsZero() {
		t.Errorf("stats %+v; want 3 attempts, 2/3 good, the provider's failure last", st)
	}
	f.set(ok("a"))
	for range 150 {
		Send(context.Background(), sms(), ch, nil)
	}
	if st := m.Stats(); st.Attempts != statsWindow || st.SuccessRatio != 1 {
		t.Errorf("after 150 more good sends: %+v; want the last %d, all good", st, statsWindow)
	}
}

// TestRefusalsAtTheirEdges: what makes a provider's refusal the request's (the next provider is
// tried, the shared breaker untouched) and what leaves it the provider's.
func TestRefusalsAtTheirEdges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    gateway.Error
		chosen bool
		want   gateway.Class
	}{
		{"414 without a choice", gateway.Error{HTTPStatus: 414}, false, gateway.ClassDestination},
		{"413 without a choice", gateway.Error{HTTPStatus: 413}, false, gateway.ClassDestination},
		{"400 that may have sent", gateway.Error{HTTPStatus: 400, MaybeSent: true}, true, gateway.ClassProvider},
		{"400 at a timeout", gateway.Error{HTTPStatus: 400, Timeout: true}, true, gateway.ClassProvider},
		{"407 with a choice", gateway.Error{HTTPStatus: 407}, true, gateway.ClassProvider},
		{"408 with a choice", gateway.Error{HTTPStatus: 408}, true, gateway.ClassProvider},
		{"499 with a choice", gateway.Error{HTTPStatus: 499}, true, gateway.ClassDestination},
		{"299 with a choice", gateway.Error{HTTPStatus: 299}, true, gateway.ClassDestination},
		{"300 with a choice", gateway.Error{HTTPStatus: 300}, true, gateway.ClassProvider},
		{"500 with a choice", gateway.Error{HTTPStatus: 500}, true, gateway.ClassProvider},
	} {
		e := tc.err
		e.Class, e.Code, e.Message = gateway.ClassProvider, "E", "refused"
		if got := gateway.AsError(refusal(&e, tc.chosen)); got.Class != tc.want {
			t.Errorf("%s: class %v, want %v", tc.name, got.Class, tc.want)
		}
	}
	// An SMS's language is no choice a provider refuses: only a call speaks it.
	refuse := func(context.Context) (gateway.Result, error) {
		return gateway.Result{}, &gateway.Error{Class: gateway.ClassProvider, Code: "E404", HTTPStatus: 404}
	}
	ma := member("a", &fake{fn: refuse}, time.Second, strict)
	msg := sms()
	msg.Language = "xx"
	for range 3 {
		Send(context.Background(), msg, Chain{Members: []*Member{ma}}, nil)
	}
	if ma.State() != gobreaker.StateOpen {
		t.Errorf("an SMS's 404s with a language did not count as the provider's: %v", ma.State())
	}
}
