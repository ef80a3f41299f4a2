package kit

import (
	"testing"

	"github.com/smsgate/smsgate/gateway"
)

// TestReadings: a call says a code twice and a text without one once, as spend limits count it;
// Twice follows it.
func TestReadings(t *testing.T) {
	for _, tc := range []struct {
		msg  gateway.Message
		want int
	}{
		{gateway.Message{Code: "4271"}, 2},
		{gateway.Message{Text: "Your code is 482913"}, 2},
		{gateway.Message{Text: "Your appointment is tomorrow."}, 1},
	} {
		if got := Readings(&tc.msg); got != tc.want {
			t.Errorf("Readings(%+v) = %d, want %d", tc.msg, got, tc.want)
		}
		if got, want := Twice(&tc.msg, "s"), map[int]string{1: "s", 2: "s s"}[tc.want]; got != want {
			t.Errorf("Twice(%+v) = %q, want %q", tc.msg, got, want)
		}
	}
}
