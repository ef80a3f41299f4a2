package policy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/policy/redistest"
)

// clock is a test clock moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)} }

func lim(n int, per time.Duration) *config.Limit { return &config.Limit{N: n, Per: per} }

// newLimiter returns the named Limiter implementation on the given clock; Redis needs a server
// (see redistest).
func newLimiter(t *testing.T, clk *clock, backend string) Limiter {
	if backend == "redis" {
		return &Redis{Client: redistest.Start(t), Prefix: redistest.Prefix(t), Now: clk.now}
	}
	return &MemoryLimiter{Now: clk.now}
}

func TestEveryLimitWithWindowReset(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) { testEveryLimit(t, backend) })
	}
}

func testEveryLimit(t *testing.T, backend string) {
	msg := func(to, ip, cc string) *gateway.Message {
		return &gateway.Message{Tenant: "acme", To: to, IP: ip, Country: cc}
	}
	tests := []struct {
		name   string
		limits config.RateLimits
		// vary returns the i-th message; all hit the limit under test and no other.
		vary   func(i int) *gateway.Message
		n      int
		period time.Duration
	}{
		{"per_recipient", config.RateLimits{PerRecipient: lim(3, time.Hour)}, func(i int) *gateway.Message { return msg("+14155550104", "", "US") }, 3, time.Hour},
		{"per_ip", config.RateLimits{PerIP: lim(2, time.Minute)}, func(i int) *gateway.Message { return msg("+1415555010"+string(rune('0'+i)), "203.0.113.7", "US") }, 2, time.Minute},
		{"per_tenant", config.RateLimits{PerTenant: lim(4, time.Second)}, func(i int) *gateway.Message { return msg("+1415555010"+string(rune('0'+i)), "", "US") }, 4, time.Second},
		{"per_country", config.RateLimits{PerCountry: map[string]config.Limit{"NG": {N: 2, Per: time.Hour}}}, func(i int) *gateway.Message { return msg("+23480"+string(rune('0'+i)), "", "NG") }, 2, time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			c := Checker{Limiter: newLimiter(t, clk, backend)}
			r := &Rules{Limits: tc.limits}
			for i := 0; i < tc.n; i++ {
				if rej, _ := c.Check(context.Background(), r, tc.vary(i), 0); rej != nil {
					t.Fatalf("request %d rejected: %+v", i+1, rej)
				}
			}
			rej, err := c.Check(context.Background(), r, tc.vary(tc.n), 0)
			if err != nil || rej == nil {
				t.Fatalf("request over the limit allowed (err %v)", err)
			}
			want := tc.period / time.Duration(tc.n)
			if rej.Code != "rate_limited" || rej.Reason != tc.name || rej.RetryAfter <= 0 || rej.RetryAfter > want {
				t.Errorf("rejection = %+v, want rate_limited %s with retry after in (0, %v]", rej, tc.name, want)
			}
			// Other recipients, IPs, countries: unaffected unless the limit is tenant-wide.
			if tc.name == "per_recipient" {
				if rej, _ := c.Check(context.Background(), r, msg("+14155550199", "", "US"), 0); rej != nil {
					t.Errorf("another recipient limited: %+v", rej)
				}
			}
			// A bucket left alone for several windows holds n again, and no more: idle time
			// is not banked as a larger burst.
			clk.add(3 * tc.period)
			for i := 0; i < tc.n; i++ {
				if rej, _ := c.Check(context.Background(), r, tc.vary(i), 0); rej != nil {
					t.Fatalf("after the window, request %d rejected: %+v", i+1, rej)
				}
			}
			if rej, _ := c.Check(context.Background(), r, tc.vary(tc.n), 0); rej == nil || rej.Reason != tc.name {
				t.Errorf("after three idle windows, request %d: %+v, want it refused by %s", tc.n+1, rej, tc.name)
			}
		})
	}
}

func TestZeroMeansUnlimited(t *testing.T) {
	c := Checker{Limiter: &MemoryLimiter{}}
	r := &Rules{Limits: config.RateLimits{PerRecipient: &config.Limit{}, PerIP: &config.Limit{}, PerTenant: &config.Limit{}}}
	for i := 0; i < 1000; i++ {
		if rej, _ := c.Check(context.Background(), r, &gateway.Message{Tenant: "a", To: "+14155550104", IP: "x", Country: "US"}, 0); rej != nil {
			t.Fatalf("limited at %d: %+v", i, rej)
		}
	}
}

func TestTenantWideLimitDoesNotSpendRecipientAllowance(t *testing.T) {
	clk := newClock()
	c := Checker{Limiter: &MemoryLimiter{Now: clk.now}}
	r := &Rules{Limits: config.RateLimits{PerTenant: lim(1, time.Second), PerRecipient: lim(2, time.Hour)}}
	m := &gateway.Message{Tenant: "a", To: "+14155550104", Country: "US"}
	for i := 0; i < 5; i++ { // 1 allowed, 4 refused by per_tenant
		c.Check(context.Background(), r, m, 0)
	}
	clk.add(time.Second)
	if rej, _ := c.Check(context.Background(), r, m, 0); rej != nil {
		t.Fatalf("second send refused: %+v (refused requests used the recipient's allowance)", rej)
	}
}

