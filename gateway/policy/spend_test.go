package policy

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/policy/redistest"
)

// TestSpendLimit: a send is allowed while the tenant's spend bucket holds anything, and what it
// may cost is reserved then, into debt if need be; the bucket refills at Amount per Per; and two
// replicas on one Redis share it.
func TestSpendLimit(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			clk := newClock()
			a, b := twoReplicas(t, backend, clk)
			ctx := context.Background()
			l := config.Spend{Amount: 1, Per: 24 * time.Hour} // 1 a day
			key := SpendKey("acme", l)
			ca, cb := Checker{Limiter: &MemoryLimiter{Now: clk.now}, Spends: a}, Checker{Limiter: &MemoryLimiter{Now: clk.now}, Spends: b}
			r := &Rules{Limits: config.RateLimits{Spend: &l}}
			msg := &gateway.Message{Tenant: "acme", To: "+14155550104", Country: "US"}
			// 0.4 + 0.4 leave 0.2: still allowed; the third 0.4 goes 0.2 into debt.
			for i, c := range []Checker{ca, cb, ca} {
				if rej, err := c.Check(ctx, r, msg, 0.4); rej != nil || err != nil {
					t.Fatalf("send %d refused: %+v %v", i+1, rej, err)
				}
			}
			rej, err := cb.Check(ctx, r, msg, 0.4)
			// In debt by 0.2 of a day's 1: it holds something again after 0.2 of a day.
			if err != nil || rej == nil || rej.Code != "rate_limited" || rej.Reason != "spend" ||
				rej.RetryAfter < 288*time.Minute-time.Second || rej.RetryAfter > 288*time.Minute+time.Second {
				t.Fatalf("over the limit: %+v %v (want spend, retry after 4h48m)", rej, err)
			}
			// The bucket holds nothing: a send that costs nothing waits as well.
			if rej, _ := ca.Check(ctx, r, msg, 0); rej == nil || rej.Reason != "spend" {
				t.Fatalf("a free send with the bucket in debt: %+v, want refused by spend", rej)
			}
			// Another tenant's bucket is its own.
			if rej, _ := ca.Check(ctx, r, &gateway.Message{Tenant: "other", To: "+14155550104", Country: "US"}, 0.4); rej != nil {
				t.Errorf("another tenant refused: %+v", rej)
			}
			clk.add(288*time.Minute + 2*time.Second)
			if rej, _ := ca.Check(ctx, r, msg, 0); rej != nil {
				t.Errorf("refilled bucket still refuses: %+v", rej)
			}
			// A changed limit is a fresh bucket.
			if k2 := SpendKey("acme", config.Spend{Amount: 2, Per: 24 * time.Hour}); k2 == key {
				t.Errorf("same key for another limit: %s", k2)
			}
			// No limit, no check.
			if rej, _ := (&Checker{Limiter: &MemoryLimiter{Now: clk.now}, Spends: a}).Check(ctx, &Rules{}, msg, 5); rej != nil {
				t.Errorf("refused without a spend limit: %+v", rej)
			}
		})
	}
}

// TestSpendReservationsHoldUnderConcurrency: sends started at once each reserve what they may
// cost before any is sent, so a tenant starting fifty at once gets as far into debt as one
// reservation, not fifty prices (when the price was charged after the send, every one of them
// found the bucket still holding something). Two replicas on one Redis share the reservations.
func TestSpendReservationsHoldUnderConcurrency(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			clk := newClock()
			a, b := twoReplicas(t, backend, clk)
			l := config.Spend{Amount: 1, Per: 24 * time.Hour}
			r := &Rules{Limits: config.RateLimits{Spend: &l}}
			var allowed atomic.Int64
			var wg sync.WaitGroup
			for i := range 50 {
				s := a
				if i%2 == 1 {
					s = b
				}
				wg.Go(func() {
					c := Checker{Limiter: &MemoryLimiter{Now: clk.now}, Spends: s}
					rej, err := c.Check(context.Background(), r, &gateway.Message{Tenant: "acme", To: "+14155550104", Country: "US"}, 0.4)
					if err != nil {
						t.Error(err)
					}
					if rej == nil {
						allowed.Add(1)
					}
				})
			}
			wg.Wait()
			// 0, 0.4 and 0.8 of 1 used: three reservations find room, the rest none.
			if n := allowed.Load(); n != 3 {
				t.Errorf("%d of 50 sends at once allowed, want 3", n)
			}
			used, err := a.Used(context.Background(), []SpendBucket{{Key: SpendKey("acme", l), Limit: l}})
			if err != nil || len(used) != 1 || math.Abs(used[0]-1.2) > 1e-6 {
				t.Errorf("used %v %v, want 1.2", used, err)
			}
		})
	}
}

