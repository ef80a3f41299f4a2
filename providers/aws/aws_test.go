package aws

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/time/rate"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/aws/awstest"
	"github.com/smsgate/smsgate/providers/providertest"
)

const (
	region    = "eu-west-1"
	accessKey = "AKIDSMSGATETEST0001"
	secretKey = "aws-SECRET-0123456789abcdefghij"
	topic     = "arn:aws:sns:eu-west-1:123456789012:smsgate-events"
)

// staticCredentials points the SDK's default chain at the environment only: no files, no
// instance metadata, no network.
func staticCredentials(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", accessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CA_BUNDLE", "") // the tests' own HTTP clients (the contract's dial timeout) must be used
}

func serve(t *testing.T) (*awstest.Fake, *httptest.Server) {
	f := awstest.New(region, accessKey, true)
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	t.Cleanup(f.Release)
	return f, s
}

func last(f *awstest.Fake) awstest.Request {
	r := f.Requests()
	return r[len(r)-1]
}

func newSNS(t *testing.T, endpoint string, deps gateway.Deps) *SNS {
	c := SNSConfig{Common: Common{Region: region, Endpoint: endpoint}, SenderID: "SMSGate", Senders: map[string]string{"DE": "SMSGateDE"}, MaxPrice: 0.5}
	c.Defaults()
	if p := c.Validate(); len(p) > 0 {
		t.Fatalf("config: %v", p)
	}
	return NewSNS(c, deps)
}

func newSMSVoice(t testing.TB, endpoint string, deps gateway.Deps) *SMSVoice {
	c := SMSVoiceConfig{Common: Common{Region: region, Endpoint: endpoint}, OriginationIdentity: "+14155550000", ConfigurationSet: "smsgate", EventTopics: []string{topic}}
	c.Defaults()
	if p := c.Validate(); len(p) > 0 {
		t.Fatalf("config: %v", p)
	}
	return NewSMSVoice(c, deps)
}

func TestSNSPublish(t *testing.T) {
	staticCredentials(t)
	f, s := serve(t)
	p := newSNS(t, s.URL, gateway.Deps{Name: "sns", HTTPClient: &http.Client{}})
	res, err := p.Send(context.Background(), &gateway.Message{ID: "msg_1", To: "+4915112345678", Country: "DE", Type: gateway.SMS, Text: "Your code is 918273", Code: "918273"})
	if err != nil || res.ProviderMessageID == "" {
		t.Fatalf("res %+v err %v", res, err)
	}
	got := last(f)
	if got.Operation != "Publish" || got.Form.Get("PhoneNumber") != "+4915112345678" || got.Form.Get("Message") != "Your code is 918273" {
		t.Fatalf("request %+v", got)
	}
	attrs := map[string]string{}
	for i := 1; got.Form.Get("MessageAttributes.entry."+itoa(i)+".Name") != ""; i++ {
		pre := "MessageAttributes.entry." + itoa(i)
		attrs[got.Form.Get(pre+".Name")] = got.Form.Get(pre+".Value.DataType") + ":" + got.Form.Get(pre+".Value.StringValue")
	}
	want := map[string]string{"AWS.SNS.SMS.SMSType": "String:Transactional", "AWS.SNS.SMS.SenderID": "String:SMSGateDE", "AWS.SNS.SMS.MaxPrice": "Number:0.5"}
	if diff := cmp.Diff(want, attrs); diff != "" {
		t.Errorf("message attributes (-want +got):\n%s", diff)
	}
	for k, v := range got.Form {
		if k != "Message" && strings.Contains(strings.Join(v, ","), "918273") {
			t.Errorf("the code is in %s", k)
		}
	}
	// One attempt only: the SDK does not retry a 503 (a retried Publish can send twice).
	f.SetMode(awstest.Unavailable)
	before := f.Calls()
	if _, err := p.Send(context.Background(), &gateway.Message{ID: "msg_2", To: "+4915112345678", Type: gateway.SMS, Text: "x"}); gateway.ClassOf(err) != gateway.ClassProvider {
		t.Errorf("503: %v", err)
	}
	if n := f.Calls() - before; n != 1 {
		t.Errorf("%d calls for one send, want 1 (no SDK retries)", n)
	}
	if p.Capabilities().Can(gateway.Voice) {
		t.Error("SNS declares voice")
	}
}