// TestAStarInEitherLinkListAllowsEveryLink: "*" in the global allowed_link_hosts or in the
// tenant's lets every link through, whatever other hosts either list names and in whichever order.
func TestAStarInEitherLinkListAllowsEveryLink(t *testing.T) {
	c := Checker{Limiter: &MemoryLimiter{}}
	msg := &gateway.Message{Tenant: "a", To: "+14155550104", Country: "US", Text: "Your code is 734019. https://anything.example/x"}
	for _, tc := range []struct {
		global, own []string
		allowed     bool
	}{
		{[]string{"*"}, []string{"acme.com"}, true},
		{[]string{"help.example.com"}, []string{"*"}, true},
		{[]string{"*", "help.example.com"}, nil, true},
		{[]string{"help.example.com"}, []string{"acme.com"}, false},
		// Names are compared in lower case, however the config writes them.
		{[]string{"Anything.EXAMPLE"}, nil, true},
		{nil, []string{"ANYTHING.example"}, true},
	} {
		r := Compile(&config.Config{Policy: config.Policy{AllowedLinkHosts: tc.global}}, &config.Tenant{AllowedLinkHosts: tc.own})
		rej, err := c.Check(context.Background(), r, msg, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := rej == nil; got != tc.allowed {
			t.Errorf("global %v, tenant %v: allowed %v (%+v), want %v", tc.global, tc.own, got, rej, tc.allowed)
		}
	}
}

// TestALinkHiddenInAnAllowedOnesPathOrQueryIsRefused: a tenant allowed acme.com's links cannot
// send a link to another host that carries acme.com's URL or name in its path or query (the phone
// follows the other host); its plain acme.com links still go.
func TestALinkHiddenInAnAllowedOnesPathOrQueryIsRefused(t *testing.T) {
	c := Checker{Limiter: &MemoryLimiter{}}
	r := Compile(&config.Config{}, &config.Tenant{AllowedLinkHosts: []string{"acme.com"}})
	for text, allowed := range map[string]bool{
		"Your code is 734019. https://acme.com/verify":             true,
		"Your code is 734019. www.acme.com/verify":                 true,
		"Your code is 734019. evil.example.com/x?u=www.acme.com":   false,
		"Your code is 734019. evil.io/https://acme.com/verify":     false,
		"Your code is 734019. https://acme.com/a/https://evil.io/": false,
	} {
		rej, err := c.Check(context.Background(), r, &gateway.Message{Tenant: "a", To: "+14155550104", Country: "US", Text: text}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := rej == nil; got != allowed || (rej != nil && rej.Code != "link_not_allowed") {
			t.Errorf("%q: allowed %v (%+v), want %v", text, got, rej, allowed)
		}
	}
}

func TestCountryLists(t *testing.T) {
	c := Checker{Limiter: &MemoryLimiter{}}
	cfg := &config.Config{Policy: config.Policy{DeniedCountries: []string{"KP"}}}
	tn := &config.Tenant{AllowedCountries: []string{"US", "GB", "KP"}, DeniedCountries: []string{"GB"}}
	r := Compile(cfg, tn)
	tests := []struct {
		cc, reason string
	}{
		{"US", ""},
		{"GB", "denied_countries"},
		{"KP", "denied_countries"},
		{"GG", "allowed_countries"},
		{"NG", "allowed_countries"},
	}
	for _, tc := range tests {
		t.Run(tc.cc, func(t *testing.T) {
			rej, _ := c.Check(context.Background(), r, &gateway.Message{Tenant: "a", To: "+1", Country: tc.cc}, 0)
			got := ""
			if rej != nil {
				got = rej.Reason
				if rej.Code != "country_not_allowed" {
					t.Errorf("code = %q", rej.Code)
				}
			}
			if got != tc.reason {
				t.Errorf("reason = %q, want %q", got, tc.reason)
			}
		})
	}
	// Global allow list narrows every tenant.
	cfg.Policy.AllowedCountries = []string{"US"}
	r = Compile(cfg, &config.Tenant{})
	if rej, _ := c.Check(context.Background(), r, &gateway.Message{Country: "GB"}, 0); rej == nil || rej.Reason != "allowed_countries" {
		t.Errorf("global allow list not applied: %+v", rej)
	}
}

// TestCountryListsHoldForEveryRegionANumberMayBeIn: a number libphonenumber does not recognize,
// under a calling code several regions share, may be in each of the regions its digits do not
// rule out (gateway.Message.AlsoIn): a deny list naming any of them refuses it, and an allow list
// must name all of them. Counting it only in the calling code's main region (US for +1) let an
// unrecognized range walk around a list that denied the other.
func TestCountryListsHoldForEveryRegionANumberMayBeIn(t *testing.T) {
	c := Checker{Limiter: &MemoryLimiter{}}
	tests := []struct {
		name           string
		global, allow  []string
		denied, gdeny  []string
		reason, phrase string
	}{
		{name: "allow list names both", allow: []string{"US", "CA"}},
		{name: "no lists", reason: ""},
		{name: "allow list names only the main region", allow: []string{"US"}, reason: "allowed_countries", phrase: "destination country CA is not allowed"},
		{name: "tenant deny list names the other", denied: []string{"CA"}, reason: "denied_countries", phrase: "counted in US but possibly in CA"},
		{name: "global deny list names the other", gdeny: []string{"CA"}, reason: "denied_countries"},
		{name: "global allow list names only the main region", global: []string{"US"}, allow: []string{"US", "CA"}, reason: "allowed_countries", phrase: "global allowed list"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{Policy: config.Policy{AllowedCountries: tc.global, DeniedCountries: tc.gdeny}}
			r := Compile(cfg, &config.Tenant{AllowedCountries: tc.allow, DeniedCountries: tc.denied})
			msg := &gateway.Message{Tenant: "a", To: "+17700000000", Country: "US", AlsoIn: []string{"CA"}}
			rej, err := c.Check(context.Background(), r, msg, 0)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if rej != nil {
				got = rej.Reason
				if rej.Code != "country_not_allowed" || !strings.Contains(rej.Message, tc.phrase) {
					t.Errorf("rejection = %+v, want country_not_allowed saying %q", rej, tc.phrase)
				}
				if strings.Contains(rej.Message, msg.To) || strings.Contains(rej.Message, "7700000000") {
					t.Errorf("the rejection names the number: %q", rej.Message)
				}
			}
			if got != tc.reason {
				t.Errorf("reason = %q, want %q", got, tc.reason)
			}
		})
	}
}

// TestDeniedNumberTypes: a number of a denied type is refused, the global list and the tenant's
// together; a number of no special type, or of one neither list names, passes.
func TestDeniedNumberTypes(t *testing.T) {
	c := Checker{Limiter: &MemoryLimiter{}}
	global := []string{"premium_rate"}
	cfg := &config.Config{Policy: config.Policy{DeniedNumberTypes: &global}}
	r := Compile(cfg, &config.Tenant{DeniedNumberTypes: []string{"toll_free"}})
	other := Compile(cfg, &config.Tenant{})
	for _, tc := range []struct {
		rules    *Rules
		kind     string
		refused  bool
		sentence string
	}{
		{r, "premium_rate", true, "premium rate number"},
		{r, "toll_free", true, "toll free number"},
		{r, "voip", false, ""},
		{r, "", false, ""},
		{other, "premium_rate", true, "premium rate number"},
		{other, "toll_free", false, ""}, // another tenant's list is its own
	} {
		rej, err := c.Check(context.Background(), tc.rules, &gateway.Message{Tenant: "a", To: "+19002123456", Country: "US", NumberType: tc.kind}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := rej != nil; got != tc.refused {
			t.Errorf("%q: refused %v, want %v (%+v)", tc.kind, got, tc.refused, rej)
			continue
		}
		if rej != nil && (rej.Code != "number_type_not_allowed" || rej.Reason != "number_type" || !strings.Contains(rej.Message, tc.sentence)) {
			t.Errorf("%q: %+v", tc.kind, rej)
		}
	}
}

// TestNonGeographicNeedsAnExplicitAllowList: numbers of no country (001) pass no deny list of
// countries, so they are refused unless an allow list names 001.
func TestNonGeographicNeedsAnExplicitAllowList(t *testing.T) {
	c := Checker{Limiter: &MemoryLimiter{}}
	tests := []struct {
		name          string
		global, allow []string
		denied        []string
		reason        string
	}{
		{name: "deny list only", denied: []string{"NG", "KP"}, reason: "non_geographic"},
		{name: "no lists at all", reason: "non_geographic"},
		{name: "tenant allow list without 001", allow: []string{"US"}, reason: "non_geographic"},
		{name: "tenant allow list names 001", allow: []string{"US", "001"}},
		{name: "global allow list names 001", global: []string{"001"}},
		{name: "tenant names 001 but the global list narrows it", global: []string{"US"}, allow: []string{"001"}, reason: "allowed_countries"},
		{name: "allowed and then denied", allow: []string{"001"}, denied: []string{"001"}, reason: "denied_countries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{Policy: config.Policy{AllowedCountries: tc.global}}
			r := Compile(cfg, &config.Tenant{AllowedCountries: tc.allow, DeniedCountries: tc.denied})
			rej, _ := c.Check(context.Background(), r, &gateway.Message{Tenant: "a", To: "+979123456789", Country: "001"}, 0)
			got := ""
			if rej != nil {
				got = rej.Reason
			}
			if got != tc.reason {
				t.Errorf("reason = %q, want %q", got, tc.reason)
			}
		})
	}
}

func TestLimiterSweepsFullBuckets(t *testing.T) {
	clk := newClock()
	l := &MemoryLimiter{Now: clk.now}
	for i := 0; i < 4095; i++ {
		l.Allow(context.Background(), string(rune(i+100)), config.Limit{N: 10, Per: time.Second})
	}
	clk.add(time.Minute)
	// Each call examines two buckets: about 2,048 calls pass over all 4,096.
	for i := 0; i < 2100; i++ {
		l.Allow(context.Background(), "last", config.Limit{N: 100000, Per: time.Second})
	}
	if n := l.Len(); n != 1 {
		t.Errorf("buckets after sweep = %d, want the refilled ones dropped and \"last\" kept", n)
	}
}

// TestSweptMapStaysBounded: one new key per step, each stale after ttl steps: the map never holds
// much more than twice the live keys, and a key is never dropped while it is live.
func TestSweptMapStaysBounded(t *testing.T) {
	const ttl, steps = 1000, 20000
	var s sweptMap[int] // value: the step the key stops being live
	most := 0
	for now := 0; now < steps; now++ {
		s.set(strconv.Itoa(now), now+ttl)
		s.sweep(2, func(_ string, until int) bool { return until <= now })
		most = max(most, s.len())
		if now >= ttl {
			for _, back := range []int{0, 1, ttl / 2, ttl - 1} {
				if _, ok := s.get(strconv.Itoa(now - back)); !ok {
					t.Fatalf("step %d: key of step %d is live but gone", now, now-back)
				}
			}
		}
	}
	if most > 2*ttl+2 {
		t.Errorf("the map held %d keys with %d live at a time, want at most about twice", most, ttl)
	}
	for k, sl := range s.m { // positions stay consistent through the swap-removes
		if s.keys[sl.pos] != k {
			t.Fatalf("key %q at position %d holds %q", k, sl.pos, s.keys[sl.pos])
		}
	}
}

// TestMemoryResendsDropExpired: the resend memory forgets entries past their window as new ones
// come, well before its bound, so a replica holds the live ones only.
func TestMemoryResendsDropExpired(t *testing.T) {
	clk := newClock()
	r := NewMemoryResends(clk.now, 100000, nil)
	ctx := context.Background()
	for i := range 1000 {
		r.Record(ctx, ResendKey("acme", "old"+strconv.Itoa(i)), "m", clk.now(), time.Minute)
	}
	clk.add(2 * time.Minute)
	for i := range 1500 { // 3,000 examined: more than the 1,000 expired
		r.Record(ctx, ResendKey("acme", "new"+strconv.Itoa(i)), "m", clk.now(), time.Minute)
	}
	if n := r.e.m.len(); n != 1500 {
		t.Errorf("%d entries, want the 1,500 live ones", n)
	}
}

// TestMemoryReplaysDropExpired: replays past their TTL are dropped as later ones of their tenant
// are stored (up to four a put, oldest first).
func TestMemoryReplaysDropExpired(t *testing.T) {
	clk := newClock()
	r := NewMemoryReplays(clk.now, 0)
	for i := 0; i < 1000; i++ {
		r.Put(context.Background(), "old"+strconv.Itoa(i), &Replay{}, time.Minute)
	}
	clk.add(2 * time.Minute)
	for i := 0; i < 1500; i++ { // up to 6,000 drops: more than the 1,000 expired
		r.Put(context.Background(), "new"+strconv.Itoa(i), &Replay{}, time.Minute)
	}
	if n := r.Len(); n != 1500 {
		t.Errorf("%d entries, want the 1,500 live ones", n)
	}
}

func TestRedisReplaysAndResends(t *testing.T) {
	r := &Redis{Client: redistest.Start(t), Prefix: redistest.Prefix(t)}
	ctx := context.Background()
	if _, ok, err := r.Get(ctx, "k"); ok || err != nil {
		t.Fatalf("empty store: %v %v", ok, err)
	}
	first := &Replay{BodyHash: [32]byte{1, 2, 3}, Status: 200, Body: []byte(`{"id":"msg_1"}`)}
	if err := r.Put(ctx, "k", first, time.Hour); err != nil {
		t.Fatal(err)
	}
	r.Put(ctx, "k", &Replay{BodyHash: [32]byte{9}, Status: 422, Body: []byte(`{}`)}, time.Hour) // the first answer wins
	got, ok, err := r.Get(ctx, "k")
	if err != nil || !ok || cmp.Diff(first, got) != "" {
		t.Errorf("got %+v %v %v", got, ok, err)
	}
	if ttl := r.Client.PTTL(ctx, r.Prefix+"idem:k").Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("ttl %v", ttl)
	}
	at := time.UnixMicro(time.Now().UnixMicro())
	r.Record(ctx, "rk", "twilio", at, time.Minute)
	p, gotAt, ok, err := r.Last(ctx, "rk")
	if diff := cmp.Diff([]any{"twilio", at, true, nil}, []any{p, gotAt, ok, err}, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, _, ok, _ := r.Last(ctx, "other"); ok {
		t.Error("unknown key found")
	}
	// Resend memory leaves the shared store with its time: one key a tenant and a number.
	if ttl := r.Client.PTTL(ctx, r.Prefix+"resend:rk").Val(); ttl <= 59*time.Second || ttl > time.Minute {
		t.Errorf("resend memory's ttl %v, want 1m", ttl)
	}
}

// TestRedisBoundsEachTenantsReplays: with MaxTenantReplays, a tenant storing ever new
// idempotency records in Redis loses its own oldest past the bound, never another tenant's (with
// maxmemory alone, Redis would evict any tenant's keys); a repeated Put and records already
// expired count nothing. On a Redis Cluster the index and the records live on different nodes.
func TestRedisBoundsEachTenantsReplays(t *testing.T) {
	for _, setup := range []string{"redis", "cluster"} {
		t.Run(setup, func(t *testing.T) {
			clk := newClock()
			r := &Redis{Prefix: redistest.Prefix(t), Now: clk.now, Breakers: NewBreakers(time.Hour), MaxTenantReplays: 3}
			if setup == "redis" {
				r.Client = redistest.Start(t)
			} else {
				client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.Cluster(t, 3)})
				defer client.Close()
				r.Client, r.Cluster = client, true
			}
			evicted := map[string]int{}
			r.OnReplaysEvicted = func(tenant string, n int) { evicted[tenant] += n }
			ctx := context.Background()
			put := func(tenant, key string) {
				t.Helper()
				clk.add(time.Second)
				if err := r.Put(ctx, ReplayKey(tenant, key), &Replay{Status: 200, Body: []byte(key)}, time.Hour); err != nil {
					t.Fatalf("put %s %s: %v", tenant, key, err)
				}
			}
			kept := func(tenant string, keys ...string) (out []string) {
				t.Helper()
				for _, k := range keys {
					if _, ok, err := r.Get(ctx, ReplayKey(tenant, k)); err != nil {
						t.Fatal(err)
					} else if ok {
						out = append(out, k)
					}
				}
				return out
			}
			put("quiet", "q0")
			for i := range 5 {
				put("flood", "f"+strconv.Itoa(i))
			}
			put("quiet", "q1")
			put("flood", "f4") // stored already: nothing new
			if diff := cmp.Diff([]string{"f2", "f3", "f4"}, kept("flood", "f0", "f1", "f2", "f3", "f4")); diff != "" {
				t.Errorf("the flood's records (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"q0", "q1"}, kept("quiet", "q0", "q1")); diff != "" {
				t.Errorf("the quiet tenant's records (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]int{"flood": 2}, evicted); diff != "" {
				t.Errorf("evictions heard (-want +got):\n%s", diff)
			}
			// A tenant's index leaves the shared store an hour after its last record.
			if ttl := r.Client.PTTL(ctx, r.Prefix+"idem-index:"+r.slotted("quiet")).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
				t.Errorf("the quiet tenant's index: ttl %v, want 1h", ttl)
			}
			// An hour on, the index no longer counts the records of then (Redis's own clock has
			// not moved, so they are still there): three new ones evict nothing.
			clk.add(time.Hour)
			for i := 5; i < 8; i++ {
				put("flood", "f"+strconv.Itoa(i))
			}
			if diff := cmp.Diff([]string{"f2", "f3", "f4", "f5", "f6", "f7"}, kept("flood", "f2", "f3", "f4", "f5", "f6", "f7")); diff != "" {
				t.Errorf("after an hour (-want +got):\n%s", diff)
			}
			if evicted["flood"] != 2 {
				t.Errorf("%d evictions after an hour, want the 2 of before", evicted["flood"])
			}
		})
	}
}

