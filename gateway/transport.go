package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
)

// OneLine makes provider text safe and short for errors and attempt records: runs of 6 or more
// digits (providers quote the phone number: "The 'To' number +1415... is not valid") are masked,
// and the text is folded to one line of at most 160 bytes.
func OneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		switch {
		case j-i >= 6:
			b.WriteString(strings.Repeat("*", j-i))
			i = j
		case j > i:
			b.WriteString(s[i:j])
			i = j
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	s = b.String()
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
