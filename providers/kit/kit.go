// Package kit is what every HTTP driver shares: one client that sends a request and reads the
// answer (bounded), tells a request that never left from one that may have reached the provider,
// classifies the answers every provider shares (5xx and 429), and keeps configured secrets out of
// every text it returns. A driver maps only its own codes.
//
// Drivers import gateway, this package and the standard library (and their provider's official
// SDK where one is required, as the AWS drivers do), never routing, dispatch or httpapi.
package kit

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/smsgate/smsgate/gateway"
)

// DefaultMaxBody bounds how much of an answer is read: far more than any provider's answer, far
// less than a broken proxy can stream.
const DefaultMaxBody = 1 << 20

// Client sends a driver's requests. Its zero value is not usable: set HTTP and Name.
type Client struct {
	// HTTP does the requests; it should have no overall timeout (contexts bound each call).
	HTTP *http.Client
	// Name names the provider in error messages (the configured name).
	Name string
	// Secrets are removed from every text the client returns (see gateway.SafeText).
	Secrets []string
	// MaxBody bounds the answer's body; 0 means DefaultMaxBody.
	MaxBody int64
}

// New returns a client for deps, keeping secrets out of its texts.
func New(deps gateway.Deps, secrets ...string) *Client {
	c := deps.HTTPClient
	if c == nil {
		c = http.DefaultClient
	}
	return &Client{HTTP: c, Name: deps.Name, Secrets: secrets}
}

// Response is an answer with its body read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// OK reports a 2xx status.
func (r *Response) OK() bool { return r.Status/100 == 2 }

// Exchange is Do, then an answer that is not 2xx is the error Classify makes of it (own, when
// not nil, reads the provider's error body first).
func (c *Client) Exchange(ctx context.Context, req *http.Request, own func(*Response) *gateway.Error) (*Response, error) {
	res, err := c.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if !res.OK() {
		return nil, c.Classify(res, own)
	}
	return res, nil
}

// Do sends req under ctx and reads the answer. A failure to get one is a classified
// *gateway.Error: never sent (DNS, refused connection, dial or TLS timeout: safe to fail over) or
// maybe sent (a timeout or reset after the request was written). The original error is never
// kept: it often quotes the URL, which can hold an account id or a secret.
func (c *Client) Do(ctx context.Context, req *http.Request) (*Response, error) {
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			wrote.Store(true)
		}
	}}
	res, err := c.HTTP.Do(req.WithContext(httptrace.WithClientTrace(ctx, trace)))
	if err != nil {
		return nil, c.transportError(ctx, err, wrote.Load())
	}
	defer res.Body.Close()
	limit := c.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
	if err != nil {
		// The provider had started to answer: the request reached it.
		return nil, c.transportError(ctx, err, true)
	}
	if int64(len(body)) > limit {
		return nil, &gateway.Error{Class: gateway.ClassProvider, Code: "RESPONSE_TOO_LARGE", HTTPStatus: res.StatusCode, MaybeSent: true,
			Message: fmt.Sprintf("%s answered more than %d bytes", c.Name, limit)}
	}
	return &Response{Status: res.StatusCode, Header: res.Header, Body: body}, nil
}

// TransportError classifies a failure to get an answer, rebuilt from the failure's kind only:
// never sent when the request was not written, maybe sent when it was. For drivers that send
// through an SDK on the same HTTP client: attach Trace to the call's context to learn wrote.
func (c *Client) TransportError(ctx context.Context, err error, wrote bool) *gateway.Error {
	return c.transportError(ctx, err, wrote)
}

// Trace returns ctx with an httptrace that sets *wrote once a request was written whole.
func Trace(ctx context.Context, wrote *atomic.Bool) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			wrote.Store(true)
		}
	}})
}

