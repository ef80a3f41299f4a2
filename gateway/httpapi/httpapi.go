// Package httpapi is smsgate's HTTP surface and the only package that imports echo. It maps
// requests to the Backend (implemented by gateway/app), bounds bodies, authenticates, and turns
// every failure into a JSON error {"error":{"code","message"}} with a stable code: bad input never
// becomes a 500, and echo's own errors go through a custom error handler.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/smsgate/smsgate/docs"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/gateway/policy"
	"github.com/smsgate/smsgate/gateway/store"
)

// Reply is a finished answer: status, JSON body, and Retry-After when set.
type Reply struct {
	Status     int
	Body       []byte
	RetryAfter time.Duration
}

// Tenant is an authenticated caller.
type Tenant struct{ Name string }

// SendRequest is one POST /v1/send-phone-message.
type SendRequest struct {
	APIKey         string
	Body           []byte
	IdempotencyKey string
	RequestID      string
}

// ProviderStatus is one row of GET /v1/providers.
type ProviderStatus struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Sends are the message types the provider can send, as configured.
	Sends []string `json:"sends"`
	// VoiceLanguages and Countries restrict it when set.
	VoiceLanguages []string `json:"voice_languages,omitempty"`
	Countries      []string `json:"countries,omitempty"`
	// Delivery is its delivery health per destination country (routing.delivery_health).
	Delivery []CountryHealth `json:"delivery,omitempty"`
	// VoiceDelivery is the same for its voice calls (answered among answered, failed and
	// unreported: a call nobody answered does not count).
	VoiceDelivery []CountryHealth `json:"voice_delivery,omitempty"`
	// Prices are its prices per message and country ("*": its default) in the reporting
	// currency; VoicePrices, its prices per voice call (configured only).
	Prices      []CountryPrice `json:"prices,omitempty"`
	VoicePrices []CountryPrice `json:"voice_prices,omitempty"`
	// Throughput is the account's rate the gateway keeps to (providers[].throughput) and
	// TenantShare the most of it one tenant may use; both absent when unbounded.
	Throughput      string  `json:"throughput,omitempty"`
	VoiceThroughput string  `json:"voice_throughput,omitempty"`
	TenantShare     float64 `json:"tenant_share,omitempty"`
	// Cost is its price and least-cost rank for the country asked for (?country=CC).
	Cost *Cost `json:"cost,omitempty"`
	// Reports describes its delivery-report endpoint; nil when it takes none.
	Reports *ReportEndpoint `json:"reports,omitempty"`
	// State is the worse of the channels' breakers; Breakers, each channel's (sms, voice).
	State    string            `json:"state"`
	Breakers map[string]string `json:"breakers"`
	// TenantBreakers are the tenants' own breakers of this provider that are not closed: the
	// provider failed for that tenant's sends alone (see dispatch's owns).
	TenantBreakers []TenantBreaker `json:"tenant_breakers,omitempty"`
	Disabled       bool            `json:"disabled"`
	Attempts       int             `json:"recent_attempts"`
	SuccessRatio   float64         `json:"recent_success_ratio"`
	AvgLatencyMS   float64         `json:"recent_avg_latency_ms"`
	LastErrorClass string          `json:"last_error_class,omitempty"`
	LastErrorAt    string          `json:"last_error_at,omitempty"`
}

// TenantBreaker is one tenant's own breaker of a provider's channel, when it is not closed.
type TenantBreaker struct {
	Tenant  string `json:"tenant"`
	Channel string `json:"channel"`
	State   string `json:"state"`
}

// TenantStatus is what GET /v1/admin/tenants shows of one tenant.
type TenantStatus struct {
	Name string `json:"name"`
	// InFlight are its sends running on this replica (server.max_in_flight shares them out).
	InFlight int64 `json:"in_flight"`
	// Spend is its spend limit's bucket; nil without a limit.
	Spend *SpendStatus `json:"spend,omitempty"`
}