// TestRedisReplayIndexWorksInSteps: a tenant's index holding many expired entries (a quiet day
// after a burst), or many past a bound lowered at a restart, is worked off a step at a time over
// the tenant's next Puts: one call over a million entries held Redis, every tenant's, for 0.4 s.
// The expired entries taken out count as no eviction.
func TestRedisReplayIndexWorksInSteps(t *testing.T) {
	client := redistest.Start(t)
	clk := newClock()
	prefix := redistest.Prefix(t)
	evicted := 0
	replica := func(bound int) *Redis {
		return &Redis{Client: client, Prefix: prefix, Now: clk.now, MaxTenantReplays: bound,
			OnReplaysEvicted: func(_ string, n int) { evicted += n }}
	}
	ctx := context.Background()
	held := func() int64 { return client.ZCard(ctx, prefix+"idem-index:flood").Val() }
	put := func(r *Redis, i int) {
		t.Helper()
		clk.add(time.Millisecond)
		if err := r.Put(ctx, ReplayKey("flood", strconv.Itoa(i)), &Replay{Status: 200}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	wide := replica(1000)
	for i := range 300 {
		put(wide, i)
	}
	clk.add(2 * time.Hour) // all 300 expired
	put(wide, 300)
	if n := held(); n != 300-128+1 || evicted != 0 {
		t.Errorf("after a quiet day: %d entries held, %d evicted; want 173 (128 expired taken out) and none", n, evicted)
	}
	for i := 301; i < 600; i++ {
		put(wide, i)
	}
	// 300 live and none expired now: a replica started with a bound of 10 takes 128 of them a Put.
	if n := held(); n != 300 {
		t.Fatalf("%d entries held, want the 300 live ones", n)
	}
	put(replica(10), 600)
	if n := held(); n != 301-128 || evicted != 128 {
		t.Errorf("under a lowered bound: %d entries held, %d evicted; want 173 and 128", n, evicted)
	}
	if _, ok, _ := wide.Get(ctx, ReplayKey("flood", "300")); ok {
		t.Error("the oldest live record was not deleted")
	}
	// A lowered bound meeting more expired entries than a step takes: the ones it takes past the
	// bound were records that expired by themselves, and none of them counts as evicted.
	clk.add(2 * time.Hour) // the 173 held expire
	put(replica(10), 601)
	if n := held(); n != 10 || evicted != 128 {
		t.Errorf("under a lowered bound after a quiet day: %d entries held, %d evicted; want 10 and still 128", n, evicted)
	}
}

// scriptClocks records, for every script a Redis client runs, the "now" it passes (ARGV[1]),
// and whether a pipeline asked Redis for its TIME.
type scriptClocks struct {
	mu    sync.Mutex
	nows  []any
	asked bool
}

func (h *scriptClocks) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *scriptClocks) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.note(cmd); return next(ctx, cmd) }
}
func (h *scriptClocks) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.note(c)
		}
		return next(ctx, cmds)
	}
}
func (h *scriptClocks) note(cmd redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	args := cmd.Args()
	switch strings.ToLower(fmt.Sprint(args[0])) {
	case "evalsha", "eval":
		if keys, _ := strconv.Atoi(fmt.Sprint(args[2])); len(args) > 3+keys {
			h.nows = append(h.nows, args[3+keys])
		}
	}
	if strings.Contains(fmt.Sprint(args), "redis.call('TIME')") {
		h.asked = true
	}
}

