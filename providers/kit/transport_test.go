package kit

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/providertest"
)

// post sends a small POST to url through c and returns the classified failure (nil on success).
func post(t *testing.T, c *Client, url string, body io.Reader) *gateway.Error {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(context.Background(), req)
	if err == nil {
		return nil
	}
	return gateway.AsError(err)
}

// TestAnAnswerCutShortWasSent: the provider had started to answer, so the request reached it:
// maybe sent, whatever the trace saw.
func TestAnAnswerCutShortWasSent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"messages\":")
		buf.Flush()
		conn.Close()
	}))
	defer srv.Close()
	ge := post(t, &Client{HTTP: srv.Client(), Name: "p"}, srv.URL, strings.NewReader("{}"))
	if ge == nil || ge.Code != "CONNECTION_CLOSED" || !ge.MaybeSent || ge.Class != gateway.ClassProvider {
		t.Errorf("err = %+v, want CONNECTION_CLOSED, maybe sent", ge)
	}
}

// TestARequestThatCouldNotBeWrittenWasNeverSent: the provider reset the connection while the
// request was still being written, so it holds no request to act on: never sent, and the
// next provider may take the message.
func TestARequestThatCouldNotBeWrittenWasNeverSent(t *testing.T) {
	addr := providertest.RawServer(t, func(conn net.Conn) {
		conn.(*net.TCPConn).SetLinger(0) // a reset, not a polite close
	})
	// Far more than the socket buffers hold, so the write meets the reset.
	body := bytes.NewReader(make([]byte, 64<<20))
	ge := post(t, &Client{HTTP: &http.Client{}, Name: "p"}, "http://"+addr+"/sms", body)
	if ge == nil || ge.MaybeSent || ge.Code != "CONNECTION" || ge.Class != gateway.ClassProvider {
		t.Errorf("err = %+v, want CONNECTION, never sent", ge)
	}
}

// failingBody gives some bytes, then fails: the request cannot be written whole.
type failingBody struct{ given bool }

func (b *failingBody) Read(p []byte) (int, error) {
	if b.given {
		return 0, errors.New("disk gone")
	}
	b.given = true
	return copy(p, `{"messages":[`), nil
}

// TestAHalfWrittenRequestWasNeverSent: a request whose write failed part way reached the
// provider only in part, which it cannot act on: never sent.
func TestAHalfWrittenRequestWasNeverSent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodPost, srv.URL, &failingBody{})
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 1000
	_, err = (&Client{HTTP: srv.Client(), Name: "p"}).Do(context.Background(), req)
	ge := gateway.AsError(err)
	if err == nil || ge.MaybeSent || ge.Class != gateway.ClassProvider {
		t.Errorf("err = %+v, want never sent", ge)
	}
	if strings.Contains(err.Error(), "disk gone") {
		t.Errorf("err %q quotes the original error", err)
	}
}