// SpendStatus is a tenant's spend limit (rate_limits.spend) and what it has used of it.
type SpendStatus struct {
	Limit string `json:"limit"`
	// Used is what the bucket has spent and not yet refilled, in Currency; above the limit's
	// amount the tenant's sends are refused.
	Used     float64 `json:"used"`
	Currency string  `json:"currency"`
}

// CountryHealth is a provider's delivery rate to one country over the health window.
type CountryHealth struct {
	Country string `json:"country"`
	// Rate is every tenant's messages together; TenantRate, the weighted median of the tenants'
	// rates, is what demotes and restores.
	Rate       float64 `json:"rate"`
	TenantRate float64 `json:"tenant_rate"`
	Samples    int     `json:"samples"`
	Demoted    bool    `json:"demoted"`
}

// CountryPrice is a provider's price for one country (routing.least_cost).
type CountryPrice struct {
	Country  string  `json:"country"`
	Price    float64 `json:"price"`
	Currency string  `json:"currency"`
	// Source is reported (a moving average of delivery reports), configured or default.
	Source  string `json:"source"`
	Reports int    `json:"reports,omitempty"`
}

// Cost is a provider's price for one country and its rank in least_cost order, or why it has none.
type Cost struct {
	Country  string   `json:"country"`
	Price    *float64 `json:"price"`
	Currency string   `json:"currency"`
	Source   string   `json:"source,omitempty"`
	// Rank is 1 for the cheapest provider at or above the delivery floor; 0: not ranked (see Note).
	Rank int    `json:"rank"`
	Note string `json:"note"`
}

// ReportEndpoint is a provider's delivery-report endpoint as GET /v1/providers shows it.
type ReportEndpoint struct {
	Path    string   `json:"path"`
	Methods []string `json:"methods"`
	Auth    string   `json:"auth"`
}

// Errors the Backend returns that map to HTTP statuses.
var (
	ErrNotFound        = errors.New("not found")
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrChallenge asks for HTTP basic auth (401 with WWW-Authenticate), which some providers
	// send only when asked.
	ErrChallenge        = errors.New("credentials required")
	ErrBadRequest       = errors.New("bad request")
	ErrMethodNotAllowed = errors.New("method not allowed")
	ErrMediaType        = errors.New("unsupported media type")
	// ErrDisabledInConfig: a provider the config disables cannot be enabled through the API.
	ErrDisabledInConfig = errors.New("disabled in the config")
	// ErrStateUnavailable: the shared state store did not take a change; nothing changed.
	ErrStateUnavailable = errors.New("state store unavailable")
	// ErrReportUnavailable: a report could not be checked or taken now, through nothing wrong in
	// it (a signing certificate that could not be fetched yet); the provider should send it again.
	ErrReportUnavailable = errors.New("report cannot be taken now")
)

// InfobipCall is one request to the Infobip-compatible API.
type InfobipCall struct {
	// Path is the route, e.g. "/sms/2/text/advanced".
	Path string
	// Key is the credential the caller sent: App, Bearer, Basic's password, or the query's
	// password (text/query only); empty when none.
	Key            string
	Body           []byte
	Query          url.Values
	IdempotencyKey string
	RequestID      string
	// MessageID is the path's messageId (InfobipConversionPath only).
	MessageID string
}

// InfobipConversionPath is Infobip's conversion tracking: the code of a message was used.
const InfobipConversionPath = "/ct/1/log/end/:messageId"

// InfobipPreviewPath is Infobip's SMS preview: how many parts a text is sent as.
const InfobipPreviewPath = "/sms/1/preview"

// InfobipPaths are the routes of the Infobip-compatible API, by method.
var InfobipPaths = map[string][]string{
	http.MethodPost: {"/sms/2/text/advanced", "/sms/3/messages", "/tts/3/single", "/tts/3/advanced", InfobipConversionPath, InfobipPreviewPath},
	http.MethodGet:  {"/sms/1/text/query", "/sms/3/text/query", "/sms/1/reports", "/sms/3/reports", "/sms/1/logs", "/sms/3/logs"},
}