// TestRedisStateKeepsRedisClock: in production (Now nil) the rate limits, spend buckets and the
// idempotency index take the time from Redis itself, never from the replica: a replica whose clock
// ran ahead had pushed every bucket it touched ahead by as much, and the other replicas refused
// those buckets' sends (a whole tenant's, with per_tenant) until their own clocks caught up. The
// buckets still behave as buckets on Redis's clock.
func TestRedisStateKeepsRedisClock(t *testing.T) {
	client := redistest.Start(t)
	h := &scriptClocks{}
	client.AddHook(h)
	r := &Redis{Client: client, Prefix: redistest.Prefix(t), MaxTenantReplays: 10}
	ctx := context.Background()
	if ok, _, err := r.Allow(ctx, "tenant-a", config.Limit{N: 1, Per: time.Hour}); !ok || err != nil {
		t.Fatalf("first send: %v %v", ok, err)
	}
	if ok, wait, err := r.Allow(ctx, "tenant-a", config.Limit{N: 1, Per: time.Hour}); ok || err != nil || wait <= 59*time.Minute || wait > time.Hour {
		t.Errorf("second send within the hour: %v, wait %v, %v; want refused for about an hour", ok, wait, err)
	}
	spend := config.Spend{Amount: 10, Per: time.Hour}
	if ok, _, err := r.Reserve(ctx, "sp-a", spend, 4); !ok || err != nil {
		t.Fatalf("reserve: %v %v", ok, err)
	}
	if err := r.Charge(ctx, "sp-a", spend, 1); err != nil {
		t.Fatal(err)
	}
	used, err := r.Used(ctx, []SpendBucket{{Key: "sp-a", Limit: spend}})
	if err != nil || len(used) != 1 || used[0] < 4.99 || used[0] > 5 {
		t.Errorf("spent: %v %v, want 5", used, err)
	}
	if err := r.Put(ctx, ReplayKey("acme", "k1"), &Replay{Status: 200}, time.Hour); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.nows) < 5 {
		t.Fatalf("%d scripts ran, want the two limits, the reserve, the charge and the index", len(h.nows))
	}
	for i, now := range h.nows {
		if now != "" {
			t.Errorf("script %d was given the replica's clock (%v), not left to Redis's", i, now)
		}
	}
	if !h.asked {
		t.Error("the spend figures were read against the replica's clock, not Redis's TIME")
	}
}

func TestRedisLimiterSharedAndExpiring(t *testing.T) {
	client := redistest.Start(t)
	prefix := redistest.Prefix(t)
	clk := newClock()
	// Two replicas, one Redis: the bucket is shared.
	a, b := &Redis{Client: client, Prefix: prefix, Now: clk.now}, &Redis{Client: client, Prefix: prefix, Now: clk.now}
	l := config.Limit{N: 2, Per: time.Hour}
	ok1, _, _ := a.Allow(context.Background(), "r|t|+1", l)
	ok2, _, _ := b.Allow(context.Background(), "r|t|+1", l)
	ok3, wait, err := a.Allow(context.Background(), "r|t|+1", l)
	if !ok1 || !ok2 || ok3 || err != nil || wait != 30*time.Minute {
		t.Errorf("shared bucket: %v %v %v wait %v err %v", ok1, ok2, ok3, wait, err)
	}
	// The key expires when the bucket would be full again, so idle buckets cost nothing.
	if ttl := client.PTTL(context.Background(), prefix+"rl:r|t|+1").Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("ttl %v, want about one period", ttl)
	}
}

func TestReplaysAndResendsExpire(t *testing.T) {
	clk := newClock()
	rp := NewMemoryReplays(clk.now, 0)
	rp.Put(context.Background(), "k", &Replay{Status: 200, Body: []byte("x")}, time.Hour)
	if r, ok, _ := rp.Get(context.Background(), "k"); !ok || r.Status != 200 {
		t.Fatalf("replay not found")
	}
	clk.add(time.Hour)
	if _, ok, _ := rp.Get(context.Background(), "k"); ok {
		t.Errorf("replay did not expire")
	}
	rs := NewMemoryResends(clk.now, 0, nil)
	rs.Record(context.Background(), "r", "infobip", clk.now(), 10*time.Minute)
	p, at, ok, _ := rs.Last(context.Background(), "r")
	if diff := cmp.Diff([]any{"infobip", clk.now(), true}, []any{p, at, ok}); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestFlightSurvivesItsCallersLeaving: the first caller hangs up while the shared call runs; the
// call is not cancelled, it finishes, and a caller still waiting gets its result.
func TestFlightSurvivesItsCallersLeaving(t *testing.T) {
	var f Flight[string]
	started, release := make(chan struct{}), make(chan struct{})
	finished := make(chan string, 1)
	firstCtx, hangUp := context.WithCancel(context.Background())
	firstDone := make(chan error, 1)
	go func() {
		_, _, err := f.Do(firstCtx, "k", func() string {
			close(started)
			<-release
			finished <- "ran to the end"
			return "sent"
		})
		firstDone <- err
	}()
	<-started
	secondDone := make(chan string, 1)
	go func() {
		v, shared, err := f.Do(context.Background(), "k", func() string { return "second run" })
		if !shared || err != nil {
			t.Errorf("second caller: shared %v err %v", shared, err)
		}
		secondDone <- v
	}()
	for deadline := time.Now().Add(5 * time.Second); f.waiting("k") < 1 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	hangUp()
	if err := <-firstDone; !errors.Is(err, context.Canceled) {
		t.Errorf("first caller: err %v, want its own cancellation", err)
	}
	close(release)
	if got := <-secondDone; got != "sent" {
		t.Errorf("second caller got %q, want the shared result", got)
	}
	if got := <-finished; got != "ran to the end" {
		t.Errorf("shared call: %q", got)
	}
}

func TestFlightCoalesces(t *testing.T) {
	var f Flight[int]
	var runs atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]int, 20)
	shared := atomic.Int32{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		v, _, _ := f.Do(context.Background(), "k", func() int { runs.Add(1); close(started); <-release; return 42 })
		results[0] = v
	}()
	<-started
	for i := 1; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, s, _ := f.Do(context.Background(), "k", func() int { runs.Add(1); return -1 })
			if s {
				shared.Add(1)
			}
			results[i] = v
		}()
	}
	for deadline := time.Now().Add(5 * time.Second); f.waiting("k") < 19 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if runs.Load() != 1 {
		t.Errorf("fn ran %d times, want 1", runs.Load())
	}
	for i, v := range results {
		if v != 42 {
			t.Errorf("result %d = %d", i, v)
		}
	}
	// A different key runs on its own.
	if v, s, _ := f.Do(context.Background(), "other", func() int { return 7 }); v != 7 || s {
		t.Errorf("other key: %d %v", v, s)
	}
}

func TestRedisBreakerFailsFastWhileDown(t *testing.T) {
	addr, stop := redistest.Server(t)
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer client.Close()
	r := &Redis{Client: client, Prefix: "x:", Breakers: NewBreakers(time.Hour)}
	l := config.Limit{N: 1, Per: time.Second}
	if ok, _, err := r.Allow(context.Background(), "k", l); !ok || err != nil {
		t.Fatalf("up: %v %v", ok, err)
	}
	stop()
	for i := 0; i < 3; i++ {
		if _, _, err := r.Allow(context.Background(), "k", l); err == nil {
			t.Fatalf("call %d succeeded with redis down", i)
		}
	}
	_, _, err := r.Allow(context.Background(), "k", l)
	if !errors.Is(err, gobreaker.ErrOpenState) {
		t.Errorf("after 3 failures: %v, want the open breaker", err)
	}
}

// clusterWithBreakers starts a Redis Cluster of three primaries and a Redis on it with breakers
// (prefix "x:", calls bounded at 200 ms). first is the first primary's address; onFirst reports
// whether one of keys (without the prefix) lives there; pauseFirst has that primary hold every
// client's command for 20 s, as one that stopped answering does.
func clusterWithBreakers(t *testing.T) (r *Redis, first string, onFirst func(keys ...string) bool, pauseFirst func()) {
	nodes := redistest.Cluster(t, 3)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: nodes, ReadTimeout: 200 * time.Millisecond, MaxRedirects: -1})
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()
	onFirst = func(keys ...string) bool {
		for _, k := range keys {
			node, err := client.MasterForKey(ctx, "x:"+k)
			if err != nil {
				t.Fatal(err)
			}
			if node.Options().Addr == nodes[0] {
				return true
			}
		}
		return false
	}
	pauseFirst = func() {
		pause := redis.NewClient(&redis.Options{Addr: nodes[0]})
		defer pause.Close()
		if err := pause.Do(ctx, "CLIENT", "PAUSE", 20000, "ALL").Err(); err != nil {
			t.Fatal(err)
		}
	}
	return &Redis{Client: client, Prefix: "x:", Breakers: NewBreakers(time.Hour), Cluster: true}, nodes[0], onFirst, pauseFirst
}

// TestAClusterPrimaryDownFailsOnlyItsOwnKeys: a Redis Cluster's primary that stops answering
// (here paused, so that the cluster itself stays whole) fails the calls for the keys it holds,
// and after three of them fails them at once; the calls for the keys on the other primaries go
// on. With one breaker for the whole store, those three failures opened it for every key of
// every tenant until the cluster had promoted a replica.
func TestAClusterPrimaryDownFailsOnlyItsOwnKeys(t *testing.T) {
	r, first, onFirst, pauseFirst := clusterWithBreakers(t)
	ctx := context.Background()
	var down, up []string // keys of rate limits on the first node, and on the others
	for i := 0; len(down) < 4 || len(up) < 8; i++ {
		k := "k" + strconv.Itoa(i)
		if onFirst("rl:" + k) {
			down = append(down, k)
		} else {
			up = append(up, k)
		}
	}
	l := config.Limit{N: 100, Per: time.Hour}
	if ok, _, err := r.Allow(ctx, up[0], l); !ok || err != nil { // a replica at work before
		t.Fatalf("before the pause: %v %v", ok, err)
	}
	pauseFirst()
	for i, k := range down[:3] {
		if _, _, err := r.Allow(ctx, k, l); err == nil || errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("call %d on the paused node: %v, want its own failure", i, err)
		}
	}
	began := time.Now()
	if _, _, err := r.Allow(ctx, down[3], l); !errors.Is(err, gobreaker.ErrOpenState) || !strings.Contains(err.Error(), "redis "+first+" unavailable") {
		t.Errorf("after 3 failures on the paused node: %v, want its open breaker, named", err)
	}
	if d := time.Since(began); d > 100*time.Millisecond {
		t.Errorf("the open breaker took %v to answer: it waited for the node", d)
	}
	for _, k := range up {
		if ok, _, err := r.Allow(ctx, k, l); !ok || err != nil {
			t.Errorf("a key on another node with one node paused: %v %v, want allowed", ok, err)
		}
	}
}