// TestSpendReservationsAreGivenBack: a reservation a later rule refuses is given back at once, and
// a charge given back never leaves the bucket fuller than full.
func TestSpendReservationsAreGivenBack(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			clk := newClock()
			var s Spends = &MemoryLimiter{Now: clk.now}
			if backend == "redis" {
				s = &Redis{Client: redistest.Start(t), Prefix: redistest.Prefix(t), Now: clk.now}
			}
			ctx := context.Background()
			l := config.Spend{Amount: 1, Per: 24 * time.Hour}
			key := SpendKey("acme", l)
			used := func() float64 {
				t.Helper()
				u, err := s.Used(ctx, []SpendBucket{{Key: key, Limit: l}})
				if err != nil {
					t.Fatal(err)
				}
				return u[0]
			}
			// The tenant limit refuses the second send after the spend limit reserved for it.
			one := &config.Limit{N: 1, Per: time.Hour}
			r := &Rules{Limits: config.RateLimits{Spend: &l, PerTenant: one}}
			c := Checker{Limiter: &MemoryLimiter{Now: clk.now}, Spends: s}
			msg := &gateway.Message{Tenant: "acme", To: "+14155550104", Country: "US"}
			if rej, err := c.Check(ctx, r, msg, 0.3); rej != nil || err != nil {
				t.Fatalf("first send: %+v %v", rej, err)
			}
			if rej, _ := c.Check(ctx, r, msg, 0.3); rej == nil || rej.Reason != "per_tenant" {
				t.Fatalf("second send: %+v, want per_tenant", rej)
			}
			if u := used(); math.Abs(u-0.3) > 1e-6 {
				t.Errorf("used %v after a refused send, want the first send's 0.3", u)
			}
			// The send cost 0.1 of its 0.3: 0.2 given back.
			if err := s.Charge(ctx, key, l, -0.2); err != nil {
				t.Fatal(err)
			}
			if u := used(); math.Abs(u-0.1) > 1e-6 {
				t.Errorf("used %v after settling, want 0.1", u)
			}
			// Half a day later the 0.1 has refilled; giving back more leaves the bucket full.
			clk.add(12 * time.Hour)
			if err := s.Charge(ctx, key, l, -0.5); err != nil {
				t.Fatal(err)
			}
			if u := used(); u != 0 {
				t.Errorf("used %v after giving back to a full bucket, want 0", u)
			}
			if rej, _ := (&Checker{Limiter: &MemoryLimiter{Now: clk.now}, Spends: s}).Check(ctx, &Rules{Limits: config.RateLimits{Spend: &l}}, msg, 1); rej != nil {
				t.Fatalf("a full bucket refuses: %+v", rej)
			}
			if u := used(); math.Abs(u-1) > 1e-6 {
				t.Errorf("used %v after one reservation of 1 on a full bucket: given back beyond full", u)
			}
		})
	}
}

// downLimiter is a rate limiter whose store does not answer.
type downLimiter struct{}

func (downLimiter) Allow(context.Context, string, config.Limit) (bool, time.Duration, error) {
	return false, 0, errors.New("state store down")
}
func (downLimiter) AllowKeeping(context.Context, string, config.Limit, int) (bool, time.Duration, error) {
	return false, 0, errors.New("state store down")
}

