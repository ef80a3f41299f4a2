package kit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/smsgate/smsgate/gateway"
)

func TestClassifyBaselineWins(t *testing.T) {
	c := &Client{Name: "p", Secrets: []string{"s3cr3t-key-1"}}
	recipient := func(r *Response) *gateway.Error {
		return c.Fail(r, gateway.ClassRecipient, "BAD_TO", "bad number s3cr3t-key-1")
	}
	tests := []struct {
		status int
		own    func(*Response) *gateway.Error
		class  gateway.Class
		code   string
	}{
		{400, recipient, gateway.ClassRecipient, "BAD_TO"},
		{503, recipient, gateway.ClassProvider, "BAD_TO"},
		{429, recipient, gateway.ClassThrottled, "BAD_TO"},
		{401, nil, gateway.ClassProvider, "HTTP_401"},
		{418, func(*Response) *gateway.Error { return nil }, gateway.ClassProvider, "HTTP_418"},
	}
	for _, tc := range tests {
		e := c.Classify(&Response{Status: tc.status}, tc.own)
		if e.Class != tc.class || e.Code != tc.code || e.HTTPStatus != tc.status || strings.Contains(e.Message, "s3cr3t") {
			t.Errorf("%d: %+v", tc.status, e)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{"Mon, 30 Nov 2026 12:00:30 GMT", 30 * time.Second},
		{"Mon, 30 Nov 2026 11:59:00 GMT", 0},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Retry-After", tc.header)
		}
		if got := RetryAfter(h, now); got != tc.want {
			t.Errorf("Retry-After %q: %v, want %v", tc.header, got, tc.want)
		}
	}
	c := &Client{Name: "p"}
	e := c.Classify(&Response{Status: 429, Header: http.Header{"Retry-After": {"3"}}}, nil)
	if e.Class != gateway.ClassThrottled || e.RetryAfter != 3*time.Second {
		t.Errorf("429 with Retry-After 3: %+v", e)
	}
	if e := c.Classify(&Response{Status: 503, Header: http.Header{"Retry-After": {"3"}}}, nil); e.Class != gateway.ClassProvider || e.RetryAfter != 0 {
		t.Errorf("503 with Retry-After: %+v (an outage is the breaker's, whatever it asks)", e)
	}
}

func TestBodyIsBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 2048)))
	}))
	defer srv.Close()
	c := &Client{HTTP: srv.Client(), Name: "p", MaxBody: 1024}
	req, _ := http.NewRequest("POST", srv.URL, strings.NewReader("{}"))
	_, err := c.Do(context.Background(), req)
	ge := gateway.AsError(err)
	if ge.Code != "RESPONSE_TOO_LARGE" || !ge.MaybeSent {
		t.Errorf("err = %+v", ge)
	}
	c.MaxBody = 4096
	req, _ = http.NewRequest("POST", srv.URL, strings.NewReader("{}"))
	if res, err := c.Do(context.Background(), req); err != nil || len(res.Body) != 2048 || !res.OK() {
		t.Errorf("res %+v err %v", res, err)
	}
}

func TestCallerCancellationIsNotAProviderFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequest("POST", srv.URL, strings.NewReader("{}"))
	_, err := (&Client{HTTP: srv.Client(), Name: "p"}).Do(ctx, req)
	if gateway.ClassOf(err) != gateway.ClassCancelled {
		t.Errorf("err = %v", err)
	}
}
