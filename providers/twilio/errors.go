package twilio

import "github.com/smsgate/smsgate/gateway"

// recipientCodes are Twilio error codes that mean the destination cannot take the message:
// another provider would fail the same way, so the chain stops (HTTP 422 to the caller) and the
// breaker counts a success. Every other code, and every 5xx, 429 or transport failure, is a
// provider problem that fails over. Extend this table as Twilio adds codes.
var recipientCodes = map[int]string{
	21211: "invalid 'To' number",
	21217: "phone number does not appear to be valid",
	21401: "invalid phone number",
	21407: "destination not supported for SMS",
	21421: "phone number is invalid",
	21610: "recipient unsubscribed (replied STOP)",
	21612: "the 'To' number is not reachable via SMS",
	21614: "'To' number is not a valid mobile number",
	21635: "'To' number is a landline",
	60410: "destination prefix blocked by Fraud Guard",
}

// providerCodes are documented here so the attempt record says why; their class is provider.
var providerCodes = map[int]string{
	20003: "authentication failed",
	20404: "resource not found (account sid?)",
	20429: "too many concurrent requests",
	21408: "permission to send to this region is not enabled",
	21606: "'From' number cannot send this message",
	21608: "trial account: number not verified",
	30001: "queue overflow",
}

// classify returns the class of a Twilio error code and a short description.
func classify(code int) (gateway.Class, string) {
	if d, ok := recipientCodes[code]; ok {
		return gateway.ClassRecipient, d
	}
	if d, ok := providerCodes[code]; ok {
		return gateway.ClassProvider, d
	}
	return gateway.ClassProvider, ""
}