func TestSMSVoiceRequests(t *testing.T) {
	staticCredentials(t)
	f, s := serve(t)
	p := newSMSVoice(t, s.URL, gateway.Deps{Name: "eum", HTTPClient: &http.Client{}})
	if _, err := p.Send(context.Background(), &gateway.Message{ID: "msg_1", To: "+447911123456", Type: gateway.SMS, Text: "Your code is 123456"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"DestinationPhoneNumber": "+447911123456", "OriginationIdentity": "+14155550000", "MessageBody": "Your code is 123456",
		"MessageType": "TRANSACTIONAL", "ConfigurationSetName": "smsgate", "Context": map[string]any{"smsgate_id": "msg_1"}}
	if got := last(f); got.Operation != "SendTextMessage" || cmp.Diff(want, got.Body) != "" {
		t.Errorf("text (-want +got):\n%s", cmp.Diff(want, got.Body))
	}
	if _, err := p.Send(context.Background(), &gateway.Message{ID: "msg_2", To: "+447911123456", Type: gateway.Voice, Code: "4271", Language: "de"}); err != nil {
		t.Fatal(err)
	}
	want = map[string]any{"DestinationPhoneNumber": "+447911123456", "OriginationIdentity": "+14155550000", "MessageBody": "Ihr Code lautet 4, 2, 7, 1. Ihr Code lautet 4, 2, 7, 1.",
		"MessageBodyTextType": "TEXT", "VoiceId": "VICKI", "ConfigurationSetName": "smsgate", "Context": map[string]any{"smsgate_id": "msg_2"}}
	if got := last(f); got.Operation != "SendVoiceMessage" || cmp.Diff(want, got.Body) != "" {
		t.Errorf("voice (-want +got):\n%s", cmp.Diff(want, got.Body))
	}
}

func TestSignedForTheRightServiceAndRegion(t *testing.T) {
	staticCredentials(t)
	// A fake in another region refuses the SDK's signature scope.
	f := awstest.New("us-east-1", accessKey, true)
	s := httptest.NewServer(f)
	defer s.Close()
	_, err := newSNS(t, s.URL, gateway.Deps{Name: "sns", HTTPClient: &http.Client{}}).Send(context.Background(), &gateway.Message{To: "+14155550104", Type: gateway.SMS, Text: "x"})
	ge := gateway.AsError(err)
	if ge.Class != gateway.ClassProvider || ge.Code != "SignatureDoesNotMatch" || ge.HTTPStatus != 403 {
		t.Errorf("err %+v", ge)
	}
}

func TestContracts(t *testing.T) {
	staticCredentials(t)
	_, ok := serve(t)
	snsErr := func(code string) string { return awstest.SNSError(code, "simulated") }
	t.Run("sns", func(t *testing.T) {
		providertest.Run(t, providertest.Contract{
			New:       func(base string, deps gateway.Deps) gateway.Provider { return newSNS(t, base, deps) },
			Accepting: ok.URL,
			Secrets:   []string{secretKey},
			Cases: []providertest.Case{
				{Name: "InvalidParameter: recipient", Status: 400, ContentType: "text/xml", Body: snsErr("InvalidParameter"), Class: gateway.ClassRecipient, Code: "InvalidParameter"},
				{Name: "ParameterValueInvalid: recipient", Status: 400, ContentType: "text/xml", Body: snsErr("ParameterValueInvalid"), Class: gateway.ClassRecipient, Code: "ParameterValueInvalid"},
				{Name: "opted out: recipient", Status: 400, ContentType: "text/xml", Body: awstest.SNSError("InvalidParameter", "Phone number is opted out"), Class: gateway.ClassRecipient},
				// Read in any case: a provider class here would count the recipient against SNS.
				{Name: "Opted Out, capitalised: recipient", Status: 400, ContentType: "text/xml", Body: awstest.SNSError("AuthorizationError", "Phone Number Is Opted Out"), Class: gateway.ClassRecipient},
				{Name: "OptedOut: recipient", Status: 400, ContentType: "text/xml", Body: snsErr("OptedOut"), Class: gateway.ClassRecipient, Code: "OptedOut"},
				// An error without a message names its code.
				{Name: "InternalError without a message", Status: 500, ContentType: "text/xml", Body: awstest.SNSError("InternalError", ""), Class: gateway.ClassProvider, Code: "InternalError"},
				{Name: "AuthorizationError", Status: 403, ContentType: "text/xml", Body: snsErr("AuthorizationError"), Class: gateway.ClassProvider, Code: "AuthorizationError"},
				{Name: "InvalidClientTokenId", Status: 403, ContentType: "text/xml", Body: snsErr("InvalidClientTokenId"), Class: gateway.ClassProvider, Code: "InvalidClientTokenId"},
				{Name: "Throttling", Status: 400, ContentType: "text/xml", Body: snsErr("Throttling"), Class: gateway.ClassThrottled, Code: "Throttling"},
				{Name: "InternalError", Status: 500, ContentType: "text/xml", Body: snsErr("InternalError"), Class: gateway.ClassProvider, Code: "InternalError"},
				{Name: "a recipient code in a 5xx is the provider's", Status: 503, ContentType: "text/xml", Body: snsErr("InvalidParameter"), Class: gateway.ClassProvider},
				{Name: "a recipient code in a 500 is the provider's", Status: 500, ContentType: "text/xml", Body: snsErr("InvalidParameter"), Class: gateway.ClassProvider},
				// The contract fails the case if the error keeps the number.
				{Name: "a message quoting the number", Status: 400, ContentType: "text/xml", Class: gateway.ClassRecipient, Code: "InvalidParameter",
					Body: awstest.SNSError("InvalidParameter", "Invalid parameter: PhoneNumber Reason: +14155550104 is not valid to publish to")},
				{Name: "published", Status: 200, ContentType: "text/xml", Body: `<PublishResponse><PublishResult><MessageId>m-1</MessageId></PublishResult></PublishResponse>`, OK: true},
				{Name: "published without an id", Status: 200, ContentType: "text/xml", Body: `<PublishResponse><PublishResult><MessageId></MessageId></PublishResult></PublishResponse>`, Class: gateway.ClassProvider, Code: "BAD_RESPONSE"},
			},
		})
	})
	t.Run("aws-sms-voice", func(t *testing.T) {
		jerr := func(code, reason string) string { return awstest.JSONError(code, "simulated", reason) }
		ct := "application/x-amz-json-1.0"
		providertest.Run(t, providertest.Contract{
			New:       func(base string, deps gateway.Deps) gateway.Provider { return newSMSVoice(t, base, deps) },
			Accepting: ok.URL,
			Secrets:   []string{secretKey},
			BadReport: func() (*http.Request, []byte) {
				b := []byte(`{"Type":"Notification","MessageId":"1","TopicArn":"` + topic + `","Message":"{}","Timestamp":"2026-11-30T12:00:00Z","SignatureVersion":"2","Signature":"AAAA","SigningCertURL":"https://sns.eu-west-1.amazonaws.com/cert.pem"}`)
				return httptest.NewRequest("POST", "/v1/dlr/aws-sms-voice/eum", strings.NewReader(string(b))), b
			},
			Cases: []providertest.Case{
				{Name: "opted out: recipient", Status: 409, ContentType: ct, Body: jerr("ConflictException", "DESTINATION_PHONE_NUMBER_OPTED_OUT"), Class: gateway.ClassRecipient, Code: "ConflictException/DESTINATION_PHONE_NUMBER_OPTED_OUT"},
				{Name: "country blocked: destination", Status: 400, ContentType: ct, Body: jerr("ValidationException", "DESTINATION_COUNTRY_BLOCKED"), Class: gateway.ClassDestination, Code: "ValidationException/DESTINATION_COUNTRY_BLOCKED"},
				{Name: "blocked by protect configuration: destination", Status: 409, ContentType: ct, Body: jerr("ConflictException", "DESTINATION_COUNTRY_BLOCKED_BY_PROTECT_CONFIGURATION"), Class: gateway.ClassDestination},
				{Name: "identity not valid for the country: destination", Status: 400, ContentType: ct, Body: jerr("ValidationException", "INVALID_IDENTITY_FOR_DESTINATION_COUNTRY"), Class: gateway.ClassDestination},
				{Name: "monthly spend limit", Status: 402, ContentType: ct, Body: jerr("ServiceQuotaExceededException", "MONTHLY_SPEND_LIMIT_REACHED_FOR_TEXT"), Class: gateway.ClassProvider, Code: "ServiceQuotaExceededException/MONTHLY_SPEND_LIMIT_REACHED_FOR_TEXT"},
				{Name: "access denied", Status: 403, ContentType: ct, Body: jerr("AccessDeniedException", "ACCOUNT_DISABLED"), Class: gateway.ClassProvider, Code: "AccessDeniedException/ACCOUNT_DISABLED"},
				{Name: "invalid number: recipient", Status: 400, ContentType: ct, Body: jerr("ValidationException", "INVALID_PHONE_NUMBER"), Class: gateway.ClassRecipient, Code: "ValidationException/INVALID_PHONE_NUMBER"},
				{Name: "country not enabled: destination", Status: 400, ContentType: ct, Body: jerr("ValidationException", "COUNTRY_NOT_ENABLED"), Class: gateway.ClassDestination},
				{Name: "sandbox number not verified: destination", Status: 409, ContentType: ct, Body: jerr("ConflictException", "DESTINATION_PHONE_NUMBER_NOT_VERIFIED"), Class: gateway.ClassDestination},
				{Name: "blocked by a protect number override: destination", Status: 409, ContentType: ct, Body: jerr("ConflictException", "DESTINATION_PHONE_NUMBER_BLOCKED_BY_PROTECT_NUMBER_OVERRIDE"), Class: gateway.ClassDestination},
				{Name: "an error without a message", Status: 500, ContentType: ct, Body: awstest.JSONError("InternalServerException", "", ""), Class: gateway.ClassProvider, Code: "InternalServerException"},
				{Name: "throttled", Status: 400, ContentType: ct, Body: jerr("ThrottlingException", ""), Class: gateway.ClassThrottled, Code: "ThrottlingException"},
				{Name: "internal", Status: 500, ContentType: ct, Body: jerr("InternalServerException", ""), Class: gateway.ClassProvider},
				{Name: "other validation: provider", Status: 400, ContentType: ct, Body: jerr("ValidationException", "INVALID_PARAMETER"), Class: gateway.ClassProvider},
				{Name: "a message quoting the number", Status: 400, ContentType: ct, Class: gateway.ClassRecipient, Code: "ValidationException/INVALID_PHONE_NUMBER",
					Body: awstest.JSONError("ValidationException", "+14155550104 is not a valid phone number", "INVALID_PHONE_NUMBER")},
				{Name: "sent", Status: 200, ContentType: ct, Body: `{"MessageId":"m-2"}`, OK: true},
				{Name: "sent without an id", Status: 200, ContentType: ct, Body: `{"MessageId":""}`, Class: gateway.ClassProvider, Code: "BAD_RESPONSE"},
			},
		})
	})
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// snsSigner signs SNS messages with a certificate of the test's own, served through the
// driver's test seam (never fetched from the network).
type snsSigner struct {
	key  *rsa.PrivateKey
	cert []byte
}

func newSigner(t testing.TB) *snsSigner {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sns.amazonaws.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &snsSigner{key: key, cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// sign builds the string to sign by hand, per AWS's documentation, and signs it.
func (s *snsSigner) sign(t testing.TB, m map[string]string) []byte {
	var parts []string
	keys := []string{"Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"}
	if m["Type"] != "Notification" {
		keys = []string{"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"}
	}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			parts = append(parts, k+"\n"+v+"\n")
		}
	}
	str := strings.Join(parts, "")
	var sig []byte
	var err error
	if m["SignatureVersion"] == "1" {
		h := sha1.Sum([]byte(str))
		sig, err = rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA1, h[:])
	} else {
		h := sha256.Sum256([]byte(str))
		sig, err = rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, h[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	m["Signature"] = base64.StdEncoding.EncodeToString(sig)
	b, _ := json.Marshal(m)
	return b
}

func TestDeliveryEventsThroughSNS(t *testing.T) {
	staticCredentials(t)
	signer := newSigner(t)
	p := newSMSVoice(t, "https://sms-voice.eu-west-1.amazonaws.com", gateway.Deps{Name: "eum"})
	fetched := 0
	p.fetchCert = func(_ context.Context, u string) ([]byte, error) {
		fetched++
		if u != "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem" {
			return nil, errors.New("unexpected certificate URL " + u)
		}
		return signer.cert, nil
	}
	var confirmed []string
	p.confirm = func(_ context.Context, u string) error { confirmed = append(confirmed, u); return nil }
	cert := "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"
	post := func(body []byte) ([]gateway.DeliveryReport, error) {
		r := httptest.NewRequest("POST", "/v1/dlr/aws-sms-voice/eum", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "text/plain; charset=UTF-8")
		return p.ParseReports(r, body, "")
	}
	// The subscription of a listed topic is confirmed; another topic's is not.
	sub := func(topicARN string) map[string]string {
		return map[string]string{"Type": "SubscriptionConfirmation", "MessageId": "s1", "Token": "tok", "TopicArn": topicARN, "Message": "confirm",
			"SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=tok", "Timestamp": "2026-11-30T12:00:00.000Z",
			"SignatureVersion": "2", "SigningCertURL": cert}
	}
	if reps, err := post(signer.sign(t, sub(topic))); err != nil || len(reps) != 0 || len(confirmed) != 1 {
		t.Fatalf("confirmation: %v %v %v", reps, err, confirmed)
	}
	if _, err := post(signer.sign(t, sub("arn:aws:sns:eu-west-1:999999999999:someone-else"))); err != gateway.ErrUnauthenticated || len(confirmed) != 1 {
		t.Errorf("another topic's subscription: %v, confirmed %v", err, confirmed)
	}
	note := func(version, eventType string) map[string]string {
		ev, _ := json.Marshal(map[string]any{"eventType": eventType, "messageId": "aws-m1", "context": map[string]string{"smsgate_id": "msg_9"}})
		return map[string]string{"Type": "Notification", "MessageId": "n1", "TopicArn": topic, "Subject": "event", "Message": string(ev),
			"Timestamp": "2026-11-30T12:00:05.000Z", "SignatureVersion": version, "SigningCertURL": cert}
	}
	for _, tc := range []struct{ version, event, want string }{
		{"2", "TEXT_DELIVERED", gateway.StatusDelivered}, {"1", "TEXT_CARRIER_UNREACHABLE", gateway.StatusUndelivered},
		{"2", "TEXT_SUCCESSFUL", gateway.StatusSent}, {"2", "TEXT_INVALID", gateway.StatusFailed},
		{"2", "VOICE_COMPLETED", gateway.StatusDelivered}, {"2", "VOICE_ANSWERED", gateway.StatusDelivered},
		{"2", "VOICE_NO_ANSWER", gateway.StatusUndelivered}, {"2", "VOICE_FAILED", gateway.StatusFailed},
		{"2", "TEXT_SOMETHING_NEW", gateway.StatusSent},
	} {
		reps, err := post(signer.sign(t, note(tc.version, tc.event)))
		want := []gateway.DeliveryReport{{ProviderMessageID: "aws-m1", MessageID: "msg_9", ProviderStatus: tc.event, Status: tc.want}}
		if err != nil || cmp.Diff(want, reps) != "" {
			t.Errorf("%s v%s: %+v %v", tc.event, tc.version, reps, err)
		}
	}
	// An SMS event carries its price in USD: message price plus carrier fee.
	priced := note("2", "TEXT_DELIVERED")
	priced["Message"] = `{"eventType":"TEXT_DELIVERED","messageId":"aws-m1","context":{"smsgate_id":"msg_9"},"totalMessageParts":1,"totalMessagePrice":0.00581,"totalCarrierFee":0.003}`
	reps, err := post(signer.sign(t, priced))
	if want := []gateway.DeliveryReport{{ProviderMessageID: "aws-m1", MessageID: "msg_9", ProviderStatus: "TEXT_DELIVERED", Status: gateway.StatusDelivered, Price: 0.00881, Currency: "USD"}}; err != nil || cmp.Diff(want, reps, cmpopts.EquateApprox(0, 1e-9)) != "" {
		t.Errorf("priced event: %+v %v", reps, err)
	}
	if fetched != 1 {
		t.Errorf("the certificate was fetched %d times, want once (cached)", fetched)
	}
	// Tampered message, a certificate from elsewhere, an unknown signature version.
	m := note("2", "TEXT_DELIVERED")
	b := signer.sign(t, m)
	if _, err := post([]byte(strings.Replace(string(b), "TEXT_DELIVERED", "TEXT_BLOCKED", 1))); err != gateway.ErrUnauthenticated {
		t.Errorf("tampered: %v", err)
	}
	for name, certURL := range map[string]string{"http": "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
		"another host":   "https://sns.eu-west-1.evil.com/SimpleNotificationService-abc.pem",
		"not pem":        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.txt",
		"another path":   "https://sns.eu-west-1.amazonaws.com/x.pem",
		"a query":        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem?again=1",
		"an empty query": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem?",
		"a fragment":     "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem#x",
		"a user":         "https://u@sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
		"another region": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
		"a subdirectory": "https://sns.eu-west-1.amazonaws.com/a/SimpleNotificationService-abc.pem"} {
		m := note("2", "TEXT_DELIVERED")
		m["SigningCertURL"] = certURL
		if _, err := post(signer.sign(t, m)); err != gateway.ErrUnauthenticated {
			t.Errorf("%s: %v", name, err)
		}
	}
	m = note("3", "TEXT_DELIVERED")
	if _, err := post(signer.sign(t, m)); err != gateway.ErrUnauthenticated {
		t.Errorf("SignatureVersion 3: %v", err)
	}
	// The version is not signed: a version-1 (SHA1) signature relabelled as an unknown version
	// is refused, not checked as version 1.
	b = signer.sign(t, note("1", "TEXT_DELIVERED"))
	if _, err := post([]byte(strings.Replace(string(b), `"SignatureVersion":"1"`, `"SignatureVersion":"3"`, 1))); err != gateway.ErrUnauthenticated {
		t.Errorf("a SHA1 signature labelled version 3: %v", err)
	}
	// A notification without a subject signs no Subject line.
	bare := note("2", "TEXT_DELIVERED")
	delete(bare, "Subject")
	if reps, err := post(signer.sign(t, bare)); err != nil || len(reps) != 1 {
		t.Errorf("a notification without a subject: %+v %v", reps, err)
	}
	// An unsubscribe confirmation of a listed topic is taken, records nothing and visits nothing.
	unsub := sub(topic)
	unsub["Type"] = "UnsubscribeConfirmation"
	if reps, err := post(signer.sign(t, unsub)); err != nil || len(reps) != 0 || len(confirmed) != 1 {
		t.Errorf("an unsubscribe confirmation: %+v %v, confirmed %v", reps, err, confirmed)
	}
	if fetched != 1 {
		t.Errorf("the certificate was fetched %d times, want once: no refused URL is fetched", fetched)
	}
	// A subscription URL of another region is not visited.
	other := sub(topic)
	other["SubscribeURL"] = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=tok"
	if _, err := post(signer.sign(t, other)); err != gateway.ErrUnauthenticated || len(confirmed) != 1 {
		t.Errorf("a subscription URL of another region: %v, confirmed %v", err, confirmed)
	}
}

// TestSNSURLs: a certificate or subscription URL must be HTTPS on SNS's host in the topic's own
// region (China's regions under amazonaws.com.cn), and a certificate's path must be exactly
// SNS's certificate name.
func TestSNSURLs(t *testing.T) {
	const pem = "/SimpleNotificationService-abc.pem"
	for _, tc := range []struct {
		url, topic string
		cert, sub  bool
	}{
		{"https://sns.eu-west-1.amazonaws.com" + pem, topic, true, true},
		{"https://sns.cn-north-1.amazonaws.com.cn" + pem, "arn:aws-cn:sns:cn-north-1:123456789012:smsgate", true, true},
		{"https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=t", topic, false, true},
		{"https://sns.eu-west-1.amazonaws.com" + pem + "x", topic, false, true},
		{"https://sns.eu-west-1.amazonaws.com" + pem + "/more", topic, false, true},
		// Only SNS's names: letters and digits, at most 64 of them.
		{"https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-a.b.pem", topic, false, true},
		{"https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-" + strings.Repeat("a", 65) + ".pem", topic, false, true},
		{"https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-" + strings.Repeat("a", 64) + ".pem", topic, true, true},
		{"https://sns.eu-west-1.amazonaws.com.evil.com" + pem, topic, false, false},
		// A topic ARN that names no region, or is not one, allows no host.
		{"https://sns..amazonaws.com" + pem, "arn:aws:sns::123456789012:smsgate", false, false},
		{"https://sns.eu-west-1.amazonaws.com" + pem, "arn:aws:sns:eu-west-1:123456789012", false, false},
		{"https://sns.eu-west-1.amazonaws.com" + pem, "arn:aws:sns:eu-west-1:123456789012:smsgate:extra", false, false},
	} {
		if got := certURL(tc.url, tc.topic); got != tc.cert {
			t.Errorf("certURL(%s, %s) = %v", tc.url, tc.topic, got)
		}
		if _, got := snsURL(tc.url, tc.topic); got != tc.sub {
			t.Errorf("snsURL(%s, %s) = %v", tc.url, tc.topic, got)
		}
	}
}

// TestACertificateFetchNeedsA200: an answer other than 200 is an error, which ParseReports
// answers as unavailable (503, so SNS tries again). Parsed as a certificate, a 5xx page would
// make the report look forged, and SNS gives up on the 403. The body read is bounded.
func TestACertificateFetchNeedsA200(t *testing.T) {
	staticCredentials(t)
	var status int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		w.Write([]byte(strings.Repeat("x", 100<<10)))
	}))
	defer srv.Close()
	p := newSMSVoice(t, "https://sms-voice.eu-west-1.amazonaws.com", gateway.Deps{Name: "eum", HTTPClient: srv.Client()})
	for _, status = range []int{http.StatusInternalServerError, http.StatusNotFound, http.StatusNoContent} {
		if b, err := p.get(context.Background(), srv.URL); err == nil {
			t.Errorf("a %d gave %d bytes and no error", status, len(b))
		}
	}
	status = http.StatusOK
	if b, err := p.get(context.Background(), srv.URL); err != nil || len(b) != 64<<10 {
		t.Errorf("a 200: %d bytes, %v; want the first 64 KiB", len(b), err)
	}
}

