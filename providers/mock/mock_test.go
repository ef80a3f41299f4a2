package mock

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway"
)

func TestMock(t *testing.T) {
	msg := &gateway.Message{ID: "msg_abc", To: "+14155550104"}
	res, err := New(Config{}).Send(context.Background(), msg)
	if err != nil || res.ProviderMessageID != "mock-abc" {
		t.Errorf("ok: %+v %v", res, err)
	}
	for _, tc := range []struct {
		with  string
		class gateway.Class
	}{{"", gateway.ClassProvider}, {"provider", gateway.ClassProvider}, {"recipient", gateway.ClassRecipient}} {
		_, err := New(Config{FailureRate: 1, FailWith: tc.with}).Send(context.Background(), msg)
		if gateway.ClassOf(err) != tc.class {
			t.Errorf("fail_with %q: %v", tc.with, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	p := New(Config{FailureRate: 1, FailWith: "timeout"})
	if _, err := p.Send(ctx, msg); err != context.DeadlineExceeded || p.Sends() != 1 {
		t.Errorf("timeout: %v, sends %d", err, p.Sends())
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := New(Config{Latency: gateway.Duration(time.Hour)}).Send(ctx2, msg); err != context.DeadlineExceeded {
		t.Errorf("latency must honour the deadline: %v", err)
	}
}

func TestValidate(t *testing.T) {
	c := Config{FailureRate: 2, FailWith: "fire", Latency: -1}
	want := map[string]string{"failure_rate": "must be between 0 and 1", "fail_with": `must be provider, recipient or timeout, not "fire"`, "latency": "must not be negative"}
	if diff := cmp.Diff(want, c.Validate()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
