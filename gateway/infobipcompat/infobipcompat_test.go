package infobipcompat

import (
	"encoding/json"
	"errors"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/providertest"
)

// TestThrottlingIsAnsweredAsRateLimiting: a destination every provider throttled for this tenant
// (provider_throttled) is reported like one a rate limit refused, and when none was sent the
// answer is 429 with the longest Retry-After, as for rate limits.
func TestThrottlingIsAnsweredAsRateLimiting(t *testing.T) {
	if s := StatusFor(429, "provider_throttled"); s != RejectedRateLimit {
		t.Errorf("StatusFor = %+v", s)
	}
	for code, want := range map[string]Status{
		"number_type_not_allowed": RejectedDestination,
		"suspected_pumping":       RejectedDestination,
		"sender_not_allowed":      RejectedSender,
		"link_not_allowed":        RejectedLink,
		"country_not_allowed":     RejectedCountry,
		"client_not_allowed":      RejectedClient,
		"invalid_request":         RejectedRequest,
		"recipient_rejected":      RejectedDestination,
		"invalid_number":          RejectedDestination,
	} {
		if s := StatusFor(403, code); s != want {
			t.Errorf("StatusFor(403, %s) = %s, want %s", code, s.Name, want.Name)
		}
	}
	for _, status := range []int{500, 502, 503} {
		if s := StatusFor(status, "providers_failed"); s != RejectedProviders {
			t.Errorf("StatusFor(%d) = %s, want %s", status, s.Name, RejectedProviders.Name)
		}
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

// TestAnswerWhenNothingWasSent: no destination sent is an error whose status says what to do:
// 503 when a provider failure was among the reasons (even beside rate limits: the providers are
// the problem, retry later), 429 for rate limits alone, 400 naming the first refusal otherwise.
func TestAnswerWhenNothingWasSent(t *testing.T) {
	failed := Result{HTTPStatus: 500, Code: "providers_failed", Status: RejectedProviders}
	limited := Result{HTTPStatus: 429, Code: "rate_limited", RetryAfter: time.Second, Status: RejectedRateLimit}
	refused := Result{HTTPStatus: 403, Code: "country_not_allowed", Status: RejectedCountry}
	for _, tc := range []struct {
		name   string
		rs     []Result
		status int
		text   string
	}{
		{"a provider failure", []Result{failed}, 503, "SERVICE_UNAVAILABLE"},
		{"a rate limit and a provider failure", []Result{limited, failed}, 503, "SERVICE_UNAVAILABLE"},
		{"a refusal", []Result{refused, refused}, 400, RejectedCountry.Description},
	} {
		status, body, _ := Answer(SMSv2, "", tc.rs)
		if status != tc.status || !strings.Contains(string(body), tc.text) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, status, body, tc.status, tc.text)
		}
	}
}

// TestErrorBodyInEachAPIsShape: v3's ApiError carries violations and resources as lists (empty,
// never null: the SDKs iterate them), the legacy APIs an ApiException.
func TestErrorBodyInEachAPIsShape(t *testing.T) {
	for _, c := range []struct{ kind, want string }{
		{SMSv3, `{"action":"","description":"no message could be sent","errorCode":"BAD_REQUEST","resources":[],"violations":[]}`},
		{SMSv2, `{"requestError":{"serviceException":{"messageId":"BAD_REQUEST","text":"no message could be sent"}}}`},
		{TTS, `{"requestError":{"serviceException":{"messageId":"BAD_REQUEST","text":"no message could be sent"}}}`},
	} {
		if got := string(ErrorBody(c.kind, "BAD_REQUEST", "no message could be sent")); got != c.want {
			t.Errorf("%s: %s\nwant %s", c.kind, got, c.want)
		}
	}
}

