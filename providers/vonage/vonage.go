// Package vonage is the Vonage (Nexmo) driver: SMS through the SMS API (POST /sms/json, a form
// with api_key and api_secret; errors come inside HTTP 200 as a status per message part), voice
// through the Voice API (POST /v1/calls with an RS256 JWT of the Vonage application and an NCCO
// that speaks the code), signed SMS receipts (md5hash or HMAC) and JWT-signed voice events.
package vonage

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/kit"
)

// Provider is the Vonage driver.
type Provider struct {
	cfg      Config
	kit      *kit.Client
	base     string
	voice    string
	key      *rsa.PrivateKey
	callback string
	// now is the clock of JWTs and receipt freshness; tests move it.
	now func() time.Time
}

// New returns a driver; cfg must have passed Validate.
func New(cfg Config, deps gateway.Deps) *Provider {
	p := &Provider{cfg: cfg, kit: kit.New(deps, kit.Reveal(slices.Concat(cfg.PreviousSignatureSecrets, cfg.PreviousWebhookSecrets), cfg.APISecret, cfg.SignatureSecret, cfg.WebhookSecret)...),
		base: strings.TrimRight(cfg.BaseURL, "/"), voice: strings.TrimRight(cfg.VoiceBaseURL, "/"), now: time.Now}
	p.key, _ = jwt.ParseRSAPrivateKeyFromPEM([]byte(cfg.PrivateKey.Reveal())) // nil without one: SMS only
	switch {
	case deps.CallbackURL == "":
	case cfg.SignatureSecret != "":
		p.callback = deps.CallbackURL // Vonage signs what it sends
	default:
		p.callback = kit.SecretURL(deps.CallbackURL, cfg.WebhookSecret)
	}
	return p
}

// Capabilities implements gateway.Provider: SMS; voice with application credentials.
func (p *Provider) Capabilities() gateway.Capabilities {
	if p.key == nil {
		return gateway.SMSOnly
	}
	return gateway.SMSAndVoice
}

// AsksReports implements gateway.ReportReceiver: a callback URL goes with each message.
func (p *Provider) AsksReports() bool { return p.callback != "" }

// ReportReceiver is checked at compile time: the gateway finds report receivers by assertion.
var _ gateway.ReportReceiver = (*Provider)(nil)

// Webhook implements gateway.ReportReceiver.
func (p *Provider) Webhook() gateway.Webhook {
	return gateway.Webhook{Methods: []string{http.MethodGet, http.MethodPost},
		ContentTypes: []string{"application/json", "application/x-www-form-urlencoded"},
		Auth:         "signed webhooks (sig with signature_secret; voice events: a JWT signed with it), else webhook_secret as ?secret="}
}

// Send implements gateway.Provider.
func (p *Provider) Send(ctx context.Context, msg *gateway.Message) (gateway.Result, error) {
	if msg.Type == gateway.Voice {
		return p.call(ctx, msg)
	}
	return p.sms(ctx, msg)
}