// TestCertificateFetchesArePaced: whoever knows a listed topic's ARN can post messages naming a
// new certificate each time. A burst of fetches goes through, then about one a second; what AWS
// does not serve is never cached, and the cache is bounded.
func TestCertificateFetchesArePaced(t *testing.T) {
	staticCredentials(t)
	signer := newSigner(t)
	p := newSMSVoice(t, "https://sms-voice.eu-west-1.amazonaws.com", gateway.Deps{Name: "eum"})
	var fetched atomic.Int32
	p.fetchCert = func(_ context.Context, u string) ([]byte, error) {
		fetched.Add(1)
		if strings.Contains(u, "-good") {
			return signer.cert, nil
		}
		return nil, errors.New("HTTP 404")
	}
	post := func(certURL string) error {
		body := signer.sign(t, map[string]string{"Type": "Notification", "MessageId": "n1", "TopicArn": topic, "Subject": "event",
			"Message": `{"eventType":"TEXT_DELIVERED","messageId":"aws-m1"}`, "Timestamp": "2026-11-30T12:00:05.000Z", "SignatureVersion": "2", "SigningCertURL": certURL})
		r := httptest.NewRequest("POST", "/v1/dlr/aws-sms-voice/eum", bytes.NewReader(body))
		_, err := p.ParseReports(r, body, "")
		return err
	}
	for i := range 50 {
		// Answered 503 (SNS retries it): a real certificate AWS did not serve just then must not
		// lose the report, which a 4xx would.
		if err := post(fmt.Sprintf("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-%032x.pem", i)); gateway.ClassOf(err) != gateway.ClassUnavailable {
			t.Fatalf("a certificate not fetched: %v, want class Unavailable", err)
		}
	}
	if n := fetched.Load(); n < 4 || n > 6 {
		t.Errorf("50 made-up certificates made %d fetches, want the burst of 4 (and at most what a second or two refills)", n)
	}
	var cached int
	p.certs.Range(func(any, any) bool { cached++; return true })
	if cached != 0 {
		t.Errorf("%d certificates AWS did not serve were cached", cached)
	}
	// The cache holds at most maxCerts.
	p.fetches = rate.NewLimiter(rate.Inf, 0)
	for i := range maxCerts + 10 {
		if err := post(fmt.Sprintf("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-good%d.pem", i)); err != nil {
			t.Fatalf("certificate %d: %v", i, err)
		}
	}
	cached = 0
	p.certs.Range(func(any, any) bool { cached++; return true })
	if cached != maxCerts {
		t.Errorf("%d certificates cached, want %d", cached, maxCerts)
	}
}