// TestAClusterPrimaryDownFailsOnlyItsOwnPipelines: pipelines over keys that live on several
// primaries (the pumping detector's counters, the admin API's spend figures) count against the
// breakers of the primaries they touch. With one primary paused, the pipelines over its keys fail,
// then fail fast, naming it; those over the other primaries' keys go on, however many failed
// before them. With one breaker for every pipeline, three failures refused them all.
func TestAClusterPrimaryDownFailsOnlyItsOwnPipelines(t *testing.T) {
	r, first, onFirst, pauseFirst := clusterWithBreakers(t)
	ctx := context.Background()
	// Each tenant's counters: its range's and its own, on one primary or two.
	var down, up [][][2]string
	for i := 0; len(down) < 4 || len(up) < 6; i++ {
		tenant := "t" + strconv.Itoa(i)
		rk, tk := rangeKey(tenant, "US-1415"), tenantKey(tenant)
		incs := [][2]string{{rk, "h:1"}, {tk, "h:1"}}
		if onFirst(rk, tk) {
			down = append(down, incs)
		} else {
			up = append(up, incs)
		}
	}
	var spendUp []SpendBucket // spend buckets off the first primary
	var spendDown SpendBucket
	for i := 0; len(spendUp) < 3 || spendDown.Key == ""; i++ {
		b := SpendBucket{Key: "s" + strconv.Itoa(i), Limit: config.Spend{Amount: 10, Per: time.Hour}}
		if onFirst("sp:" + b.Key) {
			spendDown = b
		} else {
			spendUp = append(spendUp, b)
		}
	}
	if _, err := r.PumpAdd(ctx, up[0], time.Hour); err != nil { // a replica at work before
		t.Fatalf("before the pause: %v", err)
	}
	pauseFirst()
	for i, incs := range down[:3] {
		if _, err := r.PumpAdd(ctx, incs, time.Hour); err == nil || errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("counters %d with a key on the paused node: %v, want their own failure", i, err)
		}
	}
	began := time.Now()
	if _, err := r.PumpAdd(ctx, down[3], time.Hour); !errors.Is(err, gobreaker.ErrOpenState) || !strings.Contains(err.Error(), "redis "+first+" unavailable") {
		t.Errorf("after 3 failures on the paused node: %v, want its open breaker, named", err)
	}
	if _, err := r.Used(ctx, []SpendBucket{spendUp[0], spendDown}); !errors.Is(err, gobreaker.ErrOpenState) {
		t.Errorf("spend figures with a key on the paused node: %v, want its open breaker", err)
	}
	if d := time.Since(began); d > 100*time.Millisecond {
		t.Errorf("the open breaker took %v to answer: it waited for the node", d)
	}
	for i, incs := range up {
		vals, err := r.PumpAdd(ctx, incs, time.Hour)
		want := []int64{1, 1}
		if i == 0 {
			want = []int64{2, 2}
		}
		if err != nil || !slices.Equal(vals, want) {
			t.Errorf("counters %d off the paused node: %v %v, want %v counted", i, vals, err, want)
		}
	}
	for i := range 6 { // Redis's clock is read too: from the keys' own node, never another
		if used, err := r.Used(ctx, spendUp); err != nil || len(used) != len(spendUp) {
			t.Errorf("spend figures off the paused node, read %d: %v %v", i, used, err)
		}
	}
}

// TestAClusterThatNeverAnsweredFailsFast: a replica started while its Redis Cluster does not
// answer has no map of the slots; naming a key's primary would read it from the cluster, so each
// call would wait for the cluster before its breaker could refuse it. After three failures a
// call must fail at once, as with one Redis.
func TestAClusterThatNeverAnsweredFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // a node that takes connections and never answers
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	const timeout = time.Second
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{ln.Addr().String()}, ReadTimeout: timeout, WriteTimeout: timeout, MaxRedirects: -1})
	defer client.Close()
	r := &Redis{Client: client, Prefix: "x:", Breakers: NewBreakers(time.Hour), Cluster: true}
	l := config.Limit{N: 1, Per: time.Second}
	for i := range 3 {
		if _, _, err := r.Allow(context.Background(), "k"+strconv.Itoa(i), l); err == nil || errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("call %d to a cluster that never answers: %v, want its own failure", i, err)
		}
	}
	began := time.Now()
	_, _, err = r.Allow(context.Background(), "k3", l)
	if !errors.Is(err, gobreaker.ErrOpenState) {
		t.Errorf("after 3 failures: %v, want the open breaker", err)
	}
	if d := time.Since(began); d >= timeout/2 {
		t.Errorf("the open breaker answered in %v: the call waited for the cluster first", d)
	}
}

// TestNodeBreakersAreBounded: a cluster whose nodes keep taking new addresses (replaced pods)
// does not grow the breakers without bound, and a node keeps its breaker meanwhile.
func TestNodeBreakersAreBounded(t *testing.T) {
	b := NewBreakers(time.Second)
	first := b.node("10.0.0.1:6379")
	if b.node("10.0.0.1:6379") != first {
		t.Error("a node's breaker changed between two calls")
	}
	for i := range 1000 {
		b.node(fmt.Sprintf("10.0.%d.%d:6379", i/250, i%250))
		if len(b.nodes) > maxNodeBreakers {
			t.Fatalf("%d breakers after %d nodes, want at most %d", len(b.nodes), i+1, maxNodeBreakers)
		}
	}
}

func TestChangedLimitStartsAFreshBucket(t *testing.T) {
	c := Checker{Limiter: &MemoryLimiter{Now: newClock().now}}
	m := &gateway.Message{Tenant: "a", To: "+14155550104", Country: "US"}
	before := &Rules{Limits: config.RateLimits{PerRecipient: lim(1, time.Hour)}}
	c.Check(context.Background(), before, m, 0)
	if rej, _ := c.Check(context.Background(), before, m, 0); rej == nil {
		t.Fatal("second send under 1/1h allowed")
	}
	after := &Rules{Limits: config.RateLimits{PerRecipient: lim(2, time.Hour)}} // as after a reload
	if rej, _ := c.Check(context.Background(), after, m, 0); rej != nil {
		t.Errorf("a reloaded limit reused the old bucket: %+v", rej)
	}
	// The same count over another period is another limit too.
	if rej, _ := c.Check(context.Background(), &Rules{Limits: config.RateLimits{PerRecipient: lim(2, time.Minute)}}, m, 0); rej != nil {
		t.Errorf("2/1m reused 2/1h's bucket: %+v", rej)
	}
}

// TestSendsWithoutAnIPShareNoPerIPBucket: a request that names no end user's IP (the hook shape
// may leave it out) is not counted against per_ip at all, rather than against one bucket every
// such request of the tenant shares.
func TestSendsWithoutAnIPShareNoPerIPBucket(t *testing.T) {
	c := Checker{Limiter: &MemoryLimiter{Now: newClock().now}}
	r := &Rules{Limits: config.RateLimits{PerIP: lim(1, time.Hour)}}
	for _, to := range []string{"+14155550104", "+14155550105", "+14155550106"} {
		if rej, _ := c.Check(context.Background(), r, &gateway.Message{Tenant: "a", To: to, Country: "US"}, 0); rej != nil {
			t.Errorf("a send without an IP to %s: %+v", to, rej)
		}
	}
	ip := &gateway.Message{Tenant: "a", To: "+14155550107", Country: "US", IP: "203.0.113.9"}
	c.Check(context.Background(), r, ip, 0)
	if rej, _ := c.Check(context.Background(), r, ip, 0); rej == nil || rej.Reason != "per_ip" {
		t.Errorf("a second send from one IP under 1/1h: %+v", rej)
	}
}

// TestCallsAndSendsKeepTheirOwnBuckets: rate_limits.api and per_tenant of the same size are two
// buckets: reading messages does not use up sends, nor sends the reads.
func TestCallsAndSendsKeepTheirOwnBuckets(t *testing.T) {
	c := Checker{Limiter: &MemoryLimiter{Now: newClock().now}}
	r := &Rules{Limits: config.RateLimits{API: lim(1, time.Hour), PerTenant: lim(1, time.Hour)}}
	if rej, err := c.AllowCall(context.Background(), "a", r); rej != nil || err != nil {
		t.Fatalf("first call: %+v %v", rej, err)
	}
	if rej, _ := c.Check(context.Background(), r, &gateway.Message{Tenant: "a", To: "+14155550104", Country: "US"}, 0); rej != nil {
		t.Errorf("a send after a call: %+v", rej)
	}
	if rej, _ := c.AllowCall(context.Background(), "a", r); rej == nil || rej.Reason != "api" {
		t.Errorf("a second call under 1/1h: %+v", rej)
	}
}