// Backend is what the HTTP layer needs from the application.
type Backend interface {
	Send(ctx context.Context, r SendRequest) Reply
	// Infobip answers a request to the Infobip-compatible API, in Infobip's shapes.
	Infobip(ctx context.Context, c InfobipCall) Reply
	Authenticate(apiKey string) (Tenant, bool)
	Message(ctx context.Context, tenant, id string) (*store.Record, error)
	// Verified records that the code of a tenant's message was used: it was delivered.
	Verified(ctx context.Context, tenant, id string) error
	Messages(ctx context.Context, q store.Query) ([]*store.Record, error)
	// Reports handles a delivery report for provider name of driver type typ; publicURL is the
	// URL the provider called. The driver's declared webhook decides the methods and content
	// types it takes (ErrMethodNotAllowed, ErrMediaType otherwise).
	Reports(ctx context.Context, typ, name string, r *http.Request, body []byte, publicURL string) error
	// Providers lists every provider; with country set (ISO 3166-1 alpha-2), with its cost there.
	Providers(country string) []ProviderStatus
	// SetProviderDisabled drains or restores a provider on every replica sharing the state
	// (ErrNotFound, ErrDisabledInConfig, ErrStateUnavailable).
	SetProviderDisabled(name string, disabled bool) error
	// Quarantines lists the number ranges held under suspicion of SMS pumping.
	Quarantines(ctx context.Context) ([]policy.Quarantine, error)
	// ReleaseQuarantine ends one (ErrNotFound when there is none).
	ReleaseQuarantine(ctx context.Context, tenant, rng string) error
	// Tenants lists every tenant with its sends in flight on this replica and its spend limit's use.
	Tenants(ctx context.Context) ([]TenantStatus, error)
	// Reload reads the config again; its error lists the problems one a line, already bounded.
	Reload(ctx context.Context) error
	Ready() (bool, string)
	// Admin checks an admin call's bearer token: enabled is false when no admin token is set.
	Admin(token string) (enabled, ok bool)
	PublicURL() string
	MaxBodyBytes() int64
	// Metrics is GET /metrics on this listener; nil when the metrics have a listener of their own.
	Metrics() http.Handler
}

// New returns the echo server with every route.
func New(b Backend, log *slog.Logger) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = func(err error, c echo.Context) { handleError(err, c, log) }
	e.Use(recoverJSON(log))
	h := &handlers{b: b, log: log}
	e.POST("/v1/send-phone-message", h.send)
	e.GET("/v1/messages/:id", h.message)
	e.GET("/v1/messages", h.messages)
	e.POST("/v1/messages/:id/verified", h.verified)
	// Delivery reports: the methods and content types each driver declares are checked by the
	// backend; this layer knows no provider.
	e.Match([]string{http.MethodGet, http.MethodPost}, "/v1/dlr/:type/:name", h.report)
	e.GET("/v1/providers", h.providers, h.admin)
	e.POST("/v1/providers/:name/disable", h.disable(true), h.admin)
	e.POST("/v1/providers/:name/enable", h.disable(false), h.admin)
	e.POST("/v1/admin/reload", h.reload, h.admin)
	e.GET("/v1/admin/quarantines", h.quarantines, h.admin)
	e.DELETE("/v1/admin/quarantines/:tenant/:range", h.release, h.admin)
	e.GET("/v1/admin/tenants", h.tenants, h.admin)
	for method, paths := range InfobipPaths {
		for _, p := range paths {
			e.Add(method, p, h.infobip)
		}
	}
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", h.ready)
	if m := b.Metrics(); m != nil {
		e.GET("/metrics", echo.WrapHandler(m))
	}
	e.GET("/openapi.yaml", func(c echo.Context) error { return c.Blob(http.StatusOK, "application/yaml", docs.OpenAPI) })
	return e
}

// apiError is an error with an HTTP status and a stable code.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func fail(status int, code, msg string) error { return &apiError{status, code, msg} }

// ErrorBody is the JSON shape of every error.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// ErrorJSON encodes an error body.
func ErrorJSON(code, msg string) []byte {
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, msg
	out, _ := json.Marshal(b)
	return out
}