func (p *Provider) sms(ctx context.Context, msg *gateway.Message) (gateway.Result, error) {
	from := kit.Sender(msg, p.cfg.Senders, p.cfg.From)
	f := url.Values{"api_key": {p.cfg.APIKey}, "api_secret": {p.cfg.APISecret.Reveal()}, "from": {from},
		"to": {strings.TrimPrefix(msg.To, "+")}, "text": {msg.Text}, "type": {"text"}, "client-ref": {msg.ID}}
	if !gateway.GSM7(msg.Text) {
		f.Set("type", "unicode")
	}
	if p.callback != "" {
		f.Set("callback", p.callback)
	}
	req, err := kit.Post(p.base+"/sms/json", "application/x-www-form-urlencoded", "application/json", []byte(f.Encode()))
	if err != nil {
		return gateway.Result{}, err
	}
	res, err := p.kit.Exchange(ctx, req, nil)
	if err != nil {
		return gateway.Result{}, err
	}
	var a struct {
		Messages []struct {
			Status    string `json:"status"`
			MessageID string `json:"message-id"`
			ErrorText string `json:"error-text"`
		} `json:"messages"`
	}
	if json.Unmarshal(res.Body, &a) != nil || len(a.Messages) == 0 {
		return gateway.Result{}, p.kit.NoID(res)
	}
	// A long text gives several parts: success only when every part was accepted.
	for i, m := range a.Messages {
		if m.Status == "0" {
			continue
		}
		if m.Status == "" { // not an answer the API gives: the part may have gone out
			return gateway.Result{}, p.kit.NoID(res)
		}
		e := p.kit.Fail(res, statusClass(m.Status), "VONAGE_"+m.Status, describe(m.Status, m.ErrorText))
		if i > 0 {
			e.MaybeSent = true // earlier parts went out
			e.Message = fmt.Sprintf("part %d of %d: %s", i+1, len(a.Messages), e.Message)
		}
		return gateway.Result{}, e
	}
	if a.Messages[0].MessageID == "" {
		return gateway.Result{}, p.kit.NoID(res)
	}
	return gateway.Result{ProviderMessageID: a.Messages[0].MessageID, Status: fmt.Sprintf("accepted (%d parts)", len(a.Messages))}, nil
}

// statuses is the SMS API's status table: the class of each status and what it means.
var statuses = map[string]struct {
	class gateway.Class
	desc  string
}{
	"1":  {gateway.ClassThrottled, "throttled: Vonage's throughput rate was exceeded"},
	"2":  {gateway.ClassProvider, "missing parameters (our request)"},
	"3":  {gateway.ClassProvider, "invalid parameters"},
	"4":  {gateway.ClassProvider, "invalid credentials (api_key, api_secret)"},
	"5":  {gateway.ClassProvider, "internal error at Vonage"},
	"6":  {gateway.ClassRecipient, "invalid message: unrecognised number prefix"},
	"7":  {gateway.ClassRecipient, "number barred"},
	"8":  {gateway.ClassProvider, "partner account barred (suspended)"},
	"9":  {gateway.ClassProvider, "partner quota exceeded: not enough credit"},
	"10": {gateway.ClassProvider, "too many existing binds"},
	"11": {gateway.ClassProvider, "account not enabled for HTTP"},
	"12": {gateway.ClassDestination, "message too long for Vonage: the request's, not the provider's"},
	"14": {gateway.ClassProvider, "invalid signature (credentials)"},
	"15": {gateway.ClassProvider, "invalid sender address (configuration)"},
	"22": {gateway.ClassProvider, "invalid network code (configuration)"},
	"23": {gateway.ClassProvider, "invalid callback URL (configuration)"},
	"29": {gateway.ClassDestination, "destination not whitelisted for this (demo) account"},
	"32": {gateway.ClassProvider, "signature and api_secret together (configuration)"},
	"33": {gateway.ClassRecipient, "number de-activated"},
}

func statusClass(s string) gateway.Class {
	if x, ok := statuses[s]; ok {
		return x.class
	}
	return gateway.ClassProvider
}

func describe(status, text string) string {
	if x, ok := statuses[status]; ok {
		return x.desc
	}
	return text
}

// voiceLanguages maps a language's primary subtag to Vonage's talk language.
var voiceLanguages = map[string]string{"en": "en-US", "de": "de-DE", "fr": "fr-FR", "es": "es-ES", "it": "it-IT", "pt": "pt-BR", "nl": "nl-NL"}

// voiceRegions are full tags Vonage speaks as given.
var voiceRegions = map[string]string{"en-US": "en-US", "en-GB": "en-GB", "en-AU": "en-AU", "en-IN": "en-IN", "es-MX": "es-MX", "fr-CA": "fr-CA", "pt-PT": "pt-PT"}