// TestATenantUsesOnlyItsOwnBuckets: two tenants with the same limits, sending to the same
// recipient from the same end user's IP, each have every bucket to themselves (spend, per_tenant,
// per_country, per_ip, per_recipient, and api for calls): the one that used all of its own leaves
// the other's full. A bucket keyed without its tenant would let one tenant's sends, or a flood of
// them, refuse another's.
func TestATenantUsesOnlyItsOwnBuckets(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			l := newLimiter(t, newClock(), backend)
			c := Checker{Limiter: l, Spends: l.(Spends)}
			two := lim(2, time.Hour)
			r := &Rules{Limits: config.RateLimits{PerTenant: two, PerCountry: map[string]config.Limit{"US": *two},
				PerIP: two, PerRecipient: two, API: two, Spend: &config.Spend{Amount: 1, Per: time.Hour}}}
			ctx := context.Background()
			for _, tenant := range []string{"a", "b"} {
				m := &gateway.Message{Tenant: tenant, To: "+14155550104", Country: "US", IP: "203.0.113.9"}
				for i := range 2 {
					if rej, err := c.Check(ctx, r, m, 0.5); rej != nil || err != nil {
						t.Fatalf("tenant %s's send %d: %+v %v", tenant, i+1, rej, err)
					}
					if rej, err := c.AllowCall(ctx, tenant, r); rej != nil || err != nil {
						t.Fatalf("tenant %s's call %d: %+v %v", tenant, i+1, rej, err)
					}
				}
				// Its own buckets are used up, so the limits were all there to share.
				if rej, _ := c.Check(ctx, r, m, 0.5); rej == nil {
					t.Errorf("tenant %s's third send allowed", tenant)
				}
				if rej, _ := c.AllowCall(ctx, tenant, r); rej == nil {
					t.Errorf("tenant %s's third call allowed", tenant)
				}
			}
		})
	}
}

