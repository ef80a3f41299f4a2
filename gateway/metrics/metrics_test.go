package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestLatencyOnlyOfCallsMade: attempts that never called the provider are counted but add no
// zero to its latency; calls it answered, whatever the answer, do.
func TestLatencyOnlyOfCallsMade(t *testing.T) {
	m := New()
	for _, o := range []string{"skipped", "unavailable", "throttled"} {
		m.OnAttempt("p", o, 0)
	}
	m.OnAttempt("p", "cancelled", 40*time.Millisecond)
	m.OnAttempt("p", "sent", 20*time.Millisecond)
	m.OnAttempt("p", "throttled", 15*time.Millisecond)
	if n := testutil.CollectAndCount(m.ProviderLatency); n != 1 {
		t.Fatalf("%d latency series, want 1", n)
	}
	h := testutil.ToFloat64(m.Attempts.WithLabelValues("p", "throttled"))
	if h != 2 {
		t.Errorf("throttled attempts counted %v, want 2", h)
	}
	// Two observations: the sent and the answered throttled call, 35 ms in all.
	mf, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range mf {
		if f.GetName() != "smsgate_provider_latency_seconds" {
			continue
		}
		hs := f.GetMetric()[0].GetHistogram()
		if hs.GetSampleCount() != 2 || hs.GetSampleSum() < 0.0349 || hs.GetSampleSum() > 0.0351 {
			t.Errorf("latency: %d observations summing to %v s, want 2 and 0.035", hs.GetSampleCount(), hs.GetSampleSum())
		}
		return
	}
	t.Error("no smsgate_provider_latency_seconds")
}
