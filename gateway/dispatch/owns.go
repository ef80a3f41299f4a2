package dispatch

import (
	"cmp"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/smsgate/smsgate/gateway"
)

// A provider's breaker is shared by every tenant that sends through it, so what one tenant sends
// must not open it. A tenant can make a provider fail for its own sends alone: a text the provider
// answers with a 5xx, a sender or destination whose route is down there. Its failures are evidence
// about its traffic, not yet about the provider.
//
// So, when more than one tenant sends through a provider (Chain.Shared), each tenant also has its
// own breaker per provider and channel, with the same settings, which counts every failure of its
// sends; and the shared breaker counts a failure only when it is corroborated: another tenant's
// send failed on the same provider and channel within the evidence window. A tenant whose sends
// alone fail opens only its own breaker: its sends skip the provider, every other tenant's go on
// using it. In an outage, the first failure of a second tenant is corroborated by the first
// tenant's, and so is every failure after it, so the shared breaker opens after at most
// consecutive_failures failed attempts of the other tenants in all (each failed over within its
// request) instead of none.
//
// Kept per replica, like the shared breakers; keyed by tenant name, and a tenant's are forgotten
// when it leaves the config (Member.Forget), so bounded by the configured tenants.
type owns struct {
	member   string
	settings BreakerSettings
	observer Observer
	// window is how long a tenant's failure corroborates another's.
	window time.Duration

	mu sync.RWMutex
	m  map[string]*own
}

// own is one tenant's breakers of one provider, and when its sends last failed there.
type own struct {
	breakers [2]*gobreaker.CircuitBreaker[gateway.Result]
	// failedAt is, per channel, the time (Unix nanoseconds) of the last failure the tenant's own
	// breaker counted; 0 once a send succeeded after it.
	failedAt [2]atomic.Int64
}

// errAlone marks a failure no other tenant corroborates: the shared breaker leaves it out.
var errAlone = errors.New("failure seen by one tenant only")

// errShared marks the shared breaker's refusal, which a tenant's own breaker leaves out.
var errShared = errors.New("the shared breaker refused")

// marked is err, as it reads, that errors.Is also finds to be mark.
type marked struct{ err, mark error }

func (e marked) Error() string   { return e.err.Error() }
func (e marked) Unwrap() []error { return []error{e.err, e.mark} }

// evidenceWindow is how long a failure corroborates another tenant's: the breaker's counting
// window or its open timeout, whichever is longer (a tenant whose own breaker is open fails again
// at each probe), and at least a minute.
func evidenceWindow(b BreakerSettings) time.Duration {
	return max(b.Interval, b.OpenTimeout, time.Minute)
}

// refused says whether err is a breaker's refusal to let a call through.
func refused(err error) bool {
	return errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)
}

// forget drops tenant's own breakers.
func (o *owns) forget(tenant string) {
	o.mu.Lock()
	delete(o.m, tenant)
	o.mu.Unlock()
}

// get returns tenant's breakers, making them on its first send.
func (o *owns) get(tenant string) *own {
	o.mu.RLock()
	t := o.m[tenant]
	o.mu.RUnlock()
	if t != nil {
		return t
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if t = o.m[tenant]; t != nil {
		return t
	}
	t = &own{}
	for i, ch := range Channels {
		var onChange func(from, to gobreaker.State)
		if obs := o.observer; obs != nil {
			onChange = func(from, to gobreaker.State) { obs.OnTenantBreakerChange(o.member, string(ch), tenant, from, to) }
		}
		t.breakers[i] = newBreaker(o.member+"/"+string(ch)+"/"+tenant, o.settings, errShared, onChange)
		if onChange != nil {
			// Announced closed, so that an observer's series exist before the first change.
			onChange(gobreaker.StateClosed, gobreaker.StateClosed)
		}
	}
	if o.m == nil {
		o.m = map[string]*own{}
	}
	o.m[tenant] = t
	return t
}

// execute runs call through tenant's own breaker of channel c and, inside it, the shared one.
// ownOpen is true when the tenant's own breaker refused the call.
func (o *owns) execute(tenant string, c int, shared *gobreaker.CircuitBreaker[gateway.Result], call func() (gateway.Result, error)) (res gateway.Result, err error, ownOpen bool) {
	t := o.get(tenant)
	res, err = t.breakers[c].Execute(func() (gateway.Result, error) {
		r, err := shared.Execute(func() (gateway.Result, error) {
			r, err := call()
			switch {
			case succeeded(err):
				if t.failedAt[c].Load() != 0 {
					t.failedAt[c].Store(0)
				}
			case !uncounted(err):
				now := time.Now()
				t.failedAt[c].Store(now.UnixNano())
				if !o.corroborated(tenant, c, now) {
					err = marked{err, errAlone}
				}
			}
			return r, err
		})
		if refused(err) {
			err = marked{err, errShared}
		}
		return r, err
	})
	return res, err, refused(err) && !errors.Is(err, errShared)
}

// mayCall says whether, as far as is known now, tenant's send of channel c will call the provider:
// it is not drained, and neither the shared breaker nor (with shared) the tenant's own is open.
func (m *Member) mayCall(tenant string, c int, shared bool) bool {
	if m.Disabled() || m.breakers[c].State() == gobreaker.StateOpen {
		return false
	}
	if !shared {
		return true
	}
	m.owns.mu.RLock()
	t := m.owns.m[tenant]
	m.owns.mu.RUnlock()
	return t == nil || t.breakers[c].State() != gobreaker.StateOpen
}

// corroborated says whether a tenant other than tenant had a send fail on channel c within the
// evidence window before now.
func (o *owns) corroborated(tenant string, c int, now time.Time) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	for name, t := range o.m {
		if at := t.failedAt[c].Load(); name != tenant && at != 0 && now.UnixNano()-at <= int64(o.window) {
			return true
		}
	}
	return false
}

// TenantBreaker is one tenant's own breaker that is not closed.
type TenantBreaker struct {
	Tenant  string
	Channel gateway.MessageType
	State   gobreaker.State
}

// TenantBreakers returns the tenants' own breakers of this provider that are open or half-open,
// by tenant and channel.
func (m *Member) TenantBreakers() []TenantBreaker {
	m.owns.mu.RLock()
	var out []TenantBreaker
	for name, t := range m.owns.m {
		for i, ch := range Channels {
			if st := t.breakers[i].State(); st != gobreaker.StateClosed {
				out = append(out, TenantBreaker{Tenant: name, Channel: ch, State: st})
			}
		}
	}
	m.owns.mu.RUnlock()
	slices.SortFunc(out, func(a, b TenantBreaker) int {
		return cmp.Or(strings.Compare(a.Tenant, b.Tenant), strings.Compare(string(a.Channel), string(b.Channel)))
	})
	return out
}