// TestAnswerInEachAPIsShape: a send's answer lists each destination as its API does: v3 with
// destination and a details object counting the parts its text is sent as, v2 with to.
func TestAnswerInEachAPIsShape(t *testing.T) {
	rs := []Result{{Destination: Destination{To: "41793026727"}, MessageID: "m-1", HTTPStatus: 200, Status: Pending}}
	_, body, _ := Answer(SMSv3, "b-1", rs)
	if _, b, _ := Answer(SMSv3, "", []Result{{Destination: Destination{To: "41793026727", Text: strings.Repeat("x", 161)}, MessageID: "m-2", Status: Pending, HTTPStatus: 200}}); !strings.Contains(string(b), `"details":{"messageCount":2}`) {
		t.Errorf("a text of 161 GSM characters is sent as two parts: %s", b)
	}
	want := `{"bulkId":"b-1","messages":[{"messageId":"m-1","status":{"groupId":1,"groupName":"PENDING","id":26,"name":"PENDING_ACCEPTED","description":"Message accepted by smsgate and sent to a provider"},"destination":"41793026727","details":{"messageCount":1}}]}`
	if string(body) != want {
		t.Errorf("v3 answer:\n%s\nwant\n%s", body, want)
	}
	_, body, _ = Answer(SMSv2, "", rs)
	want = `{"messages":[{"messageId":"m-1","status":{"groupId":1,"groupName":"PENDING","id":26,"name":"PENDING_ACCEPTED","description":"Message accepted by smsgate and sent to a provider"},"to":"41793026727"}]}`
	if string(body) != want {
		t.Errorf("v2 answer:\n%s\nwant\n%s", body, want)
	}
}

// TestReportErrorsSayWhetherToSendAgain: a report's error object puts each final status in the
// error group that says why, and a message no provider took is not permanent (sending it again
// may work), while a destination a provider refused is. Every failure was a permanent handset
// error before, which told a client never to send again after an outage.
func TestReportErrorsSayWhetherToSendAgain(t *testing.T) {
	for _, tc := range []struct {
		status, group string
		permanent     bool
	}{
		{gateway.StatusDelivered, "OK", false},
		{gateway.StatusUndelivered, "HANDSET_ERRORS", true},
		{gateway.StatusRejected, "USER_ERRORS", true},
		{gateway.StatusFailed, "OPERATOR_ERRORS", false},
	} {
		var out struct {
			Results []struct {
				Error struct {
					GroupName string
					Name      string
					Permanent bool
				}
			}
		}
		body := Reports(SMSv3, []Message{{ID: "m1", Status: tc.status, Error: "E42"}})
		if err := json.Unmarshal(body, &out); err != nil || len(out.Results) != 1 {
			t.Fatalf("%s: %s %v", tc.status, body, err)
		}
		e := out.Results[0].Error
		if e.GroupName != tc.group || e.Permanent != tc.permanent || (tc.group != "OK" && e.Name != "E42") {
			t.Errorf("%s: %+v, want group %s, permanent %v, name E42", tc.status, e, tc.group, tc.permanent)
		}
	}
}

