package twilio

import "github.com/smsgate/smsgate/gateway"

// The error table: every Twilio code smsgate knows, its class and a short description for the
// attempt record. A code not listed is a provider error (fail over, counted by the breaker), as is
// every 5xx, 429 or transport failure whatever its code. Extend it as Twilio adds codes.
//
//   - recipient: the number cannot take the message; another provider would fail the same way, so
//     the chain stops (422 to the caller) and the breaker counts a success.
//   - destination: Twilio, on this account, cannot reach this destination or use this sender for
//     it; another provider may: fail over, breaker untouched, no 422.
//   - provider: the account or Twilio is the problem: fail over, counted by the breaker.
var codes = map[int]struct {
	class gateway.Class
	desc  string
}{
	21211: {gateway.ClassRecipient, "invalid 'To' number"},
	21217: {gateway.ClassRecipient, "phone number does not appear to be valid"},
	21401: {gateway.ClassRecipient, "invalid phone number"},
	21407: {gateway.ClassRecipient, "destination not supported for SMS"},
	21421: {gateway.ClassRecipient, "phone number is invalid"},
	21610: {gateway.ClassRecipient, "recipient unsubscribed (replied STOP)"},
	21614: {gateway.ClassRecipient, "'To' number is not a valid mobile number"},
	21635: {gateway.ClassRecipient, "'To' number is a landline"},
	60410: {gateway.ClassRecipient, "destination prefix blocked by Fraud Guard"},

	21408: {gateway.ClassDestination, "permission to send to this region is not enabled"},
	21612: {gateway.ClassDestination, "Twilio cannot route to this number from this sender"},
	21606: {gateway.ClassDestination, "the 'From' number cannot send to this destination"},
	21659: {gateway.ClassDestination, "the sender is not allowed for this destination"},

	20003: {gateway.ClassProvider, "authentication failed"},
	20404: {gateway.ClassProvider, "resource not found (account sid?)"},
	20429: {gateway.ClassThrottled, "too many concurrent requests"},
	21608: {gateway.ClassProvider, "trial account: number not verified"},
	30001: {gateway.ClassProvider, "queue overflow"},
}

// classify returns the class of a Twilio error code and a short description ("" when unknown).
func classify(code int) (gateway.Class, string) {
	if c, ok := codes[code]; ok {
		return c.class, c.desc
	}
	return gateway.ClassProvider, ""
}