func handleError(err error, c echo.Context, log *slog.Logger) {
	if c.Response().Committed {
		return
	}
	status, code, msg := http.StatusInternalServerError, "internal", "internal error"
	var ae *apiError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
		status, code, msg = ae.status, ae.code, ae.message
	case errors.As(err, &he):
		status = he.Code
		switch he.Code {
		case http.StatusNotFound:
			code, msg = "not_found", "no such endpoint"
		case http.StatusMethodNotAllowed:
			code, msg = "method_not_allowed", "method not allowed on this endpoint"
		case http.StatusRequestEntityTooLarge:
			code, msg = "body_too_large", "the body is larger than the limit"
		default:
			code, msg = "http_error", http.StatusText(he.Code)
		}
	default:
		log.Error("unhandled error", "err", err.Error(), "path", c.Path())
	}
	_ = c.JSONBlob(status, ErrorJSON(code, msg))
}

func recoverJSON(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if r := recover(); r != nil {
					if r == http.ErrAbortHandler {
						panic(r)
					}
					log.Error("panic in handler", "path", c.Path(), "panic", slog.AnyValue(r).String())
					err = fail(http.StatusInternalServerError, "internal", "internal error")
				}
			}()
			return next(c)
		}
	}
}

type handlers struct {
	b   Backend
	log *slog.Logger
}

func bearer(c echo.Context) string {
	h := c.Request().Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// reportBodyLimit bounds delivery-report bodies: Infobip batches up to 100 reports in one POST,
// more than a send's max_body_bytes.
const reportBodyLimit = 1 << 20

func (h *handlers) readBody(c echo.Context, limit int64) ([]byte, error) {
	r := c.Request()
	if r.ContentLength > limit {
		return nil, fail(http.StatusRequestEntityTooLarge, "body_too_large", "the body is larger than "+strconv.FormatInt(limit, 10)+" bytes")
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fail(http.StatusRequestEntityTooLarge, "body_too_large", "the body is larger than "+strconv.FormatInt(limit, 10)+" bytes")
		}
		return nil, fail(http.StatusBadRequest, "invalid_body", "the body could not be read")
	}
	return body, nil
}

// MissingKey is the answer's message to a call without a bearer key.
const MissingKey = "missing Authorization: Bearer <api key>"

// send passes a call without a bearer key to the backend too (APIKey ""), which refuses it with
// MissingKey: there it is counted and logged like a wrong key, so that a caller sending no key or
// another scheme is seen as well.
func (h *handlers) send(c echo.Context) error {
	key := bearer(c)
	body, err := h.readBody(c, h.b.MaxBodyBytes())
	if err != nil {
		return err
	}
	rid := requestID(c)
	return reply(c, h.b.Send(c.Request().Context(), SendRequest{APIKey: key, Body: body, IdempotencyKey: c.Request().Header.Get("Idempotency-Key"), RequestID: rid}))
}

// reply writes a backend's answer, with Retry-After when it has one.
func reply(c echo.Context, rep Reply) error {
	if rep.RetryAfter > 0 {
		retryAfter(c, rep.RetryAfter)
	}
	return c.JSONBlob(rep.Status, rep.Body)
}

// retryAfter sets Retry-After to d in whole seconds, rounded up, at least 1.
func retryAfter(c echo.Context, d time.Duration) {
	c.Response().Header().Set("Retry-After", strconv.Itoa(max(1, int((d+time.Second-1)/time.Second))))
}

// infobipKey reads the credential as Infobip clients send it: "App <key>", "Bearer <key>",
// Basic with the key as the password, or (GET text/query) the password query parameter.
func infobipKey(c echo.Context) string {
	h := c.Request().Header.Get("Authorization")
	scheme, rest, _ := strings.Cut(h, " ")
	rest = strings.TrimSpace(rest)
	switch strings.ToLower(scheme) {
	case "app", "bearer":
		return rest
	case "basic":
		if _, pw, ok := c.Request().BasicAuth(); ok {
			return pw
		}
	}
	if strings.HasSuffix(c.Path(), "/text/query") {
		return c.QueryParam("password")
	}
	return ""
}