// TestParseRefusesABodyThatIsNotUTF8: every kind of send refuses it, before any destination.
// TestParseHoldsEachFieldToItsLimit: every destination becomes a record (and perhaps a push) that
// keeps these fields, so each is held to Infobip's own limit, and a request to 100 destinations:
// at the limit a request is taken, one past it refused with 400 naming the field. A text or a
// to of blanks is none.
func TestParseHoldsEachFieldToItsLimit(t *testing.T) {
	// The limits docs/infobip-compatible.md promises (the cases below count from the constants).
	if got, want := []int{MaxDestinations, MaxCallbackData, MaxVoiceCallbackData, MaxMessageID, MaxBulkID, MaxNotifyURL}, []int{100, 4000, 700, 200, 100, 2048}; !slices.Equal(got, want) {
		t.Errorf("limits %v, the docs say %v", got, want)
	}
	v2 := func(message, dest, bulkID string) string {
		return `{"bulkId":"` + bulkID + `","messages":[{"destinations":[{"to":"14155550104"` + dest + `}],"text":"code 1234"` + message + `}]}`
	}
	tts := func(callback string) string {
		return `{"messages":[{"destinations":[{"to":"14155550104"}],"text":"code 1234","language":"en","callbackData":"` + callback + `"}]}`
	}
	many := func(n int) string {
		return `{"messages":[{"destinations":[` + strings.TrimSuffix(strings.Repeat(`{"to":"14155550104"},`, n), ",") + `],"text":"code 1234"}]}`
	}
	x := strings.Repeat
	for _, tc := range []struct {
		name, kind, ok, over, refusal string
	}{
		{"callbackData", SMSv2, v2(`,"callbackData":"`+x("c", MaxCallbackData)+`"`, "", ""), v2(`,"callbackData":"`+x("c", MaxCallbackData+1)+`"`, "", ""), "callbackData is longer"},
		{"voice callbackData", TTS, tts(x("c", MaxVoiceCallbackData)), tts(x("c", MaxVoiceCallbackData+1)), "callbackData is longer"},
		{"messageId", SMSv2, v2("", `,"messageId":"`+x("m", MaxMessageID)+`"`, ""), v2("", `,"messageId":"`+x("m", MaxMessageID+1)+`"`, ""), "messageId is longer"},
		{"bulkId", SMSv2, v2("", "", x("b", MaxBulkID)), v2("", "", x("b", MaxBulkID+1)), "bulkId is longer"},
		{"notifyUrl", SMSv2, v2(`,"notifyUrl":"https://h.example/`+x("n", MaxNotifyURL-18)+`"`, "", ""), v2(`,"notifyUrl":"https://h.example/`+x("n", MaxNotifyURL-17)+`"`, "", ""), "notifyUrl is longer"},
		{"destinations", SMSv2, many(MaxDestinations), many(MaxDestinations + 1), "at most 100 destinations"},
		{"blank text", SMSv2, v2("", "", ""), strings.Replace(v2("", "", ""), `"code 1234"`, `" \t "`, 1), "the message text is required"},
		{"blank to", SMSv2, v2("", "", ""), strings.Replace(v2("", "", ""), `"14155550104"`, `"  "`, 1), "every destination needs a to"},
	} {
		if _, err := Parse(tc.kind, false, []byte(tc.ok)); err != nil {
			t.Errorf("%s at the limit: %v", tc.name, err)
		}
		_, err := Parse(tc.kind, false, []byte(tc.over))
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || !strings.Contains(e.Text, tc.refusal) {
			t.Errorf("%s past the limit: %v, want 400 %q", tc.name, err, tc.refusal)
		}
	}
}

func TestParseRefusesABodyThatIsNotUTF8(t *testing.T) {
	for _, tc := range []struct {
		kind   string
		single bool
		body   string
	}{
		{SMSv2, false, `{"messages":[{"destinations":[{"to":"14155550104"}],"text":"code ` + "\xff" + ` 1234"}]}`},
		{SMSv3, false, `{"messages":[{"destinations":[{"to":"14155550104"}],"content":{"text":"code ` + "\xc3" + `"}}]}`},
		{TTS, false, `{"messages":[{"destinations":[{"to":"14155550104"}],"text":"code ` + "\xff" + `","language":"en"}]}`},
		{TTS, true, `{"to":"14155550104","text":"code \n` + "\xff" + `"}`},
	} {
		valid := strings.ToValidUTF8(tc.body, "?")
		if _, err := Parse(tc.kind, tc.single, []byte(valid)); err != nil {
			t.Fatalf("%s (single %v), made valid: %v", tc.kind, tc.single, err)
		}
		_, err := Parse(tc.kind, tc.single, []byte(tc.body))
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || e.ID != "BAD_REQUEST" || e.Text != "the body is not valid UTF-8" {
			t.Errorf("%s (single %v): %v", tc.kind, tc.single, err)
		}
	}
}

