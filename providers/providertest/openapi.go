package providertest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// Spec is an OpenAPI document loaded for conformance checks of driver requests and fake answers.
type Spec struct {
	doc map[string]any
}

// LoadSpec reads an official spec from the project's shared/specs folder, found by walking up
// from the test's directory ($SMSGATE_SPECS overrides; .ci/run sets it). Without it the test is
// skipped, saying so: the specs live beside the repository, not in it.
func LoadSpec(t testing.TB, name string) *Spec {
	t.Helper()
	dir := os.Getenv("SMSGATE_SPECS")
	if dir == "" {
		wd, _ := os.Getwd()
		for d := wd; ; d = filepath.Dir(d) {
			if fi, err := os.Stat(filepath.Join(d, "shared", "specs")); err == nil && fi.IsDir() {
				dir = filepath.Join(d, "shared", "specs")
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Skipf("spec %s not available (no shared/specs above the module, no $SMSGATE_SPECS): %v", name, err)
	}
	s := &Spec{}
	if err := json.Unmarshal(b, &s.doc); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *Spec) operation(path, method string) (map[string]any, error) {
	paths, _ := s.doc["paths"].(map[string]any)
	if name, ok := strings.CutPrefix(path, "webhook:"); ok {
		paths, _ = s.doc["webhooks"].(map[string]any)
		path = name
	}
	p, ok := paths[path].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("spec has no path %s", path)
	}
	op, ok := p[strings.ToLower(method)].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("spec has no %s %s", method, path)
	}
	return op, nil
}

func (s *Spec) resolve(x map[string]any) map[string]any {
	for {
		ref, ok := x["$ref"].(string)
		if !ok {
			return x
		}
		node := any(s.doc)
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			node = node.(map[string]any)[part]
		}
		x = node.(map[string]any)
	}
}

func schemaOf(content map[string]any, ctype string) map[string]any {
	c, _ := content[ctype].(map[string]any)
	sch, _ := c["schema"].(map[string]any)
	return sch
}

// RequestErrors validates a JSON request body against the operation's request schema: unknown
// properties, missing required ones, wrong types and values outside an enum are errors. A path
// "webhook:NAME" names one of the spec's webhooks (what the provider posts to us).
func (s *Spec) RequestErrors(path, method string, body []byte) []string {
	op, err := s.operation(path, method)
	if err != nil {
		return []string{err.Error()}
	}
	rb := s.resolve(op["requestBody"].(map[string]any))
	sch := schemaOf(rb["content"].(map[string]any), "application/json")
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return []string{"body is not JSON"}
	}
	return s.validate(sch, v, "body")
}

// ResponseErrors validates a JSON response body against the operation's schema for status.
func (s *Spec) ResponseErrors(path, method, status string, body []byte) []string {
	op, err := s.operation(path, method)
	if err != nil {
		return []string{err.Error()}
	}
	resp, ok := op["responses"].(map[string]any)[status].(map[string]any)
	if !ok {
		return []string{"spec has no response " + status}
	}
	resp = s.resolve(resp)
	sch := schemaOf(resp["content"].(map[string]any), "application/json")
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return []string{"body is not JSON"}
	}
	return s.validate(sch, v, "response")
}

// FormErrors validates a form-encoded request body: every field must be a property of the
// schema and every required property present.
func (s *Spec) FormErrors(path, method string, form url.Values) []string {
	op, err := s.operation(path, method)
	if err != nil {
		return []string{err.Error()}
	}
	rb := s.resolve(op["requestBody"].(map[string]any))
	sch := s.resolve(schemaOf(rb["content"].(map[string]any), "application/x-www-form-urlencoded"))
	props, _ := sch["properties"].(map[string]any)
	var errs []string
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := props[k]; !ok {
			errs = append(errs, "form field "+k+" is not in the spec")
		}
	}
	for _, r := range sch["required"].([]any) {
		if form.Get(r.(string)) == "" {
			errs = append(errs, "required form field "+r.(string)+" is missing")
		}
	}
	return errs
}

func (s *Spec) validate(sch map[string]any, v any, at string) []string {
	if sch == nil {
		return nil
	}
	sch = s.resolve(sch)
	var errs []string
	for _, kw := range []string{"oneOf", "anyOf"} {
		if alts, ok := sch[kw].([]any); ok {
			matched := false
			var first []string
			for _, alt := range alts {
				e := s.validate(alt.(map[string]any), v, at)
				if len(e) == 0 {
					matched = true
					break
				}
				if first == nil {
					first = e
				}
			}
			if !matched {
				errs = append(errs, fmt.Sprintf("%s matches no %s alternative (first: %v)", at, kw, first))
			}
			return errs
		}
	}
	if v == nil {
		if n, _ := sch["nullable"].(bool); n {
			return nil
		}
	}
	if all, ok := sch["allOf"].([]any); ok {
		for _, part := range all {
			errs = append(errs, s.validate(part.(map[string]any), v, at)...)
		}
	}
	if enum, ok := sch["enum"].([]any); ok && !slices.Contains(enum, v) {
		errs = append(errs, fmt.Sprintf("%s: %v is not one of %v", at, v, enum))
	}
	switch typ, _ := sch["type"].(string); typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return append(errs, at+": want an object")
		}
		props, _ := sch["properties"].(map[string]any)
		if props != nil && sch["additionalProperties"] == nil {
			for k := range m {
				if _, ok := props[k]; !ok {
					errs = append(errs, at+"."+k+": not in the schema")
				}
			}
		}
		for k, pv := range m {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, s.validate(ps, pv, at+"."+k)...)
			}
		}
		if req, ok := sch["required"].([]any); ok {
			for _, r := range req {
				if _, ok := m[r.(string)]; !ok {
					errs = append(errs, at+"."+r.(string)+": required but missing")
				}
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return append(errs, at+": want an array")
		}
		if items, ok := sch["items"].(map[string]any); ok {
			for i, x := range a {
				errs = append(errs, s.validate(items, x, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			errs = append(errs, at+": want a string")
		}
	case "integer", "number":
		if _, ok := v.(float64); !ok {
			errs = append(errs, at+": want a number")
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			errs = append(errs, at+": want a boolean")
		}
	}
	return errs
}