// TestAWebhookSecretIsCheckedFirst: with webhook_secret set, a post without it is asked for it
// (401, which SNS answers by posting again with the subscription URL's user and password), and one
// with another is refused, both before the JSON is read or any certificate fetched: a stranger
// who knows a topic's ARN can no longer spend the pace of certificate fetches that a new
// certificate of AWS would need. The previous secret still passes while subscriptions move.
func TestAWebhookSecretIsCheckedFirst(t *testing.T) {
	staticCredentials(t)
	signer := newSigner(t)
	c := SMSVoiceConfig{Common: Common{Region: region}, OriginationIdentity: "+14155550000", ConfigurationSet: "smsgate", EventTopics: []string{topic},
		WebhookSecret: "new-secret-0123456789", PreviousWebhookSecrets: []gateway.Secret{"old-secret-0123456789"}}
	c.Defaults()
	if p := c.Validate(); len(p) > 0 {
		t.Fatalf("config: %v", p)
	}
	p := NewSMSVoice(c, gateway.Deps{Name: "eum"})
	var fetched int
	p.fetchCert = func(context.Context, string) ([]byte, error) { fetched++; return signer.cert, nil }
	post := func(certURL, password string, basic bool) ([]gateway.DeliveryReport, error) {
		body := signer.sign(t, map[string]string{"Type": "Notification", "MessageId": "n1", "TopicArn": topic, "Subject": "event",
			"Message": `{"eventType":"TEXT_DELIVERED","messageId":"aws-m1"}`, "Timestamp": "2026-11-30T12:00:05.000Z", "SignatureVersion": "2", "SigningCertURL": certURL})
		r := httptest.NewRequest("POST", "/v1/dlr/aws-sms-voice/eum?secret=new-secret-0123456789", bytes.NewReader(body))
		if basic {
			r.SetBasicAuth("smsgate", password)
		}
		return p.ParseReports(r, body, "")
	}
	for i := range 20 {
		made := fmt.Sprintf("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-%032x.pem", i)
		if _, err := post(made, "", false); err != gateway.ErrChallenge {
			t.Fatalf("without credentials (the secret in the query does not count): %v, want ErrChallenge", err)
		}
		if _, err := post(made, "wrong-secret-0123456789", true); err != gateway.ErrUnauthenticated {
			t.Fatalf("with another secret: %v, want ErrUnauthenticated", err)
		}
	}
	if fetched != 0 {
		t.Errorf("posts without the secret made %d certificate fetches", fetched)
	}
	if _, err := p.ParseReports(httptest.NewRequest("POST", "/", strings.NewReader("not json")), []byte("not json"), ""); err != gateway.ErrChallenge {
		t.Errorf("a body that is not SNS's, without credentials: %v, want ErrChallenge", err)
	}
	cert := "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"
	for _, pw := range []string{"new-secret-0123456789", "old-secret-0123456789"} {
		reps, err := post(cert, pw, true)
		if err != nil || len(reps) != 1 || reps[0].Status != gateway.StatusDelivered {
			t.Errorf("with %s: %v %v", pw, reps, err)
		}
	}
	if fetched != 1 {
		t.Errorf("%d certificate fetches, want the one", fetched)
	}
	if auth := p.Webhook().Auth; !strings.Contains(auth, "basic auth") || strings.Contains(auth, "new-secret") {
		t.Errorf("the webhook's auth says %q", auth)
	}
}

