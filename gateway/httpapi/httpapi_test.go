package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/labstack/echo/v4"

	"github.com/smsgate/smsgate/gateway/policy"
	"github.com/smsgate/smsgate/gateway/store"
)

// stubBackend answers from fields; only what a test sets is used.
type stubBackend struct {
	send    func(SendRequest) Reply
	reports error
	reload  error
	got     SendRequest
	ib      InfobipCall
	// records answers Messages (nil: the message log fails); query is what it was asked.
	records []*store.Record
	query   store.Query
	// reportURL is the URL Reports was given.
	reportURL string
	// messagesErr, when set, is Messages' error; providers answers Providers, and country is
	// what it was asked; disable, when set, answers SetProviderDisabled (nil: ErrNotFound).
	messagesErr error
	providers   []ProviderStatus
	country     string
	disable     func(name string, disabled bool) error
	// verified answers Verified (nil: store.ErrNotFound); metrics serves GET /metrics (nil:
	// the metrics have a listener of their own).
	verified error
	metrics  http.Handler
	// adminOff: no admin token is set (Admin answers enabled false).
	adminOff bool
}

func (s *stubBackend) Verified(context.Context, string, string) error {
	if s.verified == nil {
		return store.ErrNotFound
	}
	return s.verified
}
func (s *stubBackend) Quarantines(context.Context) ([]policy.Quarantine, error) { return nil, nil }
func (s *stubBackend) ReleaseQuarantine(context.Context, string, string) error  { return ErrNotFound }
func (s *stubBackend) Tenants(context.Context) ([]TenantStatus, error)          { return nil, nil }

func (s *stubBackend) Infobip(_ context.Context, c InfobipCall) Reply {
	s.ib = c
	return Reply{Status: 200, Body: []byte(`{}`)}
}

func (s *stubBackend) Send(_ context.Context, r SendRequest) Reply { s.got = r; return s.send(r) }
func (s *stubBackend) Authenticate(k string) (Tenant, bool)        { return Tenant{Name: "t"}, k == "good" }
func (s *stubBackend) Message(context.Context, string, string) (*store.Record, error) {
	return nil, store.ErrNotFound
}
func (s *stubBackend) Messages(_ context.Context, q store.Query) ([]*store.Record, error) {
	s.query = q
	if s.messagesErr != nil {
		return nil, s.messagesErr
	}
	if s.records == nil {
		return nil, errors.New("disk on fire")
	}
	if len(s.records) == 0 {
		return nil, nil // as the stores answer an empty page
	}
	return s.records[:min(len(s.records), q.Limit)], nil
}
func (s *stubBackend) Reports(_ context.Context, _, _ string, _ *http.Request, _ []byte, url string) error {
	s.reportURL = url
	return s.reports
}
func (s *stubBackend) Providers(country string) []ProviderStatus {
	s.country = country
	return s.providers
}
func (s *stubBackend) SetProviderDisabled(name string, disabled bool) error {
	if s.disable == nil {
		return ErrNotFound
	}
	return s.disable(name, disabled)
}
func (s *stubBackend) Reload(context.Context) error  { return s.reload }
func (s *stubBackend) Ready() (bool, string)         { return false, "no providers" }
func (s *stubBackend) Admin(tok string) (bool, bool) { return !s.adminOff, !s.adminOff && tok == "adm" }
func (s *stubBackend) PublicURL() string             { return "" }
func (s *stubBackend) MaxBodyBytes() int64           { return 100 }
func (s *stubBackend) Metrics() http.Handler         { return s.metrics }