// Talk returns the NCCO talk text and language for msg: the code digit by digit (said twice by
// the action's loop), in the request's language when Vonage speaks it, else American English.
func Talk(msg *gateway.Message) (text, language string) {
	language, text = kit.Voice(msg, voiceLanguages, voiceRegions)
	return text, language
}

type phone struct {
	Type   string `json:"type"`
	Number string `json:"number"`
}

type talk struct {
	Action   string `json:"action"`
	Text     string `json:"text"`
	Language string `json:"language"`
	Loop     int    `json:"loop"`
}

type callBody struct {
	To               []phone  `json:"to"`
	From             *phone   `json:"from,omitempty"`
	RandomFromNumber bool     `json:"random_from_number,omitempty"`
	NCCO             []talk   `json:"ncco"`
	EventURL         []string `json:"event_url,omitempty"`
	EventMethod      string   `json:"event_method,omitempty"`
}

// JWT returns the Voice API's bearer token: RS256 with the application's private key, claims
// application_id, iat, jti and exp (5 minutes).
func (p *Provider) JWT() (string, error) {
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	now := p.now()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"application_id": p.cfg.ApplicationID, "iat": now.Unix(),
		"jti": hex.EncodeToString(jti[:]), "exp": now.Add(5 * time.Minute).Unix()})
	return t.SignedString(p.key)
}