// TestSpendIsGivenBackWhenALimitCannotBeRead: a send whose rate limits cannot be read after its
// spend was reserved is not sent (the caller answers policy_unavailable or applies on_error), so
// the reservation goes back: a state store that fails now and then must not eat a tenant's
// spend limit with sends it never made.
func TestSpendIsGivenBackWhenALimitCannotBeRead(t *testing.T) {
	clk := newClock()
	s := &MemoryLimiter{Now: clk.now}
	ctx := context.Background()
	l := config.Spend{Amount: 1, Per: 24 * time.Hour}
	r := &Rules{Limits: config.RateLimits{Spend: &l, PerTenant: &config.Limit{N: 10, Per: time.Hour}}}
	c := Checker{Limiter: downLimiter{}, Spends: s}
	msg := &gateway.Message{Tenant: "acme", To: "+14155550104", Country: "US"}
	for range 5 {
		if rej, err := c.Check(ctx, r, msg, 0.3); rej != nil || err == nil {
			t.Fatalf("check with the limiter down: %+v %v, want an error", rej, err)
		}
	}
	u, err := s.Used(ctx, []SpendBucket{{Key: SpendKey("acme", l), Limit: l}})
	if err != nil {
		t.Fatal(err)
	}
	if u[0] != 0 {
		t.Errorf("used %v after five sends that were never made, want 0", u[0])
	}
}

// downSpends is a spend store that cannot be reached.
type downSpends struct{ MemoryLimiter }

func (*downSpends) Reserve(context.Context, string, config.Spend, float64) (bool, time.Duration, error) {
	return false, 0, errors.New("state store down")
}

// TestAStoreThatFailsIsAnErrorNotARefusal: a limit whose bucket cannot be read is reported as an
// error, neither as the limit's refusal nor as a pass, for a send's spend limit and for a call's
// api limit alike: the caller decides what a failing store means (state.on_error for sends; a
// call is let through and counted).
func TestAStoreThatFailsIsAnErrorNotARefusal(t *testing.T) {
	ctx := context.Background()
	spend := &Rules{Limits: config.RateLimits{Spend: &config.Spend{Amount: 1, Per: time.Hour}}}
	c := Checker{Limiter: &MemoryLimiter{}, Spends: &downSpends{}}
	if rej, err := c.Check(ctx, spend, &gateway.Message{Tenant: "acme", To: "+14155550104", Country: "US"}, 0.3); rej != nil || err == nil {
		t.Errorf("a send whose spend limit cannot be read: %+v %v, want an error", rej, err)
	}
	calls := &Rules{Limits: config.RateLimits{API: lim(10, time.Hour)}}
	if rej, err := (&Checker{Limiter: downLimiter{}}).AllowCall(ctx, "acme", calls); rej != nil || err == nil {
		t.Errorf("a call whose api limit cannot be read: %+v %v, want an error", rej, err)
	}
}

// hangUpLimiter is a rate limit whose check the caller hangs up on: it ends the send's context
// and fails with its error, as a call to Redis does when the request it serves is cancelled.
type hangUpLimiter struct{ cancel context.CancelFunc }

func (h hangUpLimiter) Allow(ctx context.Context, key string, l config.Limit) (bool, time.Duration, error) {
	return h.AllowKeeping(ctx, key, l, 0)
}
func (h hangUpLimiter) AllowKeeping(ctx context.Context, _ string, _ config.Limit, _ int) (bool, time.Duration, error) {
	h.cancel()
	return false, 0, ctx.Err()
}