func TestConfigValidate(t *testing.T) {
	c := SMSVoiceConfig{Common: Common{Region: "Europe", Endpoint: "ftp://x"}, EventTopics: []string{"not-an-arn"}}
	// Each of these characters would need escaping in the subscription's URL (a '%' would be read
	// as the start of an escape); the last secret has none.
	for _, secret := range []gateway.Secret{"p@ss0123456789", "pass:0123456789", "pass/0123456789", "pass%200123456789", "pass 0123456789", "pässword0123456789", "Pass-._~0123456789"} {
		bad := SMSVoiceConfig{Common: Common{Region: "eu-west-1"}, OriginationIdentity: "+14155550000", WebhookSecret: secret}
		var want []gateway.Problem
		if !strings.HasPrefix(string(secret), "Pass") {
			want = []gateway.Problem{{Key: "webhook_secret", Message: "may hold only letters, digits and -._~ (it is the password in the SNS subscription's URL)"}}
		}
		if diff := cmp.Diff(want, bad.Validate()); diff != "" {
			t.Errorf("secret %q (-want +got):\n%s", string(secret), diff)
		}
	}
	c.Defaults()
	want := []gateway.Problem{{Key: "endpoint", Message: `"ftp://x" is not an http(s) URL`}, {Key: "region", Message: `"Europe" is not an AWS region such as eu-west-1`},
		{Key: "origination_identity", Message: "is required (a phone number, sender id, pool, or its ARN)"}, {Key: "event_topics[0]", Message: `"not-an-arn" is not an SNS topic ARN`}}
	if diff := cmp.Diff(want, c.Validate()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// FuzzParseReports: any event in a correctly signed SNS notification from a listed topic gives
// reports or a 400, never a panic. The fuzzer writes the notification's Message (the event).
func FuzzParseReports(f *testing.F) {
	staticCredentials(f)
	signer := newSigner(f)
	p := newSMSVoice(f, "https://sms-voice.eu-west-1.amazonaws.com", gateway.Deps{Name: "eum"})
	cert := "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"
	p.fetchCert = func(context.Context, string) ([]byte, error) { return signer.cert, nil }
	p.confirm = func(context.Context, string) error { return errors.New("no subscription in this test") }
	providertest.FuzzReports(f, p, []string{secretKey}, func(in []byte) (*http.Request, []byte, string) {
		body := signer.sign(f, map[string]string{"Type": "Notification", "MessageId": "n1", "TopicArn": topic, "Subject": "event", "Message": string(in),
			"Timestamp": "2026-11-30T12:00:05.000Z", "SignatureVersion": "2", "SigningCertURL": cert})
		r := httptest.NewRequest("POST", "/v1/dlr/aws-sms-voice/eum", bytes.NewReader(body))
		r.Header.Set("Content-Type", "text/plain; charset=UTF-8")
		return r, body, ""
	},
		`{"eventType":"TEXT_DELIVERED","messageId":"aws-m1","context":{"smsgate_id":"msg_9"},"totalMessageParts":1,"totalMessagePrice":0.00581,"totalCarrierFee":0.003}`,
		`{"eventType":"VOICE_NO_ANSWER","messageId":"aws-m2"}`, `{"eventType":"TEXT_SUCCESSFUL","messageId":""}`,
		`{"eventType":"SOMETHING_NEW","messageId":"m","totalMessagePrice":"x"}`,
		`{"eventType":"TEXT_DELIVERED","messageId":"aws-m2","totalMessagePrice":1.7e308,"totalCarrierFee":1.7e308}`, `{}`, `null`, `not json`, ``)
}

// TestSMSVoiceAsksReportsOnlyWithEvents: without a configuration set, or without the topics its
// events are taken from, no event reaches the gateway, and delivery health must not wait for one.
func TestSMSVoiceAsksReportsOnlyWithEvents(t *testing.T) {
	d := newSMSVoice(t, "http://127.0.0.1:1", gateway.Deps{})
	if !d.AsksReports() {
		t.Error("with a configuration set and its topics: no reports asked")
	}
	d.cfg.EventTopics = nil
	if d.AsksReports() {
		t.Error("without event topics: reports asked")
	}
	d.cfg.EventTopics, d.cfg.ConfigurationSet = []string{topic}, ""
	if d.AsksReports() {
		t.Error("without a configuration set: reports asked")
	}
}

// TestEventStatusesAsDocumented: every event type docs/providers/aws.md's table names maps to
// the status its row gives, so the table and the driver cannot drift apart.
func TestEventStatusesAsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/providers/aws.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| (`(TEXT|VOICE)_.*) \\| `([a-z]+)` \\|$")
	types := regexp.MustCompile("`([A-Z_]+)`")
	n := 0
	for _, line := range strings.Split(string(doc), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		for _, ty := range types.FindAllStringSubmatch(m[1], -1) {
			n++
			if got := eventStatus(ty[1]); got != m[3] {
				t.Errorf("%s: %s, the docs say %s", ty[1], got, m[3])
			}
		}
	}
	if n < 20 {
		t.Errorf("%d event types found in the docs' table, want every one (at least 20)", n)
	}
}

// TestSNSConfigValidate: the sns block's own checks, and the ones both drivers share.
func TestSNSConfigValidate(t *testing.T) {
	for _, region := range []string{"", "eu-west-1", "us-gov-west-1", "ap-southeast-10", "cn-north-1"} {
		c := SNSConfig{Common: Common{Region: region}}
		if p := c.Validate(); len(p) != 0 {
			t.Errorf("region %q: %v", region, p)
		}
	}
	c := SNSConfig{Common: Common{Region: "eu-west", Endpoint: "https://"}, Senders: map[string]string{"de": "x", "DE": "y", "001": "z", "GER": "w"}, MaxPrice: -0.5}
	want := []gateway.Problem{{Key: "endpoint", Message: `"https://" is not an http(s) URL`}, {Key: "region", Message: `"eu-west" is not an AWS region such as eu-west-1`},
		{Key: "senders.GER", Message: "keys must be ISO 3166-1 alpha-2 country codes (or 001)"}, {Key: "senders.de", Message: "keys must be ISO 3166-1 alpha-2 country codes (or 001)"},
		{Key: "max_price", Message: "must not be negative"}}
	if diff := cmp.Diff(want, c.Validate()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	v := SMSVoiceConfig{Common: Common{Region: "eu-west-1"}, OriginationIdentity: "+14155550000", Senders: map[string]string{"uk": "x", "GB": "y"},
		EventTopics: []string{topic, "arn:aws:sns:eu-west-1:123456789012:a/b", "arn:aws:sns:eu-west-1:12345678901:short-account"}}
	want = []gateway.Problem{{Key: "senders.uk", Message: "keys must be ISO 3166-1 alpha-2 country codes (or 001)"},
		{Key: "event_topics[1]", Message: `"arn:aws:sns:eu-west-1:123456789012:a/b" is not an SNS topic ARN`},
		{Key: "event_topics[2]", Message: `"arn:aws:sns:eu-west-1:12345678901:short-account" is not an SNS topic ARN`}}
	if diff := cmp.Diff(want, v.Validate()); diff != "" {
		t.Errorf("aws-sms-voice (-want +got):\n%s", diff)
	}
}

// TestWhatTheConfigLeavesOutIsNotSent: without max_price SNS is sent no price cap (a cap of 0
// would refuse every message), and without a sender id none.
func TestWhatTheConfigLeavesOutIsNotSent(t *testing.T) {
	staticCredentials(t)
	f, s := serve(t)
	p := NewSNS(SNSConfig{Common: Common{Region: region, Endpoint: s.URL}}, gateway.Deps{Name: "sns", HTTPClient: &http.Client{}})
	if _, err := p.Send(context.Background(), &gateway.Message{ID: "msg_1", To: "+4915112345678", Country: "DE", Type: gateway.SMS, Text: "x"}); err != nil {
		t.Fatal(err)
	}
	got := last(f)
	var names []string
	for i := 1; got.Form.Get("MessageAttributes.entry."+itoa(i)+".Name") != ""; i++ {
		names = append(names, got.Form.Get("MessageAttributes.entry."+itoa(i)+".Name"))
	}
	if diff := cmp.Diff([]string{"AWS.SNS.SMS.SMSType"}, names); diff != "" {
		t.Errorf("attributes (-want +got):\n%s", diff)
	}
}

// TestVoiceCanBeTurnedOff: voice: false makes aws-sms-voice an SMS provider, so no route sends
// it a call; left out, it calls.
func TestVoiceCanBeTurnedOff(t *testing.T) {
	off := false
	c := SMSVoiceConfig{Common: Common{Region: region}, OriginationIdentity: "+14155550000", Voice: &off}
	c.Defaults()
	if caps := NewSMSVoice(c, gateway.Deps{}).Capabilities(); caps.Can(gateway.Voice) || !caps.Can(gateway.SMS) {
		t.Errorf("voice: false: %+v", caps)
	}
	c.Voice = nil
	c.Defaults()
	if caps := NewSMSVoice(c, gateway.Deps{}).Capabilities(); !caps.Can(gateway.Voice) {
		t.Errorf("voice left out: %+v", caps)
	}
}

// TestSpeechVoices: a voice per language, British English its own.
func TestSpeechVoices(t *testing.T) {
	for lang, want := range map[string]string{"en": "JOANNA", "en-US": "JOANNA", "en-GB": "AMY", "de-AT": "VICKI", "fr": "LEA", "nl": "LOTTE"} {
		if voice, _ := Speech(&gateway.Message{Type: gateway.Voice, Code: "12", Language: lang}); voice != want {
			t.Errorf("%s: %s, want %s", lang, voice, want)
		}
	}
}

// TestAProfileIsRead: profile selects a shared-config profile, whose region and keys the SDK
// then signs with (the fake refuses another region's signature).
func TestAProfileIsRead(t *testing.T) {
	staticCredentials(t)
	cfgFile := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfgFile, []byte("[profile smsgate]\nregion = "+region+"\naws_access_key_id = "+accessKey+"\naws_secret_access_key = "+secretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CONFIG_FILE", cfgFile)
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	_, s := serve(t)
	p := NewSNS(SNSConfig{Common: Common{Profile: "smsgate", Endpoint: s.URL}}, gateway.Deps{Name: "sns", HTTPClient: &http.Client{}})
	if _, err := p.Send(context.Background(), &gateway.Message{ID: "msg_1", To: "+4915112345678", Type: gateway.SMS, Text: "x"}); err != nil {
		t.Errorf("with the profile's region: %v", err)
	}
	p = NewSNS(SNSConfig{Common: Common{Profile: "missing", Endpoint: s.URL}}, gateway.Deps{Name: "sns", HTTPClient: &http.Client{}})
	_, err := p.Send(context.Background(), &gateway.Message{ID: "msg_1", To: "+4915112345678", Type: gateway.SMS, Text: "x"})
	if ge := gateway.AsError(err); ge == nil || ge.Code != "AWS_CONFIG" || ge.Class != gateway.ClassProvider {
		t.Errorf("a profile the files do not have: %v", err)
	}
}

// TestACABundleIsHonoured: with AWS_CA_BUNDLE set, the SDK builds its own client trusting it (it
// refuses the gateway's plain one then), and reaches an endpoint signed by that CA.
func TestACABundleIsHonoured(t *testing.T) {
	staticCredentials(t)
	f := awstest.New(region, accessKey, true)
	s := httptest.NewTLSServer(f)
	defer s.Close()
	defer f.Release()
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CA_BUNDLE", bundle)
	p := newSNS(t, s.URL, gateway.Deps{Name: "sns", HTTPClient: &http.Client{}})
	if _, err := p.Send(context.Background(), &gateway.Message{ID: "msg_1", To: "+4915112345678", Type: gateway.SMS, Text: "x"}); err != nil {
		t.Errorf("through the CA bundle: %v", err)
	}
}

// TestConfigErrorKeepsItsFirstLine: the SDK's configuration errors run over several lines; the
// gateway keeps the first.
func TestConfigErrorKeepsItsFirstLine(t *testing.T) {
	err := configError("sns", errors.New("failed to load profile\nmore detail\nand more"))
	if ge := gateway.AsError(err); ge.Err == nil || ge.Err.Error() != "failed to load profile" || ge.Message != "sns: the AWS SDK configuration could not be loaded" {
		t.Errorf("%+v", ge)
	}
}

// TestAnErrorWithoutAMessageNamesItsCode: an AWS error body with an empty message still says
// what it is.
func TestAnErrorWithoutAMessageNamesItsCode(t *testing.T) {
	staticCredentials(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(500)
		w.Write([]byte(awstest.SNSError("InternalError", "")))
	}))
	defer srv.Close()
	_, err := newSNS(t, srv.URL, gateway.Deps{Name: "sns", HTTPClient: srv.Client()}).Send(context.Background(), &gateway.Message{To: "+14155550104", Type: gateway.SMS, Text: "x"})
	if ge := gateway.AsError(err); ge.Code != "InternalError" || ge.Message != "InternalError" || ge.HTTPStatus != 500 {
		t.Errorf("%+v", ge)
	}
}

// TestNotAnSNSMessage: JSON without a Type is a bad report (400), not a forged one, and costs no
// certificate fetch.
func TestNotAnSNSMessage(t *testing.T) {
	staticCredentials(t)
	p := newSMSVoice(t, "https://sms-voice.eu-west-1.amazonaws.com", gateway.Deps{Name: "eum"})
	p.fetchCert = func(context.Context, string) ([]byte, error) {
		t.Error("a certificate was fetched")
		return nil, errors.New("no")
	}
	body := []byte(`{"Message":"{}","TopicArn":"` + topic + `","SigningCertURL":"https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"}`)
	_, err := p.ParseReports(httptest.NewRequest("POST", "/", bytes.NewReader(body)), body, "")
	if ge := gateway.AsError(err); ge.Class != gateway.ClassCaller || ge.Code != "invalid_report" {
		t.Errorf("%+v", ge)
	}
}
