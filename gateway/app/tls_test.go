package app

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsgate/smsgate/gateway/policy/redistest"
)

// server.tls: the listener serves HTTPS with its files' certificate and answers plain HTTP with
// 400, sending nothing; a renewal that replaces the files is served without a restart, though
// the files keep their modification times. Replaced
// key first, the pair does not load for a moment: the certificate loaded before stays in
// service, logged once (not at every look) and without the key, and the expiry metric keeps
// its date until the new pair loads.
func TestServerTLSServesARenewedCertificateWithoutARestart(t *testing.T) {
	t.Parallel()
	first, second := redistest.NewTLSFor(t, 24*time.Hour), redistest.NewTLSFor(t, 90*24*time.Hour)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	// Every file gets the same modification time, as a file system with coarse times gives files
	// written within one second: the replica must see the change in what they hold.
	mod := time.Now().Add(-time.Hour).Truncate(time.Second)
	install := func(from, to string) { // whole, as a mounted Secret or an ACME client replaces it
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(to+".new", mod, mod); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(to+".new", to); err != nil {
			t.Fatal(err)
		}
	}
	install(first.CertFile, certFile)
	install(first.KeyFile, keyFile)
	h := start(t, strings.Replace(baseConfig, "server:\n", "server:\n  tls: {cert_file: "+certFile+", key_file: "+keyFile+"}\n", 1), Options{})
	if !strings.HasPrefix(h.url, "https://") {
		t.Fatalf("URL %s, want https", h.url)
	}
	h.client = trusting(t, first)
	if r := h.send("acme-key", actionBody); r.Status != 200 || r.Body["status"] != "sent" {
		t.Fatalf("a send over HTTPS: %d %s", r.Status, r.Raw)
	}
	if !strings.Contains(h.logs.String(), "server.tls.cert_file: the certificate expires at") {
		t.Errorf("no warning of a certificate that ends within two weeks:\n%s", h.logs)
	}

	res, err := http.Post("http://"+h.app.Addr()+"/v1/send-phone-message", "application/json", strings.NewReader(actionBody))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("plain HTTP on the TLS listener: %d, want 400", res.StatusCode)
	}
	waitUntil(t, "the failed handshake is logged", func() bool { return strings.Contains(h.logs.String(), "TLS handshake error") })
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(line, "TLS handshake error") && !strings.Contains(line, `"level":"DEBUG"`) {
			t.Errorf("a failed handshake is logged above debug: %s", line)
		}
		if strings.Contains(line, "TLS handshake error") && strings.Contains(line, `\n"`) {
			t.Errorf("the server's line keeps its newline in the message: %s", line)
		}
	}
	const loaded, reloaded = `"msg":"server.tls: certificate loaded"`, `"msg":"server.tls: certificate changed on disk and loaded"`
	if n, m := strings.Count(h.logs.String(), loaded), strings.Count(h.logs.String(), reloaded); n != 1 || m != 0 {
		t.Errorf("at the start, %d lines say the certificate loaded and %d that it changed; want 1 and 0", n, m)
	}
	if got := testutil.ToFloat64(h.app.MetricSet().Requests); got != 1 {
		t.Errorf("requests counted: %v, want the one over HTTPS", got)
	}

	expiry := func() int64 { return int64(testutil.ToFloat64(h.app.MetricSet().TLSExpiry)) }
	if want := leaf(t, first).NotAfter.Unix(); expiry() != want {
		t.Errorf("expiry metric %d, want %d", expiry(), want)
	}
	served := func() []byte {
		t.Helper()
		conn, err := tls.Dial("tcp", h.app.Addr(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}

	const notLoaded = "the certificate's files changed and do not load"
	install(second.KeyFile, keyFile)
	waitUntil(t, "the mismatched pair is logged", func() bool { return strings.Contains(h.logs.String(), notLoaded) })
	if !bytes.Equal(served(), leaf(t, first).Raw) {
		t.Error("with the pair mismatched, the certificate loaded before is not served")
	}
	time.Sleep(2500 * time.Millisecond) // two looks and more at the unchanged files
	if n := strings.Count(h.logs.String(), notLoaded); n != 1 {
		t.Errorf("the mismatched pair was logged %d times, want once", n)
	}
	if want := leaf(t, first).NotAfter.Unix(); expiry() != want {
		t.Errorf("expiry metric %d while the old certificate is served, want %d", expiry(), want)
	}

	install(second.CertFile, certFile)
	waitUntil(t, "the renewed certificate is served", func() bool { return bytes.Equal(served(), leaf(t, second).Raw) })
	h.client = trusting(t, second)
	if r := h.send("acme-key", strings.Replace(actionBody, "0104", "0105", 1)); r.Status != 200 {
		t.Errorf("a send after the renewal: %d %s", r.Status, r.Raw)
	}
	if want := leaf(t, second).NotAfter.Unix(); expiry() != want {
		t.Errorf("expiry metric %d after the renewal, want %d", expiry(), want)
	}
	if n, m := strings.Count(h.logs.String(), loaded), strings.Count(h.logs.String(), reloaded); n != 1 || m != 1 {
		t.Errorf("after the renewal, %d lines say the certificate loaded and %d that it changed; want 1 and 1", n, m)
	}
	for _, f := range []string{first.KeyFile, second.KeyFile} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
			if strings.Contains(h.logs.String(), line) {
				t.Fatalf("the log holds the private key of %s", f)
			}
		}
	}
}

