package app

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/config"
	"github.com/smsgate/smsgate/providers/aws"
	"github.com/smsgate/smsgate/providers/esendex"
	"github.com/smsgate/smsgate/providers/infobip"
	"github.com/smsgate/smsgate/providers/mitto"
	"github.com/smsgate/smsgate/providers/mock"
	"github.com/smsgate/smsgate/providers/telesign"
	"github.com/smsgate/smsgate/providers/twilio"
	"github.com/smsgate/smsgate/providers/vonage"
)

// drivers is the single composition point: one line per driver type, mapping the name used in
// YAML (providers[].type), in delivery-report URLs (/v1/dlr/{type}/{name}) and in code to the
// driver's constructor. The list of known types in messages and docs comes from it.
var drivers = map[string]driver{
	"aws-sms-voice": register(aws.NewSMSVoice),
	"esendex":       register(esendex.New),
	"infobip":       register(infobip.New),
	"mitto":         register(mitto.New),
	"mock":          register(mock.New),
	"sns":           register(aws.NewSNS),
	"telesign":      register(telesign.New),
	"twilio":        register(twilio.New),
	"vonage":        register(vonage.New),
}

// driverConfig is what every driver's config type implements: defaults in their own step, then
// the problems in a stable order.
type driverConfig interface {
	Defaults()
	Validate() []gateway.Problem
}

// driver decodes a provider's options and builds its driver.
type driver struct {
	// decode decodes, defaults and validates providers[i]'s options; problems go to c.
	decode func(c *config.Config, i int) any
	// build makes the driver from what decode returned.
	build func(settings any, deps gateway.Deps) gateway.Provider
}

// register adapts a driver package's New(Config, Deps) to the registry.
func register[C any, PC interface {
	*C
	driverConfig
}, P gateway.Provider](newDriver func(C, gateway.Deps) P) driver {
	return driver{
		decode: func(c *config.Config, i int) any {
			var dc C
			c.DecodeOptions(i, &dc)
			PC(&dc).Defaults()
			for _, p := range append(PC(&dc).Validate(), rotationProblems(&dc)...) {
				c.Problem(fmt.Sprintf("providers[%d].%s", i, p.Key), "%s", p.Message)
			}
			return dc
		},
		build: func(settings any, deps gateway.Deps) gateway.Provider { return newDriver(settings.(C), deps) },
	}
}

// rotationProblems are the problems every driver's report secrets share: previous ones kept
// without the secret that replaced them, against which no report would be checked.
func rotationProblems(settings any) []gateway.Problem {
	current, previous := false, false
	reportSecrets(settings, func(key string, s gateway.Secret) {
		if key == "webhook_secret" {
			current = s != ""
		} else {
			previous = true
		}
	})
	if previous && !current {
		return []gateway.Problem{{Key: "previous_webhook_secrets", Message: "needs webhook_secret (the secret they were replaced by)"}}
	}
	return nil
}

// ProviderTypes lists the driver types this build knows, sorted, for messages and docs.
func ProviderTypes() []string { return slices.Sorted(maps.Keys(drivers)) }

// Drivers is the registry as config.Load needs it: every command loads the config with it, so a
// file that loads is valid, driver options included.
var Drivers config.Drivers = registry{}

type registry struct{}

// Decode implements config.Drivers.
func (registry) Decode(c *config.Config, i int) any {
	p := &c.Providers[i]
	d, ok := drivers[p.Type]
	if !ok {
		c.Problem(fmt.Sprintf("providers[%d].type", i), "unknown provider type %q (known: %s)", p.Type, strings.Join(ProviderTypes(), ", "))
		return nil
	}
	return d.decode(c, i)
}

// buildDriver makes provider i's driver from its decoded settings (nil when config.Load reported
// its type as unknown).
func buildDriver(c *config.Config, i int, deps gateway.Deps) gateway.Provider {
	p := &c.Providers[i]
	d, ok := drivers[p.Type]
	if !ok || p.Settings == nil {
		return nil
	}
	return d.build(p.Settings, deps)
}

// callbackURL is where provider p's delivery reports reach the gateway: server.public_url +
// /v1/dlr/{type}/{name}; "" without a public URL (no report can reach it).
func callbackURL(c *config.Config, p *config.Provider) string {
	if c.Server.PublicURL == "" {
		return ""
	}
	return c.Server.PublicURL + "/v1/dlr/" + p.Type + "/" + p.Name
}

// asksReports reports whether driver drv, given callback (callbackURL), asks for delivery reports:
// its driver takes them, the gateway has a public URL, and the driver asked for them
// (gateway.ReportReceiver.AsksReports). Only then does a message of it without a final report
// count against it in delivery health.
func asksReports(drv gateway.Provider, callback string) bool {
	rr, ok := drv.(gateway.ReportReceiver)
	return ok && callback != "" && rr.AsksReports()
}
