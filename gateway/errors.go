package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Class says what kind of failure an error is; the dispatcher decides failover from it.
type Class int

// Error classes; see docs/architecture.md for the table of consequences.
const (
	// ClassProvider is a problem of the provider (5xx, timeout, auth, no credit): fail over, trip the breaker.
	ClassProvider Class = iota
	// ClassRecipient is a problem of the destination (invalid, landline, blocked): stop, the provider is fine.
	ClassRecipient
	// ClassUnavailable means the provider was not called (breaker open, disabled): fail over.
	ClassUnavailable
	// ClassCaller is a bad request from the caller; nothing is sent.
	ClassCaller
	// ClassCancelled means the caller went away; the breaker ignores it.
	ClassCancelled
	// ClassDestination is a problem of this provider with this destination or sender only (a
	// region not enabled on the account, no route to the network, a sender not allowed for the
	// country): another provider may well reach the number, so fail over, but the breaker does not
	// count it (one tenant's odd destinations must not open a breaker every tenant shares) and the
	// caller does not get 422.
	ClassDestination
	// ClassThrottled is the provider refusing for rate (HTTP 429, or its own throttling code):
	// the provider is up but the account's throughput is used up, usually by whoever sends the
	// most. Fail over, but the breaker does not count it (one tenant's flood must not open a
	// breaker every tenant shares); instead the tenant whose send was throttled holds off that
	// provider for a while (dispatch). Error.RetryAfter carries the provider's own wait.
	ClassThrottled
)

// String returns the lower-case name used in JSON, logs and metric labels.
func (c Class) String() string {
	switch c {
	case ClassProvider:
		return "provider"
	case ClassRecipient:
		return "recipient"
	case ClassUnavailable:
		return "unavailable"
	case ClassCaller:
		return "caller"
	case ClassCancelled:
		return "cancelled"
	case ClassDestination:
		return "destination"
	case ClassThrottled:
		return "throttled"
	}
	return "unknown"
}

// Error is a classified failure. Message must never contain a secret, a code or a full number.
type Error struct {
	// Class decides failover and the breaker.
	Class Class
	// Code is the provider's own error or status name ("REJECTED_DESTINATION", "21211"), or ours.
	Code string
	// Message is a short human explanation, safe to log.
	Message string
	// HTTPStatus is the provider's HTTP status, 0 when none was received.
	HTTPStatus int
	// Timeout is true when the provider did not answer in time.
	Timeout bool
	// MaybeSent is true when the request may have reached the provider before it failed (a
	// timeout or a reset after the request was written): the message may have gone out. A request
	// that never left (DNS, refused connection, dial or TLS timeout) is not MaybeSent and is
	// always safe to fail over; a MaybeSent one fails over only where the route allows it.
	MaybeSent bool
	// RetryAfter is how long the provider asked to be left alone (its Retry-After), 0 when it
	// did not say. Only a ClassThrottled error carries it.
	RetryAfter time.Duration
	// Err is the underlying error, already redacted by the driver.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	s := e.Class.String() + " error"
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.HTTPStatus != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.HTTPStatus)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// ErrUnauthenticated is returned by ReportReceiver when a report's credentials or signature are wrong.
var ErrUnauthenticated = errors.New("unauthenticated")

// ErrChallenge is returned by ReportReceiver for a report that carries no credentials where its
// provider sends them only when asked: Amazon SNS sends the user and password of its subscription
// URL only after a 401 with WWW-Authenticate. Answered so, the provider posts the report again.
var ErrChallenge = errors.New("credentials required")

// ClassOf returns the class of err: the class of the first *Error in its chain, ClassCancelled for
// context.Canceled, ClassProvider (with Timeout) for context.DeadlineExceeded, else ClassProvider.
func ClassOf(err error) Class {
	var ge *Error
	if errors.As(err, &ge) {
		return ge.Class
	}
	if errors.Is(err, context.Canceled) {
		return ClassCancelled
	}
	return ClassProvider
}

// AsError returns err as a *Error, wrapping unclassified errors as provider errors.
func AsError(err error) *Error {
	var ge *Error
	if errors.As(err, &ge) {
		return ge
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Class: ClassProvider, Code: "timeout", Message: "provider did not answer in time", Timeout: true, MaybeSent: true, Err: err}
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Class: ClassCancelled, Code: "cancelled", Message: "request cancelled", Err: err}
	}
	return &Error{Class: ClassProvider, Message: "provider call failed", Err: err}
}
