package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/smsgate/smsgate/gateway/config"
)

// dockerSed finds the Dockerfile's sed substitutions (s|pattern|replacement|), which turn the
// example config into the image's config.
var dockerSed = regexp.MustCompile(`-e 's\|([^|]*)\|([^|]*)\|'`)

// TestDockerfileConfig: the image's config is the example config rewritten by the Dockerfile's
// sed expressions. Each expression must still match a line of config.example.yaml: if the example
// changed and one stopped matching, the image would listen on the container's loopback (no one
// could reach it) or write its log outside the /data volume, and `smsgate validate` in the build
// would not notice, because the unchanged file is valid. Docker is not on the CI machine, so the
// rewrite is replayed here.
func TestDockerfileConfig(t *testing.T) {
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	subs := dockerSed.FindAllStringSubmatch(string(df), -1)
	if len(subs) != 3 {
		t.Fatalf("found %d sed expressions in the Dockerfile, want 3 (listen, storage path, log format)", len(subs))
	}
	out := string(example)
	for _, s := range subs {
		re := regexp.MustCompile(s[1]) // sed's basic syntax and RE2 agree on these (literals and '.')
		if n := len(re.FindAllStringIndex(out, -1)); n != 1 {
			t.Errorf("sed pattern %q matches %d places in config.example.yaml, want 1", s[1], n)
		}
		out = re.ReplaceAllLiteralString(out, s[2]) // sed without g: first match per line; one match here
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runCmd("validate", "--config", path); code != 0 {
		t.Fatalf("the image's config does not validate: exit %d\n%s%s", code, stdout, stderr)
	}
	cfg, err := config.Parse(path, []byte(out), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != "0.0.0.0:8080" || cfg.Storage.Path != "/data/smsgate.db" || cfg.Log.Format != "json" {
		t.Errorf("image config: listen %q, storage.path %q, log.format %q; want 0.0.0.0:8080, /data/smsgate.db, json",
			cfg.Server.Listen, cfg.Storage.Path, cfg.Log.Format)
	}
	// The rest of the image agrees: the port it exposes and probes, and the config it starts on.
	for _, want := range []string{"EXPOSE 8080", "http://127.0.0.1:8080/healthz", "/out/config.yaml /etc/smsgate/config.yaml",
		`CMD ["serve", "--config", "/etc/smsgate/config.yaml"]`, `VOLUME ["/data"]`} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