func do(t *testing.T, b Backend, method, path, auth, body string) (*http.Response, string) {
	t.Helper()
	srv := httptest.NewServer(New(b, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res, string(raw)
}

func TestErrorsAreJSONWithStableCodes(t *testing.T) {
	b := &stubBackend{send: func(r SendRequest) Reply {
		if strings.Contains(string(r.Body), "panic") {
			panic("boom")
		}
		if r.APIKey == "" { // the backend answers a call without a key, and counts it
			return Reply{Status: 401, Body: ErrorJSON("unauthorized", MissingKey)}
		}
		return Reply{Status: 429, Body: ErrorJSON("rate_limited", "slow down"), RetryAfter: 1500 * time.Millisecond}
	}}
	tests := []struct {
		name, method, path, auth, body string
		status                         int
		want                           string
	}{
		{"no key", "POST", "/v1/send-phone-message", "", "{}", 401, `{"error":{"code":"unauthorized","message":"missing Authorization: Bearer \u003capi key\u003e"}}`},
		{"basic instead of bearer", "POST", "/v1/send-phone-message", "Basic eDp5", "{}", 401, `{"error":{"code":"unauthorized","message":"missing Authorization: Bearer \u003capi key\u003e"}}`},
		{"body over the limit", "POST", "/v1/send-phone-message", "Bearer good", strings.Repeat("x", 101), 413, `{"error":{"code":"body_too_large","message":"the body is larger than 100 bytes"}}`},
		{"a panic is a JSON 500, not a dropped connection", "POST", "/v1/send-phone-message", "Bearer good", "panic", 500, `{"error":{"code":"internal","message":"internal error"}}`},
		{"unknown path", "GET", "/v2/anything", "", "", 404, `{"error":{"code":"not_found","message":"no such endpoint"}}`},
		{"wrong method", "PUT", "/v1/send-phone-message", "", "", 405, `{"error":{"code":"method_not_allowed","message":"method not allowed on this endpoint"}}`},
		{"store down", "GET", "/v1/messages", "Bearer good", "", 503, `{"error":{"code":"store_unavailable","message":"the message log could not be read"}}`},
		{"admin with a tenant key", "GET", "/v1/providers", "Bearer good", "", 401, `{"error":{"code":"unauthorized","message":"admin endpoints need Authorization: Bearer \u003cserver.admin_token\u003e"}}`},
		{"drain an unknown provider", "POST", "/v1/providers/nope/disable", "Bearer adm", "", 404, `{"error":{"code":"not_found","message":"no provider with this name"}}`},
		{"not ready", "GET", "/readyz", "", "", 503, `{"reason":"no providers","status":"not ready"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, body := do(t, b, tc.method, tc.path, tc.auth, tc.body)
			if res.StatusCode != tc.status || strings.TrimSpace(body) != tc.want {
				t.Errorf("got %d %s, want %d %s", res.StatusCode, body, tc.status, tc.want)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content type %q", ct)
			}
		})
	}
	res, _ := do(t, b, "POST", "/v1/send-phone-message", "Bearer good", `{"ok":1}`)
	if res.StatusCode != 429 || res.Header.Get("Retry-After") != "2" {
		t.Errorf("Retry-After rounds up: %d %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
}

func TestSendPassesHeaders(t *testing.T) {
	b := &stubBackend{send: func(SendRequest) Reply { return Reply{Status: 200, Body: []byte(`{}`)} }}
	srv := httptest.NewServer(New(b, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/send-phone-message", strings.NewReader(`{"a":1}`))
	req.Header.Set("Authorization", "bearer  k1 ")
	req.Header.Set("Idempotency-Key", "idem-1")
	req.Header.Set("X-Request-Id", "rid-1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	want := SendRequest{APIKey: "k1", Body: []byte(`{"a":1}`), IdempotencyKey: "idem-1", RequestID: "rid-1"}
	if diff := cmp.Diff(want, b.got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestReportErrorsMap(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{{nil, 200, ""}, {ErrNotFound, 404, "not_found"}, {ErrMethodNotAllowed, 405, "method_not_allowed"}, {ErrMediaType, 415, "unsupported_media_type"},
		{ErrUnauthenticated, 403, "forbidden"}, {ErrChallenge, 401, "unauthorized"}, {ErrBadRequest, 400, "invalid_report"},
		{ErrReportUnavailable, 503, "report_unavailable"}, {errors.New("disk"), 503, "store_unavailable"}} {
		res, body := do(t, &stubBackend{reports: tc.err}, "POST", "/v1/dlr/infobip/x", "", "{}")
		if res.StatusCode != tc.status || tc.code != "" && !strings.Contains(body, `"code":"`+tc.code+`"`) {
			t.Errorf("%v: %d %s, want %d %s", tc.err, res.StatusCode, body, tc.status, tc.code)
		}
	}
	if res, _ := do(t, &stubBackend{}, "POST", "/v1/dlr/infobip/x", "", strings.Repeat(" ", 200<<10)); res.StatusCode != 200 {
		t.Errorf("a 200 KiB report batch (over max_body_bytes, under 1 MiB) got %d", res.StatusCode)
	}
	if res, _ := do(t, &stubBackend{}, "POST", "/v1/dlr/infobip/x", "", strings.Repeat(" ", 2<<20)); res.StatusCode != 413 {
		t.Errorf("a 2 MiB report got %d", res.StatusCode)
	}
	res, body := do(t, &stubBackend{reload: errors.New("a.yaml:3: x: bad\na.yaml:4: y: bad")}, "POST", "/v1/admin/reload", "Bearer adm", "")
	if res.StatusCode != 422 || !strings.Contains(body, `"problems":["a.yaml:3: x: bad","a.yaml:4: y: bad"]`) {
		t.Errorf("reload: %d %s", res.StatusCode, body)
	}
}

// TestInfobipCredentials: the key is read as every Infobip client sends it.
func TestInfobipCredentials(t *testing.T) {
	for _, tc := range []struct{ name, method, path, auth, want string }{
		{"App", "POST", "/sms/2/text/advanced", "App k-1", "k-1"},
		{"Bearer", "POST", "/sms/3/messages", "Bearer k-2", "k-2"},
		{"Basic password", "POST", "/tts/3/advanced", "Basic " + base64.StdEncoding.EncodeToString([]byte("user:k-3")), "k-3"},
		{"query password on text/query", "GET", "/sms/1/text/query?username=u&password=k-4&to=1&text=x", "", "k-4"},
		{"App with spaces around the key", "POST", "/sms/2/text/advanced", "App   k-6 ", "k-6"},
		{"query password elsewhere is ignored", "GET", "/sms/1/reports?password=k-5", "", ""},
		{"none", "GET", "/sms/3/logs", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &stubBackend{}
			res, _ := do(t, b, tc.method, tc.path, tc.auth, "{}")
			if res.StatusCode != 200 || b.ib.Key != tc.want || b.ib.Path == "" {
				t.Errorf("status %d key %q path %q, want key %q", res.StatusCode, b.ib.Key, b.ib.Path, tc.want)
			}
		})
	}
}

// TestMessagesQueryEdges: limit above 500, a since that is a negative duration and a cursor
// without an id are refused; an empty page is [] with no cursor, and a cursor comes only with a
// full page (a shorter one is the last).
func TestMessagesQueryEdges(t *testing.T) {
	for _, q := range []string{"limit=501", "limit=0", "since=-1h", "since=0s", "cursor=1796040000000.", "status=sending", "cursor=%zz"} {
		if res, body := do(t, &stubBackend{records: []*store.Record{}}, "GET", "/v1/messages?"+q, "Bearer good", ""); res.StatusCode != 400 ||
			!strings.Contains(body, `"invalid_query"`) {
			t.Errorf("%s: %d %s", q, res.StatusCode, body)
		}
	}
	b := &stubBackend{records: []*store.Record{}}
	if do(t, b, "GET", "/v1/messages", "Bearer good", ""); b.query.Limit != 50 {
		t.Errorf("a page without a limit asked for %d messages, want the documented 50", b.query.Limit)
	}
	do(t, b, "GET", "/v1/messages?since=1h", "Bearer good", "")
	if ago := time.Since(b.query.Since); ago < time.Hour || ago > time.Hour+time.Minute {
		t.Errorf("since=1h asked from %v ago", ago)
	}
	if _, body := do(t, &stubBackend{records: []*store.Record{}}, "GET", "/v1/messages", "Bearer good", ""); !strings.Contains(body, `"messages":[]`) ||
		strings.Contains(body, "next_cursor") {
		t.Errorf("an empty page: %s", body)
	}
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	recs := []*store.Record{{ID: "msg_1", CreatedAt: at}, {ID: "msg_2", CreatedAt: at}}
	if _, body := do(t, &stubBackend{records: recs}, "GET", "/v1/messages?limit=3", "Bearer good", ""); strings.Contains(body, "next_cursor") {
		t.Errorf("a page shorter than the limit has a cursor: %s", body)
	}
	if _, body := do(t, &stubBackend{records: recs}, "GET", "/v1/messages?limit=2", "Bearer good", ""); !strings.Contains(body, `"next_cursor":"`+strconv.FormatInt(at.UnixMilli(), 10)+`.msg_2"`) {
		t.Errorf("a full page: %s", body)
	}
	if _, body := do(t, &stubBackend{records: recs[:1]}, "GET", "/v1/messages?limit=1", "Bearer good", ""); !strings.Contains(body, `"next_cursor":"`+strconv.FormatInt(at.UnixMilli(), 10)+`.msg_1"`) {
		t.Errorf("a full page of one: %s", body)
	}
	// The cursor a page gave asks for what comes before that very message, to the millisecond.
	do(t, b, "GET", "/v1/messages?limit=2&cursor="+strconv.FormatInt(at.UnixMilli(), 10)+".msg_2", "Bearer good", "")
	if want := (store.Cursor{CreatedAt: at, ID: "msg_2"}); b.query.Before == nil || *b.query.Before != want {
		t.Errorf("a cursor was read as %+v, want %+v", b.query.Before, want)
	}
}

// TestRequestIDIsBounded: a caller's X-Request-Id is cut to 128 bytes, and never inside a
// character (the id reaches logs and JSON).
func TestRequestIDIsBounded(t *testing.T) {
	b := &stubBackend{send: func(SendRequest) Reply { return Reply{Status: 200, Body: []byte(`{}`)} }}
	srv := httptest.NewServer(New(b, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	for _, rid := range []string{strings.Repeat("a", 200), strings.Repeat("c", 129), strings.Repeat("a", 127) + "é" + strings.Repeat("b", 10)} {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/send-phone-message", strings.NewReader(`{}`))
		req.Header.Set("X-Request-Id", rid)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		got := res.Header.Get("X-Request-Id")
		if len(got) > 128 || !utf8.ValidString(got) || !strings.HasPrefix(rid, got) || len(got) < 127 || b.got.RequestID != got {
			t.Errorf("X-Request-Id of %d bytes: answered %q (%d bytes), passed on %q", len(rid), got, len(got), b.got.RequestID)
		}
	}
}

// TestReportsBehindTLSAreSignedAsHTTPS: without server.public_url, the URL a provider signed is
// rebuilt from the request: https when it came over TLS. And a challenge asks for basic auth.
func TestReportsBehindTLSAreSignedAsHTTPS(t *testing.T) {
	b := &stubBackend{}
	srv := httptest.NewTLSServer(New(b, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	res, err := srv.Client().Post(srv.URL+"/v1/dlr/twilio/tw?x=1", "application/x-www-form-urlencoded", strings.NewReader("a=b"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if want := srv.URL + "/v1/dlr/twilio/tw?x=1"; b.reportURL != want || !strings.HasPrefix(want, "https://") {
		t.Errorf("report URL %q, want %q", b.reportURL, want)
	}
	res, _ = do(t, &stubBackend{reports: ErrChallenge}, "POST", "/v1/dlr/aws-sms-voice/eum", "", "{}")
	if got := res.Header.Get("WWW-Authenticate"); res.StatusCode != 401 || !strings.HasPrefix(got, "Basic ") {
		t.Errorf("challenge: %d, WWW-Authenticate %q", res.StatusCode, got)
	}
}

// TestACallerCannotNameItsOwnAddressOrScheme: headers a caller writes (X-Forwarded-For,
// X-Real-IP, X-Forwarded-Proto) are not who or where it is. No handler reads the caller's address
// today; the vulnerability database lists echo v4 as trusting the first two in RealIP with no fixed
// version (GO-2026-6872), while v4.16.6 reads the connection unless an IPExtractor says otherwise.
// This holds that for a handler that comes to read the address, whatever echo's default becomes.
// A report's URL, which a provider's signature covers, keeps the connection's scheme.
func TestACallerCannotNameItsOwnAddressOrScheme(t *testing.T) {
	b := &stubBackend{}
	e := New(b, slog.New(slog.DiscardHandler))
	e.GET("/test/address", func(c echo.Context) error { return c.String(http.StatusOK, c.RealIP()) })
	srv := httptest.NewServer(e)
	defer srv.Close()
	spoof := func(method, path string) string {
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader("a=b"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", "198.51.100.7, 203.0.113.9")
		req.Header.Set("X-Real-IP", "198.51.100.8")
		req.Header.Set("X-Forwarded-Proto", "https")
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return string(body)
	}
	if got := spoof("GET", "/test/address"); got != "127.0.0.1" {
		t.Errorf("the caller's address read as %q, want the connection's, 127.0.0.1", got)
	}
	spoof("POST", "/v1/dlr/twilio/tw")
	if want := srv.URL + "/v1/dlr/twilio/tw"; b.reportURL != want {
		t.Errorf("report URL %q, want %q (the connection's scheme)", b.reportURL, want)
	}
}

// TestAnAbortedHandlerAbortsTheConnection: http.ErrAbortHandler is net/http's way to drop a
// response; the recovery lets it through instead of answering a 500.
func TestAnAbortedHandlerAbortsTheConnection(t *testing.T) {
	b := &stubBackend{send: func(SendRequest) Reply { panic(http.ErrAbortHandler) }}
	srv := httptest.NewServer(New(b, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	res, err := http.Post(srv.URL+"/v1/send-phone-message", "application/json", strings.NewReader(`{}`))
	if err == nil {
		res.Body.Close()
		t.Errorf("an aborted handler answered %d", res.StatusCode)
	}
}

// TestBodiesOverTheLimit: a body sent without a length (chunked) is cut at the limit and refused
// as too large, not as unreadable; the Infobip-compatible endpoints keep max_body_bytes too.
func TestBodiesOverTheLimit(t *testing.T) {
	b := &stubBackend{send: func(SendRequest) Reply { return Reply{Status: 200, Body: []byte(`{}`)} }}
	srv := httptest.NewServer(New(b, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	for _, path := range []string{"/v1/send-phone-message", "/sms/2/text/advanced"} {
		for _, size := range []int{100, 101} {
			// A reader of unknown length: the client sends it chunked, with no Content-Length.
			body := io.MultiReader(strings.NewReader(strings.Repeat("x", size)))
			req, _ := http.NewRequest("POST", srv.URL+path, body)
			req.Header.Set("Authorization", "Bearer good")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if req.ContentLength != 0 && req.ContentLength != -1 {
				t.Fatalf("the request has a length (%d): the case needs none", req.ContentLength)
			}
			want := 200
			if size > 100 {
				want = 413
			}
			if res.StatusCode != want || want == 413 && !strings.Contains(string(raw), `"code":"body_too_large"`) {
				t.Errorf("%s, %d bytes chunked: %d %s, want %d", path, size, res.StatusCode, raw, want)
			}
		}
	}
}

// TestRetryAfterIsAtLeastASecond: Retry-After is whole seconds, so a wait under one, or none
// given, is answered 1, never 0 (a client would retry at once).
func TestRetryAfterIsAtLeastASecond(t *testing.T) {
	b := &stubBackend{send: func(SendRequest) Reply {
		return Reply{Status: 429, Body: ErrorJSON("rate_limited", "slow down"), RetryAfter: 300 * time.Millisecond}
	}}
	if res, _ := do(t, b, "POST", "/v1/send-phone-message", "Bearer good", "{}"); res.Header.Get("Retry-After") != "1" {
		t.Errorf("a send's 300 ms: Retry-After %q", res.Header.Get("Retry-After"))
	}
	b = &stubBackend{messagesErr: &RateLimited{Message: "too many reads"}}
	res, body := do(t, b, "GET", "/v1/messages", "Bearer good", "")
	if res.StatusCode != 429 || res.Header.Get("Retry-After") != "1" || !strings.Contains(body, `"code":"rate_limited"`) {
		t.Errorf("a read limited without a wait: %d Retry-After %q %s", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
}

// TestAdminEndpointsAnswer: the country a provider listing asks for is upper-cased and checked
// (001, the non-geographic numbers, too); a drain answers the drained provider's row and maps
// each refusal; a release of no quarantine is a 404.
func TestAdminEndpointsAnswer(t *testing.T) {
	b := &stubBackend{providers: []ProviderStatus{{Name: "a", State: "closed"}, {Name: "b", State: "closed", Disabled: true}}}
	for q, want := range map[string]string{"gb": "GB", "001": "001", "": ""} {
		b.country = "unset"
		if res, body := do(t, b, "GET", "/v1/providers?country="+q, "Bearer adm", ""); res.StatusCode != 200 || b.country != want {
			t.Errorf("country=%s: %d %s, asked for %q, want %q", q, res.StatusCode, body, b.country, want)
		}
	}
	for _, q := range []string{"GBR", "G1", "002"} {
		if res, body := do(t, b, "GET", "/v1/providers?country="+q, "Bearer adm", ""); res.StatusCode != 400 || !strings.Contains(body, `"invalid_query"`) {
			t.Errorf("country=%s: %d %s", q, res.StatusCode, body)
		}
	}
	for _, tc := range []struct {
		err    error
		status int
		want   string
	}{
		{nil, 200, `"name":"b"`},
		{ErrDisabledInConfig, 409, `"code":"disabled_in_config"`},
		{ErrStateUnavailable, 503, `"code":"policy_unavailable"`},
		{ErrNotFound, 404, `"code":"not_found"`},
	} {
		b.disable = func(string, bool) error { return tc.err }
		if res, body := do(t, b, "POST", "/v1/providers/b/disable", "Bearer adm", ""); res.StatusCode != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("drain answering %v: %d %s, want %d %s", tc.err, res.StatusCode, body, tc.status, tc.want)
		}
	}
	if res, body := do(t, b, "DELETE", "/v1/admin/quarantines/acme/4479", "Bearer adm", ""); res.StatusCode != 404 || !strings.Contains(body, `"code":"not_found"`) {
		t.Errorf("release of no quarantine: %d %s", res.StatusCode, body)
	}
}

// TestEveryAdminRouteNeedsTheAdminToken: each route under /v1/admin/ and /v1/providers, found
// in the router rather than listed here (a route added later is held too), answers 401 without
// the admin token or with another, and 404 admin_disabled when no admin token is set. A tenant's
// key is not the admin token: reloading the config, reading every tenant's spend, releasing a
// quarantine or draining a provider touches every tenant.
func TestEveryAdminRouteNeedsTheAdminToken(t *testing.T) {
	var routes []*echo.Route
	for _, r := range New(&stubBackend{}, slog.New(slog.DiscardHandler)).Routes() {
		if strings.HasPrefix(r.Path, "/v1/admin/") || strings.HasPrefix(r.Path, "/v1/providers") {
			routes = append(routes, r)
		}
	}
	if len(routes) < 7 {
		t.Fatalf("found %d admin routes, want at least the 7 documented", len(routes))
	}
	param := regexp.MustCompile(`:[a-zA-Z]+`)
	for _, r := range routes {
		path := param.ReplaceAllString(r.Path, "x")
		for _, auth := range []string{"", "Bearer good", "Bearer adm2", "adm"} {
			if res, body := do(t, &stubBackend{}, r.Method, path, auth, ""); res.StatusCode != 401 || !strings.Contains(body, `"code":"unauthorized"`) {
				t.Errorf("%s %s with %q: %d %s, want 401 unauthorized", r.Method, path, auth, res.StatusCode, body)
			}
		}
		if res, body := do(t, &stubBackend{adminOff: true}, r.Method, path, "Bearer adm", ""); res.StatusCode != 404 || !strings.Contains(body, `"code":"admin_disabled"`) {
			t.Errorf("%s %s with no admin token set: %d %s, want 404 admin_disabled", r.Method, path, res.StatusCode, body)
		}
	}
}

// TestReadsAnswer: a read without a key says the key is missing (as a send does), Verified's
// refusals map to their codes, and /metrics is served on this listener only when the backend
// has no listener of its own for it.
func TestReadsAnswer(t *testing.T) {
	res, body := do(t, &stubBackend{}, "GET", "/v1/messages/msg_1", "", "")
	if res.StatusCode != 401 || !strings.Contains(body, `"message":"missing Authorization: Bearer \u003capi key\u003e"`) {
		t.Errorf("a read without a key: %d %s", res.StatusCode, body)
	}
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{{ErrNotSent, 409, "not_sent"}, {store.ErrNotFound, 404, "not_found"}, {errors.New("disk"), 503, "store_unavailable"}} {
		res, body := do(t, &stubBackend{verified: tc.err}, "POST", "/v1/messages/msg_1/verified", "Bearer good", "")
		if res.StatusCode != tc.status || !strings.Contains(body, `"code":"`+tc.code+`"`) {
			t.Errorf("verified answering %v: %d %s, want %d %s", tc.err, res.StatusCode, body, tc.status, tc.code)
		}
	}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "smsgate_up 1\n") })
	if res, body := do(t, &stubBackend{metrics: metrics}, "GET", "/metrics", "", ""); res.StatusCode != 200 || body != "smsgate_up 1\n" {
		t.Errorf("GET /metrics with the metrics on this listener: %d %q", res.StatusCode, body)
	}
	if res, _ := do(t, &stubBackend{}, "GET", "/metrics", "", ""); res.StatusCode != 404 {
		t.Errorf("GET /metrics with a metrics listener of its own: %d", res.StatusCode)
	}
}
