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
	// FailWith is how a failing send fails: provider (default), recipient or timeout.
	FailWith string `yaml:"fail_with"`
}

// Validate returns the problems of c as key -> message.
func (c *Config) Validate() map[string]string {
	p := map[string]string{}
	if c.FailureRate < 0 || c.FailureRate > 1 {
		p["failure_rate"] = "must be between 0 and 1"
	}
	switch c.FailWith {
	case "", "provider", "recipient", "timeout":
	default:
		p["fail_with"] = fmt.Sprintf("must be provider, recipient or timeout, not %q", c.FailWith)
	}
	if c.Latency < 0 {
		p["latency"] = "must not be negative"
	}
	return p
}

// Provider is the mock driver.
type Provider struct {
	cfg   Config
	seq   atomic.Uint64
	sends atomic.Uint64
}

// New returns a mock driver.
func New(cfg Config) *Provider { return &Provider{cfg: cfg} }

// Sends reports how many times Send was called.
func (p *Provider) Sends() uint64 { return p.sends.Load() }

// Send implements gateway.Provider.
func (p *Provider) Send(ctx context.Context, msg *gateway.Message) (gateway.Result, error) {
	p.sends.Add(1)
	fail := p.cfg.FailureRate >= 1 || (p.cfg.FailureRate > 0 && rand.Float64() < p.cfg.FailureRate)
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
		if p.cfg.FailWith == "recipient" {
			return gateway.Result{}, &gateway.Error{Class: gateway.ClassRecipient, Code: "MOCK_RECIPIENT", Message: "mock rejected the destination"}
		}
		return gateway.Result{}, &gateway.Error{Class: gateway.ClassProvider, Code: "MOCK_FAILURE", HTTPStatus: 503, Message: "mock provider failure", Err: errors.New("simulated outage")}
	}
	id := msg.ID
	if id == "" {
		id = fmt.Sprintf("%d", p.seq.Add(1))
	}
	return gateway.Result{ProviderMessageID: "mock-" + strings.TrimPrefix(id, "msg_"), Status: "accepted"}, nil
}
