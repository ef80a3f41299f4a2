package policy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/gateway/policy/redistest"
)

// TestCancelledCallsDoNotOpenTheStateBreaker: a caller that goes away (its request context
// cancelled) is no evidence that Redis is down. Counted, three callers hanging up would have
// opened the breaker that every tenant's sends share.
func TestCancelledCallsDoNotOpenTheStateBreaker(t *testing.T) {
	r := &Redis{Client: redistest.Start(t), Prefix: redistest.Prefix(t), Breakers: NewBreakers(time.Hour)}
	l := config.Limit{N: 100, Per: time.Second}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for range 5 {
		if _, _, err := r.Allow(gone, "k", l); !errors.Is(err, context.Canceled) {
			t.Fatalf("a cancelled call: %v", err)
		}
	}
	if ok, _, err := r.Allow(context.Background(), "k", l); !ok || err != nil {
		t.Errorf("after five cancelled calls: %v %v, want the breaker closed", ok, err)
	}
}

// TestSharedFlightClaims: a claim is held until finished; a Finish by a replica whose claim was
// taken over (a wrong token) stores its answer but leaves the other's claim alone.
func TestSharedFlightClaims(t *testing.T) {
	r := &Redis{Client: redistest.Start(t), Prefix: redistest.Prefix(t)}
	ctx := context.Background()
	token, won, err := r.Claim(ctx, "acme/k1", time.Minute)
	if err != nil || !won {
		t.Fatalf("claim: %v %v", won, err)
	}
	if _, found, held, err := r.Answer(ctx, "acme/k1"); found || !held || err != nil {
		t.Errorf("while running: found %v held %v err %v; want held without an answer", found, held, err)
	}
	if _, won, _ := r.Claim(ctx, "acme/k1", time.Minute); won {
		t.Error("a second claim won")
	}
	// A replica that dies while it holds a claim holds it a minute, not for good.
	claim, _ := r.flightKeys("acme/k1")
	if ttl := r.Client.PTTL(ctx, claim).Val(); ttl <= 59*time.Second || ttl > time.Minute {
		t.Errorf("the claim's ttl %v, want 1m", ttl)
	}
	answer := &Replay{Status: 200, Body: []byte(`{"id":"msg_1"}`)}
	if err := r.Finish(ctx, "acme/k1", "someone-else", answer, time.Minute); err != nil {
		t.Fatal(err)
	}
	if a, found, held, err := r.Answer(ctx, "acme/k1"); !found || !held || err != nil || string(a.Body) != `{"id":"msg_1"}` {
		t.Errorf("after a Finish with another token: found %v held %v err %v; want the answer, the claim still held", found, held, err)
	}
	if err := r.Finish(ctx, "acme/k1", token, answer, time.Minute); err != nil {
		t.Fatal(err)
	}
	_, answerKey := r.flightKeys("acme/k1")
	if ttl := r.Client.PTTL(ctx, answerKey).Val(); ttl <= 59*time.Second || ttl > time.Minute {
		t.Errorf("the answer's ttl %v, want the minute it is kept", ttl)
	}
	if _, found, held, _ := r.Answer(ctx, "acme/k1"); !found || held {
		t.Errorf("after its own Finish: found %v held %v; want the answer, released", found, held)
	}
}

// TestSlottedKeysCarryTheirOwnHashTag: on a cluster a key starts with a hash tag of its own
// digest, so the "{...}" a caller writes in its Idempotency-Key places nothing; elsewhere keys
// are spelt as given.
func TestSlottedKeysCarryTheirOwnHashTag(t *testing.T) {
	c := &Redis{Cluster: true}
	a, b := c.slotted("acme/{x}1"), c.slotted("acme/{x}2")
	if !strings.HasPrefix(a, "{") || !strings.HasSuffix(a, "}acme/{x}1") || len(a) != len("{")+12+len("}acme/{x}1") {
		t.Errorf("slotted = %q", a)
	}
	if a[:14] == b[:14] {
		t.Errorf("two keys with the caller's same tag share a hash tag: %q %q", a, b)
	}
	if got := (&Redis{}).slotted("acme/{x}1"); got != "acme/{x}1" {
		t.Errorf("not a cluster: %q", got)
	}
}

// TestAMalformedReplayIsAnError: a record whose hash is not 32 bytes (written by something
// else) is an error, not a replay of its body.
func TestAMalformedReplayIsAnError(t *testing.T) {
	c := redistest.Start(t)
	r := &Redis{Client: c, Prefix: redistest.Prefix(t)}
	ctx := context.Background()
	if err := c.HSet(ctx, r.Prefix+"idem:acme/k", "hash", "short", "status", "200", "body", "{}").Err(); err != nil {
		t.Fatal(err)
	}
	if rep, found, err := r.Get(ctx, "acme/k"); err == nil || found {
		t.Errorf("malformed record: %+v %v %v", rep, found, err)
	}
}

// TestATinyReservationStillCharges: a price far below a microsecond of the bucket still takes
// one, so that a tenant sending where prices are tiny is counted at all.
func TestATinyReservationStillCharges(t *testing.T) {
	c := redistest.Start(t)
	r := &Redis{Client: c, Prefix: redistest.Prefix(t), Now: newClock().now}
	l := config.Spend{Amount: 1e9, Per: time.Hour}
	if ok, _, err := r.Reserve(context.Background(), "k", l, 1e-9); !ok || err != nil {
		t.Fatalf("reserve: %v %v", ok, err)
	}
	if err := c.Get(context.Background(), r.Prefix+"sp:k").Err(); errors.Is(err, redis.Nil) {
		t.Error("a tiny reservation left no bucket: it charged nothing")
	}
}
