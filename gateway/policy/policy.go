// Package policy protects tenants from SMS pumping and from sending twice: country allow and deny
// lists, number types, the hosts a text may link to, rate limits (token buckets per recipient,
// source IP, tenant and destination country), spend limits (money per tenant), Idempotency-Key
// replay, coalescing of identical in-flight requests, and resend escalation. State sits behind
// small interfaces (Limiter, Spends, Replays, Resends) with in-memory implementations; a shared
// backend (Redis) can implement the same interfaces for several replicas.
package policy

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
)

// Rules is one tenant's compiled policy.
type Rules struct {
	// Allowed, when not empty, is the set of destination countries the tenant may reach.
	Allowed map[string]bool
	// GlobalAllowed, when not empty, further limits every tenant.
	GlobalAllowed map[string]bool
	// Denied are countries the tenant (or the global policy) never reaches.
	Denied map[string]bool
	// DeniedTypes are number types (gateway.SpecialNumberTypes) the tenant never sends to.
	DeniedTypes map[string]bool
	// LinkHosts are the hosts the tenant's texts may link to, and the names under them (global
	// and the tenant's, in lower case); AnyLink lets every link through.
	LinkHosts []string
	AnyLink   bool
	// BareNames counts every domain name in a text as a link (policy.bare_domain_links, or the
	// tenant's own bare_domain_links where it sets one).
	BareNames bool
	// Limits are the tenant's effective rate limits.
	Limits config.RateLimits
}