func (p *Provider) call(ctx context.Context, msg *gateway.Message) (gateway.Result, error) {
	if p.key == nil {
		return gateway.Result{}, &gateway.Error{Class: gateway.ClassUnavailable, Code: "NO_VOICE", Message: "voice needs application_id and private_key"}
	}
	text, lang := Talk(msg)
	// The talk action's loop says it as often as every driver does (kit.Readings).
	b := callBody{To: []phone{{"phone", strings.TrimPrefix(msg.To, "+")}}, NCCO: []talk{{Action: "talk", Text: text, Language: lang, Loop: kit.Readings(msg)}}}
	if p.cfg.VoiceFrom != "" {
		b.From = &phone{"phone", strings.TrimPrefix(p.cfg.VoiceFrom, "+")}
	} else {
		b.RandomFromNumber = true
	}
	if p.callback != "" {
		b.EventURL, b.EventMethod = []string{p.callback}, http.MethodPost
	}
	raw, _ := json.Marshal(b)
	token, err := p.JWT()
	if err != nil {
		return gateway.Result{}, &gateway.Error{Class: gateway.ClassProvider, Code: "JWT", Message: "the voice JWT could not be signed"}
	}
	req, err := kit.Post(p.voice+"/v1/calls", "application/json", "application/json", raw)
	if err != nil {
		return gateway.Result{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := p.kit.Exchange(ctx, req, p.problem)
	if err != nil {
		return gateway.Result{}, err
	}
	var a struct {
		UUID   string `json:"uuid"`
		Status string `json:"status"`
	}
	if json.Unmarshal(res.Body, &a) != nil || a.UUID == "" {
		return gateway.Result{}, p.kit.NoID(res)
	}
	return gateway.Result{ProviderMessageID: a.UUID, Status: a.Status}, nil
}

// problem classifies the Voice API's problem bodies ({type, title, detail, invalid_parameters}):
// invalid parameters naming "to" are the recipient's, everything else the provider's.
func (p *Provider) problem(res *kit.Response) *gateway.Error {
	var b struct {
		Type              string `json:"type"`
		Title             string `json:"title"`
		Detail            string `json:"detail"`
		InvalidParameters []struct {
			Name   string `json:"name"`
			Reason string `json:"reason"`
		} `json:"invalid_parameters"`
	}
	if json.Unmarshal(res.Body, &b) != nil || (b.Title == "" && b.Type == "") {
		return nil
	}
	class := gateway.ClassProvider
	if res.Status == http.StatusBadRequest && len(b.InvalidParameters) > 0 {
		class = gateway.ClassRecipient
		for _, ip := range b.InvalidParameters {
			if !strings.HasPrefix(strings.ToLower(ip.Name), "to") {
				class = gateway.ClassProvider
			}
		}
	}
	code := b.Title
	if i := strings.LastIndex(b.Type, "#"); i >= 0 {
		code = b.Type[i+1:]
	}
	return p.kit.Fail(res, class, "VONAGE_"+strings.ToUpper(strings.ReplaceAll(code, " ", "_")), b.Title+": "+b.Detail)
}

// maxSkew is how far a signed receipt's timestamp may be from now.
const maxSkew = 5 * time.Minute

// payloadMatches says whether a signed token's payload_hash claim, when it has one, is the
// SHA-256 of the body in hex: without that check, a token seen once would carry any body for as
// long as it is valid. A token without the claim is taken (Vonage calls the check optional, and
// the signature already proves the sender); a claim that is not a string is not.
func payloadMatches(claims jwt.MapClaims, body []byte) bool {
	v, ok := claims["payload_hash"]
	if !ok {
		return true
	}
	want, _ := v.(string) // not a string: "", which no hash is
	sum := sha256.Sum256(body)
	return strings.EqualFold(want, hex.EncodeToString(sum[:]))
}

// ParseReports implements gateway.ReportReceiver: SMS receipts (GET query, POST form or JSON)
// and voice events (JSON with a uuid).
func (p *Provider) ParseReports(r *http.Request, body []byte, _ string) ([]gateway.DeliveryReport, error) {
	params := map[string]string{}
	for k, v := range r.URL.Query() {
		params[k] = v[0]
	}
	ct := r.Header.Get("Content-Type")
	if len(body) > 0 {
		if strings.HasPrefix(ct, "application/json") {
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				return nil, &gateway.Error{Class: gateway.ClassCaller, Code: "invalid_report", Message: "body is not JSON"}
			}
			for k, v := range m {
				switch x := v.(type) {
				case string:
					params[k] = x
				case float64:
					params[k] = strconv.FormatFloat(x, 'f', -1, 64)
				case bool:
					params[k] = strconv.FormatBool(x)
				}
			}
		} else if form, err := url.ParseQuery(string(body)); err == nil {
			for k, v := range form {
				params[k] = v[0]
			}
		}
	}
	if params["uuid"] != "" && params["conversation_uuid"] != "" {
		return p.voiceEvent(r, body, params)
	}
	if !p.authentic(params) {
		return nil, gateway.ErrUnauthenticated
	}
	d := gateway.DeliveryReport{ProviderMessageID: params["messageId"], MessageID: params["client-ref"], ProviderStatus: params["status"]}
	if d.ProviderMessageID == "" && d.MessageID == "" {
		return nil, &gateway.Error{Class: gateway.ClassCaller, Code: "invalid_report", Message: "no messageId or client-ref"}
	}
	if ec := params["err-code"]; ec != "" && ec != "0" {
		d.Error = ec
	}
	// ParseFloat reads "Inf" too: a price that is not finite would stay in the spend counter for
	// good and put the tenant a thousand periods into debt.
	// A long text is sent as parts, each with a receipt of its own naming our id (client-ref) and
	// its part's price: the message cost that times its parts (the store knows them).
	if pr, err := strconv.ParseFloat(params["price"], 64); err == nil && pr > 0 && !math.IsInf(pr, 0) {
		d.Price, d.Currency, d.PerPart = pr, "EUR", true
	}
	if t, err := time.Parse("2006-01-02 15:04:05", params["message-timestamp"]); err == nil {
		d.DoneAt = t.UTC()
	}
	d.Status = smsStatus(d.ProviderStatus)
	return []gateway.DeliveryReport{d}, nil
}

// smsStatus maps Vonage's receipt statuses.
func smsStatus(s string) string {
	switch strings.ToLower(s) {
	case "delivered":
		return gateway.StatusDelivered
	case "expired":
		return gateway.StatusUndelivered
	case "failed", "rejected":
		return gateway.StatusFailed
	}
	return gateway.StatusSent // accepted, buffered, unknown
}

// authentic checks a signed receipt (sig, timestamp within maxSkew) when a signature secret is
// configured, else the webhook secret in the URL.
func (p *Provider) authentic(params map[string]string) bool {
	if p.cfg.SignatureSecret != "" {
		sig := params["sig"]
		ts, err := strconv.ParseInt(params["timestamp"], 10, 64)
		if err != nil {
			return false
		}
		if d := p.now().Sub(time.Unix(ts, 0)); d > maxSkew || d < -maxSkew {
			return false
		}
		ok := 0
		for _, sec := range p.signatureSecrets() { // every one compared
			ok |= subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(Sign(params, sec, p.cfg.SignatureMethod)))
		}
		return ok == 1
	}
	return kit.SecretMatches(params["secret"], p.cfg.WebhookSecret, p.cfg.PreviousWebhookSecrets...)
}

