// Package providertest holds the contract every driver must pass. Run starts its own servers for
// the failures every provider has (hanging, refusing, closing after the request, 5xx, 429, HTML
// and empty bodies, 2xx without an id), checks the classification of each, that no error holds a
// secret, a code or the number, that a delivery report with bad credentials is refused, and then
// runs the driver's own table of answers against a scripted server.
package providertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smsgate/smsgate/gateway"
)

// Contract describes a driver under test.
type Contract struct {
	// New returns the driver with its config pointed at baseURL and the given deps (the harness
	// sets deps.HTTPClient and deps.CallbackURL).
	New func(baseURL string, deps gateway.Deps) gateway.Provider
	// Accepting is the base URL of the driver's own fake, answering sends with success.
	Accepting string
	// Secrets are the config's secrets: no piece of SecretRun characters may appear in an error.
	Secrets []string
	// BadReport returns a delivery-report request with wrong credentials and its body; nil for a
	// driver that takes no reports.
	BadReport func() (*http.Request, []byte)
	// Cases are the driver's own answers, each served by a scripted server.
	Cases []Case
}

// Case is one scripted answer and the error it must give.
type Case struct {
	Name string
	// Type is the message type sent; default sms.
	Type gateway.MessageType
	// Status, ContentType (default application/json) and Body are the answer.
	Status      int
	ContentType string
	Body        string
	// Class and Code are the expected error; Code "" accepts any.
	Class gateway.Class
	Code  string
	// OK means the answer is a success (Class and Code are ignored).
	OK bool
}

// Message returns the message the harness sends: a known code and number to look for in errors.
func Message(typ gateway.MessageType) *gateway.Message {
	return &gateway.Message{ID: "msg_contract1", Tenant: "t", To: "+14155550104", Country: "US", Type: typ,
		Text: "Your code is 918273", Code: "918273", Language: "en"}
}

// Leaks returns what of secrets (any run of gateway.SecretRun characters), the harness's code
// and its number s holds.
func Leaks(s string, secrets []string) []string {
	var out []string
	for _, bad := range []string{"918273", "4155550104"} {
		if strings.Contains(s, bad) {
			out = append(out, bad)
		}
	}
	for _, sec := range secrets {
		for i := 0; i+gateway.SecretRun <= len(sec); i++ {
			if strings.Contains(s, sec[i:i+gateway.SecretRun]) {
				out = append(out, "a piece of a secret")
				break
			}
		}
	}
	return out
}

type baseline struct {
	name      string
	handler   http.HandlerFunc // nil: the server is closed (connection refused)
	client    *http.Client     // nil: a plain client
	wantCode  string           // "" accepts any
	timeout   bool
	maybeSent bool
	class     gateway.Class // the zero value is ClassProvider
	// retryAfter is the wait a throttled answer must carry.
	retryAfter time.Duration
}

