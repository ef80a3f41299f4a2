package dispatch

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sony/gobreaker/v2"

	"github.com/smsgate/smsgate/gateway"
)

// poisoned is a provider that answers 500 to the messages of the tenants it is set to fail (a
// provider bug one tenant's content sets off, or its route for one tenant's destinations down),
// or to everyone's while down.
type poisoned struct {
	calls map[string]*atomic.Int32
	fail  func(tenant string) bool
}

func newPoisoned(fail func(tenant string) bool, tenants ...string) *poisoned {
	p := &poisoned{calls: map[string]*atomic.Int32{}, fail: fail}
	for _, t := range tenants {
		p.calls[t] = &atomic.Int32{}
	}
	return p
}

func (p *poisoned) Capabilities() gateway.Capabilities { return gateway.SMSAndVoice }
func (p *poisoned) Send(_ context.Context, m *gateway.Message) (gateway.Result, error) {
	p.calls[m.Tenant].Add(1)
	if p.fail(m.Tenant) {
		return gateway.Result{}, &gateway.Error{Class: gateway.ClassProvider, Code: "HTTP_500", HTTPStatus: 500, Message: "internal error"}
	}
	return gateway.Result{ProviderMessageID: "ok"}, nil
}

func codes(o Outcome) []string {
	var s []string
	for _, a := range o.Attempts {
		s = append(s, a.Provider+":"+a.Outcome+":"+a.Code)
	}
	return s
}

// TestOneTenantsFailuresOpenOnlyItsOwnBreaker: a tenant whose sends alone fail at a provider
// (each failed over to the next) opens its own breaker, not the one every tenant shares: its
// later sends skip the provider without calling it, and another tenant's still go to it.
func TestOneTenantsFailuresOpenOnlyItsOwnBreaker(t *testing.T) {
	obs := &countingObserver{}
	p := newPoisoned(func(tn string) bool { return tn == "hostile" }, "hostile", "quiet")
	ma := NewMember(MemberOptions{Name: "a", Provider: p, Timeout: time.Second, Observer: obs, Breaker: strict})
	ch := Chain{Members: []*Member{ma, member("b", &fake{fn: ok("b")}, time.Second, strict)}, Shared: true}
	send := func(tenant string) Outcome { return Send(context.Background(), from(tenant), ch, obs) }
	if out := send("quiet"); out.Provider != "a" {
		t.Fatalf("quiet's first send: %v", codes(out))
	}
	for i := range 3 {
		if out := send("hostile"); !cmp.Equal(codes(out), []string{"a:provider_error:HTTP_500", "b:sent:"}) {
			t.Fatalf("hostile send %d: %v", i, codes(out))
		}
	}
	for i := range 5 {
		if out := send("hostile"); !cmp.Equal(codes(out), []string{"a:unavailable:tenant_breaker_open", "b:sent:"}) {
			t.Fatalf("hostile send %d with its own breaker open: %v", i+3, codes(out))
		}
	}
	if n := p.calls["hostile"].Load(); n != 3 {
		t.Errorf("provider called %d times for hostile, want 3", n)
	}
	if ma.State() != gobreaker.StateClosed {
		t.Errorf("shared breaker %v after one tenant's failures, want closed", ma.State())
	}
	if out := send("quiet"); out.Provider != "a" {
		t.Errorf("quiet's send after hostile's failures: %v, want a", codes(out))
	}
	want := []TenantBreaker{{Tenant: "hostile", Channel: gateway.SMS, State: gobreaker.StateOpen}}
	if diff := cmp.Diff(want, ma.TenantBreakers()); diff != "" {
		t.Errorf("tenant breakers (-want +got):\n%s", diff)
	}
	// Each tenant's breakers are announced closed when made, on its first send.
	wantChanges := []string{"a/sms/quiet:closed>closed", "a/voice/quiet:closed>closed",
		"a/sms/hostile:closed>closed", "a/voice/hostile:closed>closed", "a/sms/hostile:closed>open"}
	if diff := cmp.Diff(wantChanges, obs.changes); diff != "" {
		t.Errorf("breaker changes (-want +got):\n%s", diff)
	}
}