func (h *handlers) infobip(c echo.Context) error {
	var body []byte
	if c.Request().Method == http.MethodPost {
		b, err := h.readBody(c, h.b.MaxBodyBytes())
		if err != nil {
			return err
		}
		body = b
	}
	rid := requestID(c)
	return reply(c, h.b.Infobip(c.Request().Context(), InfobipCall{Path: c.Path(), Key: infobipKey(c), Body: body, Query: c.QueryParams(),
		IdempotencyKey: c.Request().Header.Get("Idempotency-Key"), RequestID: rid, MessageID: c.Param("messageId")}))
}

// requestID is the caller's X-Request-Id (its first 128 bytes), or a new one; the answer carries
// it back.
func requestID(c echo.Context) string {
	rid := c.Request().Header.Get("X-Request-Id")
	if len(rid) > 128 {
		rid = strings.ToValidUTF8(rid[:128], "")
	}
	if rid == "" {
		rid = newRequestID()
	}
	c.Response().Header().Set("X-Request-Id", rid)
	return rid
}

// newRequestID returns a random id for requests that came without X-Request-Id.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "req_" + hex.EncodeToString(b[:])
}

func (h *handlers) tenant(c echo.Context) (Tenant, error) {
	key := bearer(c)
	if key == "" {
		return Tenant{}, fail(http.StatusUnauthorized, "unauthorized", MissingKey)
	}
	t, ok := h.b.Authenticate(key)
	if !ok {
		return Tenant{}, fail(http.StatusUnauthorized, "unauthorized", "unknown API key")
	}
	return t, nil
}

func (h *handlers) message(c echo.Context) error {
	t, err := h.tenant(c)
	if err != nil {
		return err
	}
	r, err := h.b.Message(c.Request().Context(), t.Name, c.Param("id"))
	if e, ok := limited(c, err); ok {
		return e
	}
	if errors.Is(err, store.ErrNotFound) {
		return fail(http.StatusNotFound, "not_found", "no message with this id for this tenant")
	}
	if err != nil {
		return fail(http.StatusServiceUnavailable, "store_unavailable", "the message log could not be read")
	}
	return c.JSON(http.StatusOK, r)
}

// ErrNotSent is returned by Verified for a message no provider accepted.
var ErrNotSent = errors.New("not sent")

// RateLimited is returned by Message, Messages and Verified when the tenant's calls other than
// sends are over its rate_limits.api: 429 rate_limited, with Retry-After.
type RateLimited struct {
	Message    string
	RetryAfter time.Duration
}

func (e *RateLimited) Error() string { return e.Message }

// limited answers err with 429 when it is a RateLimited; ok is false otherwise.
func limited(c echo.Context, err error) (error, bool) {
	var rl *RateLimited
	if !errors.As(err, &rl) {
		return nil, false
	}
	retryAfter(c, rl.RetryAfter)
	return fail(http.StatusTooManyRequests, "rate_limited", rl.Message), true
}

func (h *handlers) verified(c echo.Context) error {
	t, err := h.tenant(c)
	if err != nil {
		return err
	}
	err = h.b.Verified(c.Request().Context(), t.Name, c.Param("id"))
	if e, ok := limited(c, err); ok {
		return e
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fail(http.StatusNotFound, "not_found", "no message with this id for this tenant")
	case errors.Is(err, ErrNotSent):
		return fail(http.StatusConflict, "not_sent", "no provider accepted this message")
	case err != nil:
		return fail(http.StatusServiceUnavailable, "store_unavailable", "the message log could not be written; retry")
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "delivered"})
}

// MessagesPage is the body of GET /v1/messages.
type MessagesPage struct {
	Messages   []*store.Record `json:"messages"`
	NextCursor string          `json:"next_cursor,omitempty"`
}