// TestParseLanguage: an SMS's language is Infobip's object naming a national language table
// ({"languageCode": "TR"}), which smsgate does not apply: the message is taken, with no language
// (it used to be refused whole: the field was read as TTS's string). A string is the language as
// before, on SMS and TTS; TTS refuses anything else.
func TestParseLanguage(t *testing.T) {
	for _, tc := range []struct {
		kind, lang string
		want       string
		ok         bool
	}{
		{SMSv2, `{"languageCode":"TR"}`, "", true},
		{SMSv2, `{"languageCode":"AUTODETECT"}`, "", true},
		{SMSv2, `null`, "", true},
		{SMSv2, `"es"`, "es", true},
		{SMSv2, `7`, "", false},
		{SMSv2, `{"languageCode":7}`, "", false},
		{TTS, `"en"`, "en", true},
		{TTS, `{"languageCode":"TR"}`, "", false},
	} {
		body := `{"messages":[{"destinations":[{"to":"14155550104"}],"text":"Kod 1234","language":` + tc.lang + `,"transliteration":"TURKISH"}]}`
		ds, err := Parse(tc.kind, false, []byte(body))
		switch {
		case !tc.ok:
			var e *Error
			if !errors.As(err, &e) || e.Status != 400 || e.ID != "BAD_REQUEST" {
				t.Errorf("%s %s: %v, want a 400", tc.kind, tc.lang, err)
			}
		case err != nil || len(ds) != 1 || ds[0].Language != tc.want || ds[0].Text != "Kod 1234":
			t.Errorf("%s %s: %+v %v, want language %q", tc.kind, tc.lang, ds, err, tc.want)
		}
	}
}

// TestParseTakesInfobipsExamples: every request Infobip's specs give as an example of the sends
// and the preview is taken (a language table on an SMS was refused whole until the fortieth
// session), each destination with the example's text, but the binary SMS and the audio files
// smsgate does not send, which are refused as having no text.
func TestParseTakesInfobipsExamples(t *testing.T) {
	bulkID := regexp.MustCompile(`"bulkId"\s*:\s*"([^"]*)"`)
	sms := providertest.LoadSpec(t, "infobip-sms.openapi.json")
	voice := providertest.LoadSpec(t, "infobip-voice.openapi.json")
	for _, tc := range []struct {
		spec   *providertest.Spec
		path   string
		kind   string
		single bool
	}{
		{sms, "/sms/2/text/advanced", SMSv2, false},
		{sms, "/sms/3/messages", SMSv3, false},
		{voice, "/tts/3/single", TTS, true},
		{voice, "/tts/3/advanced", TTS, false},
		{sms, "/sms/1/preview", "preview", false},
	} {
		examples, err := tc.spec.RequestExamples(tc.path, "POST")
		if err != nil || len(examples) == 0 {
			t.Fatalf("%s: %d examples, %v", tc.path, len(examples), err)
		}
		for name, body := range examples {
			if tc.kind == "preview" {
				if text, err := ParsePreview(body); err != nil || text == "" {
					t.Errorf("%s, %q: %q %v", tc.path, name, text, err)
				}
				continue
			}
			ds, err := Parse(tc.kind, tc.single, body)
			if noText := strings.Contains(name, "binary") || strings.Contains(name, "audio") || strings.Contains(name, "Audio"); noText {
				if err == nil || !strings.Contains(err.Error(), "text") {
					t.Errorf("%s, %q (no text): %v", tc.path, name, err)
				}
				continue
			}
			if err != nil || len(ds) == 0 {
				t.Errorf("%s, %q: %v\n%s", tc.path, name, err, body)
				continue
			}
			// Every destination is of the example's bulk, wherever the API puts its id.
			bulk := ""
			if m := bulkID.FindSubmatch(body); m != nil {
				bulk = string(m[1])
			}
			for _, d := range ds {
				if d.To == "" || d.Text == "" || !strings.Contains(string(body), d.To) || d.BulkID != bulk {
					t.Errorf("%s, %q: destination %+v, want bulk %q", tc.path, name, d, bulk)
				}
			}
		}
	}
}

