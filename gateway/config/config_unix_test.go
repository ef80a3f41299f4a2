//go:build unix

package config

import (
	"os"
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

// TestATeamsLinkCannotLeadOutOfItsFiles: a team that may write among its files could write a link
// there to a file of the operator's (a provider's key, another team's tenants), which its
// secret_files or path pattern matches by name. A team's file is read only from under its
// pattern's directory once every link is resolved; a Kubernetes volume's own links
// (name -> ..data/name -> ..2026_12_03/name) stay under it and load.
func TestATeamsLinkCannotLeadOutOfItsFiles(t *testing.T) {
	dir := t.TempDir()
	link := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	writeIn(t, dir, "keys/infobip", "OPERATOR-INFOBIP-SECRET\n")
	writeIn(t, dir, "private/ops.yaml", "tenants: [{name: ops, api_key: OPERATOR-TENANT-KEY-0123}]\n")
	// The team's Secret, mounted as Kubernetes mounts one.
	writeIn(t, dir, "teams/pay/keys/..2026_12_03/prod", "pay-prod-key-0123456789\n")
	link("..2026_12_03", "teams/pay/keys/..data")
	link("..data/prod", "teams/pay/keys/prod")
	writeIn(t, dir, "teams/pay/tenants/a.yaml", "tenants: [{name: pay-prod, api_key: \"${file:../keys/prod}\"}]\n")
	file := filepath.Join(dir, "smsgate.yaml")
	src := `tenant_files: [{path: teams/pay/tenants/*.yaml, names: "pay-*", secret_files: teams/pay/keys/*}]
tenants: [{name: alpha, api_key: alpha-key-0123456789}]
providers: [{name: p, type: mock}]
routes: [{name: d, providers: [p]}]
`
	c, err := Parse(file, []byte(src), env(nil))
	if err != nil {
		t.Fatalf("the team's files, through the volume's own links: %v", err)
	}
	if got := c.Tenants[1].APIKey.Reveal(); got != "pay-prod-key-0123456789" {
		t.Fatalf("the team's key read through the volume's links: %q", got)
	}

	// The team writes a link among its keys to the operator's, and one among its tenant files to
	// a file of the operator's.
	link("../../../keys/infobip", "teams/pay/keys/stolen")
	link("../../../private/ops.yaml", "teams/pay/tenants/b.yaml")
	writeIn(t, dir, "teams/pay/tenants/a.yaml", "tenants: [{name: pay-prod, api_key: \"${file:../keys/prod}\", previous_api_keys: [\"${file:../keys/stolen}\"]}]\n")
	_, err = Parse(file, []byte(src), env(nil))
	if err == nil {
		t.Fatal("Parse read a team's links out of its files")
	}
	problemsHold(t, err.Error(), []string{
		filepath.Join(dir, "teams/pay/tenants/a.yaml") + ":1: tenants[1].previous_api_keys[0]: ${file:...}: " + filepath.Join(dir, "teams/pay/keys/stolen") + " leads out of ",
		filepath.Join(dir, "teams/pay/tenants/b.yaml") + ": tenant file: " + filepath.Join(dir, "teams/pay/tenants/b.yaml") + " leads out of ",
	})
	if strings.Contains(err.Error(), "OPERATOR") || strings.Contains(err.Error(), "private/ops.yaml") || strings.Contains(err.Error(), "keys/infobip") {
		t.Errorf("the problems show what the links lead to:\n%s", err)
	}
	last := Digest(file)
	writeIn(t, dir, "keys/infobip", "OPERATOR-INFOBIP-SECRET-ROTATED\n")
	writeIn(t, dir, "private/ops.yaml", "tenants: [{name: ops, api_key: OPERATOR-TENANT-KEY-4567}]\n")
	if Digest(file) != last {
		t.Error("the watch reads the files the team's links lead to")
	}
	// The operator's own files may link anywhere.
	if _, err := Parse(file, []byte(strings.Replace(src, "tenant_files: [{path: teams/pay/tenants/*.yaml, names: \"pay-*\", secret_files: teams/pay/keys/*}]", "tenant_files: [teams/pay/tenants/a.yaml, teams/pay/tenants/b.yaml]", 1)), env(nil)); err != nil {
		t.Errorf("the operator's files through links: %v", err)
	}
}

// TestALinkSwappedWhileReadIsRefused: a team's link is resolved after its file is opened, and must
// lead to the file opened: one that led out when opened and back in when resolved is refused.
func TestALinkSwappedWhileReadIsRefused(t *testing.T) {
	dir := t.TempDir()
	writeIn(t, dir, "team/own", "own")
	writeIn(t, dir, "operator/key", "secret")
	p := filepath.Join(dir, "team/k")
	if err := os.Symlink("../operator/key", p); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("own", p); err != nil {
		t.Fatal(err)
	}
	root := linkRoot(filepath.Join(dir, "team/*"))
	if err := openedUnder(f, p, root); err == nil {
		t.Error("a file opened out of the team's directory passed, its link swapped back in")
	}
	g, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := openedUnder(g, p, root); err != nil {
		t.Errorf("a link within: %v", err)
	}
}

// TestATeamsFilesUnderALinkedOrPatternedDirectory: the directory a team's files are read from
// under is its pattern's fixed part, resolved: a config reached through a linked directory (a
// volume mounted at a link) reads the team's files and secrets, and a pattern whose directory
// holds a ? or a [ is bounded by the directory above it, not by a directory of that literal name.
func TestATeamsFilesUnderALinkedOrPatternedDirectory(t *testing.T) {
	dir := t.TempDir()
	writeIn(t, dir, "real/teams/pay1/keys/prod", "pay-prod-key-0123456789\n")
	writeIn(t, dir, "real/teams/pay1/a.yaml", "tenants: [{name: pay-prod, api_key: \"${file:keys/prod}\"}]\n")
	if err := os.Symlink("real", filepath.Join(dir, "mounted")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "mounted", "smsgate.yaml")
	src := `tenant_files: [{path: "teams/pay?/*.yaml", secret_files: "teams/pay[0-9]/keys/*"}]
tenants: [{name: alpha, api_key: alpha-key-0123456789}]
providers: [{name: p, type: mock}]
routes: [{name: d, providers: [p]}]
`
	c, err := Parse(file, []byte(src), env(nil))
	if err != nil {
		t.Fatalf("a team's files under a linked directory: %v", err)
	}
	if len(c.Tenants) != 2 || c.Tenants[1].APIKey.Reveal() != "pay-prod-key-0123456789" {
		t.Errorf("tenants %+v", c.Tenants)
	}
}