func (h *handlers) messages(c echo.Context) error {
	t, err := h.tenant(c)
	if err != nil {
		return err
	}
	// net/url drops a pair it cannot decode without a word; a cursor dropped that way would
	// answer the first page again, and a client paging on would never reach the end.
	if _, err := url.ParseQuery(c.Request().URL.RawQuery); err != nil {
		return fail(http.StatusBadRequest, "invalid_query", "the query string is not URL-encoded")
	}
	q := store.Query{Tenant: t.Name, Provider: c.QueryParam("provider"), Limit: 50}
	if s := c.QueryParam("status"); s != "" {
		if !slices.Contains(gateway.RecordStatuses, s) {
			// A misspelt status would otherwise match nothing and read as "none".
			return fail(http.StatusBadRequest, "invalid_query", "status must be sent, delivered, undelivered, failed or rejected")
		}
		q.Statuses = []string{s}
	}
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			return fail(http.StatusBadRequest, "invalid_query", "limit must be a whole number from 1 to 500")
		}
		q.Limit = n
	}
	if s := c.QueryParam("since"); s != "" {
		ts, err := time.Parse(time.RFC3339, s)
		if err != nil {
			d, derr := time.ParseDuration(s)
			if derr != nil || d <= 0 {
				return fail(http.StatusBadRequest, "invalid_query", "since must be an RFC 3339 time or a duration such as 1h")
			}
			ts = time.Now().Add(-d)
		}
		q.Since = ts
	}
	if s := c.QueryParam("cursor"); s != "" {
		cur, ok := decodeCursor(s)
		if !ok {
			return fail(http.StatusBadRequest, "invalid_query", "cursor is not one this API returned")
		}
		q.Before = &cur
	}
	recs, err := h.b.Messages(c.Request().Context(), q)
	if e, ok := limited(c, err); ok {
		return e
	}
	if err != nil {
		return fail(http.StatusServiceUnavailable, "store_unavailable", "the message log could not be read")
	}
	page := MessagesPage{Messages: recs}
	if page.Messages == nil {
		page.Messages = []*store.Record{}
	}
	if len(recs) == q.Limit {
		last := recs[len(recs)-1]
		page.NextCursor = encodeCursor(store.Cursor{CreatedAt: last.CreatedAt, ID: last.ID})
	}
	return c.JSON(http.StatusOK, page)
}

func encodeCursor(c store.Cursor) string {
	return strconv.FormatInt(c.CreatedAt.UnixMilli(), 10) + "." + c.ID
}

func decodeCursor(s string) (store.Cursor, bool) {
	ms, id, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || id == "" {
		return store.Cursor{}, false
	}
	return store.Cursor{CreatedAt: time.UnixMilli(n).UTC(), ID: id}, true
}

func (h *handlers) report(c echo.Context) error {
	body, err := h.readBody(c, max(h.b.MaxBodyBytes(), reportBodyLimit))
	if err != nil {
		return err
	}
	req := c.Request()
	public := h.b.PublicURL()
	if public == "" {
		scheme := "http"
		if req.TLS != nil {
			scheme = "https"
		}
		public = scheme + "://" + req.Host
	}
	err = h.b.Reports(req.Context(), c.Param("type"), c.Param("name"), req, body, public+req.URL.RequestURI())
	switch {
	case err == nil:
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	case errors.Is(err, ErrNotFound):
		return fail(http.StatusNotFound, "not_found", "no provider of this type and name accepts delivery reports")
	case errors.Is(err, ErrMethodNotAllowed):
		return fail(http.StatusMethodNotAllowed, "method_not_allowed", "this provider does not send delivery reports with this method")
	case errors.Is(err, ErrMediaType):
		return fail(http.StatusUnsupportedMediaType, "unsupported_media_type", "this provider does not send delivery reports of this content type")
	case errors.Is(err, ErrUnauthenticated):
		return fail(http.StatusForbidden, "forbidden", "the report's credentials or signature are not valid")
	case errors.Is(err, ErrChallenge):
		c.Response().Header().Set("WWW-Authenticate", `Basic realm="smsgate delivery reports"`)
		return fail(http.StatusUnauthorized, "unauthorized", "this provider's reports carry its webhook_secret as the HTTP basic auth password")
	case errors.Is(err, ErrBadRequest):
		return fail(http.StatusBadRequest, "invalid_report", "the report could not be parsed")
	case errors.Is(err, ErrReportUnavailable):
		return fail(http.StatusServiceUnavailable, "report_unavailable", "the report could not be checked now; retry")
	default:
		return fail(http.StatusServiceUnavailable, "store_unavailable", "the report could not be recorded; retry")
	}
}

