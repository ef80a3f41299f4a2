package app

import (
	"encoding/base64"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// fuzzRoutes are the gateway's routes with a hole (%s) where the fuzzer's path segment goes.
var fuzzRoutes = []string{
	"/v1/send-phone-message",
	"/v1/messages/%s",
	"/v1/messages",
	"/v1/messages/%s/verified",
	"/v1/dlr/infobip/infobip-eu",
	"/v1/dlr/twilio/twilio-us",
	"/v1/dlr/%s/%s",
	"/v1/providers",
	"/v1/providers/%s/disable",
	"/v1/providers/%s/enable",
	"/v1/admin/reload",
	"/v1/admin/quarantines",
	"/v1/admin/quarantines/acme/%s",
	"/sms/2/text/advanced",
	"/sms/3/messages",
	"/tts/3/single",
	"/tts/3/advanced",
	"/sms/1/text/query",
	"/sms/3/text/query",
	"/sms/1/reports",
	"/sms/3/reports",
	"/sms/1/logs",
	"/sms/3/logs",
	"/ct/1/log/end/%s",
	"/healthz",
	"/readyz",
	"/sms/1/preview",
}

var longDigits = regexp.MustCompile(`[0-9]{8,}`)

var fuzzMethods = []string{"POST", "GET", "DELETE", "PUT"}

var fuzzAuth = []string{
	"",
	"Bearer acme-ib-key",
	"App acme-ib-key",
	"Basic " + base64.StdEncoding.EncodeToString([]byte("anyone:acme-ib-key")),
	"Bearer admin-t0ken",
	"App tight-key",
	"Bearer wrong",
}

var fuzzTypes = []string{"application/json", "application/x-www-form-urlencoded", "text/plain", "", "application/json; charset=utf-8"}

// fuzzSecrets are the config's credentials: no answer and no log line may hold one the input
// did not.
var fuzzSecrets = []string{"ib-key", "tw-token", "hook-secret", "admin-t0ken"}

// FuzzHTTPAPI sends arbitrary bodies, path segments, query strings, methods, credentials and
// content types to every route of one running gateway (Infobip and Twilio fakes behind it), with
// the path segment as the Idempotency-Key on routes that take no segment (records bounded at 20,
// so the fuzzer's keys are evicted too). No
// input may earn a 500, an answer the OpenAPI document does not describe (the harness checks
// each one), an answer that is not JSON, an error without its stable code, a secret in an
// answer or a log line, or a run of 8 or more of the body's digits (a full number) in a log line.
func FuzzHTTPAPI(f *testing.F) {
	seeds := []struct {
		route, method, auth, ctype uint8
		seg, query, body           string
	}{
		{0, 0, 1, 0, "", "", actionBody},
		{0, 0, 1, 0, "", "", `{"recipient":"+14155550104","text":"Your code is 123456","context":{}}`},
		{0, 0, 1, 0, "", "", `{"recipient":"+14155550104","text":"Your code is 123456","context":{}} trailing`},
		{0, 0, 1, 0, "", "", `{"message_options":{"recipient":"+1","text":"","message_type":"voice"}}`},
		{0, 0, 1, 1, "", "", `recipient=%2B14155550104&text=hi`},
		{1, 1, 1, 0, "msg_000000000000000000000000000000", "", ""},
		{2, 1, 1, 0, "", "limit=0&status=nope&since=yesterday&before=x", ""},
		{3, 0, 1, 0, "msg_x", "", "{}"},
		{4, 0, 0, 0, "", "secret=hook-secret", `{"results":[{"messageId":"m","status":{"groupName":"DELIVERED"}}]}`},
		{4, 0, 0, 0, "", "secret=wrong", `{"results":[]}`},
		{5, 0, 0, 1, "", "", "MessageSid=SM1&MessageStatus=delivered"},
		{6, 0, 0, 0, "vonage", "", "{}"},
		{8, 0, 4, 0, "infobip-eu", "", ""},
		{9, 0, 4, 0, "../../x", "", ""},
		{10, 0, 4, 0, "", "", ""},
		{12, 2, 4, 0, "1415555", "", ""},
		{13, 0, 2, 0, "", "", `{"bulkId":"b","messages":[{"destinations":[{"to":"14155550104","messageId":"m1"}],"text":"Code 1","notifyUrl":"http://169.254.169.254/"}]}`},
		{14, 0, 3, 0, "", "", `{"messages":[{"destinations":[{"to":"14155550104"}],"content":{"text":"x"}}]}`},
		{15, 0, 2, 0, "", "", `{"text":"Code 1","to":"14155550104","language":"en"}`},
		{17, 1, 3, 0, "", "username=u&password=p&to=14155550104&text=hello", ""},
		{19, 1, 2, 0, "", "limit=999999&bulkId=x", ""},
		{22, 1, 2, 0, "", "sentSince=2026-11-30T00:00:00.000+0000&limit=-1", ""},
		{26, 0, 2, 0, "", "", `{"text":"Your code is 1234 \u20ac","languageCode":"TR","transliteration":"TURKISH"}`},
		{0, 0, 1, 0, "", "", `{"recipient":"` + strings.Repeat("9", 4000) + `","text":"x","context":{}}`},
		{0, 0, 1, 0, "", "", strings.Repeat("[", 20000)},
	}
	for _, s := range seeds {
		f.Add(s.route, s.method, s.auth, s.ctype, s.seg, s.query, []byte(s.body))
	}
	cfg := strings.Replace(compatConfig, `public_url: "https://sms.example.com"`, `public_url: "https://sms.example.com", admin_token: admin-t0ken`, 1)
	cfg = strings.ReplaceAll(cfg, "$HOOKHOST", "hooks.example.com")
	cfg = strings.Replace(cfg, "storage: {", "state: {max_idempotency_records: 20}\nstorage: {", 1)
	h, _, _ := startOnFakes(f, cfg)
	f.Fuzz(func(t *testing.T, route, method, auth, ctype uint8, seg, query string, body []byte) {
		path := fuzzRoutes[int(route)%len(fuzzRoutes)]
		esc := url.PathEscape(seg)
		if esc == "" {
			esc = "x"
		}
		path = strings.ReplaceAll(path, "%s", esc)
		if query != "" {
			q, err := url.ParseQuery(query)
			if err != nil {
				t.Skip()
			}
			path += "?" + q.Encode()
		}
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		hdr := []string{"Content-Type", fuzzTypes[int(ctype)%len(fuzzTypes)]}
		if a := fuzzAuth[int(auth)%len(fuzzAuth)]; a != "" {
			hdr = append(hdr, "Authorization", a)
		}
		if !strings.Contains(fuzzRoutes[int(route)%len(fuzzRoutes)], "%s") && seg != "" && printable(seg) {
			hdr = append(hdr, "Idempotency-Key", seg)
		}
		mark := h.logs.Len()
		hh := *h
		hh.t = t
		r := hh.do(m, path, "", string(body), hdr...)
		if r.Status >= 500 && r.Status != 502 && r.Status != 503 && r.Status != 504 {
			t.Fatalf("%s %s -> %d %s", m, path, r.Status, r.Raw)
		}
		infobipShape := strings.HasPrefix(path, "/sms/") || strings.HasPrefix(path, "/tts/") || strings.HasPrefix(path, "/ct/")
		if r.Status >= 400 && !infobipShape && errCode(r) == "" {
			t.Fatalf("%s %s -> %d without an error code: %s", m, path, r.Status, r.Raw)
		}
		input := path + string(body)
		logs := h.logs.From(mark)
		// A full number never reaches the logs: no run of 8 or more digits of the input does.
		for _, run := range longDigits.FindAllString(string(body), -1) {
			if strings.Contains(logs, run) {
				t.Fatalf("%s %s: the digits %s of the input are in the logs:\n%s", m, path, run, logs)
			}
		}
		for _, s := range fuzzSecrets {
			if strings.Contains(input, s) {
				continue
			}
			if strings.Contains(r.Raw, s) || strings.Contains(logs, s) {
				t.Fatalf("%s %s: secret %q in the answer or the logs:\n%s\n%s", m, path, s, r.Raw, logs)
			}
		}
	})
}

// printable reports whether s is printable ASCII, which a header value may hold as it is.
func printable(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