// TestWorkersReuseAndNeverQueue: a task never waits behind another (two tasks that each wait for
// the other both run), and a task that finds a worker idle runs on it instead of a new goroutine.
func TestWorkersReuseAndNeverQueue(t *testing.T) {
	var w workers
	a, b := make(chan struct{}), make(chan struct{})
	var both sync.WaitGroup
	both.Add(2)
	w.run(func() { close(a); <-b; both.Done() })
	w.run(func() { <-a; close(b); both.Done() })
	both.Wait()
	if got := w.started.Load(); got != 2 {
		t.Fatalf("two tasks at once started %d goroutines, want 2", got)
	}
	waitIdle := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); w.idle.Load() != n; {
			if time.Now().After(deadline) {
				t.Fatalf("idle workers %d, want %d", w.idle.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitIdle(2)
	for i := 0; i < 50; i++ {
		done := make(chan struct{})
		w.run(func() { close(done) })
		<-done
		waitIdle(2)
	}
	if got := w.started.Load(); got != 2 {
		t.Errorf("50 tasks one after another started %d goroutines in all, want the 2 idle ones reused", got)
	}
}

// TestFlightSurvivesPanic: a panicking call is reported, its callers get the zero value, and the
// worker that ran it keeps serving later calls.
func TestFlightSurvivesPanic(t *testing.T) {
	var f Flight[int]
	var reported atomic.Int32
	f.OnPanic = func(string, any) { reported.Add(1) }
	if v, _, err := f.Do(context.Background(), "k", func() int { panic("boom") }); v != 0 || err != nil {
		t.Fatalf("after a panic: %d, %v", v, err)
	}
	if v, _, _ := f.Do(context.Background(), "k", func() int { return 7 }); v != 7 {
		t.Errorf("next call: %d, want 7", v)
	}
	if reported.Load() != 1 {
		t.Errorf("OnPanic called %d times, want 1", reported.Load())
	}
}

// BenchmarkLimiterDistinctKeys: a per-recipient limit of 5 an hour with every recipient new, as
// under a spread-out pumping attempt, on top of 500,000 buckets from the last hour (of 10 or of
// 10,000 tenants), without a bound and at state.max_keys' default, where every new bucket evicts
// one. It reports the slowest single call, which a sweep over the whole map would set; the number
// of tenants, what a search of the tenant holding the most would cost each eviction.
func BenchmarkLimiterDistinctKeys(b *testing.B) {
	for _, c := range []struct{ bound, tenants int }{{0, 10}, {250000, 10}, {250000, 10000}} {
		b.Run(fmt.Sprint("max_keys_", c.bound, "/tenants_", c.tenants), func(b *testing.B) {
			l := NewMemoryLimiter(nil, c.bound, nil)
			lim := config.Limit{N: 5, Per: time.Hour}
			for i := 0; i < 500000; i++ {
				l.Allow(context.Background(), LimitKey("r", lim, "tenant-"+strconv.Itoa(i%c.tenants), "+1415"+strconv.Itoa(2000000+i)), lim)
			}
			var slowest time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				start := time.Now()
				l.Allow(context.Background(), LimitKey("r", lim, "flood", "+1628"+strconv.Itoa(2000000+i)), lim)
				slowest = max(slowest, time.Since(start))
			}
			b.ReportMetric(float64(slowest.Microseconds()), "slowest-µs")
			b.ReportMetric(float64(l.Len()), "buckets")
		})
	}
}

// TestSweptMapDelete: deleting keys anywhere keeps every other key reachable and its position right.
func TestSweptMapDelete(t *testing.T) {
	var s sweptMap[int]
	for i := range 100 {
		s.set(strconv.Itoa(i), i)
	}
	for i := 0; i < 100; i += 3 {
		s.del(strconv.Itoa(i))
	}
	s.del("not there")
	for i := range 100 {
		v, ok := s.get(strconv.Itoa(i))
		if want := i%3 != 0; ok != want || (ok && v != i) {
			t.Errorf("key %d: %d, %v", i, v, ok)
		}
	}
	if s.len() != 66 {
		t.Errorf("len %d, want 66", s.len())
	}
	// The backing array keeps no deleted key alive beyond the slice's length.
	if tail := s.keys[len(s.keys):cap(s.keys)]; slices.ContainsFunc(tail, func(k string) bool { return k != "" }) {
		t.Errorf("the keys' backing array still holds deleted keys past its length")
	}
	for k, sl := range s.m {
		if s.keys[sl.pos] != k {
			t.Fatalf("key %q at position %d holds %q", k, sl.pos, s.keys[sl.pos])
		}
	}
}

// TestSweptMapEvictsFromTheTenantHoldingTheMost: evict takes from the tenant holding the most
// keys, a stale key of it first, never the key kept, and the counts follow every removal.
func TestSweptMapEvictsFromTheTenantHoldingTheMost(t *testing.T) {
	s := sweptMap[bool]{owner: func(k string) string { t, _, _ := strings.Cut(k, "|"); return t }}
	for i := range 3 {
		s.set(fmt.Sprint("quiet|", i), false)
	}
	for i := range 10 {
		s.set(fmt.Sprint("flood|", i), i < 2) // flood|0 and flood|1 are stale
	}
	stale := func(_ string, v bool) bool { return v }
	var got []string
	for range 4 {
		tenant, early, ok := s.evict("flood|9", stale)
		if !ok {
			t.Fatal("nothing evicted")
		}
		got = append(got, fmt.Sprint(tenant, " early=", early))
	}
	want := []string{"flood early=false", "flood early=false", "flood early=true", "flood early=true"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("evictions (-want +got):\n%s", diff)
	}
	if _, ok := s.get("flood|9"); !ok {
		t.Error("the key kept was evicted")
	}
	s.sweep(100, func(k string, _ bool) bool { return k == "flood|9" })
	if q, f := len(s.tenants["quiet"].keys), len(s.tenants["flood"].keys); q != 3 || f != 5 {
		t.Errorf("keys held: quiet %d, flood %d; want 3 and 5", q, f)
	}
	s.evict("", stale)
	s.evict("", stale)
	// Now three each: the tie goes to the tenant that reached that count last, the flood.
	if tenant, _, _ := s.evict("", stale); tenant != "flood" {
		t.Errorf("a tie evicted from %q, want flood", tenant)
	}
	for range 5 {
		s.evict("", stale)
	}
	if _, _, ok := s.evict("", stale); ok || s.len() != 0 || len(s.tenants) != 0 {
		t.Errorf("an empty map: evicted %v, %d keys, %d tenants", ok, s.len(), len(s.tenants))
	}
}

// TestSweptMapEvictsATenantsOldestLiveKeysFirst: with none of its keys stale, a tenant loses its
// keys in the order it set them, each eviction going on from where the last stopped: the newest
// key, which fills the place of the one evicted, is not the next to go. It never loses the key
// kept (the one just set), even when that is the only key there is to take.
func TestSweptMapEvictsATenantsOldestLiveKeysFirst(t *testing.T) {
	s := sweptMap[bool]{owner: func(k string) string { t, _, _ := strings.Cut(k, "|"); return t }}
	for i := range 20 {
		s.set(fmt.Sprintf("t|%02d", i), false)
	}
	live := func(string, bool) bool { return false }
	for range 5 {
		if _, early, ok := s.evict("t|00", live); !ok || !early {
			t.Fatalf("evicted %v, early %v", ok, early)
		}
	}
	var left []string
	for k := range s.m {
		left = append(left, k)
	}
	slices.Sort(left)
	want := []string{"t|00"}
	for i := 6; i < 20; i++ {
		want = append(want, fmt.Sprintf("t|%02d", i))
	}
	if diff := cmp.Diff(want, left); diff != "" {
		t.Errorf("keys left after five evictions, t|00 kept (-want +got):\n%s", diff)
	}

	one := sweptMap[bool]{owner: s.owner}
	one.set("t|only", false)
	if _, _, ok := one.evict("t|only", live); ok || one.len() != 1 {
		t.Errorf("a tenant holding only the key kept: evicted %v, %d keys left", ok, one.len())
	}
}

// TestSweptMapBoundTellsOfALiveKeyLostBeforeAStaleOne: bound evicting more than one key (a
// bound lowered by a reload) says a live key was lost when any of them was, not only the last.
func TestSweptMapBoundTellsOfALiveKeyLostBeforeAStaleOne(t *testing.T) {
	s := sweptMap[bool]{owner: func(k string) string { t, _, _ := strings.Cut(k, "|"); return t }}
	for i := range 18 {
		s.set(fmt.Sprintf("t|%02d", i), i == 16) // t|16 is stale, past the first eviction's look
	}
	tenant, lost := s.bound(16, "", func(_ string, stale bool) bool { return stale })
	if tenant != "t" || !lost || s.len() != 16 {
		t.Errorf("bound: tenant %q, lost %v, %d keys; want t, true, 16", tenant, lost, s.len())
	}
	if _, ok := s.get("t|16"); ok {
		t.Error("the stale key was kept")
	}
}

// TestSweptMapKeepsItsIndexesAcrossEveryChange: after any mix of sets, deletions, sweeps and
// evictions, every key is where its slot says in the keys and in its tenant's keys, and each
// tenant's keys are exactly its keys in the map.
func TestSweptMapKeepsItsIndexesAcrossEveryChange(t *testing.T) {
	owner := func(k string) string { t, _, _ := strings.Cut(k, "|"); return t }
	s := sweptMap[int]{owner: owner}
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() string { return fmt.Sprint("t", rng.IntN(4), "|", rng.IntN(300)) }
	for step := range 20000 {
		switch op := rng.IntN(10); {
		case op < 5:
			s.set(key(), step)
		case op < 7:
			s.del(key())
		case op < 9:
			s.sweep(3, func(_ string, v int) bool { return v < step-500 })
		default:
			s.evict(key(), func(_ string, v int) bool { return v < step-200 })
		}
	}
	total := 0
	for o, tk := range s.tenants {
		for i, k := range tk.keys {
			if owner(k) != o || s.m[k].tpos != i {
				t.Fatalf("tenant %s's key %d is %q, whose slot says tenant %s, index %d", o, i, k, owner(k), s.m[k].tpos)
			}
		}
		total += len(tk.keys)
	}
	for i, k := range s.keys {
		if s.m[k].pos != i {
			t.Fatalf("key %d is %q, whose slot says %d", i, k, s.m[k].pos)
		}
	}
	if total != len(s.m) || len(s.keys) != len(s.m) {
		t.Errorf("%d keys in the map, %d in keys, %d in the tenants' keys", len(s.m), len(s.keys), total)
	}
}

// TestSweptMapEvictionLooksOnlyAtItsTenant: evictions run under the lock every send takes, so
// they never walk the other tenants' keys (a first version walked them, from a shared position,
// and at a tie between tenants walked nearly the whole map at every eviction).
func TestSweptMapEvictionLooksOnlyAtItsTenant(t *testing.T) {
	looked := 0
	s := sweptMap[bool]{owner: func(k string) string { looked++; t, _, _ := strings.Cut(k, "|"); return t }}
	for i := range 1000 {
		s.set(fmt.Sprint("quiet|", i), false)
	}
	for i := range 1200 {
		s.set(fmt.Sprint("flood|", i), false)
	}
	looked = 0
	for range 100 {
		if tenant, early, _ := s.evict("", func(string, bool) bool { return false }); tenant != "flood" || !early {
			t.Fatalf("evicted from %q (early %v), want flood's", tenant, early)
		}
	}
	// Each eviction asks only for the tenant of the key it removes.
	if looked > 100 {
		t.Errorf("100 evictions asked for %d keys' tenants, want 100", looked)
	}
}

// TestMemoryResendsBoundEvictsTheFlood: resend memory is bounded (state.max_keys); a tenant
// recording ever new recipients loses its own entries, and the quiet tenant's stay.
func TestMemoryResendsBoundEvictsTheFlood(t *testing.T) {
	clk := newClock()
	var evicted []string
	rs := NewMemoryResends(clk.now, 10, func(tenant string) { evicted = append(evicted, tenant) })
	ctx := context.Background()
	for i := range 3 {
		rs.Record(ctx, ResendKey("quiet", fmt.Sprint(i)), "infobip", clk.now(), 10*time.Minute)
	}
	for i := range 100 {
		rs.Record(ctx, ResendKey("flood", fmt.Sprint(i)), "infobip", clk.now(), 10*time.Minute)
	}
	for i := range 3 {
		if p, _, ok, _ := rs.Last(ctx, ResendKey("quiet", fmt.Sprint(i))); !ok || p != "infobip" {
			t.Errorf("quiet entry %d after the flood: %q %v", i, p, ok)
		}
	}
	if _, _, ok, _ := rs.Last(ctx, ResendKey("flood", "99")); !ok {
		t.Error("the flood's newest entry is gone")
	}
	if n := rs.e.m.len(); n != 10 {
		t.Errorf("%d entries held, want the bound of 10", n)
	}
	if len(evicted) != 93 || slices.ContainsFunc(evicted, func(s string) bool { return s != "flood" }) {
		t.Errorf("evicted %d entries of %v, want 93 of flood's", len(evicted), slices.Compact(evicted))
	}
}

// TestMemoryPumpStateDropsExpired: counters and values past their TTL go as later calls come.
func TestMemoryPumpStateDropsExpired(t *testing.T) {
	clk := newClock()
	m := &MemoryPumpState{Now: clk.now}
	ctx := context.Background()
	for i := range 5000 {
		m.PumpAdd(ctx, [][2]string{{"old" + strconv.Itoa(i), "h:1"}}, time.Minute)
		m.PumpPut(ctx, "oldv"+strconv.Itoa(i), "x", time.Minute, false)
	}
	clk.add(2 * time.Minute)
	for range 6000 {
		m.PumpAdd(ctx, [][2]string{{"live", "h:2"}}, time.Minute)
	}
	m.mu.Lock()
	counters, values := m.counters.len(), m.values.len()
	m.mu.Unlock()
	if counters != 1 || values != 0 {
		t.Errorf("%d counters and %d values left, want the live counter only", counters, values)
	}
}

// TestMemoryPumpStateExpiresWhatItKeeps: counters and values are gone once their time is up,
// whether or not a sweep reached them yet: a count starts again from one, a quarantine's key is
// neither read nor found to delete, and a claim (nx) can be made again; each count keeps its key
// for ttl more.
func TestMemoryPumpStateExpiresWhatItKeeps(t *testing.T) {
	clk := newClock()
	m := &MemoryPumpState{Now: clk.now}
	ctx := context.Background()
	add := func() int64 {
		t.Helper()
		v, err := m.PumpAdd(ctx, [][2]string{{"c", "h:1"}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return v[0]
	}
	add()
	clk.add(30 * time.Minute)
	add()
	// Other keys that live long fill the state, so that its sweeps (two entries a call) do not
	// happen on the ones looked at: each call must tell an expired entry itself.
	for i := range 1000 {
		m.PumpAdd(ctx, [][2]string{{"other" + strconv.Itoa(i), "h:1"}}, 10*time.Hour)
		m.PumpPut(ctx, "otherv"+strconv.Itoa(i), "x", 10*time.Hour, false)
	}
	clk.add(50 * time.Minute) // 80 minutes after the first count, 50 after the last
	if c, _ := m.PumpCounters(ctx, "c"); c["h:1"] != 2 {
		t.Errorf("counters 50 minutes after the last count: %v, want 2 (each count keeps the key an hour more)", c)
	}
	clk.add(10*time.Minute + time.Nanosecond)
	if c, _ := m.PumpCounters(ctx, "c"); len(c) != 0 {
		t.Errorf("counters an hour after the last count: %v, want none", c)
	}
	if n := add(); n != 1 {
		t.Errorf("a count after expiry: %d, want 1", n)
	}
	for _, k := range []string{"claim", "quarantine"} {
		if ok, _ := m.PumpPut(ctx, k, "v", time.Hour, true); !ok {
			t.Fatalf("%s: first claim refused", k)
		}
	}
	if ok, _ := m.PumpPut(ctx, "claim", "v2", time.Hour, true); ok {
		t.Error("a second claim within the hour was made")
	}
	clk.add(time.Hour + time.Nanosecond)
	if ok, _ := m.PumpPut(ctx, "claim", "v3", time.Hour, true); !ok {
		t.Error("a claim after expiry refused")
	}
	if v, ok, _ := m.PumpGet(ctx, "quarantine"); ok {
		t.Errorf("an expired value read: %q", v)
	}
	if ok, _ := m.PumpDel(ctx, "quarantine"); ok {
		t.Error("an expired value found to delete")
	}
}

// TestRedisPumpCountersExpire: the counters' keys in Redis live ttl after their last count (a
// range no longer sent to leaves the shared store), and a quarantine, a claim of a code used and
// a release live their ttl.
func TestRedisPumpCountersExpire(t *testing.T) {
	client := redistest.Start(t)
	r := &Redis{Client: client, Prefix: redistest.Prefix(t)}
	ctx := context.Background()
	if _, err := r.PumpAdd(ctx, [][2]string{{"pump|c|acme|44-74", "h:1"}, {"pump|t|acme", "h:1"}, {"pump|c|acme|44-74", "s:1"}}, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"pump|c|acme|44-74", "pump|t|acme"} {
		if ttl := client.PTTL(ctx, r.Prefix+k).Val(); ttl <= 119*time.Minute || ttl > 2*time.Hour {
			t.Errorf("%s: TTL %v, want 2h", k, ttl)
		}
	}
	for _, nx := range []bool{true, false} {
		k := "pump|q|acme|44-74|" + strconv.FormatBool(nx)
		if ok, err := r.PumpPut(ctx, k, "v", time.Hour, nx); !ok || err != nil {
			t.Fatalf("put (nx %v): %v %v", nx, ok, err)
		}
		if ttl := client.PTTL(ctx, r.Prefix+k).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
			t.Errorf("a value put (nx %v): TTL %v, want 1h", nx, ttl)
		}
	}
}

// TestRedisLimitOverAMillionASecond: a limit whose interval is under a microsecond still works.
func TestRedisLimitOverAMillionASecond(t *testing.T) {
	r := &Redis{Client: redistest.Start(t), Prefix: redistest.Prefix(t), Now: newClock().now}
	if ok, _, err := r.Allow(context.Background(), "t|x", config.Limit{N: 5_000_000, Per: time.Second}); !ok || err != nil {
		t.Errorf("ok %v, err %v", ok, err)
	}
}

// TestPace: a provider's throughput of 4 with a share of 0.5: each tenant takes at most 2, and
// together no more than 4; a tenant refused by its share takes nothing of the whole.
func TestPace(t *testing.T) {
	c := Checker{Limiter: &MemoryLimiter{}}
	ctx := context.Background()
	got := ""
	for _, tenant := range []string{"a", "a", "a", "a", "b", "b", "c", "b"} {
		ok, _, err := c.Pace(ctx, "m", tenant, *lim(4, time.Hour), 0.5)
		if err != nil {
			t.Fatal(err)
		}
		got += map[bool]string{true: tenant, false: "-"}[ok]
	}
	if got != "aa--bb--" {
		t.Errorf("paced %q, want aa--bb-- (two each, four in all)", got)
	}
	if ok, wait, _ := c.Pace(ctx, "other", "c", *lim(4, time.Hour), 1); !ok || wait != 0 {
		t.Error("another provider's throughput is its own")
	}
	// A share smaller than one token of the throughput is still one token: a tenant beside many
	// others (tenant_share 0.1 of 4 an hour) is not shut out.
	if ok, _, _ := c.Pace(ctx, "small", "d", *lim(4, time.Hour), 0.1); !ok {
		t.Error("a share under one token refused the tenant's first send")
	}
	// However small the share (one tenant of ten thousand), it is held to: one token, then only
	// what lies above the others' part.
	for i, want := range []bool{true, false} {
		if ok, _, _ := c.Pace(ctx, "tiny", "e", *lim(4, time.Hour), 0.0001); ok != want {
			t.Errorf("share 0.0001, send %d: %v, want %v", i+1, ok, want)
		}
	}
	// A store that cannot say lets the send through, and says why.
	for _, share := range []float64{0.5, 1} {
		if ok, _, err := (&Checker{Limiter: downLimiter{}}).Pace(ctx, "m", "a", *lim(4, time.Hour), share); !ok || err == nil {
			t.Errorf("share %v, the store down: %v, %v; want through, with the error", share, ok, err)
		}
	}
}

// TestAllowKeeping: both limiters take a token only while the reserve is left, say how long until
// the bucket holds it again, and leave the reserve to Allow.
func TestAllowKeeping(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			clk := newClock()
			l := newLimiter(t, clk, backend)
			ctx := context.Background()
			four := *lim(4, time.Hour) // one token every 15 minutes
			got := ""
			for range 3 {
				ok, _, err := l.AllowKeeping(ctx, "k", four, 2)
				if err != nil {
					t.Fatal(err)
				}
				got += map[bool]string{true: "y", false: "n"}[ok]
			}
			ok, wait, _ := l.AllowKeeping(ctx, "k", four, 2)
			if got != "yyn" || ok || wait <= 0 || wait > 15*time.Minute {
				t.Errorf("keeping 2 of 4: %s, then %v with wait %v; want yyn, then refused within 15m", got, ok, wait)
			}
			for i := range 2 {
				if ok, _, _ := l.Allow(ctx, "k", four); !ok {
					t.Errorf("the reserve's token %d was not left to Allow", i+1)
				}
			}
			if ok, _, _ := l.Allow(ctx, "k", four); ok {
				t.Error("a fifth token from a bucket of four")
			}
			clk.add(15 * time.Minute)
			if ok, _, _ := l.AllowKeeping(ctx, "k", four, 0); !ok {
				t.Error("no token after one interval")
			}
		})
	}
}

