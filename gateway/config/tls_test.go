package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smsgate/smsgate/gateway/policy/redistest"
)

// server.tls: both files or neither, each read and checked as a pair, at the key and line that
// names it; relative paths are beside the config file; a check without the secrets reads
// neither; no problem quotes what the key file holds.
func TestServerTLSProblems(t *testing.T) {
	pair := redistest.NewTLS(t)
	other := redistest.NewTLS(t)
	dir := t.TempDir()
	for name, from := range map[string]string{"tls.crt": pair.CertFile, "tls.key": pair.KeyFile} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	key, err := os.ReadFile(pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "smsgate.yaml")
	const rest = "tenants: [{name: a, api_key: k-0123456789abcdef}]\nproviders: [{name: p, type: mock}]\nroutes: [{name: d, providers: [p]}]\n"
	parse := func(tls string, unread bool) (*Config, error) {
		t.Helper()
		src := "server:\n  listen: 127.0.0.1:0\n  tls:\n" + tls + rest
		if unread {
			return parse(&Decoder{File: file, Unread: true}, []byte(src), nil)
		}
		return Parse(file, []byte(src), env(nil))
	}

	c, err := parse("    cert_file: tls.crt\n    key_file: "+filepath.Join(dir, "tls.key")+"\n", false)
	if err != nil {
		t.Fatalf("a valid pair, the certificate's path relative: %v", err)
	}
	if want := filepath.Join(dir, "tls.crt"); c.Server.TLS.CertFile != want {
		t.Errorf("cert_file resolved to %q, want %q (beside the config file)", c.Server.TLS.CertFile, want)
	}
	if cert, err := c.Server.TLS.Certificate(); err != nil || cert.Leaf == nil {
		t.Errorf("Certificate: %v", err)
	}

	for _, tc := range []struct {
		name, tls string
		unread    bool
		want      string // file:line: key: what
	}{
		{"a certificate without its key", "    cert_file: tls.crt\n", false, ":4: server.tls.key_file: is required with server.tls.cert_file"},
		{"a key without its certificate", "    key_file: tls.key\n", false, ":4: server.tls.cert_file: is required with server.tls.key_file"},
		{"without the secrets, still both", "    key_file: tls.key\n", true, ":4: server.tls.cert_file: is required with server.tls.key_file"},
		{"a certificate file that is not there", "    cert_file: gone.crt\n    key_file: tls.key\n", false,
			":4: server.tls.cert_file: stat " + filepath.Join(dir, "gone.crt") + ": no such file or directory"},
		{"a key file that is a directory", "    cert_file: tls.crt\n    key_file: .\n", false,
			":5: server.tls.key_file: " + dir + " is not a regular file of at most 1 MiB"},
		{"another certificate's key", "    cert_file: tls.crt\n    key_file: " + other.KeyFile + "\n", false,
			":4: server.tls.cert_file: " + filepath.Join(dir, "tls.crt") + " and " + other.KeyFile + " are not a certificate and its key: tls: private key does not match public key"},
		{"the key as the certificate", "    cert_file: tls.key\n    key_file: tls.key\n", false,
			":4: server.tls.cert_file: " + filepath.Join(dir, "tls.key") + " and " + filepath.Join(dir, "tls.key") + " are not a certificate and its key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(tc.tls, tc.unread)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), file+tc.want) {
				t.Errorf("problems do not contain %q; got:\n%v", file+tc.want, err)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(key)), "\n")[1:] {
				if strings.Contains(err.Error(), line) {
					t.Errorf("a problem quotes the key file: %v", err)
				}
			}
		})
	}

	if _, err := parse("    cert_file: gone.crt\n    key_file: gone.key\n", true); err != nil {
		t.Errorf("a check without the secrets read the files: %v", err)
	}
}