// signatureSecrets is the signature secret, then those it replaced (previous_signature_secrets).
func (p *Provider) signatureSecrets() []string {
	out := []string{p.cfg.SignatureSecret.Reveal()}
	for _, s := range p.cfg.PreviousSignatureSecrets {
		if s != "" {
			out = append(out, s.Reveal())
		}
	}
	return out
}

// Sign computes a Vonage webhook signature: every parameter but sig (and our own secret), sorted,
// as "&k=v" with & and = inside values replaced by _, then md5 of that plus the secret
// ("md5hash"), or an HMAC of it keyed by the secret (md5, sha1, sha256, sha512). Lower-case hex.
func Sign(params map[string]string, secret, method string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != "sig" && k != "secret" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	clean := strings.NewReplacer("&", "_", "=", "_")
	for _, k := range keys {
		b.WriteString("&" + k + "=" + clean.Replace(params[k]))
	}
	if method == "md5hash" || method == "" {
		sum := md5.Sum([]byte(b.String() + secret))
		return hex.EncodeToString(sum[:])
	}
	var h func() hash.Hash
	switch method {
	case "md5":
		h = md5.New
	case "sha1":
		h = sha1.New
	case "sha512":
		h = sha512.New
	default:
		h = sha256.New
	}
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(b.String()))
	return hex.EncodeToString(m.Sum(nil))
}

// voiceEvent authenticates a voice event (a JWT in Authorization, HS256 with the signature
// secret, whose payload_hash, when it has one, is the body's; else the webhook secret in the
// URL) and maps its status.
func (p *Provider) voiceEvent(r *http.Request, body []byte, params map[string]string) ([]gateway.DeliveryReport, error) {
	if p.cfg.SignatureSecret != "" {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			return nil, gateway.ErrUnauthenticated
		}
		var claims jwt.MapClaims
		for _, sec := range p.signatureSecrets() {
			c := jwt.MapClaims{}
			_, err := jwt.ParseWithClaims(raw, c, func(*jwt.Token) (any, error) { return []byte(sec), nil },
				jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(p.now), jwt.WithLeeway(maxSkew))
			if err == nil {
				claims = c
			}
		}
		if claims == nil || !payloadMatches(claims, body) {
			return nil, gateway.ErrUnauthenticated
		}
	} else if !kit.SecretMatches(params["secret"], p.cfg.WebhookSecret, p.cfg.PreviousWebhookSecrets...) {
		return nil, gateway.ErrUnauthenticated
	}
	d := gateway.DeliveryReport{ProviderMessageID: params["uuid"], ProviderStatus: params["status"]}
	switch params["status"] {
	case "completed", "answered":
		d.Status = gateway.StatusDelivered
	case "failed": // before reaching the destination: the provider's or the network's doing
		d.Status = gateway.StatusFailed
	case "busy", "rejected", "unanswered", "timeout", "cancelled": // the callee's (rejected: by the destination)
		d.Status = gateway.StatusUndelivered
	default:
		d.Status = gateway.StatusSent // started, ringing, machine, ...
	}
	return []gateway.DeliveryReport{d}, nil
}