// TestCorroboratedFailuresOpenTheSharedBreaker: in an outage, the first tenant's failures open its
// own breaker; once another tenant's send fails too, its failures are corroborated and count for
// the shared breaker, which opens after consecutive_failures of them in all, whichever tenants
// they came from. A third tenant then skips the provider without having paid a failure.
func TestCorroboratedFailuresOpenTheSharedBreaker(t *testing.T) {
	p := newPoisoned(func(string) bool { return true }, "first", "second", "third", "fourth")
	ma := NewMember(MemberOptions{Name: "a", Provider: p, Timeout: time.Second, Breaker: strict})
	ch := Chain{Members: []*Member{ma, member("b", &fake{fn: ok("b")}, time.Second, strict)}, Shared: true}
	send := func(tenant string) Outcome { return Send(context.Background(), from(tenant), ch, nil) }
	for range 3 {
		send("first")
	}
	if ma.State() != gobreaker.StateClosed {
		t.Fatalf("shared breaker %v after one tenant's failures, want closed", ma.State())
	}
	send("second")
	send("third")
	if ma.State() != gobreaker.StateClosed {
		t.Fatalf("shared breaker %v after two corroborated failures of 3, want closed", ma.State())
	}
	send("second")
	if ma.State() != gobreaker.StateOpen {
		t.Fatalf("shared breaker %v after three corroborated failures, want open", ma.State())
	}
	if out := send("fourth"); !cmp.Equal(codes(out), []string{"a:unavailable:breaker_open", "b:sent:"}) {
		t.Errorf("fourth tenant's send with the shared breaker open: %v", codes(out))
	}
	if n := p.calls["fourth"].Load(); n != 0 {
		t.Errorf("provider called %d times for the fourth tenant, want 0", n)
	}
}

// TestASharedBreakerBusyWithItsProbeCountsAgainstNoTenant: while the shared breaker is half-open
// and its one probe is in flight, it refuses every other send (too many requests), as it does when
// open: a tenant refused so has failed at nothing, and its own breaker counts nothing.
func TestASharedBreakerBusyWithItsProbeCountsAgainstNoTenant(t *testing.T) {
	a := &fake{fn: failing(gateway.ClassProvider, "E500")}
	quick := BreakerSettings{ConsecutiveFailures: 1, OpenTimeout: 50 * time.Millisecond}
	ma := member("a", a, 5*time.Second, quick)
	ch := Chain{Members: []*Member{ma, member("b", &fake{fn: ok("b")}, time.Second, strict)}, Shared: true}
	send := func(tenant string) Outcome { return Send(context.Background(), from(tenant), ch, nil) }
	send("x")
	send("y") // corroborated by x's failure: the shared breaker opens
	if st := ma.ChannelState(gateway.SMS); st != gobreaker.StateOpen {
		t.Fatalf("shared breaker %v, want open", st)
	}
	deadline := time.Now().Add(2 * time.Second)
	open := func() bool {
		return ma.ChannelState(gateway.SMS) == gobreaker.StateOpen ||
			slices.ContainsFunc(ma.TenantBreakers(), func(b TenantBreaker) bool { return b.State == gobreaker.StateOpen })
	}
	for open() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	release := make(chan struct{})
	a.set(func(context.Context) (gateway.Result, error) {
		<-release
		return gateway.Result{ProviderMessageID: "a"}, nil
	})
	calls := a.calls.Load()
	probe := make(chan Outcome)
	go func() { probe <- send("prober") }()
	for a.calls.Load() == calls && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if out := send("z"); !cmp.Equal(codes(out), []string{"a:unavailable:breaker_open", "b:sent:"}) {
		t.Errorf("a send while the probe is in flight: %v", codes(out))
	}
	// x's and y's own breakers, open as long as the shared one, are half-open too, and listed so;
	// z's, which counted nothing, is closed and not listed.
	want := []TenantBreaker{{Tenant: "x", Channel: gateway.SMS, State: gobreaker.StateHalfOpen}, {Tenant: "y", Channel: gateway.SMS, State: gobreaker.StateHalfOpen}}
	if diff := cmp.Diff(want, ma.TenantBreakers()); diff != "" {
		t.Errorf("tenant breakers (-want +got):\n%s", diff)
	}
	close(release)
	if out := <-probe; out.Provider != "a" {
		t.Errorf("the probe went to %q, want a", out.Provider)
	}
}

