// Package mock is a provider that sends nothing: it accepts every message, or fails in the way
// its config says, after an optional latency. It lets smsgate run with no credentials, and it
// drives demos and outage drills.
package mock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/smsgate/smsgate/gateway"
)

// Config is the mock's YAML block (besides name, type, timeout and breaker).
type Config struct {
	// Latency is how long each send takes; zero answers at once.
	Latency gateway.Duration `yaml:"latency"`
	// FailureRate is the share of sends that fail, 0 (default) to 1.
	FailureRate float64 `yaml:"failure_rate"`
	// FailWith is how a failing send fails: provider (default), recipient, destination, throttled
	// (a 429 with Retry-After: 1) or timeout.
	FailWith string `yaml:"fail_with"`
	// Types are the message types it declares it can send; default sms and voice.
	Types []gateway.MessageType `yaml:"types"`
	// VoiceLanguages, when set, are the only languages it declares it speaks.
	VoiceLanguages []string `yaml:"voice_languages"`
}

// Defaults fills what the config leaves out.
func (c *Config) Defaults() {
	if len(c.Types) == 0 {
		c.Types = []gateway.MessageType{gateway.SMS, gateway.Voice}
	}
	if c.FailWith == "" {
		c.FailWith = "provider"
	}
}

// Validate returns the config's problems in key order.
func (c *Config) Validate() []gateway.Problem {
	var p []gateway.Problem
	if c.FailureRate < 0 || c.FailureRate > 1 {
		p = append(p, gateway.Problem{Key: "failure_rate", Message: "must be between 0 and 1"})
	}
	switch c.FailWith {
	case "provider", "recipient", "destination", "throttled", "timeout":
	default:
		p = append(p, gateway.Problem{Key: "fail_with", Message: fmt.Sprintf("must be provider, recipient, destination, throttled or timeout, not %q", c.FailWith)})
	}
	if c.Latency < 0 {
		p = append(p, gateway.Problem{Key: "latency", Message: "must not be negative"})
	}
	for i, t := range c.Types {
		if t != gateway.SMS && t != gateway.Voice {
			p = append(p, gateway.Problem{Key: fmt.Sprintf("types[%d]", i), Message: fmt.Sprintf("must be sms or voice, not %q", t)})
		}
	}
	return p
}

// Provider is the mock driver.
type Provider struct {
	cfg   Config
	seq   atomic.Uint64
	sends atomic.Uint64
}

// New returns a mock driver; it calls nothing, so it needs none of deps.
func New(cfg Config, _ gateway.Deps) *Provider {
	cfg.Defaults()
	return &Provider{cfg: cfg}
}

// Capabilities implements gateway.Provider, as configured.
func (p *Provider) Capabilities() gateway.Capabilities {
	return gateway.Capabilities{Types: p.cfg.Types, VoiceLanguages: p.cfg.VoiceLanguages}
}

// Sends reports how many times Send was called.
func (p *Provider) Sends() uint64 { return p.sends.Load() }

// Send implements gateway.Provider.
func (p *Provider) Send(ctx context.Context, msg *gateway.Message) (gateway.Result, error) {
	p.sends.Add(1)
	fail := p.cfg.FailureRate > 0 && rand.Float64() < p.cfg.FailureRate // Float64 is below 1: a rate of 1 always fails
	if fail && p.cfg.FailWith == "timeout" {
		<-ctx.Done()
		return gateway.Result{}, ctx.Err()
	}
	if d := p.cfg.Latency.D(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return gateway.Result{}, ctx.Err()
		case <-t.C:
		}
	}
	if fail {
		switch p.cfg.FailWith {
		case "recipient":
			return gateway.Result{}, &gateway.Error{Class: gateway.ClassRecipient, Code: "MOCK_RECIPIENT", Message: "mock rejected the destination"}
		case "destination":
			return gateway.Result{}, &gateway.Error{Class: gateway.ClassDestination, Code: "MOCK_NO_ROUTE", Message: "mock cannot reach this destination"}
		case "throttled":
			return gateway.Result{}, &gateway.Error{Class: gateway.ClassThrottled, Code: "MOCK_THROTTLED", HTTPStatus: 429, RetryAfter: time.Second, Message: "mock is throttling"}
		}
		return gateway.Result{}, &gateway.Error{Class: gateway.ClassProvider, Code: "MOCK_FAILURE", HTTPStatus: 503, Message: "mock provider failure", Err: errors.New("simulated outage")}
	}
	id := msg.ID
	if id == "" {
		id = fmt.Sprintf("%d", p.seq.Add(1))
	}
	return gateway.Result{ProviderMessageID: "mock-" + strings.TrimPrefix(id, "msg_"), Status: "accepted"}, nil
}
