package aws

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/kit"
)

// SNSConfig is the sns provider's YAML block (besides name, type, timeout and breaker).
type SNSConfig struct {
	Common `yaml:",inline"`
	// SenderID is the default sender id (AWS.SNS.SMS.SenderID), where the destination allows one;
	// Senders per country (ISO alpha-2 or 001).
	SenderID string            `yaml:"sender_id"`
	Senders  map[string]string `yaml:"senders"`
	// MaxPrice is the most to pay for one message, in USD (AWS.SNS.SMS.MaxPrice); 0: no cap.
	MaxPrice float64 `yaml:"max_price"`
}

// Defaults fills what the config leaves out (nothing: the SDK's chain decides).
func (c *SNSConfig) Defaults() {}

// Validate returns the config's problems in key order.
func (c *SNSConfig) Validate() []gateway.Problem {
	var p []gateway.Problem
	add := func(k, f string, a ...any) { p = append(p, gateway.Problem{Key: k, Message: fmt.Sprintf(f, a...)}) }
	c.Common.validate(add)
	for _, cc := range slices.Sorted(maps.Keys(c.Senders)) {
		if !isoRe.MatchString(cc) {
			add("senders."+cc, "keys must be ISO 3166-1 alpha-2 country codes (or 001)")
		}
	}
	if c.MaxPrice < 0 {
		add("max_price", "must not be negative")
	}
	return p
}

// SNS is the Amazon SNS driver: Publish to a phone number, transactional, SMS only. SNS pushes no
// delivery reports (they go to CloudWatch Logs; see docs/providers/aws.md).
type SNS struct {
	cfg    SNSConfig
	kit    *kit.Client
	client *sns.Client
	err    error
}

// NewSNS returns a driver; cfg must have passed Validate.
func NewSNS(cfg SNSConfig, deps gateway.Deps) *SNS {
	d := &SNS{cfg: cfg, kit: kit.New(deps)}
	ac, err := sdkConfig(cfg.Common, deps)
	if err != nil {
		d.err = configError(deps.Name, err)
		return d
	}
	d.client = sns.NewFromConfig(ac, func(o *sns.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = sdkaws.String(cfg.Endpoint)
		}
	})
	return d
}

// Capabilities implements gateway.Provider: SMS only (SNS has no voice).
func (d *SNS) Capabilities() gateway.Capabilities { return gateway.SMSOnly }

// snsErrors is the Publish error table. Invalid numbers and opted-out destinations are the
// recipient's; throttling is throttling; everything else (authorization, signature and token
// errors, internal errors, disabled endpoints, KMS) is the provider's.
var snsErrors = codeClass{
	"InvalidParameter":      gateway.ClassRecipient,
	"ParameterValueInvalid": gateway.ClassRecipient,
	"OptedOut":              gateway.ClassRecipient,
	"AuthorizationError":    gateway.ClassProvider,
	"InvalidSecurity":       gateway.ClassProvider,
	"SignatureDoesNotMatch": gateway.ClassProvider,
	"InvalidClientTokenId":  gateway.ClassProvider,
	"ExpiredToken":          gateway.ClassProvider,
	"Throttling":            gateway.ClassThrottled,
	"Throttled":             gateway.ClassThrottled,
	"InternalError":         gateway.ClassProvider,
	"EndpointDisabled":      gateway.ClassProvider,
}

func attr(v string) snstypes.MessageAttributeValue {
	return snstypes.MessageAttributeValue{DataType: sdkaws.String("String"), StringValue: sdkaws.String(v)}
}

// Send implements gateway.Provider. Nothing from the request but the number and the text goes
// into the message: never the code in an attribute.
func (d *SNS) Send(ctx context.Context, msg *gateway.Message) (gateway.Result, error) {
	if d.err != nil {
		return gateway.Result{}, d.err
	}
	attrs := map[string]snstypes.MessageAttributeValue{"AWS.SNS.SMS.SMSType": attr("Transactional")}
	if sender := kit.Sender(msg, d.cfg.Senders, d.cfg.SenderID); sender != "" {
		attrs["AWS.SNS.SMS.SenderID"] = attr(sender)
	}
	if d.cfg.MaxPrice > 0 {
		attrs["AWS.SNS.SMS.MaxPrice"] = snstypes.MessageAttributeValue{DataType: sdkaws.String("Number"),
			StringValue: sdkaws.String(strconv.FormatFloat(d.cfg.MaxPrice, 'f', -1, 64))}
	}
	var out *sns.PublishOutput
	err := call(ctx, d.kit, snsErrors, nil, func(ctx context.Context) (err error) {
		out, err = d.client.Publish(ctx, &sns.PublishInput{PhoneNumber: sdkaws.String(msg.To), Message: sdkaws.String(msg.Text), MessageAttributes: attrs})
		return err
	})
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "opted out") {
			if ge, ok := err.(*gateway.Error); ok {
				ge.Class = gateway.ClassRecipient
			}
		}
		return gateway.Result{}, err
	}
	if out.MessageId == nil || *out.MessageId == "" {
		return gateway.Result{}, &gateway.Error{Class: gateway.ClassProvider, Code: "BAD_RESPONSE", MaybeSent: true, Message: "SNS answered without a MessageId"}
	}
	return gateway.Result{ProviderMessageID: *out.MessageId, Status: "published"}, nil
}