// TestAForgottenTenantLeavesNoBreaker: a tenant that left the config leaves nothing in the
// member: its own breakers (and their failures) go, so that a team renaming its tenants at each
// change does not add to them without end; a tenant of that name later starts afresh.
func TestAForgottenTenantLeavesNoBreaker(t *testing.T) {
	p := newPoisoned(func(tn string) bool { return tn == "gone" }, "gone", "quiet")
	ma := NewMember(MemberOptions{Name: "a", Provider: p, Timeout: time.Second, Breaker: strict})
	ch := Chain{Members: []*Member{ma, member("b", &fake{fn: ok("b")}, time.Second, strict)}, Shared: true}
	send := func(tenant string) Outcome { return Send(context.Background(), from(tenant), ch, nil) }
	send("quiet")
	for range 4 {
		send("gone")
	}
	if out := send("gone"); !cmp.Equal(codes(out), []string{"a:unavailable:tenant_breaker_open", "b:sent:"}) {
		t.Fatalf("gone's send with its own breaker open: %v", codes(out))
	}
	ma.Forget("gone")
	ma.owns.mu.RLock()
	_, kept := ma.owns.m["gone"]
	left := len(ma.owns.m)
	ma.owns.mu.RUnlock()
	if kept || left != 1 {
		t.Errorf("after Forget the member keeps breakers of %d tenants (gone's: %v), want quiet's alone", left, kept)
	}
	if out := send("gone"); !cmp.Equal(codes(out), []string{"a:provider_error:HTTP_500", "b:sent:"}) {
		t.Errorf("a tenant of the forgotten name: %v, want a fresh breaker that calls the provider", codes(out))
	}
}

// answers is a provider that answers each tenant's sends with that tenant's error (none: sent).
type answers map[string]*gateway.Error

func (a answers) Capabilities() gateway.Capabilities { return gateway.SMSAndVoice }
func (a answers) Send(_ context.Context, m *gateway.Message) (gateway.Result, error) {
	if e := a[m.Tenant]; e != nil {
		return gateway.Result{}, e
	}
	return gateway.Result{ProviderMessageID: "ok"}, nil
}

// TestOnlyProviderFailuresAreEvidence: a tenant's sends that fail for reasons that say nothing of
// the provider's health (destinations it cannot reach, throttling) are no evidence against it, so
// they cannot corroborate another tenant's failures: two tenants, one sending to numbers no route
// reaches and one sending what the provider fails on, still leave the shared breaker closed.
func TestOnlyProviderFailuresAreEvidence(t *testing.T) {
	p := answers{
		"unreachable": {Class: gateway.ClassDestination, Code: "NO_ROUTE", Message: "no route"},
		"throttled":   {Class: gateway.ClassThrottled, Code: "HTTP_429", HTTPStatus: 429, RetryAfter: time.Minute, Message: "slow down"},
		"poison":      {Class: gateway.ClassProvider, Code: "HTTP_500", HTTPStatus: 500, Message: "internal error"},
	}
	ma := NewMember(MemberOptions{Name: "a", Provider: p, Timeout: time.Second, Breaker: strict})
	ch := Chain{Members: []*Member{ma, member("b", &fake{fn: ok("b")}, time.Second, strict)}, Shared: true}
	send := func(tenant string) Outcome { return Send(context.Background(), from(tenant), ch, nil) }
	for range 5 {
		send("unreachable")
	}
	send("throttled")
	if ma.owns.corroborated("poison", 0, time.Now()) {
		t.Fatal("a destination error or throttling corroborates another tenant's failure")
	}
	for range 3 {
		send("poison")
	}
	if c := ma.breakers[0].Counts(); ma.State() != gobreaker.StateClosed || c.TotalFailures != 0 {
		t.Errorf("shared breaker %v with %d failures counted, want closed with none", ma.State(), c.TotalFailures)
	}
	if out := send("quiet"); out.Provider != "a" {
		t.Errorf("another tenant's send: %v, want a", codes(out))
	}
}

