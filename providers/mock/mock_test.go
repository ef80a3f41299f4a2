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
	res, err := New(Config{}, gateway.Deps{}).Send(context.Background(), msg)
	if err != nil || res.ProviderMessageID != "mock-abc" {
		t.Errorf("ok: %+v %v", res, err)
	}
	for _, tc := range []struct {
		with  string
		class gateway.Class
	}{{"", gateway.ClassProvider}, {"provider", gateway.ClassProvider}, {"recipient", gateway.ClassRecipient}, {"destination", gateway.ClassDestination}, {"throttled", gateway.ClassThrottled}} {
		_, err := New(Config{FailureRate: 1, FailWith: tc.with}, gateway.Deps{}).Send(context.Background(), msg)
		if gateway.ClassOf(err) != tc.class {
			t.Errorf("fail_with %q: %v", tc.with, err)
		}
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