// TestSpendIsGivenBackWhenTheCallerHangsUp: a caller that hangs up while its rate limits are
// checked ends the send's context, and the send is not made; its reservation still goes back to
// Redis (given back on the ended context, the call failed and the tenant paid for a send never
// made).
func TestSpendIsGivenBackWhenTheCallerHangsUp(t *testing.T) {
	s := &Redis{Client: redistest.Start(t), Prefix: redistest.Prefix(t), Now: newClock().now}
	l := config.Spend{Amount: 1, Per: 24 * time.Hour}
	r := &Rules{Limits: config.RateLimits{Spend: &l, PerTenant: lim(10, time.Hour)}}
	ctx, cancel := context.WithCancel(context.Background())
	c := Checker{Limiter: hangUpLimiter{cancel}, Spends: s}
	if rej, err := c.Check(ctx, r, &gateway.Message{Tenant: "acme", To: "+14155550104", Country: "US"}, 0.3); rej != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("check the caller hung up on: %+v %v, want context.Canceled", rej, err)
	}
	u, err := s.Used(context.Background(), []SpendBucket{{Key: SpendKey("acme", l), Limit: l}})
	if err != nil {
		t.Fatal(err)
	}
	if u[0] != 0 {
		t.Errorf("used %v after a send that was never made, want 0", u[0])
	}
}

// twoReplicas are two replicas' Spends on backend: one Redis, or the same memory.
func twoReplicas(t *testing.T, backend string, clk *clock) (a, b Spends) {
	if backend == "redis" {
		client, prefix := redistest.Start(t), redistest.Prefix(t)
		return &Redis{Client: client, Prefix: prefix, Now: clk.now}, &Redis{Client: client, Prefix: prefix, Now: clk.now}
	}
	m := &MemoryLimiter{Now: clk.now}
	return m, m
}

// TestSpendBucketsExpire: a spend bucket is forgotten once it has refilled.
func TestSpendBucketsExpire(t *testing.T) {
	clk := newClock()
	m := &MemoryLimiter{Now: clk.now}
	l := config.Spend{Amount: 10, Per: time.Hour}
	m.Charge(context.Background(), "k", l, 5)
	clk.add(31 * time.Minute)
	if ok, _, _ := m.Reserve(context.Background(), "k", l, 0); !ok || len(m.spends) != 0 {
		t.Errorf("refilled bucket kept: ok %v, %d held", ok, len(m.spends))
	}
	client, prefix := redistest.Start(t), redistest.Prefix(t)
	r := &Redis{Client: client, Prefix: prefix, Now: clk.now}
	if err := r.Charge(context.Background(), "k", l, 5); err != nil {
		t.Fatal(err)
	}
	// Redis's own clock expires the key: half the period (the 5 of 10 refill in 30 minutes).
	if ttl := client.PTTL(context.Background(), prefix+"sp:k").Val(); ttl <= 29*time.Minute || ttl > 30*time.Minute {
		t.Errorf("ttl %v, want 30m", ttl)
	}
}

// TestSpendChargeFarAboveTheLimit: a price far above a tiny limit puts the bucket at most a
// thousand periods into debt instead of overflowing the clock.
func TestSpendChargeFarAboveTheLimit(t *testing.T) {
	clk := newClock()
	m := &MemoryLimiter{Now: clk.now}
	l := config.Spend{Amount: 1e-12, Per: 24 * time.Hour}
	m.Charge(context.Background(), "k", l, 5)
	ok, wait, _ := m.Reserve(context.Background(), "k", l, 1)
	if ok || wait < 999*24*time.Hour || wait > 1000*24*time.Hour {
		t.Errorf("ok %v, wait %v; want refused for about 999 days", ok, wait)
	}
}

// TestASpendBucketSpentExactlyHoldsNothing: a bucket whose whole amount was spent, to the cent,
// holds nothing: the next reservation is refused until the bucket has refilled a little, and
// told to wait a millisecond, not 0 (a Retry-After of 0 invites the retry at once).
func TestASpendBucketSpentExactlyHoldsNothing(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			clk := newClock()
			s, _ := twoReplicas(t, backend, clk)
			ctx := context.Background()
			l := config.Spend{Amount: 1, Per: 24 * time.Hour}
			for range 2 {
				if err := s.Charge(ctx, "k", l, 0.5); err != nil {
					t.Fatal(err)
				}
			}
			if ok, wait, err := s.Reserve(ctx, "k", l, 0.1); ok || err != nil || wait != time.Millisecond {
				t.Errorf("a bucket spent to its limit: ok %v, wait %v, %v; want refused for 1ms", ok, wait, err)
			}
			clk.add(time.Millisecond)
			if ok, wait, err := s.Reserve(ctx, "k", l, 0.1); !ok || err != nil {
				t.Errorf("a millisecond later: ok %v, wait %v, %v; want allowed", ok, wait, err)
			}
		})
	}
}