// TestASuccessWithdrawsATenantsEvidence: a tenant whose send failed once and then went through
// no longer corroborates another's failure.
func TestASuccessWithdrawsATenantsEvidence(t *testing.T) {
	var down atomic.Bool
	p := newPoisoned(func(tn string) bool { return tn == "hostile" || down.Load() }, "hostile", "quiet")
	ma := NewMember(MemberOptions{Name: "a", Provider: p, Timeout: time.Second, Breaker: strict})
	ch := Chain{Members: []*Member{ma, member("b", &fake{fn: ok("b")}, time.Second, strict)}, Shared: true}
	send := func(tenant string) Outcome { return Send(context.Background(), from(tenant), ch, nil) }
	down.Store(true)
	send("quiet")
	down.Store(false)
	if !ma.owns.corroborated("hostile", 0, time.Now()) {
		t.Fatal("quiet's failure does not corroborate hostile's")
	}
	if out := send("quiet"); out.Provider != "a" {
		t.Fatalf("quiet's send: %v", codes(out))
	}
	if ma.owns.corroborated("hostile", 0, time.Now()) {
		t.Fatal("quiet's evidence outlived its success")
	}
	send("hostile")
	if c := ma.breakers[0].Counts(); c.TotalFailures != 0 || c.TotalSuccesses != 1 {
		t.Errorf("shared breaker counted %d failures and %d successes, want 0 and quiet's 1", c.TotalFailures, c.TotalSuccesses)
	}
}

// TestEvidenceGoesStale: a failure older than the evidence window corroborates nothing, and a
// failure of the other channel none at all.
func TestEvidenceGoesStale(t *testing.T) {
	ma := member("a", &fake{fn: ok("a")}, time.Second, BreakerSettings{ConsecutiveFailures: 3, OpenTimeout: 2 * time.Minute})
	if w := ma.owns.window; w != 2*time.Minute {
		t.Fatalf("window %v, want the open timeout", w)
	}
	// The longer of the counting interval and the open timeout, and at least a minute.
	for _, c := range []struct {
		b    BreakerSettings
		want time.Duration
	}{
		{BreakerSettings{Interval: 3 * time.Minute, OpenTimeout: 30 * time.Second}, 3 * time.Minute},
		{BreakerSettings{Interval: 10 * time.Second, OpenTimeout: 30 * time.Second}, time.Minute},
	} {
		if w := evidenceWindow(c.b); w != c.want {
			t.Errorf("interval %v, open timeout %v: window %v, want %v", c.b.Interval, c.b.OpenTimeout, w, c.want)
		}
	}
	now := time.Now()
	ma.owns.get("other").failedAt[0].Store(now.Add(-2*time.Minute - time.Second).UnixNano())
	if ma.owns.corroborated("me", 0, now) {
		t.Error("a failure older than the window corroborates")
	}
	ma.owns.get("other").failedAt[0].Store(now.Add(-time.Minute).UnixNano())
	if !ma.owns.corroborated("me", 0, now) {
		t.Error("a failure within the window does not corroborate")
	}
	if ma.owns.corroborated("me", 1, now) || ma.owns.corroborated("other", 0, now) {
		t.Error("corroborated by another channel's failure, or by the tenant's own")
	}
}

// TestOneTenantAloneCountsForTheSharedBreaker: without Chain.Shared (a single tenant), a
// tenant's failures are everyone's, and open the shared breaker as before.
func TestOneTenantAloneCountsForTheSharedBreaker(t *testing.T) {
	p := newPoisoned(func(string) bool { return true }, "only")
	ma := NewMember(MemberOptions{Name: "a", Provider: p, Timeout: time.Second, Breaker: strict})
	ch := Chain{Members: []*Member{ma, member("b", &fake{fn: ok("b")}, time.Second, strict)}}
	for range 3 {
		Send(context.Background(), from("only"), ch, nil)
	}
	if ma.State() != gobreaker.StateOpen {
		t.Errorf("shared breaker %v, want open", ma.State())
	}
	if tb := ma.TenantBreakers(); len(tb) != 0 {
		t.Errorf("tenant breakers %v without Shared", tb)
	}
	if s := strings.Join(codes(Send(context.Background(), from("only"), ch, nil)), " "); s != "a:unavailable:breaker_open b:sent:" {
		t.Errorf("attempts %s", s)
	}
}

