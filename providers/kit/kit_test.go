package kit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
		{429, recipient, gateway.ClassProvider, "BAD_TO"},
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
