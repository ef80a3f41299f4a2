// Package aws holds the two AWS drivers, built on the official AWS SDK for Go v2: `type: sns`
// (Amazon SNS Publish to a phone number, SMS only) and `type: aws-sms-voice` (AWS End User
// Messaging SMS and Voice v2: SendTextMessage and SendVoiceMessage, with delivery events through
// an SNS topic's HTTPS subscription). They share the SDK plumbing: credentials from the SDK's
// default chain (environment, web identity, shared config and profiles, container credentials,
// instance metadata), no SDK retries (the gateway's failover decides; a retried Publish can send
// twice), the gateway's HTTP client, and one error classification.
package aws

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/kit"
)

// Common are the keys both AWS drivers share; nothing secret is needed in the YAML.
type Common struct {
	// Region is the AWS region, e.g. eu-west-1; empty: the SDK's default chain (AWS_REGION...).
	Region string `yaml:"region"`
	// Profile selects a shared-config profile; empty: the default chain.
	Profile string `yaml:"profile"`
	// Endpoint overrides the service endpoint (VPC endpoints, tests).
	Endpoint string `yaml:"endpoint"`
}

var isoRe = regexp.MustCompile(`^([A-Z]{2}|001)$`)

func (c *Common) validate(add func(k, f string, a ...any)) {
	if c.Endpoint != "" {
		if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add("endpoint", "%q is not an http(s) URL", c.Endpoint)
		}
	}
	if c.Region != "" && !regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`).MatchString(c.Region) {
		add("region", "%q is not an AWS region such as eu-west-1", c.Region)
	}
}

// sdkConfig loads the SDK's configuration: the default credential chain, the region and profile,
// the gateway's HTTP client, and a single attempt per call.
func sdkConfig(c Common, deps gateway.Deps) (sdkaws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() sdkaws.Retryer { return sdkaws.NopRetryer{} }),
	}
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(c.Profile))
	}
	// The gateway's HTTP client, unless AWS_CA_BUNDLE asks the SDK to build its own with extra
	// roots (the SDK refuses a plain client then). The never-sent trace works with either.
	if deps.HTTPClient != nil && os.Getenv("AWS_CA_BUNDLE") == "" {
		opts = append(opts, config.WithHTTPClient(deps.HTTPClient))
	}
	return config.LoadDefaultConfig(context.Background(), opts...)
}

// codeClass is one row of an error table: the class of an API error code (and, for End User
// Messaging, its reason).
type codeClass map[string]gateway.Class

// call runs an SDK call with the HTTP trace that tells never-sent from maybe-sent, and classifies
// its error with table (keyed by "Code" or "Code/REASON").
func call(ctx context.Context, k *kit.Client, table codeClass, reason func(error) string, fn func(context.Context) error) error {
	var wrote atomic.Bool
	err := fn(kit.Trace(ctx, &wrote))
	if err == nil {
		return nil
	}
	status := 0
	var retryAfter time.Duration
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
		if re.Response != nil && re.Response.Response != nil {
			retryAfter = kit.RetryAfter(re.Response.Header, time.Now())
		}
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		if status == 0 {
			return k.TransportError(ctx, err, wrote.Load())
		}
		// An answer whose body is not the service's error shape (a proxy's HTML, an empty 503):
		// by status alone. A 2xx that could not be read may have sent.
		e := &gateway.Error{Class: gateway.ClassProvider, Code: fmt.Sprintf("HTTP_%d", status), HTTPStatus: status, MaybeSent: status/100 == 2,
			Message: k.Name + " answered " + http.StatusText(status)}
		if status == 429 {
			e.Class, e.RetryAfter = gateway.ClassThrottled, retryAfter
		}
		return e
	}
	code := ae.ErrorCode()
	r := ""
	if reason != nil {
		r = reason(err)
	}
	class, ok := table[code+"/"+r]
	if !ok {
		class, ok = table[code]
	}
	switch {
	case status == 429:
		class = gateway.ClassThrottled
	case !ok || status >= 500:
		class = gateway.ClassProvider
	}
	name := code
	if r != "" {
		name += "/" + r
	}
	e := &gateway.Error{Class: class, Code: k.Text(name), HTTPStatus: status, Message: k.Text(ae.ErrorMessage())}
	if class == gateway.ClassThrottled {
		e.RetryAfter = retryAfter
	}
	if e.Message == "" {
		e.Message = code
	}
	return e
}

func configError(name string, err error) error {
	return &gateway.Error{Class: gateway.ClassProvider, Code: "AWS_CONFIG", Message: fmt.Sprintf("%s: the AWS SDK configuration could not be loaded", name),
		Err: errors.New(strings.SplitN(err.Error(), "\n", 2)[0])}
}