// BenchmarkAttempt is one accepted send through one provider, by 16 tenants in parallel: with the
// shared breaker only (one tenant configured) and with each tenant's own breaker too.
func BenchmarkAttempt(b *testing.B) {
	for _, shared := range []bool{false, true} {
		name := map[bool]string{false: "shared-only", true: "own-and-shared"}[shared]
		b.Run(name, func(b *testing.B) {
			ch := Chain{Members: []*Member{member("a", &fake{fn: ok("a")}, 0, strict)}, Shared: shared}
			var next atomic.Int32
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				msg := from("tenant-" + strconv.Itoa(int(next.Add(1)%16)))
				for pb.Next() {
					if out := Send(context.Background(), msg, ch, nil); out.Err != nil {
						b.Fatal(out.Err)
					}
				}
			})
		})
	}
}

// TestAnOpenBreakerTakesNoThroughput: a send its tenant's own breaker (or the shared one) will
// refuse does not call the provider, so it takes no token of the account's throughput, which
// the other tenants need.
func TestAnOpenBreakerTakesNoThroughput(t *testing.T) {
	p := newPoisoned(func(tn string) bool { return tn == "hostile" }, "hostile", "quiet")
	ma := NewMember(MemberOptions{Name: "a", Provider: p, Timeout: time.Second, Breaker: strict})
	paced := map[string]int{}
	ch := Chain{Members: []*Member{ma, member("b", &fake{fn: ok("b")}, time.Second, strict)}, Shared: true,
		Pace: func(_ context.Context, provider, tenant string, _ gateway.MessageType) (bool, time.Duration) {
			paced[provider+"/"+tenant]++
			return true, 0
		}}
	for range 10 {
		Send(context.Background(), from("hostile"), ch, nil)
	}
	calls := p.calls["hostile"].Load()
	if calls >= 10 || paced["a/hostile"] != int(calls) {
		t.Errorf("hostile: %d calls to a, %d tokens of a's throughput taken; want its own breaker to stop the calls, a token only per call", calls, paced["a/hostile"])
	}
	if out := Send(context.Background(), from("quiet"), ch, nil); out.Provider != "a" || paced["a/quiet"] != 1 {
		t.Errorf("quiet: %v, %d tokens", codes(out), paced["a/quiet"])
	}
	// The same provider in a chain of one tenant (a reload left the hostile one alone): its own
	// breaker, still open, is not used there, so its send calls a and takes a token.
	alone := ch
	alone.Shared = false
	p.fail = func(string) bool { return false }
	if out := Send(context.Background(), from("hostile"), alone, nil); out.Provider != "a" || paced["a/hostile"] != int(calls)+1 {
		t.Errorf("hostile alone: %v, %d tokens (%d before)", codes(out), paced["a/hostile"], calls)
	}
	ma.SetDisabled(true)
	Send(context.Background(), from("quiet"), ch, nil)
	if paced["a/quiet"] != 1 {
		t.Errorf("a drained provider took a token")
	}
	// The shared breaker open (a provider down for every tenant): no token either.
	down := &fake{fn: failing(gateway.ClassProvider, "down")}
	ch.Members[0] = member("down", down, time.Second, strict)
	for _, tn := range []string{"quiet", "other", "quiet", "other"} {
		Send(context.Background(), from(tn), ch, nil)
	}
	if st := ch.Members[0].breakers[0].State(); st != gobreaker.StateOpen {
		t.Fatalf("the shared breaker is %s after four failures of two tenants", st)
	}
	before := paced["down/quiet"]
	Send(context.Background(), from("quiet"), ch, nil)
	if paced["down/quiet"] != before {
		t.Errorf("a send the shared breaker refuses took a token of the provider's throughput")
	}
}