// hangingDialer never connects: a dial that times out, before anything was sent.
func hangingDialer(ctx context.Context, _, _ string) (net.Conn, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func write(status int, ctype, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
}

var baselines = []baseline{
	{name: "hanging provider: a timeout after the request was sent", timeout: true, maybeSent: true,
		handler: func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) // then the server notices the client leaving
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}},
	{name: "refused connection: never sent", wantCode: "CONNECTION"},
	{name: "dial timeout: never sent", wantCode: "CONNECT_TIMEOUT", timeout: true,
		client: &http.Client{Transport: &http.Transport{DialContext: hangingDialer}}},
	{name: "connection closed after the request: maybe sent", wantCode: "CONNECTION_CLOSED", maybeSent: true,
		handler: func(w http.ResponseWriter, r *http.Request) {
			// The whole request first: closing while the body is still on its way would be a
			// request that never arrived (a race with the client's write, not this case).
			_, _ = io.Copy(io.Discard, r.Body)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}},
	{name: "503 plain text", wantCode: "", handler: write(503, "text/plain", "Service Unavailable")},
	{name: "429: throttled, not the provider's failure", class: gateway.ClassThrottled, handler: write(429, "application/json", `{}`)},
	{name: "429 with Retry-After", class: gateway.ClassThrottled, retryAfter: 7 * time.Second,
		handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			write(429, "application/json", `{}`)(w, r)
		}},
	{name: "502 HTML from a proxy", handler: write(502, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>")},
	{name: "500 empty body", handler: write(500, "", "")},
	{name: "2xx without an id: maybe sent", maybeSent: true, handler: write(200, "application/json", `{}`)},
}

// Run checks the contract.
func Run(t *testing.T, c Contract) {
	t.Helper()
	caps := c.New(c.Accepting, gateway.Deps{Name: "contract"}).Capabilities()
	if len(caps.Types) == 0 {
		t.Fatal("the driver declares no message type")
	}
	noLeak := func(t *testing.T, err error) {
		t.Helper()
		if l := Leaks(err.Error(), c.Secrets); len(l) > 0 {
			t.Errorf("error %q holds %v", err, l)
		}
	}
	t.Run("contract/accepts every declared type", func(t *testing.T) {
		p := c.New(c.Accepting, gateway.Deps{Name: "contract", HTTPClient: &http.Client{}, CallbackURL: "https://gw.example.com/v1/dlr/x/contract"})
		for _, typ := range caps.Types {
			res, err := p.Send(context.Background(), Message(typ))
			if err != nil || res.ProviderMessageID == "" {
				t.Errorf("%s: result %+v, err %v", typ, res, err)
			}
		}
	})
	for _, b := range baselines {
		t.Run("contract/"+b.name, func(t *testing.T) {
			srv := httptest.NewServer(b.handler)
			if b.handler == nil {
				srv.Close()
			} else {
				defer srv.Close()
			}
			client := b.client
			if client == nil {
				client = &http.Client{}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := c.New(srv.URL, gateway.Deps{Name: "contract", HTTPClient: client}).Send(ctx, Message(caps.Types[0]))
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Send ignored the deadline: %v", d)
			}
			var ge *gateway.Error
			if !errors.As(err, &ge) {
				t.Fatalf("err = %v (%T), want a *gateway.Error", err, err)
			}
			if ge.Class != b.class || (b.wantCode != "" && ge.Code != b.wantCode) || ge.Timeout != b.timeout || ge.MaybeSent != b.maybeSent ||
				ge.RetryAfter != b.retryAfter {
				t.Errorf("err = %v: class %v code %q timeout %v maybe-sent %v retry-after %v; want %v %q timeout %v maybe-sent %v retry-after %v",
					err, ge.Class, ge.Code, ge.Timeout, ge.MaybeSent, ge.RetryAfter, b.class, b.wantCode, b.timeout, b.maybeSent, b.retryAfter)
			}
			noLeak(t, err)
		})
	}
	if c.BadReport != nil {
		t.Run("contract/a report with bad credentials is refused", func(t *testing.T) {
			rr, ok := c.New(c.Accepting, gateway.Deps{Name: "contract"}).(gateway.ReportReceiver)
			if !ok {
				t.Fatal("BadReport is set but the driver is no gateway.ReportReceiver")
			}
			if len(rr.Webhook().Methods) == 0 || rr.Webhook().Auth == "" {
				t.Errorf("the webhook declares no methods or no authentication: %+v", rr.Webhook())
			}
			r, body := c.BadReport()
			if _, err := rr.ParseReports(r, body, "https://gw.example.com"+r.URL.RequestURI()); !errors.Is(err, gateway.ErrUnauthenticated) {
				t.Errorf("err = %v, want gateway.ErrUnauthenticated", err)
			}
		})
	}
	for _, tc := range c.Cases {
		t.Run("driver/"+tc.Name, func(t *testing.T) {
			ctype := tc.ContentType
			if ctype == "" {
				ctype = "application/json"
			}
			srv := httptest.NewServer(write(tc.Status, ctype, tc.Body))
			defer srv.Close()
			typ := tc.Type
			if typ == "" {
				typ = gateway.SMS
			}
			res, err := c.New(srv.URL, gateway.Deps{Name: "contract", HTTPClient: &http.Client{}}).Send(context.Background(), Message(typ))
			if tc.OK {
				if err != nil || res.ProviderMessageID == "" {
					t.Errorf("want success, got %+v, %v", res, err)
				}
				return
			}
			ge := gateway.AsError(err)
			if err == nil || ge.Class != tc.Class || (tc.Code != "" && ge.Code != tc.Code) {
				t.Fatalf("got %v (class %v code %q), want class %v code %q", err, ge.Class, ge.Code, tc.Class, tc.Code)
			}
			noLeak(t, err)
		})
	}
}

// FuzzReports feeds a driver's report parser arbitrary input that carries valid credentials:
// request turns the fuzzer's bytes into an authenticated request (the body, a query string or a
// field of a signed envelope, as the driver's webhook takes them), its body and the public URL the
// provider called. Whatever the input, ParseReports must not panic, and must return either
// reports with one of the gateway's statuses, an id to match them by and a finite price, or an error that is
// ErrUnauthenticated (a signature that covers what the fuzzer changed) or of class Caller (the
// provider sent something malformed: it is answered 400), with no piece of secrets in it (pass
// the secrets without any part they share with the driver's name, which errors may hold).
func FuzzReports(f *testing.F, rr gateway.ReportReceiver, secrets []string, request func(in []byte) (*http.Request, []byte, string), seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, body, publicURL := request(in)
		reps, err := rr.ParseReports(r, body, publicURL)
		if err != nil {
			if !errors.Is(err, gateway.ErrUnauthenticated) && gateway.ClassOf(err) != gateway.ClassCaller {
				t.Fatalf("error of class %v, want Caller or ErrUnauthenticated: %v", gateway.ClassOf(err), err)
			}
			if leaks := Leaks(err.Error(), secrets); len(leaks) > 0 {
				t.Fatalf("the error holds %v: %v", leaks, err)
			}
			return
		}
		for _, rep := range reps {
			if !slices.Contains(gateway.RecordStatuses, rep.Status) {
				t.Fatalf("report with status %q: %+v", rep.Status, rep)
			}
			if rep.ProviderMessageID == "" && rep.MessageID == "" {
				t.Fatalf("report without an id to match it by: %+v", rep)
			}
			// A price goes into counters and spend limits: one of NaN or infinity would stay in
			// the counter for good and put the tenant a thousand periods into debt.
			if math.IsNaN(rep.Price) || math.IsInf(rep.Price, 0) || rep.Price < 0 {
				t.Fatalf("report with price %v: %+v", rep.Price, rep)
			}
		}
	})
}

// Answering starts a server that answers method and path with status and body (JSON), and
// anything else with 404 naming what it got; it closes with the test. A driver's send against it
// reads an answer as a provider documents it (Spec.ResponseExamples).
func Answering(t testing.TB, method, path string, status int, body []byte) *httptest.Server {
	t.Helper()
	answer := write(status, "application/json", string(body))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method || r.URL.Path != path {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Hanging starts a server that answers no request: each waits until its client gives up, or
// until release (a provider, or a hook, that stopped answering and came back). release is called
// when the test ends, if not before, and the server closed.
func Hanging(t testing.TB) (srv *httptest.Server, release func()) {
	t.Helper()
	released := make(chan struct{})
	release = sync.OnceFunc(func() { close(released) })
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-released:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(release) // first: Close waits for the requests it would end
	return srv, release
}

// RawServer accepts TCP connections until the test ends and hands each to serve, in a goroutine
// of its own, closing it after; it returns the address. For peers that speak something other than
// well-formed HTTP: a proxy, an answer cut short.
func RawServer(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				serve(conn)
			}()
		}
	}()
	return ln.Addr().String()
}
