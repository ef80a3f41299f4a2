package app

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smsgate/smsgate/gateway/config"
)

// serverCert gives server.listen's TLS handshakes the certificate of server.tls, and reads its
// files again when they change: a renewal (cert-manager, an ACME client) replaces the files, as a
// mounted Secret swaps them whole, and the replica serves the new certificate without a restart.
// The replica reads the files every tlsRecheck, off the handshakes (a few kilobytes), and loads
// them when what they hold changed since the last look: their contents, not their sizes or
// modification times, which a file system with coarse times leaves the same for a certificate
// and key written within one second. A pair that does not load (a key written before its
// certificate, a file cut short) is logged once and not loaded again until the files change once
// more; the certificate loaded before is served meanwhile, and
// smsgate_tls_certificate_expiry_timestamp_seconds keeps its expiry, so the alert on it fires
// before it runs out.
type serverCert struct {
	files  func() config.ServerTLS // the running config's (a reload may name other files)
	log    *slog.Logger
	expiry prometheus.Gauge

	cert atomic.Pointer[tls.Certificate]
	// Only look, which runs on one goroutine at a time, touches these.
	seen    tlsStamp
	failure string // why the files seen did not load; empty when they did
}

// tlsRecheck is how often the replica looks at the files.
const tlsRecheck = time.Second

// tlsStamp is what a look at the files saw: their paths and digests of what they held, or why
// they could not be read.
type tlsStamp struct {
	cert, key       string
	certSum, keySum [sha256.Size]byte
	err             string
}

// load reads the files, as they are now, at the start: its error is the start's.
func (c *serverCert) load() error {
	c.look()
	if c.cert.Load() == nil {
		return errors.New("server.tls: " + c.failure)
	}
	return nil
}

// get is the server's tls.Config.GetCertificate.
func (c *serverCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cert.Load(), nil
}

// look loads the files when what they hold changed since the last look.
func (c *serverCert) look() {
	files := c.files()
	certPEM, keyPEM, err := files.Read()
	st := tlsStamp{cert: files.CertFile, key: files.KeyFile, certSum: sha256.Sum256(certPEM), keySum: sha256.Sum256(keyPEM)}
	if err != nil {
		st.err = err.Error()
	}
	if st == c.seen {
		return
	}
	c.seen, c.failure = st, st.err
	if st.err == "" {
		if cert, err := files.Parse(certPEM, keyPEM); err != nil {
			c.failure = err.Error()
		} else {
			c.loaded(files, cert)
			return
		}
	}
	if c.cert.Load() != nil { // else the start fails with it
		c.log.Warn("server.tls: the certificate's files changed and do not load; serving the certificate loaded before", "err", c.failure)
	}
}

// loaded serves cert, read from files.
func (c *serverCert) loaded(files config.ServerTLS, cert *tls.Certificate) {
	first := c.cert.Swap(cert) == nil
	c.expiry.Set(float64(cert.Leaf.NotAfter.Unix()))
	msg := "server.tls: certificate loaded"
	if !first {
		msg = "server.tls: certificate changed on disk and loaded"
	}
	c.log.Info(msg, "cert_file", files.CertFile, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

// tlsExpiryWarning: a load of the config warns of a certificate that ends sooner than this.
const tlsExpiryWarning = 14 * 24 * time.Hour

// checkTLS warns when server.tls's certificate has expired or ends within tlsExpiryWarning:
// smsgate validate says so before a rollout, and each load logs it.
func (rt *runtime) checkTLS(now time.Time) {
	t := rt.cfg.Server.TLS
	if !t.On() || rt.cfg.Decoder.Unread {
		return
	}
	cert, err := t.Certificate()
	if err != nil || cert == nil {
		return // a problem of the config already
	}
	end := cert.Leaf.NotAfter
	switch left := end.Sub(now); {
	case left <= 0:
		rt.warn("server.tls.cert_file", "the certificate expired at %s: clients refuse it; renew it", end.UTC().Format(time.RFC3339))
	case left < tlsExpiryWarning:
		rt.warn("server.tls.cert_file", "the certificate expires at %s, in %s: renew it", end.UTC().Format(time.RFC3339), left.Round(time.Hour))
	}
}

// serverErrors is the HTTP servers' ErrorLog: their lines at warn, but a TLS handshake that failed
// at debug. A load balancer's TCP health checks, port scanners and clients that do not trust the
// certificate each make one, a line every few seconds from anyone who can connect, none of them
// a fault of the replica's.
func serverErrors(l *slog.Logger) *log.Logger { return log.New(errorLines{l}, "", 0) }

type errorLines struct{ log *slog.Logger }

func (e errorLines) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	level := slog.LevelWarn
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		level = slog.LevelDebug
	}
	e.log.Log(context.Background(), level, msg)
	return len(p), nil
}
