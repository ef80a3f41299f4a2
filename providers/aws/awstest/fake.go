// Package awstest is a fake AWS endpoint for the aws drivers' tests, reached through the real SDK
// (static credentials, an endpoint override): Amazon SNS's Query API (POST /, Action=Publish) and
// End User Messaging SMS and Voice v2's JSON 1.0 API (X-Amz-Target PinpointSMSVoiceV2.*). Every
// request must carry a SigV4 Authorization for the right service and region and the test's access
// key. It answers the models' success shapes, records requests and switches modes at run time;
// scripted answers give the error shapes.
package awstest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/smsgate/smsgate/providers/internal/fakeserver"
)

// Mode is how the fake answers.
type Mode int32

// Modes.
const (
	OK          Mode = iota // the operation's success shape
	Unavailable             // 503
	Hang                    // never answers until the client gives up or Release is called
)

// Request is one recorded call.
type Request struct {
	// Service is sns or sms-voice; Operation is Publish, SendTextMessage or SendVoiceMessage.
	Service, Operation string
	// Form is SNS's form; Body the JSON API's body.
	Form url.Values
	Body map[string]any
}

// Fake is the handler; use it with httptest.NewServer.
type Fake struct {
	fakeserver.Control[Request]
	region, accessKey string
}

// New returns a fake for one region and access key id.
func New(region, accessKey string, record bool) *Fake {
	f := &Fake{region: region, accessKey: accessKey}
	f.Init(record)
	return f
}

// SetMode switches how calls are answered.
func (f *Fake) SetMode(m Mode) { f.SetModeValue(int32(m)) }

var sigv4 = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^/]+)/([0-9]{8})/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}$`)

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	n := f.NextCall()
	req := Request{Service: "sns"}
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		req.Service, req.Operation = "sms-voice", strings.TrimPrefix(t, "PinpointSMSVoiceV2.")
		_ = json.Unmarshal(raw, &req.Body)
	} else {
		req.Form, _ = url.ParseQuery(string(raw))
		req.Operation = req.Form.Get("Action")
	}
	f.Record(req)
	m := sigv4.FindStringSubmatch(r.Header.Get("Authorization"))
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/":
		w.WriteHeader(404)
		return
	case m == nil || m[1] != f.accessKey || m[3] != f.region || m[4] != req.Service || !strings.Contains(m[5], "host") || r.Header.Get("X-Amz-Date") == "":
		f.fail(w, req, 403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
		return
	}
	mv, ok := f.Begin(w, r, int32(Hang))
	if !ok {
		return
	}
	mode := Mode(mv)
	if mode == Unavailable {
		f.fail(w, req, 503, "ServiceUnavailable", "Service is unavailable")
		return
	}
	id := fmt.Sprintf("%08x-1111-2222-3333-%012x", n, n)
	switch req.Operation {
	case "Publish":
		if req.Form.Get("Version") != "2010-03-31" || req.Form.Get("PhoneNumber") == "" || req.Form.Get("Message") == "" {
			f.fail(w, req, 400, "InvalidParameter", "Invalid parameter")
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(w, `<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>%s</MessageId></PublishResult><ResponseMetadata><RequestId>req-%d</RequestId></ResponseMetadata></PublishResponse>`, id, n)
	case "SendTextMessage", "SendVoiceMessage":
		if req.Body["DestinationPhoneNumber"] == nil || req.Body["OriginationIdentity"] == nil {
			f.fail(w, req, 400, "ValidationException", "missing parameter")
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		fmt.Fprintf(w, `{"MessageId":%q}`, id)
	default:
		f.fail(w, req, 400, "InvalidAction", "unknown operation")
	}
}

// fail writes an error in the service's own shape.
func (f *Fake) fail(w http.ResponseWriter, req Request, status int, code, msg string) {
	w.Header().Set("X-Amzn-Requestid", "req-err")
	if req.Service == "sns" {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprint(w, SNSError(code, msg))
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(status)
	fmt.Fprint(w, JSONError(code, msg, ""))
}

// SNSError is the Query API's error body.
func SNSError(code, msg string) string {
	return fmt.Sprintf(`<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>req-err</RequestId></ErrorResponse>`, code, msg)
}

// JSONError is the JSON 1.0 API's error body, with a Reason when one is given.
func JSONError(code, msg, reason string) string {
	b, _ := json.Marshal(map[string]string{"__type": "com.amazonaws.pinpointsmsvoicev2#" + code, "message": msg, "Reason": reason})
	if reason == "" {
		b, _ = json.Marshal(map[string]string{"__type": "com.amazonaws.pinpointsmsvoicev2#" + code, "message": msg})
	}
	return string(b)
}
