package app

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smsgate/smsgate/gateway/config"
)

// serverCert gives server.listen's TLS handshakes the certificate of server.tls, and reads its
// files again when they change: a renewal (cert-manager, an ACME client) replaces the files, as a
// mounted Secret swaps them whole, and the replica serves the new certificate without a restart.
// The replica looks at the files (two stats) every tlsRecheck, off the handshakes, and reads them
// only when their paths, sizes or modification times changed since the last look. A pair that does
// not load (a key written before its certificate, a file cut short) is logged once and not read
// again until the files change once more; the certificate loaded before is served meanwhile, and
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

// tlsStamp is what a look at the files saw: their paths, sizes and modification times, or why
// they could not be looked at.
type tlsStamp struct {
	cert, key         string
	certSize, keySize int64
	certMod, keyMod   time.Time
	err               string
}

func stampOf(f config.ServerTLS) tlsStamp {
	s := tlsStamp{cert: f.CertFile, key: f.KeyFile}
	c, err := os.Stat(f.CertFile)
	if err == nil {
		var k os.FileInfo
		if k, err = os.Stat(f.KeyFile); err == nil {
			s.certSize, s.certMod, s.keySize, s.keyMod = c.Size(), c.ModTime(), k.Size(), k.ModTime()
		}
	}
	if err != nil {
		s.err = err.Error()
	}
	return s
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

// look reads the files when they changed since the last look.
func (c *serverCert) look() {
	files := c.files()
	st := stampOf(files)
	if st == c.seen {
		return
	}
	c.seen, c.failure = st, st.err
	if st.err == "" {
		if cert, err := files.Certificate(); err != nil {
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
