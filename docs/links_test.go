package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	mdLink  = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading = regexp.MustCompile(`(?m)^#+\s+(.+)$`)
	notSlug = regexp.MustCompile(`[^\p{L}\p{N}_\- ]`)
)

// slugs are the anchors GitHub gives a Markdown file's headings.
func slugs(text string) map[string]bool {
	out := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(text, -1) {
		s := notSlug.ReplaceAllString(strings.ToLower(strings.TrimSpace(m[1])), "")
		out[strings.ReplaceAll(s, " ", "-")] = true
	}
	return out
}

// TestLinksResolve: every relative link in the README and the docs names a file of the repository,
// and every #anchor a heading of its file, so that a renamed section or a moved file cannot leave
// a reader at a dead end.
func TestLinksResolve(t *testing.T) {
	files := []string{"../README.md"}
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(raw), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(link, "#")
			target := f
			if path != "" {
				target = filepath.Join(filepath.Dir(f), path)
			}
			body, err := os.ReadFile(target)
			if err != nil {
				if _, serr := os.Stat(target); serr != nil {
					t.Errorf("%s: link %s: %v", f, link, serr)
				}
				continue // a folder
			}
			checked++
			if anchor != "" && strings.HasSuffix(target, ".md") && !slugs(string(body))[anchor] {
				t.Errorf("%s: link %s: %s has no heading with that anchor", f, link, target)
			}
		}
	}
	if checked < 50 {
		t.Fatalf("only %d links checked: the walk is wrong", checked)
	}
}
