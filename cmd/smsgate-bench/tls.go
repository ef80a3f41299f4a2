package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// benchTLS, set by -tls, is what the load's clients trust: the certificate the gateway serves
// (server.tls). nil: the gateway serves plain HTTP.
var benchTLS *tls.Config

// gatewayTLS holds the files of that certificate.
var gatewayTLS struct{ cert, key string }

// makeTLS makes a self-signed ECDSA P-256 certificate for 127.0.0.1 in dir (what cert-manager or
// an ACME client would issue for the gateway's name) and trusts it for the load's clients.
func makeTLS(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smsgate bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	gatewayTLS.cert, gatewayTLS.key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(gatewayTLS.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(gatewayTLS.key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	benchTLS = &tls.Config{RootCAs: pool}
	probe.Transport = &http.Transport{TLSClientConfig: benchTLS}
	return nil
}

// withTLS is the gateway config at path with server.tls set to the bench's certificate, written
// beside the work directory's other files; path itself without -tls.
func withTLS(path, dir string) (string, error) {
	if benchTLS == nil {
		return path, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	text, n := string(b), strings.Count(string(b), "\nserver:\n")
	if n != 1 {
		return "", fmt.Errorf("-tls: %s has no server: block to add tls to", path)
	}
	text = strings.Replace(text, "\nserver:\n", "\nserver:\n  tls: {cert_file: "+gatewayTLS.cert+", key_file: "+gatewayTLS.key+"}\n", 1)
	out := filepath.Join(dir, "tls-"+filepath.Base(path))
	return out, os.WriteFile(out, []byte(text), 0o600)
}

// scheme is the gateway's URL scheme.
func scheme() string {
	if benchTLS != nil {
		return "https://"
	}
	return "http://"
}
