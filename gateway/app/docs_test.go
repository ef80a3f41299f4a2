package app

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// errorCodeRe finds the stable error codes the HTTP layer and the app answer with.
var errorCodeRe = regexp.MustCompile(`(?:errReply\(|fail\()[^,]+, "([a-z_]+)"|code(?:, msg)? = (?:[^,"]+, )?"([a-z_]+)"`)

// TestAPIDocListsEveryErrorCode: docs/api.md and the ErrorCode enum of docs/openapi.yaml name
// every error code the code can answer, so neither can fall behind the code.
func TestAPIDocListsEveryErrorCode(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	openapi, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../*/*.go")
	seen := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range errorCodeRe.FindAllSubmatch(b, -1) {
			code := string(m[1]) + string(m[2])
			if seen[code] {
				continue
			}
			seen[code] = true
			if !regexp.MustCompile("`" + code + "`").Match(doc) {
				t.Errorf("docs/api.md does not list the error code %q (from %s)", code, f)
			}
			if !regexp.MustCompile(`[\[ ]` + code + `[,\]]`).Match(openapi) {
				t.Errorf("docs/openapi.yaml's ErrorCode does not list %q (from %s)", code, f)
			}
		}
	}
	if len(seen) < 20 {
		t.Errorf("found only %d codes; the pattern no longer matches the code: %v", len(seen), seen)
	}
}
