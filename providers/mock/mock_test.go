package mock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway"
)

func TestMock(t *testing.T) {
	msg := &gateway.Message{ID: "msg_abc", To: "+14155550104"}
	res, err := New(Config{}, gateway.Deps{}).Send(context.Background(), msg)
	if err != nil || res != (gateway.Result{ProviderMessageID: "mock-abc", Status: "accepted"}) {
		t.Errorf("ok: %+v %v", res, err)
	}
	// A message without an id gets a sequence number.
	p0 := New(Config{}, gateway.Deps{})
	for _, want := range []string{"mock-1", "mock-2"} {
		if res, err := p0.Send(context.Background(), &gateway.Message{To: "+14155550104"}); err != nil || res.ProviderMessageID != want {
			t.Errorf("no id: %+v %v, want %s", res, err, want)
		}
	}
	for _, tc := range []struct {
		with string
		want gateway.Error
	}{
		{"", gateway.Error{Class: gateway.ClassProvider, Code: "MOCK_FAILURE", HTTPStatus: 503}},
		{"provider", gateway.Error{Class: gateway.ClassProvider, Code: "MOCK_FAILURE", HTTPStatus: 503}},
		{"recipient", gateway.Error{Class: gateway.ClassRecipient, Code: "MOCK_RECIPIENT"}},
		{"destination", gateway.Error{Class: gateway.ClassDestination, Code: "MOCK_NO_ROUTE"}},
		{"throttled", gateway.Error{Class: gateway.ClassThrottled, Code: "MOCK_THROTTLED", HTTPStatus: 429, RetryAfter: time.Second}},
	} {
		_, err := New(Config{FailureRate: 1, FailWith: tc.with}, gateway.Deps{}).Send(context.Background(), msg)
		var ge *gateway.Error
		if !errors.As(err, &ge) || ge.Class != tc.want.Class || ge.Code != tc.want.Code || ge.HTTPStatus != tc.want.HTTPStatus || ge.RetryAfter != tc.want.RetryAfter {
			t.Errorf("fail_with %q: %+v, want %+v", tc.with, err, tc.want)
		}
	}
	// A share of sends fails: 2,000 sends at 0.1 fail about 200 times (the bounds are over ten
	// standard deviations away).
	p1 := New(Config{FailureRate: 0.1}, gateway.Deps{})
	failed := 0
	for range 2000 {
		if _, err := p1.Send(context.Background(), msg); err != nil {
			failed++
		}
	}
	if failed < 60 || failed > 340 {
		t.Errorf("failure_rate 0.1: %d of 2000 failed", failed)
	}
	// fail_with: timeout waits only when the send fails.
	if _, err := New(Config{FailWith: "timeout"}, gateway.Deps{}).Send(context.Background(), msg); err != nil {
		t.Errorf("a send that does not fail, under fail_with timeout: %v", err)
	}
	// The latency is waited (a lower bound: the timer cannot fire early).
	start := time.Now()
	if _, err := New(Config{Latency: gateway.Duration(40 * time.Millisecond)}, gateway.Deps{}).Send(context.Background(), msg); err != nil || time.Since(start) < 40*time.Millisecond {
		t.Errorf("latency 40ms: %v after %v", err, time.Since(start))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	p := New(Config{FailureRate: 1, FailWith: "timeout"}, gateway.Deps{})
	if _, err := p.Send(ctx, msg); err != context.DeadlineExceeded || p.Sends() != 1 {
		t.Errorf("timeout: %v, sends %d", err, p.Sends())
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := New(Config{Latency: gateway.Duration(time.Hour)}, gateway.Deps{}).Send(ctx2, msg); err != context.DeadlineExceeded {
		t.Errorf("latency must honour the deadline: %v", err)
	}
}

func TestValidate(t *testing.T) {
	c := Config{FailureRate: 2, FailWith: "fire", Latency: -1, Types: []gateway.MessageType{"sms", "fax"}}
	c.Defaults()
	want := []gateway.Problem{{Key: "failure_rate", Message: "must be between 0 and 1"}, {Key: "fail_with", Message: `must be provider, recipient, destination, throttled or timeout, not "fire"`},
		{Key: "latency", Message: "must not be negative"}, {Key: "types[1]", Message: `must be sms or voice, not "fax"`}}
	if diff := cmp.Diff(want, c.Validate()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, with := range []string{"provider", "recipient", "destination", "throttled", "timeout"} {
		c := Config{FailureRate: 1, FailWith: with, Types: []gateway.MessageType{gateway.Voice, gateway.SMS}}
		if p := c.Validate(); len(p) != 0 {
			t.Errorf("fail_with %s: %v", with, p)
		}
	}
	c = Config{FailureRate: -0.1}
	c.Defaults()
	if p := c.Validate(); len(p) != 1 || p[0].Key != "failure_rate" {
		t.Errorf("failure_rate -0.1: %v", p)
	}
}

func TestCapabilitiesFromConfig(t *testing.T) {
	p := New(Config{Types: []gateway.MessageType{gateway.Voice}, VoiceLanguages: []string{"en-GB", "fr"}}, gateway.Deps{})
	for _, tc := range []struct {
		msg  gateway.Message
		want bool
	}{
		{gateway.Message{Type: gateway.SMS}, false},
		{gateway.Message{Type: gateway.Voice, Language: "en-GB"}, true},
		{gateway.Message{Type: gateway.Voice, Language: "fr-CA"}, true},
		{gateway.Message{Type: gateway.Voice, Language: "en-US"}, false},
		{gateway.Message{Type: gateway.Voice}, false},
	} {
		if got, why := p.Capabilities().Supports(&tc.msg); got != tc.want {
			t.Errorf("%+v: %v (%s), want %v", tc.msg, got, why, tc.want)
		}
	}
	if caps := New(Config{}, gateway.Deps{}).Capabilities(); !caps.Can(gateway.SMS) || !caps.Can(gateway.Voice) {
		t.Errorf("default capabilities %+v", caps)
	}
}