func (c *Client) transportError(ctx context.Context, err error, wrote bool) *gateway.Error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return &gateway.Error{Class: gateway.ClassCancelled, Code: "cancelled", Message: "the caller went away"}
	}
	var ne net.Error
	timeout := ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
	if wrote {
		if timeout {
			return &gateway.Error{Class: gateway.ClassProvider, Code: "TIMEOUT", Timeout: true, MaybeSent: true,
				Message: c.Name + " did not answer in time (the request was sent)"}
		}
		return &gateway.Error{Class: gateway.ClassProvider, Code: "CONNECTION_CLOSED", MaybeSent: true,
			Message: c.Name + " closed the connection after the request was sent"}
	}
	var dns *net.DNSError
	var tlsErr *tls.CertificateVerificationError
	var rec tls.RecordHeaderError
	switch {
	case errors.As(err, &dns):
		return &gateway.Error{Class: gateway.ClassProvider, Code: "DNS", Message: "could not resolve " + c.Name + "'s host (not sent)"}
	case timeout:
		return &gateway.Error{Class: gateway.ClassProvider, Code: "CONNECT_TIMEOUT", Timeout: true,
			Message: "could not connect to " + c.Name + " in time (not sent)"}
	case errors.As(err, &tlsErr) || errors.As(err, &rec) || strings.Contains(err.Error(), "tls:") ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// crypto/tls returns alerts and most handshake failures untyped, and net/http replaces
		// the record error of a plain HTTP answer with a text of its own.
		return &gateway.Error{Class: gateway.ClassProvider, Code: "TLS", Message: "TLS handshake with " + c.Name + " failed (not sent)"}
	}
	reason := "connection failed"
	var oe *net.OpError
	if errors.As(err, &oe) {
		reason = oe.Op + " failed"
	}
	return &gateway.Error{Class: gateway.ClassProvider, Code: "CONNECTION", Message: "could not reach " + c.Name + ": " + reason + " (not sent)"}
}

// Post builds a POST of body to url with its content type and the answer type it accepts. A URL
// that cannot be parsed (a bad base_url) is a provider error, so the next provider is tried.
func Post(url, contentType, accept string, body []byte) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, &gateway.Error{Class: gateway.ClassProvider, Code: "BAD_BASE_URL", Message: "request could not be built"}
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", accept)
	return req, nil
}

// Text makes provider text safe for errors and records: secrets removed first, then numbers
// masked and the text cut (gateway.SafeText).
func (c *Client) Text(s string) string { return gateway.SafeText(s, c.Secrets...) }

// Fail is a classified error about an answer: the driver's class, code and text (made safe).
func (c *Client) Fail(res *Response, class gateway.Class, code, text string) *gateway.Error {
	e := &gateway.Error{Class: class, Code: c.Text(code), Message: c.Text(text)}
	if res != nil {
		e.HTTPStatus = res.Status
	}
	if e.Message == "" && res != nil {
		e.Message = http.StatusText(res.Status)
	}
	return e
}

// Classify turns a non-2xx answer into an error. The baseline every provider shares comes first:
// 5xx are provider errors and 429 is throttling (gateway.ClassThrottled, with the answer's
// Retry-After) whatever the body says (the driver's mapping may only name the code). Any other
// status goes to the driver's mapping; nil from it (or a nil mapping) gives a provider error
// HTTP_<status>: most 4xx are the account's or our request's problem, and failing over is the safe
// answer. A body that is not the provider's error shape (HTML from a proxy, empty) therefore
// classifies by status alone.
func (c *Client) Classify(res *Response, own func(*Response) *gateway.Error) *gateway.Error {
	var e *gateway.Error
	if own != nil {
		e = own(res)
	}
	if e == nil {
		e = c.Fail(res, gateway.ClassProvider, fmt.Sprintf("HTTP_%d", res.Status), http.StatusText(res.Status))
	}
	switch {
	case res.Status >= 500:
		e.Class = gateway.ClassProvider
	case res.Status == http.StatusTooManyRequests:
		e.Class = gateway.ClassThrottled
		e.RetryAfter = RetryAfter(res.Header, time.Now())
	}
	e.HTTPStatus = res.Status
	return e
}

// RetryAfter reads a Retry-After header (delay-seconds or an HTTP date, RFC 9110 10.2.3) as a
// wait from now; 0 when there is none, it cannot be read, or it is already past.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// NoID is the error of a 2xx answer that names no message: the provider may or may not send it,
// and nothing could match its delivery report, so it counts as a failure of the provider.
func (c *Client) NoID(res *Response) *gateway.Error {
	return &gateway.Error{Class: gateway.ClassProvider, Code: "BAD_RESPONSE", HTTPStatus: res.Status, MaybeSent: true,
		Message: c.Name + " answered 2xx without a message id"}
}

// Sender is the sender of msg: the request's own (set only when its tenant may choose one), else
// the configured sender for the destination country, else the driver's default.
func Sender(msg *gateway.Message, byCountry map[string]string, def string) string {
	if msg.From != "" {
		return msg.From
	}
	if s, ok := byCountry[msg.Country]; ok {
		return s
	}
	return def
}