func (h *handlers) admin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		enabled, ok := h.b.Admin(bearer(c))
		if !enabled {
			return fail(http.StatusNotFound, "admin_disabled", "set server.admin_token to use the admin endpoints")
		}
		if !ok {
			return fail(http.StatusUnauthorized, "unauthorized", "admin endpoints need Authorization: Bearer <server.admin_token>")
		}
		return next(c)
	}
}

func (h *handlers) providers(c echo.Context) error {
	country := strings.ToUpper(c.QueryParam("country"))
	if country != "" && (len(country) != 2 || strings.Trim(country, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "") && country != "001" {
		return fail(http.StatusBadRequest, "invalid_query", "country must be an ISO 3166-1 alpha-2 code such as GB, or 001")
	}
	return c.JSON(http.StatusOK, map[string]any{"providers": h.b.Providers(country)})
}

func (h *handlers) disable(v bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		switch err := h.b.SetProviderDisabled(c.Param("name"), v); {
		case errors.Is(err, ErrDisabledInConfig):
			return fail(http.StatusConflict, "disabled_in_config", "the config disables this provider (disabled: true): change the config and reload to enable it")
		case errors.Is(err, ErrStateUnavailable):
			return fail(http.StatusServiceUnavailable, "policy_unavailable", "the drain could not be shared with the other replicas through the state store; nothing changed, retry")
		case err != nil:
			return fail(http.StatusNotFound, "not_found", "no provider with this name")
		}
		for _, p := range h.b.Providers("") {
			if p.Name == c.Param("name") {
				return c.JSON(http.StatusOK, p)
			}
		}
		return fail(http.StatusNotFound, "not_found", "no provider with this name")
	}
}

func (h *handlers) quarantines(c echo.Context) error {
	qs, err := h.b.Quarantines(c.Request().Context())
	if err != nil {
		return fail(http.StatusServiceUnavailable, "policy_unavailable", "the quarantines could not be read from the state store; retry")
	}
	return c.JSON(http.StatusOK, map[string]any{"quarantines": qs})
}

func (h *handlers) tenants(c echo.Context) error {
	ts, err := h.b.Tenants(c.Request().Context())
	if err != nil {
		return fail(http.StatusServiceUnavailable, "policy_unavailable", "the spend limits could not be read from the state store; retry")
	}
	return c.JSON(http.StatusOK, map[string]any{"tenants": ts})
}

func (h *handlers) release(c echo.Context) error {
	err := h.b.ReleaseQuarantine(c.Request().Context(), c.Param("tenant"), c.Param("range"))
	switch {
	case errors.Is(err, ErrNotFound):
		return fail(http.StatusNotFound, "not_found", "no quarantine of this tenant and range")
	case err != nil:
		return fail(http.StatusServiceUnavailable, "policy_unavailable", "the quarantine could not be released; retry")
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "released"})
}

func (h *handlers) reload(c echo.Context) error {
	if err := h.b.Reload(c.Request().Context()); err != nil {
		return c.JSON(http.StatusUnprocessableEntity, map[string]any{
			"error":    map[string]string{"code": "invalid_config", "message": "the new config is invalid; the old one stays in force"},
			"problems": strings.Split(err.Error(), "\n"), // one a line, bounded by the backend
		})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "reloaded"})
}

func (h *handlers) ready(c echo.Context) error {
	ok, why := h.b.Ready()
	if !ok {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": why})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
