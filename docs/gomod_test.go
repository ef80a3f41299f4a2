package docs

import (
	"cmp"
	"os"
	"strconv"
	"strings"
	"testing"
)

// requires reads the modules a go.mod requires, path to version (both blocks, direct and
// indirect).
func requires(t *testing.T, file string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	block := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(strings.Split(line, "//")[0])
		switch {
		case line == "require (":
			block = true
			continue
		case line == ")":
			block = false
			continue
		case strings.HasPrefix(line, "require "):
			line = strings.TrimPrefix(line, "require ")
		case !block:
			continue
		}
		if f := strings.Fields(line); len(f) == 2 {
			out[f[0]] = f[1]
		}
	}
	return out
}

// The deploy check (docs/deploy/check) is a module of its own that builds on this one (a replace
// to the repository's root), and CI runs it with -mod=readonly: a dependency this module updates
// must be updated in its go.mod too, or CI refuses it after every other test passed. A stop once
// failed so; this catches it with the README's test command.
func TestTheDeployCheckModuleFollowsThisOne(t *testing.T) {
	main, check := requires(t, "../go.mod"), requires(t, "deploy/check/go.mod")
	if len(main) < 10 || len(check) < 10 {
		t.Fatalf("read %d and %d requirements: the go.mod files changed shape", len(main), len(check))
	}
	for path, v := range main {
		if w, ok := check[path]; ok && older(w, v) {
			t.Errorf("%s: %s here, %s in docs/deploy/check/go.mod (run go mod tidy there)", path, v, w)
		}
	}
}

// older reports whether module version a is older than b: vMAJOR.MINOR.PATCH by number, then what
// follows (a pre-release, a pseudo-version's time) as text, a release after its pre-releases.
func older(a, b string) bool {
	num := func(v string) (n [3]int, rest string) {
		core, rest, _ := strings.Cut(strings.TrimPrefix(v, "v"), "-")
		for i, p := range strings.SplitN(core, ".", 3) {
			n[i], _ = strconv.Atoi(strings.TrimSuffix(p, "+incompatible"))
		}
		return n, rest
	}
	na, ra := num(a)
	nb, rb := num(b)
	if c := cmp.Or(cmp.Compare(na[0], nb[0]), cmp.Compare(na[1], nb[1]), cmp.Compare(na[2], nb[2])); c != 0 {
		return c < 0
	}
	if ra == "" || rb == "" {
		return ra != "" && rb == "" // a pre-release is older than its release
	}
	return ra < rb
}

func TestOlderVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"v0.62.0", "v0.63.0", true}, {"v0.63.0", "v0.62.0", false}, {"v0.63.0", "v0.63.0", false},
		{"v1.9.0", "v1.10.0", true}, {"v2.0.0", "v1.99.9", false},
		{"v1.0.0-rc.1", "v1.0.0", true}, {"v1.0.0", "v1.0.0-rc.1", false},
		{"v0.0.0-20230129092748-24d4a6f8daec", "v0.0.0-20261016150608-1facf8f91b50", true},
	} {
		if got := older(c.a, c.b); got != c.want {
			t.Errorf("older(%s, %s) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
