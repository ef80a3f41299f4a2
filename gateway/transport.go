package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
)

// OneLine folds provider text to one line of at most 160 bytes, for errors and attempt records.
func OneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

// TransportError classifies a failure to get an HTTP response from a provider as a provider
// error, rebuilt from the failure's kind only: the original error often quotes the request URL,
// which can hold an account id or a secret, so it is never kept.
func TransportError(ctx context.Context, provider string, err error) *Error {
	var ne net.Error
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &Error{Class: ClassProvider, Code: "TIMEOUT", Message: provider + " did not answer in time", Timeout: true, Err: ctx.Err()}
	}
	reason := "transport error"
	var oe *net.OpError
	switch {
	case errors.As(err, &oe):
		reason = oe.Op + " failed"
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		reason = "connection closed"
	}
	return &Error{Class: ClassProvider, Code: "CONNECTION", Message: "could not reach " + provider + ": " + reason}
}
