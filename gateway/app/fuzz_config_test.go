package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/smsgate/smsgate/gateway/config"
)

// FuzzParseConfig: whatever a config file holds, parsing it (every driver's own keys included)
// never panics, and a refusal is a list of problems that each name the file (or the tenant file it
// is in), and a line whenever they name a key.
func FuzzParseConfig(f *testing.F) {
	for _, glob := range []string{"../../config.example.yaml", "../config/testdata/*.yaml", "../config/testdata/invalid/*.yaml", "../../docs/deploy/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	delegated := "tenant_files: [x.yaml, {path: \"t/*.yaml\", names: \"a-*\", keys: [rate_limits], max_tenants: 2, secret_files: k/*}]\n" + baseConfig
	withTLS := strings.Replace(baseConfig, "server:\n", "server:\n  tls: {cert_file: tls.crt, key_file: /tls.key}\n", 1)
	twice := baseConfig + "\ntenants: []\n" // a key given twice (Decoder.twice)
	for _, cfg := range []string{baseConfig, providersConfig, compatConfig, pumpingConfig, healthConfig, costConfig, delegated, withTLS, twice} {
		f.Add([]byte(cfg))
	}
	getenv := func(k string) (string, bool) { return "value-of-" + k, k != "UNSET" }
	f.Fuzz(func(t *testing.T, in []byte) {
		_, err := config.ParseWith("fuzz.yaml", in, getenv, Drivers)
		if err == nil {
			return
		}
		var ps config.Problems
		if !errors.As(err, &ps) || len(ps) == 0 {
			t.Fatalf("refused without problems: %T %v", err, err)
		}
		// Top-level keys the file has: a problem under one of them has its line (a problem about
		// a section the file lacks has none to give).
		var doc map[string]any
		_ = yaml.Unmarshal(in, &doc)
		for _, p := range ps {
			if p.File != "fuzz.yaml" {
				// A problem in a file tenant_files matched names that file (TestTenantFiles).
				if _, tenantFiles := doc["tenant_files"]; tenantFiles && p.File != "" {
					continue
				}
				t.Fatalf("a problem that does not name the file: %+v", p)
			}
			top, _, _ := strings.Cut(p.Path, ".")
			top, _, _ = strings.Cut(top, "[")
			if _, present := doc[top]; present && p.Line <= 0 {
				t.Fatalf("a problem under a key the file has, without a line: %s", p)
			}
		}
	})
}