// TestParseReadsEveryField: each request shape gives each destination every field smsgate keeps
// or honours: the sender, the caller's ids, the report's URL and callback data, the language.
func TestParseReadsEveryField(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   string
		single bool
		body   string
		want   []Destination
	}{
		{"TTS single, to as a string", TTS, true, `{"text":"Your code is 1234","language":"en","from":"41793026700","to":"41793026727"}`,
			[]Destination{{To: "41793026727", Text: "Your code is 1234", Voice: true, Language: "en", From: "41793026700"}}},
		{"TTS single, to as a list", TTS, true, `{"text":"Code 1234","to":["41793026727","41793026728"]}`,
			[]Destination{{To: "41793026727", Text: "Code 1234", Voice: true}, {To: "41793026728", Text: "Code 1234", Voice: true}}},
		{"SMS v3", SMSv3, false, `{"messages":[{"sender":"ACME","destinations":[{"to":"41793026727","messageId":"m-1"}],"content":{"text":"Code 1234"},"webhooks":{"delivery":{"url":"https://hooks.example.com/dlr"},"callbackData":"cb"}}],"options":{"schedule":{"bulkId":"b-1"}}}`,
			[]Destination{{To: "41793026727", Text: "Code 1234", From: "ACME", Reference: "m-1", BulkID: "b-1", NotifyURL: "https://hooks.example.com/dlr", CallbackData: "cb"}}},
		{"SMS v3 with a bulkId beside messages, as v2 has it", SMSv3, false, `{"bulkId":"b-v2","messages":[{"destinations":[{"to":"41793026727"}],"content":{"text":"Code 1234"}}]}`,
			[]Destination{{To: "41793026727", Text: "Code 1234", BulkID: "b-v2"}}},
		{"SMS v3 with both: the schedule's", SMSv3, false, `{"bulkId":"b-v2","messages":[{"destinations":[{"to":"41793026727"}],"content":{"text":"Code 1234"}}],"options":{"schedule":{"bulkId":"b-v3"}}}`,
			[]Destination{{To: "41793026727", Text: "Code 1234", BulkID: "b-v3"}}},
		{"SMS v3 without a delivery webhook", SMSv3, false, `{"messages":[{"destinations":[{"to":"41793026727"}],"content":{"text":"Code 1234"},"webhooks":{"callbackData":"cb"}}]}`,
			[]Destination{{To: "41793026727", Text: "Code 1234", CallbackData: "cb"}}},
		{"SMS v2", SMSv2, false, `{"bulkId":"b-2","messages":[{"from":"ACME","destinations":[{"to":"41793026727","messageId":"m-2"}],"text":"Code 1234","notifyUrl":"https://hooks.example.com/dlr","callbackData":"cb","language":"de"}]}`,
			[]Destination{{To: "41793026727", Text: "Code 1234", From: "ACME", Reference: "m-2", BulkID: "b-2", NotifyURL: "https://hooks.example.com/dlr", CallbackData: "cb", Language: "de"}}},
	} {
		got, err := Parse(tc.kind, tc.single, []byte(tc.body))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
	for _, to := range []string{`""`, `[]`, `7`} {
		if _, err := Parse(TTS, true, []byte(`{"text":"Code 1234","to":`+to+`}`)); err == nil || !strings.Contains(err.Error(), "to is required") {
			t.Errorf("TTS single with to %s: %v, want to is required", to, err)
		}
	}
}