// A replica whose certificate files do not load does not start: it would serve nothing.
func TestServerTLSThatDoesNotLoadStopsTheStart(t *testing.T) {
	t.Parallel()
	f := redistest.NewTLS(t)
	path := writeConfig(t, strings.Replace(baseConfig, "server:\n", "server:\n  tls: {cert_file: "+f.CertFile+", key_file: "+f.KeyFile+"}\n", 1))
	var logs bytes.Buffer
	a, err := New(t.Context(), Options{ConfigPath: path, Listen: "127.0.0.1:0", LogOutput: &logs})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(t.Context())
	if err := os.WriteFile(f.KeyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = a.Start()
	if err == nil || !strings.Contains(err.Error(), "server.tls: server.tls.cert_file: "+f.CertFile+" and "+f.KeyFile+" are not a certificate and its key") {
		t.Fatalf("Start: %v", err)
	}
	// No certificate was ever served: a line saying the one loaded before is would mislead.
	if strings.Contains(logs.String(), "serving the certificate loaded before") {
		t.Errorf("a start that loaded no certificate logs that it serves the one loaded before:\n%s", &logs)
	}
}

// trusting is a client that trusts f's CA only, and makes a new connection each time.
func trusting(t *testing.T, f redistest.TLS) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: f.Client(t), DisableKeepAlives: true}}
}

// leaf is f's certificate.
func leaf(t *testing.T, f redistest.TLS) *x509.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

// Over TLS, clients may speak HTTP/2, whose streams share one connection: a stream whose body
// stalls is cut off at server.read_timeout as an HTTP/1 request is, and the other streams of
// its connection still get their answers.
func TestServerTLSCutsOffAStalledHTTP2Stream(t *testing.T) {
	t.Parallel()
	f := redistest.NewTLS(t)
	h := start(t, strings.Replace(baseConfig, "server:\n", "server:\n  read_timeout: 1s\n  tls: {cert_file: "+f.CertFile+", key_file: "+f.KeyFile+"}\n", 1), Options{})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: f.Client(t), ForceAttemptHTTP2: true}}

	body, w := io.Pipe()
	defer w.Close()
	req, _ := http.NewRequest("POST", h.url+"/v1/send-phone-message", body)
	req.Header.Set("Authorization", "Bearer acme-key")
	stalled := make(chan error, 1)
	start := time.Now()
	go func() {
		res, err := client.Do(req)
		if err == nil {
			_, err = io.ReadAll(res.Body)
			res.Body.Close()
			if err == nil {
				err = fmt.Errorf("answered %s (%s)", res.Status, res.Proto)
			}
		}
		stalled <- err
	}()
	w.Write([]byte(`{"message_options":`)) // and nothing more

	time.Sleep(200 * time.Millisecond)
	res, err := client.Post(h.url+"/v1/send-phone-message", "application/json", strings.NewReader(actionBody))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 || res.ProtoMajor != 2 {
		t.Errorf("a stream beside the stalled one: %s over %s, want 401 over HTTP/2 (no key)", res.Status, res.Proto)
	}
	select {
	case err := <-stalled:
		if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
			t.Errorf("the stalled stream ended after %v (read_timeout 1s): %v", d, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled HTTP/2 stream was still open after 10 s (read_timeout 1s)")
	}
}

// TestACertificateNearItsEndIsWarnedOf: a load (and smsgate validate) warns of server.tls's
// certificate when it has expired or ends within two weeks, and says nothing of one with months
// left.
func TestACertificateNearItsEndIsWarnedOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		valid time.Duration
		want  string
	}{
		{-30 * time.Minute, "server.tls.cert_file: the certificate expired at"},
		{3 * 24 * time.Hour, "server.tls.cert_file: the certificate expires at"},
		{13 * 24 * time.Hour, "server.tls.cert_file: the certificate expires at"}, // within the 14 days docs/config.md gives
		{15 * 24 * time.Hour, ""},
		{90 * 24 * time.Hour, ""},
	} {
		f := redistest.NewTLSFor(t, tc.valid)
		path := writeConfig(t, strings.Replace(baseConfig, "server:\n", "server:\n  tls: {cert_file: "+f.CertFile+", key_file: "+f.KeyFile+"}\n", 1))
		warnings, err := Check(path)
		if err != nil {
			t.Fatalf("valid for %v: %v", tc.valid, err)
		}
		var got []string
		for _, w := range warnings {
			if strings.Contains(w, "server.tls") {
				got = append(got, w)
			}
		}
		if tc.want == "" && len(got) > 0 || tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want) || !strings.Contains(got[0], "renew it")) {
			t.Errorf("valid for %v: warnings %q, want one saying %q", tc.valid, got, tc.want)
		}
	}
}
