// Package providertest holds the contract every driver must pass, run from each driver's tests
// against that driver's fake provider server.
package providertest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/smsgate/smsgate/gateway"
)

// Contract describes a driver under test.
type Contract struct {
	// Provider is the driver, configured against a fake that accepts messages.
	Provider gateway.Provider
	// Hanging is the same driver configured against a fake that never answers.
	Hanging gateway.Provider
	// Refused is the same driver configured against an address where nothing listens.
	Refused gateway.Provider
	// Secrets must never appear in an error string.
	Secrets []string
}

// Run checks the contract: accepted sends return a provider message id; a hanging provider
// returns a provider-class timeout within the context's deadline; a refused connection is a
// provider error; no error string holds a secret, the recipient or the code.
func Run(t *testing.T, c Contract) {
	t.Helper()
	msg := func(typ gateway.MessageType) *gateway.Message {
		return &gateway.Message{ID: "msg_contract1", Tenant: "t", To: "+14155550104", Country: "US", Type: typ, Text: "Your code is 918273", Code: "918273"}
	}
	check := func(t *testing.T, err error) {
		t.Helper()
		s := err.Error()
		for _, bad := range append([]string{"918273", "4155550104"}, c.Secrets...) {
			if bad != "" && strings.Contains(s, bad) {
				t.Errorf("error %q contains %q", s, bad)
			}
		}
	}
	t.Run("contract/accepts sms and voice", func(t *testing.T) {
		for _, typ := range []gateway.MessageType{gateway.SMS, gateway.Voice} {
			res, err := c.Provider.Send(context.Background(), msg(typ))
			if err != nil || res.ProviderMessageID == "" {
				t.Errorf("%s: result %+v, err %v", typ, res, err)
			}
		}
	})
	t.Run("contract/hanging provider times out as a provider error", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Hanging.Send(ctx, msg(gateway.SMS))
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Send ignored the deadline: %v", d)
		}
		ge := gateway.AsError(err)
		if err == nil || ge.Class != gateway.ClassProvider || !ge.Timeout {
			t.Fatalf("err = %v, want a provider timeout", err)
		}
		check(t, err)
	})
	t.Run("contract/refused connection is a provider error", func(t *testing.T) {
		_, err := c.Refused.Send(context.Background(), msg(gateway.SMS))
		if err == nil || gateway.ClassOf(err) != gateway.ClassProvider {
			t.Fatalf("err = %v, want a provider error", err)
		}
		check(t, err)
	})
}