// TestRedisClockCorrectsAReplicasClock: what replicas stamp with a time in Redis and compare with
// another's (resend memory, pumping's hourly counters) is on Redis's clock as each estimates it,
// whatever its own says: a replica an hour ahead counts its sends in the hour the others read. A
// replica that never reached Redis keeps its own clock; one whose clock is stepped back measures
// again at once.
func TestRedisClockCorrectsAReplicasClock(t *testing.T) {
	client := redistest.Start(t)
	prefix := redistest.Prefix(t)
	skewed := func(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(d) } }
	ahead := &Redis{Client: client, Prefix: prefix, Local: skewed(time.Hour)}
	behind := &Redis{Client: client, Prefix: prefix, Local: skewed(-3 * time.Minute)}
	near := func(what string, got time.Time) {
		t.Helper()
		if d := got.Sub(time.Now()); d < -time.Second || d > time.Second {
			t.Errorf("%s: %v off Redis's clock (the test's)", what, d)
		}
	}
	near("an hour ahead", ahead.Clock())
	near("three minutes behind", behind.Clock())
	near("an hour ahead, again", ahead.Clock())

	var step atomic.Int64
	stepped := &Redis{Client: client, Prefix: prefix, Local: func() time.Time { return time.Now().Add(time.Duration(step.Load())) }}
	near("before its step", stepped.Clock())
	step.Store(int64(-2 * time.Hour))
	near("stepped back two hours", stepped.Clock())

	lost := &Redis{Client: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1}), Local: skewed(time.Hour)}
	defer lost.Client.Close()
	if d := lost.Clock().Sub(time.Now()); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("without Redis: %v off, want its own clock's hour", d)
	}
	// A replica that loses Redis keeps the offset it measured last: its clock an hour ahead stays
	// corrected, off by no more than its own clock moved since.
	var moved atomic.Int64
	losing := &Redis{Client: client, Prefix: prefix, Local: func() time.Time { return time.Now().Add(time.Hour + time.Duration(moved.Load())) }}
	near("before it loses Redis", losing.Clock())
	losing.Client = lost.Client
	moved.Store(int64(clockRefresh + time.Second)) // the offset is due to be measured again
	if d := losing.Clock().Sub(time.Now()); d < 0 || d > clockRefresh+2*time.Second {
		t.Errorf("after losing Redis: %v off, want the offset kept (the %v its clock moved)", d, clockRefresh+time.Second)
	}

	ctx := context.Background()
	cfg := pumpConfig()
	pa, pb := &Pumping{State: ahead, Now: ahead.Clock}, &Pumping{State: behind, Now: behind.Clock}
	if _, err := pa.Record(ctx, cfg, "acme", "GB", "44-74"); err != nil {
		t.Fatal(err)
	}
	now := behind.Clock()
	c, err := pb.counters(ctx, cfg, rangeKey("acme", "44-74"), now)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.hours[now.Unix()/3600]; got != 1 {
		t.Errorf("the send of the replica an hour ahead counts %d in the hour the other reads, want 1 (hours: %v)", got, c.hours)
	}
}
