//go:build unix

package config

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestASecretFileThatIsAFIFOIsRefused: opening a FIFO waits for a writer, and a load that waited
// would hold every reload after it; ${file:...} reads regular files only, and says so at once.
func TestASecretFileThatIsAFIFOIsRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	src := "tenants: [{name: a, api_key: \"${file:key}\"}]\nproviders: [{name: p, type: mock}]\nroutes: [{name: d, providers: [p]}]\n"
	_, err := Parse(filepath.Join(dir, "c.yaml"), []byte(src), env(nil))
	if err == nil || !strings.Contains(err.Error(), "tenants[0].api_key: ${file:...}: "+fifo+" is not a regular file") {
		t.Fatalf("a FIFO as a secret file: %v", err)
	}
}