// TestHandshakeFailuresAreTLS: each way a TLS handshake fails is TLS, never sent: a certificate
// the client does not trust, a server that does not speak TLS (a plain HTTP port, which
// net/http reports in an error of its own, or anything else), and a server that refuses the
// client's protocol version (an alert, which crypto/tls returns as neither type).
func TestHandshakeFailuresAreTLS(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) })
	untrusted := httptest.NewTLSServer(ok)
	defer untrusted.Close()
	plain := httptest.NewServer(ok)
	defer plain.Close()
	modern := httptest.NewUnstartedServer(ok)
	modern.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	modern.StartTLS()
	defer modern.Close()
	oldTransport := modern.Client().Transport.(*http.Transport).Clone()
	oldTransport.TLSClientConfig.MaxVersion = tls.VersionTLS12
	old := &http.Client{Transport: oldTransport}
	// A server on the port that speaks neither TLS nor HTTP.
	other := providertest.RawServer(t, func(conn net.Conn) { conn.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n")) })

	for _, tc := range []struct {
		name   string
		client *http.Client
		url    string
	}{
		{"untrusted certificate", &http.Client{}, untrusted.URL},
		{"plain HTTP server", &http.Client{}, strings.Replace(plain.URL, "http:", "https:", 1)},
		{"neither TLS nor HTTP", &http.Client{}, "https://" + other},
		{"protocol version refused", old, modern.URL},
	} {
		ge := post(t, &Client{HTTP: tc.client, Name: "p"}, tc.url, strings.NewReader("{}"))
		if ge == nil || ge.Code != "TLS" || ge.MaybeSent || ge.Timeout {
			t.Errorf("%s: err = %+v, want TLS, never sent", tc.name, ge)
		}
	}
	if ge := post(t, &Client{HTTP: modern.Client(), Name: "p"}, modern.URL, strings.NewReader("{}")); ge != nil {
		t.Errorf("a client the server accepts: %+v", ge)
	}
}

// TestARefusedConnectionNamesTheStep: the message says which step failed (the dial), never
// the address.
func TestARefusedConnectionNamesTheStep(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	ge := post(t, &Client{HTTP: &http.Client{}, Name: "p"}, url+"/acct/AC123", strings.NewReader("{}"))
	if ge == nil || ge.Code != "CONNECTION" || ge.MaybeSent || !strings.Contains(ge.Message, "dial failed") ||
		strings.Contains(ge.Message, "127.0.0.1") || strings.Contains(ge.Message, "AC123") {
		t.Errorf("err = %+v", ge)
	}
}

func TestClassifyKeepsTheStatusAndAText(t *testing.T) {
	c := &Client{Name: "p"}
	// A driver's mapping that builds its own error, without the status.
	own := func(*Response) *gateway.Error { return &gateway.Error{Class: gateway.ClassRecipient, Code: "BAD_TO"} }
	if e := c.Classify(&Response{Status: 400}, own); e.HTTPStatus != 400 || e.Class != gateway.ClassRecipient {
		t.Errorf("own mapping: %+v", e)
	}
	if e := c.Fail(&Response{Status: 403}, gateway.ClassProvider, "X", ""); e.Message != "Forbidden" || e.HTTPStatus != 403 {
		t.Errorf("Fail without a text: %+v", e)
	}
	if e := c.Fail(nil, gateway.ClassProvider, "X", ""); e.Message != "" || e.HTTPStatus != 0 {
		t.Errorf("Fail without an answer: %+v", e)
	}
}

func TestOKIsExactly2xx(t *testing.T) {
	for status, want := range map[int]bool{101: false, 199: false, 200: true, 202: true, 299: true, 300: false, 404: false} {
		if got := (&Response{Status: status}).OK(); got != want {
			t.Errorf("OK() for %d = %v", status, got)
		}
	}
}

// TestTheContextDecidesForAnOpaqueError: an SDK's error need not wrap the context's (the AWS
// drivers hand theirs to TransportError), so an ended context alone decides: a caller that went
// away is cancelled, a deadline that passed is a timeout, sent or not as the trace saw.
func TestTheContextDecidesForAnOpaqueError(t *testing.T) {
	c := &Client{Name: "p"}
	opaque := errors.New("operation error SNS: Publish, https response error")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithTimeout(context.Background(), -time.Second)
	defer cancel2()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		wrote   bool
		code    string
		class   gateway.Class
		timeout bool
	}{
		{"cancelled, written", cancelled, true, "cancelled", gateway.ClassCancelled, false},
		{"cancelled, not written", cancelled, false, "cancelled", gateway.ClassCancelled, false},
		{"deadline, written", expired, true, "TIMEOUT", gateway.ClassProvider, true},
		{"deadline, not written", expired, false, "CONNECT_TIMEOUT", gateway.ClassProvider, true},
		{"context alive, written", context.Background(), true, "CONNECTION_CLOSED", gateway.ClassProvider, false},
	} {
		ge := c.TransportError(tc.ctx, opaque, tc.wrote)
		if ge.Code != tc.code || ge.Class != tc.class || ge.Timeout != tc.timeout ||
			tc.class == gateway.ClassProvider && ge.MaybeSent != tc.wrote {
			t.Errorf("%s: %+v, want %s (%v), timeout %v", tc.name, ge, tc.code, tc.class, tc.timeout)
		}
	}
}
