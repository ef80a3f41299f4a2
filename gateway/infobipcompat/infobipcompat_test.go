package infobipcompat

import (
	"strings"
	"testing"
	"time"
)

// TestThrottlingIsAnsweredAsRateLimiting: a destination every provider throttled for this tenant
// (provider_throttled) is reported like one a rate limit refused, and when none was sent the
// answer is 429 with the longest Retry-After, as for rate limits.
func TestThrottlingIsAnsweredAsRateLimiting(t *testing.T) {
	if s := StatusFor(429, "provider_throttled"); s != RejectedRateLimit {
		t.Errorf("StatusFor = %+v", s)
	}
	rs := []Result{
		{HTTPStatus: 429, Code: "provider_throttled", RetryAfter: 30 * time.Second, Status: RejectedRateLimit},
		{HTTPStatus: 429, Code: "rate_limited", RetryAfter: 5 * time.Second, Status: RejectedRateLimit},
	}
	status, body, wait := Answer(SMSv2, "", rs)
	if status != 429 || wait != 30*time.Second || !strings.Contains(string(body), "TOO_MANY_REQUESTS") {
		t.Errorf("Answer = %d %s %v", status, body, wait)
	}
}