// TestParseQueryReadsEveryField: the GET sends take the sender as from or sender, recipients
// from every to, each a comma-separated list, and the report's fields.
func TestParseQueryReadsEveryField(t *testing.T) {
	q := url.Values{"sender": {"ACME"}, "to": {"41793026727, 41793026728", "41793026729"}, "text": {"Code 1234"}, "bulkId": {"b"},
		"notifyUrl": {"https://hooks.example.com/dlr"}, "callbackData": {"cb"}}
	got, err := ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	var want []Destination
	for _, to := range []string{"41793026727", "41793026728", "41793026729"} {
		want = append(want, Destination{To: to, Text: "Code 1234", From: "ACME", BulkID: "b", NotifyURL: "https://hooks.example.com/dlr", CallbackData: "cb"})
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	q.Set("from", "OTHER")
	if got, _ := ParseQuery(q); got[0].From != "OTHER" {
		t.Errorf("from beside sender: %q, want from's", got[0].From)
	}
}

// TestReportsRenderEachField: a report (and a log entry) says each field as Infobip does: a
// destination a provider refused as REJECTED_DESTINATION; times in UTC, left out when unknown;
// a price whenever a currency came with it, 0 included (a message the provider did not charge),
// none without; NO_ERROR for a message sent or delivered, no error object for one with no status
// yet, EC_UNKNOWN for a failure without a code.
func TestReportsRenderEachField(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	done := time.Date(2026, 12, 4, 10, 0, 0, 0, cet)
	type entry struct {
		BulkID string
		SentAt *string
		DoneAt *string
		Price  *struct {
			PricePerMessage float64
			Currency        string
		}
		Status       struct{ Name string }
		Error        *struct{ Name string }
		SMSCount     *int
		MessageCount *int
	}
	read := func(b []byte) []entry {
		t.Helper()
		var out struct{ Results []entry }
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out.Results
	}
	ms := []Message{
		{ID: "m1", To: "41793026727", Status: gateway.StatusRejected, Error: "EC_INVALID_DESTINATION", DoneAt: done, Currency: "EUR"},
		{ID: "m2", To: "41793026727", Status: gateway.StatusSent, Price: 0.05},
		{ID: "m3", To: "41793026727"},
		{ID: "m4", To: "41793026727", Status: gateway.StatusUndelivered},
	}
	rs := read(Reports(SMSv2, ms))
	if rs[0].Status.Name != "REJECTED_DESTINATION" || rs[0].DoneAt == nil || *rs[0].DoneAt != "2026-12-04T09:00:00.000+0000" {
		t.Errorf("a refused destination: %+v (doneAt %v)", rs[0], rs[0].DoneAt)
	}
	if rs[0].SentAt != nil || rs[0].Price == nil || rs[0].Price.PricePerMessage != 0 || rs[0].Price.Currency != "EUR" {
		t.Errorf("no sentAt, a price of 0 EUR: %+v", rs[0])
	}
	if rs[1].Price != nil || rs[1].Error == nil || rs[1].Error.Name != "NO_ERROR" {
		t.Errorf("a message sent, its price without a currency: %+v", rs[1])
	}
	if rs[2].Error != nil || rs[2].DoneAt != nil {
		t.Errorf("a message with no status yet: %+v", rs[2])
	}
	if rs[3].Error == nil || rs[3].Error.Name != "EC_UNKNOWN" {
		t.Errorf("a failure without a code: %+v", rs[3].Error)
	}
	// A message whose parts are not known is counted as one: v2 calls it smsCount, v3 messageCount.
	if v2, v3 := rs[1], read(Reports(SMSv3, ms[1:2]))[0]; v2.SMSCount == nil || *v2.SMSCount != 1 || v2.MessageCount != nil ||
		v3.MessageCount == nil || *v3.MessageCount != 1 || v3.SMSCount != nil {
		t.Errorf("counts: v2 %v %v, v3 %v %v", v2.SMSCount, v2.MessageCount, v3.SMSCount, v3.MessageCount)
	}
	// An SMS of three parts is counted as three, and priced a part: Infobip's pricePerMessage is
	// one SMS's, and Price the message's.
	three := []Message{{ID: "m5", To: "41793026727", Status: gateway.StatusDelivered, Price: 0.06, Currency: "EUR", Parts: 3}}
	v2, v3, l2, l3 := read(Reports(SMSv2, three))[0], read(Reports(SMSv3, three))[0], read(Logs(SMSv2, three))[0], read(Logs(SMSv3, three))[0]
	for name, e := range map[string]entry{"v2 report": v2, "v3 report": v3, "v2 log": l2, "v3 log": l3} {
		n := e.SMSCount
		if strings.HasPrefix(name, "v3") {
			n = e.MessageCount
		}
		if n == nil || *n != 3 || e.Price == nil || math.Abs(e.Price.PricePerMessage-0.02) > 1e-9 {
			t.Errorf("%s of three parts: %s; want a count of 3 at 0.02 a part", name, mustJSON(t, e))
		}
	}
	ms[0].BulkID, ms[0].SentAt = "b-1", done.Add(-time.Minute)
	if ls := read(Logs(SMSv3, ms[:1])); ls[0].BulkID != "b-1" || ls[0].Price == nil || ls[0].Price.Currency != "EUR" ||
		ls[0].SentAt == nil || *ls[0].SentAt != "2026-12-04T08:59:00.000+0000" || ls[0].Error == nil || ls[0].Error.Name != "EC_INVALID_DESTINATION" {
		t.Errorf("a v3 log entry: %+v (sentAt %v, error %v)", ls[0], ls[0].SentAt, ls[0].Error)
	}
	// The caller's callbackData comes back with a report, as Infobip's does, and not in a log,
	// whose entries (Infobip's SMS logs) have no such field.
	cb := []Message{{ID: "m6", To: "41793026727", Status: gateway.StatusDelivered, CallbackData: "cb-6"}}
	for name, tc := range map[string]struct {
		body []byte
		want bool
	}{"v2 report": {Reports(SMSv2, cb), true}, "v3 report": {Reports(SMSv3, cb), true}, "v2 log": {Logs(SMSv2, cb), false}, "v3 log": {Logs(SMSv3, cb), false}} {
		if got := strings.Contains(string(tc.body), `"callbackData":"cb-6"`); got != tc.want {
			t.Errorf("%s holds the callbackData: %v, want %v: %s", name, got, tc.want, tc.body)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReportStatusesAreInfobips: each status of the message log is reported as the status Infobip
// itself gives such a message (group id and name, status id and name, from Infobip's "Response
// status and error codes"): a client that switches on the ids reads smsgate's reports as Infobip's.
func TestReportStatusesAreInfobips(t *testing.T) {
	for status, want := range map[string][4]any{
		gateway.StatusSent:        {1, "PENDING", 7, "PENDING_ENROUTE"},
		gateway.StatusDelivered:   {3, "DELIVERED", 5, "DELIVERED_TO_HANDSET"},
		gateway.StatusUndelivered: {2, "UNDELIVERABLE", 9, "UNDELIVERABLE_NOT_DELIVERED"},
		gateway.StatusFailed:      {5, "REJECTED", 21, "REJECTED_SYSTEM_ERROR"},
		gateway.StatusRejected:    {5, "REJECTED", 52, "REJECTED_DESTINATION"},
	} {
		s := ReportStatus(status)
		if got := [4]any{s.GroupID, s.GroupName, s.ID, s.Name}; got != want {
			t.Errorf("%s: reported as %v, want %v", status, got, want)
		}
	}
}

// TestNothingToListIsAnEmptyArray: reports and both logs with nothing in them answer
// "results":[], not null, which Infobip's clients iterate over.
func TestNothingToListIsAnEmptyArray(t *testing.T) {
	for name, b := range map[string][]byte{"reports": Reports(SMSv2, nil), "v2 logs": Logs(SMSv2, nil), "v3 logs": Logs(SMSv3, nil)} {
		if string(b) != `{"results":[]}` {
			t.Errorf("%s of nothing: %s", name, b)
		}
	}
}