// Compile builds a tenant's rules from the config.
func Compile(c *config.Config, t *config.Tenant) *Rules {
	r := &Rules{Allowed: set(t.AllowedCountries), GlobalAllowed: set(c.Policy.AllowedCountries), Denied: set(c.Policy.DeniedCountries), Limits: c.EffectiveLimits(t),
		BareNames: c.Policy.BareDomainLinks}
	if t.BareDomainLinks != nil {
		r.BareNames = *t.BareDomainLinks
	}
	for _, cc := range t.DeniedCountries {
		r.Denied[cc] = true
	}
	if c.Policy.DeniedNumberTypes != nil {
		r.DeniedTypes = set(*c.Policy.DeniedNumberTypes)
	} else {
		r.DeniedTypes = map[string]bool{}
	}
	for _, nt := range t.DeniedNumberTypes {
		r.DeniedTypes[nt] = true
	}
	for _, h := range slices.Concat(c.Policy.AllowedLinkHosts, t.AllowedLinkHosts) {
		r.AnyLink = r.AnyLink || h == "*"
		r.LinkHosts = append(r.LinkHosts, strings.ToLower(h))
	}
	return r
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// Rejection is why a request may not be sent.
type Rejection struct {
	// Code is country_not_allowed, number_type_not_allowed, link_not_allowed or rate_limited.
	Code string
	// Reason names the rule: a limit (per_recipient, per_ip, per_tenant, per_country, spend) or the
	// list.
	Reason string
	// RetryAfter is when a rate-limited request may be tried again.
	RetryAfter time.Duration
	// Message is a safe human explanation.
	Message string
}

// Checker applies Rules with a Limiter.
type Checker struct {
	// Limiter holds the token buckets.
	Limiter Limiter
	// Spends holds the spend limits' buckets (rate_limits.spend).
	Spends Spends
	// Blind, when set, stands in the buckets' keys for a recipient's number and an end user's IP:
	// with a shared store (Redis) a key must not say whom a tenant sent to. nil: as they are.
	Blind func(value string) string
}

// SpendKey is the bucket of tenant's spend limit l: like a rate limit's, it names the limit, so
// a reloaded limit starts a fresh bucket.
func SpendKey(tenant string, l config.Spend) string {
	return "s|" + l.String() + "|" + tenant
}

// countryRule is the country lists' rejection of a destination in country cc, or nil. counted is
// the country the number is counted in when cc is only another region it may be in (an
// unrecognized range under a shared calling code: gateway.Message.AlsoIn), else "".
func countryRule(r *Rules, cc, counted string) *Rejection {
	dest := "destination country " + cc
	if counted != "" {
		dest = "the recipient is in a range libphonenumber does not know, counted in " + counted +
			" but possibly in " + cc + " (they share its calling code): destination country " + cc
	}
	switch {
	case cc == config.NonGeographic && !r.GlobalAllowed[cc] && !r.Allowed[cc]:
		return &Rejection{Code: "country_not_allowed", Reason: "non_geographic", Message: "the destination belongs to no country (001: international premium rate, satellite or shared network); an allow list must name 001 to reach it"}
	case r.Denied[cc]:
		return &Rejection{Code: "country_not_allowed", Reason: "denied_countries", Message: dest + " is denied"}
	case len(r.GlobalAllowed) > 0 && !r.GlobalAllowed[cc]:
		return &Rejection{Code: "country_not_allowed", Reason: "allowed_countries", Message: dest + " is not in the global allowed list"}
	case len(r.Allowed) > 0 && !r.Allowed[cc]:
		return &Rejection{Code: "country_not_allowed", Reason: "allowed_countries", Message: dest + " is not allowed for this tenant"}
	}
	return nil
}

// linkRule refuses a text that links to a host the tenant may not link to. The message names
// neither the host nor the link: a link may carry the code, and a host may be made of it.
func linkRule(r *Rules, text string) *Rejection {
	if r.AnyLink {
		return nil
	}
	for host := range gateway.LinkHosts(text, r.BareNames) {
		if !gateway.HostAllowed(host, r.LinkHosts) {
			return &Rejection{Code: "link_not_allowed", Reason: "link",
				Message: "the text links to a host this tenant may not link to (policy.allowed_link_hosts, tenants.allowed_link_hosts)"}
		}
	}
	return nil
}

// Check returns nil when msg may be sent, else the first rule it breaks. Country lists are checked
// before limits, the spend limit first, then rate limits from the widest (tenant) to the narrowest
// (recipient), so a request refused by a wide limit does not use up the recipient's allowance.
//
// price is the most msg may cost. With a spend limit it is reserved from the tenant's bucket, and
// given back when a rule after it refuses or fails; so when Check returns neither a rejection nor
// an error, the caller holds price reserved and settles it after the send (Spends.Charge with
// what the send cost less price).
//
// Country lists hold for msg.Country and for each region in msg.AlsoIn: a number that may be in
// a denied or unlisted region is refused. Then the number's type (premium rate, ...) must not be
// denied, and a link in the text must go to a host the tenant may link to (a text with a link
// the tenant never meant to send is how its users are phished, from the providers' accounts and
// sender IDs every tenant shares).
//
// Numbers of no country (config.NonGeographic, "001": international premium rate, satellite,
// shared networks) are the classic pumping target and no deny list of countries names them, so
// they are refused unless an allow list, global or the tenant's, names 001 explicitly.
func (c *Checker) Check(ctx context.Context, r *Rules, msg *gateway.Message, price float64) (rej *Rejection, err error) {
	cc := msg.Country
	if rej := countryRule(r, cc, ""); rej != nil {
		return rej, nil
	}
	for _, other := range msg.AlsoIn {
		if rej := countryRule(r, other, cc); rej != nil {
			return rej, nil
		}
	}
	if msg.NumberType != "" && r.DeniedTypes[msg.NumberType] {
		return &Rejection{Code: "number_type_not_allowed", Reason: "number_type",
			Message: fmt.Sprintf("the recipient is a %s number, a type policy.denied_number_types refuses", strings.ReplaceAll(msg.NumberType, "_", " "))}, nil
	}
	if rej := linkRule(r, msg.Text); rej != nil {
		return rej, nil
	}
	type check struct {
		name, kind, value string
		l                 *config.Limit
	}
	if s := r.Limits.Spend; s.Active() && c.Spends != nil {
		key := SpendKey(msg.Tenant, *s)
		ok, wait, rerr := c.Spends.Reserve(ctx, key, *s, price)
		if rerr != nil {
			return nil, rerr
		}
		if !ok {
			return &Rejection{Code: "rate_limited", Reason: "spend", RetryAfter: wait,
				Message: fmt.Sprintf("spend limit (%s) reached", s)}, nil
		}
		defer func() {
			// rej and err are Check's results: nothing in this block may declare its own err,
			// or the limiter's failures below would keep the reservation (they once did).
			if (rej != nil || err != nil) && price > 0 {
				// Not sent: give the reservation back (if that fails, the tenant is charged a
				// send it did not make, the safe way round).
				_ = c.Spends.Charge(context.WithoutCancel(ctx), key, *s, -price)
			}
		}()
	}
	checks := [4]check{{"per_tenant", "t", "", r.Limits.PerTenant}}
	n := 1
	if l, ok := r.Limits.PerCountry[cc]; ok {
		checks[n] = check{"per_country", "c", cc, &l}
		n++
	}
	if msg.IP != "" {
		checks[n] = check{"per_ip", "i", msg.IP, r.Limits.PerIP}
		n++
	}
	checks[n] = check{"per_recipient", "r", msg.To, r.Limits.PerRecipient}
	n++
	for _, ch := range checks[:n] {
		if !ch.l.Active() {
			continue
		}
		if c.Blind != nil && (ch.kind == "i" || ch.kind == "r") {
			ch.value = c.Blind(ch.value)
		}
		ok, wait, err := c.Limiter.Allow(ctx, LimitKey(ch.kind, *ch.l, msg.Tenant, ch.value), *ch.l)
		if err != nil {
			return nil, err
		}
		if !ok {
			return LimitRefused(ch.name, ch.l, wait), nil
		}
	}
	return nil, nil
}

// AllowCall takes one token of tenant's rate_limits.api bucket for a call other than a send
// (reading its messages, reporting a code used): each reads or writes the message log every
// tenant's records go through, so a tenant calling in a loop must not get unlimited use of it.
// nil when allowed or when the limit is off.
func (c *Checker) AllowCall(ctx context.Context, tenant string, r *Rules) (*Rejection, error) {
	l := r.Limits.API
	if !l.Active() {
		return nil, nil
	}
	ok, wait, err := c.Limiter.Allow(ctx, LimitKey("a", *l, tenant, ""), *l)
	if err != nil || ok {
		return nil, err
	}
	return LimitRefused("api", l, wait), nil
}

// Pace takes one token of a provider account's throughput l for tenant's send. A send within
// the tenant's share (share of l, at least one) takes it from anywhere in the account's bucket;
// a send beyond its share only from what lies above the others' part (the rest of l, held in
// reserve). So a tenant alone uses the whole account, and beside others it can take no more than
// its share of what they need. It reports whether the send may go to the provider now and,
// when not, how long until it may.
func (c *Checker) Pace(ctx context.Context, provider, tenant string, l config.Limit, share float64) (bool, time.Duration, error) {
	keep := 0
	if share < 1 {
		own := config.Limit{N: max(1, int(float64(l.N)*share)), Per: l.Per}
		ok, _, err := c.Limiter.Allow(ctx, LimitKey("p", own, tenant, provider), own)
		if err != nil {
			return true, 0, err
		}
		if !ok {
			keep = l.N - own.N
		}
	}
	ok, wait, err := c.Limiter.AllowKeeping(ctx, LimitKey("p", l, "", provider), l, keep)
	return ok || err != nil, wait, err
}

// LimitKey is the bucket of limit l of one kind (t, c, i, r for the send's limits, a for calls,
// p for a provider's throughput) for tenant and value (a country, an IP, a recipient, a
// provider; "" for the tenant's own). It names the limit too, so a reloaded limit starts a fresh
// bucket. Built with strconv rather than fmt: this runs for every send.
func LimitKey(kind string, l config.Limit, tenant, value string) string {
	return kind + "|" + strconv.Itoa(l.N) + "/" + strconv.FormatInt(int64(l.Per), 10) + "|" + tenant + "|" + value
}

// LimitRefused is the refusal of a request over the limit l named name, retried after wait.
func LimitRefused(name string, l *config.Limit, wait time.Duration) *Rejection {
	return &Rejection{Code: "rate_limited", Reason: name, RetryAfter: wait,
		Message: fmt.Sprintf("rate limit %s (%s) exceeded", name, l)}
}