// TestSpendChargeOfNaNChangesNothing: a NaN price once emptied a bucket in debt (converted to a
// Duration it moved the bucket far into the past).
func TestSpendChargeOfNaNChangesNothing(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			s, _ := twoReplicas(t, backend, newClock())
			ctx := context.Background()
			l := config.Spend{Amount: 1, Per: time.Hour}
			for range 5 {
				if err := s.Charge(ctx, "k", l, 0.5); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Charge(ctx, "k", l, math.NaN()); err != nil {
				t.Fatal(err)
			}
			if ok, _, err := s.Reserve(ctx, "k", l, math.NaN()); ok || err != nil {
				t.Errorf("a bucket 2.5 into debt allowed a send after a NaN charge (%v)", err)
			}
		})
	}
}

// TestRedisSpendChargeTooSmallToMoveTheClock: a price that moves the bucket by less than a
// microsecond is still stored instead of failing (Redis refuses SET with PX 0). The key lives a
// millisecond, so the test reads nothing back: a slow machine would find it gone.
func TestRedisSpendChargeTooSmallToMoveTheClock(t *testing.T) {
	r := &Redis{Client: redistest.Start(t), Prefix: redistest.Prefix(t), Now: newClock().now}
	if err := r.Charge(context.Background(), "k", config.Spend{Amount: 1e9, Per: time.Hour}, 1e-9); err != nil {
		t.Fatalf("tiny charge: %v", err)
	}
}

// TestSpendUsed: what buckets have spent and not yet refilled, on both backends, several in one
// read (a bucket never charged reads 0). With Redis the read is one round trip, however many
// buckets it asks about.
func TestSpendUsed(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			clk := newClock()
			var s Spends = &MemoryLimiter{Now: clk.now}
			trips := &roundTrips{}
			if backend == "redis" {
				c := redistest.Start(t)
				c.AddHook(trips)
				s = &Redis{Client: c, Prefix: redistest.Prefix(t), Now: clk.now}
			}
			ctx, l := context.Background(), config.Spend{Amount: 10, Per: 10 * time.Hour}
			l2 := config.Spend{Amount: 100, Per: 10 * time.Hour}
			if u, err := s.Used(ctx, []SpendBucket{{"k", l}}); err != nil || !cmp.Equal(u, []float64{0}) {
				t.Fatalf("fresh bucket: %v %v", u, err)
			}
			if u, err := s.Used(ctx, nil); err != nil || len(u) != 0 {
				t.Fatalf("no buckets: %v %v", u, err)
			}
			s.Charge(ctx, "k", l, 4)
			s.Charge(ctx, "k2", l2, 50)
			clk.add(time.Hour) // one of the 4 refilled, and 10 of the 50
			*trips = roundTrips{}
			u, err := s.Used(ctx, []SpendBucket{{"k2", l2}, {"none", l}, {"k", l}})
			if err != nil || !cmp.Equal(u, []float64{40, 0, 3}, cmpopts.EquateApprox(0, 1e-6)) {
				t.Errorf("used %v (%v), want [40 0 3]", u, err)
			}
			if backend == "redis" && (trips.single != 0 || trips.pipelines != 1) {
				t.Errorf("%d commands alone and %d pipelines for three buckets, want one pipeline", trips.single, trips.pipelines)
			}
		})
	}
}

// roundTrips counts a Redis client's round trips: commands sent alone and pipelines.
type roundTrips struct{ single, pipelines int }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name != "hello" && name != "client" {
			r.single++
		}
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.pipelines++
		return next(ctx, cmds)
	}
}
