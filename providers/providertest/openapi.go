package providertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	vconfig "github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/paths"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
)

// Spec is a provider's OpenAPI document (3.0 or 3.1), checked with pb33f/libopenapi-validator:
// drivers must send requests the spec accepts, and fakes must answer what it describes. Strict
// mode is on, so a property the spec does not declare is an error even where the schema allows
// additional properties (the mistake "from" for "sender" is caught).
//
// A Spec is shared by the tests of a package (LoadSpec keeps it), which may run in parallel: its
// checks take turns, as the library's are not safe at once without a schema cache (each renders
// and compiles its operation's schemas from the shared model, writing as it goes).
type Spec struct {
	name  string
	model *v3.Document
	v     validator.Validator
	base  string
	mu    sync.Mutex // held by each exported method
}

// SpecDir finds the providers' specs: $SMSGATE_SPECS, else a shared/specs folder above the test's
// directory (the specs live beside the repository, not in it).
func SpecDir() string {
	if dir := os.Getenv("SMSGATE_SPECS"); dir != "" {
		return dir
	}
	wd, _ := os.Getwd()
	for d := wd; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(filepath.Join(d, "shared", "specs")); err == nil && fi.IsDir() {
			return filepath.Join(d, "shared", "specs")
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// specs caches compiled specs: building Twilio's model takes half a second under -race.
var specs sync.Map

// LoadSpec reads and compiles a spec. Without it the test is skipped, saying so, on a laptop;
// in CI ($CI set) a missing or broken spec fails the test.
func LoadSpec(t testing.TB, name string) *Spec {
	t.Helper()
	if s, ok := specs.Load(name); ok {
		return s.(*Spec)
	}
	b, err := os.ReadFile(filepath.Join(SpecDir(), name))
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("spec %s is required in CI: %v", name, err)
		}
		t.Skipf("spec %s not available (no shared/specs above the module, no $SMSGATE_SPECS): %v", name, err)
	}
	doc, err := libopenapi.NewDocument(b)
	if err != nil {
		t.Fatalf("spec %s: %v", name, err)
	}
	model, err := doc.BuildV3Model()
	if err != nil || model == nil {
		t.Fatalf("spec %s: %v", name, err)
	}
	// No schema cache: with one, NewValidator compiles every operation's schemas first (45 of
	// the 50 s a race-built run of Twilio's tests took, for a spec of 121 paths of which the tests
	// use three); without, a check compiles the schemas of its own operation. What a check
	// accepts is the same either way.
	v, errs := validator.NewValidator(doc, vconfig.WithStrictMode(), vconfig.WithoutSecurityValidation(), vconfig.WithURLEncodedBodyValidation(),
		vconfig.WithSchemaCache(nil))
	if len(errs) > 0 {
		t.Fatalf("spec %s: %v", name, errs)
	}
	s := &Spec{name: name, model: &model.Model, v: v, base: "https://api.example.com"}
	if len(model.Model.Servers) > 0 {
		if u, err := url.Parse(model.Model.Servers[0].URL); err == nil && u.Host != "" && !strings.Contains(u.Host, "{") {
			s.base = u.Scheme + "://" + u.Host // paths given to the checks are whole paths, base path included
		}
	}
	// Kept for the package's other tests: each compiled its own before (the cache was read and
	// never written), some 40 s of a race run for Twilio's.
	got, _ := specs.LoadOrStore(name, s)
	return got.(*Spec)
}

// messages renders the validator's errors, leaving out two false positives of
// libopenapi-validator v0.16 (both checked by hand against the specs):
//   - strict mode cannot see into oneOf/anyOf: it reports every property of such a schema as
//     undeclared, with an empty list of declared properties (the oneOf branch itself is still
//     validated without strict mode);
//   - form bodies: it looks for reserved characters in the decoded values, although the wire
//     form percent-encodes them (url.Values.Encode always does), so "+1415..." is reported.
func messages(errs []*verrors.ValidationError) []string {
	var out []string
	for _, e := range errs {
		if strings.HasSuffix(e.Reason, "Declared properties: []") ||
			strings.HasPrefix(e.Message, "Form value '") && strings.HasSuffix(e.Message, "contains reserved characters") {
			continue
		}
		msg := e.Message
		if e.Reason != "" {
			msg += ": " + e.Reason
		}
		for _, se := range e.SchemaValidationErrors {
			msg += "; " + se.FieldPath + ": " + se.Reason
		}
		out = append(out, msg)
	}
	return out
}

// request builds a request to path on the spec's first server.
func (s *Spec) request(method, path, ctype string, body []byte) *http.Request {
	r, _ := http.NewRequest(method, s.base+path, bytes.NewReader(body))
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	return r
}

// RequestErrors validates a JSON request body for path and method. A path "webhook:NAME" names
// one of the spec's webhooks (what the provider posts to us).
func (s *Spec) RequestErrors(path, method string, body []byte) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bodyErrors(path, method, "application/json", body)
}

// RequestExamples returns the JSON request bodies the spec gives as examples of method and path,
// by name: what the provider documents its clients sending, which an endpoint that answers as the
// provider must take. A path "webhook:NAME" names one of the spec's webhooks (what the provider
// posts to us).
func (s *Spec) RequestExamples(path, method string) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	op := s.operation(path, method)
	if op == nil || op.RequestBody == nil || op.RequestBody.Content == nil {
		return nil, fmt.Errorf("%s: %s %s is not there or takes no body", s.name, method, path)
	}
	mt, ok := op.RequestBody.Content.Get("application/json")
	if !ok || mt.Examples == nil {
		return nil, fmt.Errorf("%s: %s %s has no JSON examples", s.name, method, path)
	}
	out := map[string][]byte{}
	if err := decodeExamples(s.name, mt.Examples.FromOldest(), out); err != nil {
		return nil, err
	}
	return out, nil
}

// ResponseExamples returns the JSON answers the spec gives as examples of method and path with
// status, by name: what a driver must read as the provider documents it.
func (s *Spec) ResponseExamples(path, method, status string) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	op := s.operation(path, method)
	if op == nil || op.Responses == nil || op.Responses.Codes == nil {
		return nil, fmt.Errorf("%s: %s %s is not there or has no responses", s.name, method, path)
	}
	res, ok := op.Responses.Codes.Get(status)
	if !ok || res.Content == nil {
		return nil, fmt.Errorf("%s: %s %s has no %s answer", s.name, method, path, status)
	}
	out := map[string][]byte{}
	for ctype, mt := range res.Content.FromOldest() {
		if !strings.HasPrefix(ctype, "application/json") || mt.Examples == nil {
			continue
		}
		if err := decodeExamples(s.name, mt.Examples.FromOldest(), out); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %s %s %s has no JSON examples", s.name, method, path, status)
	}
	return out, nil
}

// operation is the spec's operation for method and path ("webhook:NAME" for a webhook), or nil.
func (s *Spec) operation(path, method string) *v3.Operation {
	var item *v3.PathItem
	if name, ok := strings.CutPrefix(path, "webhook:"); ok {
		if s.model.Webhooks != nil {
			item, _ = s.model.Webhooks.Get(name)
		}
	} else {
		item, _, _ = paths.FindPath(s.request(method, path, "", nil), s.model, nil)
	}
	if item == nil {
		return nil
	}
	return item.GetOperations().GetOrZero(strings.ToLower(method))
}

// decodeExamples adds the JSON of each named example to out.
func decodeExamples(spec string, examples iter.Seq2[string, *base.Example], out map[string][]byte) error {
	for name, ex := range examples {
		if ex == nil || ex.Value == nil {
			continue
		}
		var v any
		if err := ex.Value.Decode(&v); err != nil {
			return fmt.Errorf("%s: example %q: %w", spec, name, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("%s: example %q: %w", spec, name, err)
		}
		out[name] = b
	}
	return nil
}

// FormErrors validates a form-encoded request body for path and method. The validator's strict
// mode covers JSON bodies only, so fields the form schema does not declare are found here, from
// the library's model of the operation.
func (s *Spec) FormErrors(path, method string, form url.Values) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := s.bodyErrors(path, method, "application/x-www-form-urlencoded", []byte(form.Encode()))
	op := s.operation(path, method)
	if op == nil || op.RequestBody == nil || op.RequestBody.Content == nil {
		return errs
	}
	mt, ok := op.RequestBody.Content.Get("application/x-www-form-urlencoded")
	if !ok || mt.Schema == nil {
		return append(errs, "the operation takes no form body")
	}
	sch := mt.Schema.Schema()
	for _, k := range slices.Sorted(maps.Keys(form)) {
		if sch.Properties == nil {
			break
		}
		if _, ok := sch.Properties.Get(k); !ok {
			errs = append(errs, fmt.Sprintf("form field %q is not declared in the schema", k))
		}
	}
	return errs
}

func (s *Spec) bodyErrors(path, method, ctype string, body []byte) []string {
	if name, ok := strings.CutPrefix(path, "webhook:"); ok {
		if s.model.Webhooks == nil {
			return []string{s.name + " has no webhooks"}
		}
		item, ok := s.model.Webhooks.Get(name)
		if !ok {
			return []string{s.name + " has no webhook " + name}
		}
		_, errs := s.v.ValidateHttpRequestSyncWithPathItem(s.request(method, "/"+name, ctype, body), item, "/"+name)
		return messages(errs)
	}
	_, errs := s.v.ValidateHttpRequestSync(s.request(method, path, ctype, body))
	return messages(errs)
}

// ResponseErrors validates a JSON answer with the given status to method and path.
func (s *Spec) ResponseErrors(path, method, status string, body []byte) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := s.request(method, path, "application/json", nil)
	code := 0
	fmt.Sscan(status, &code)
	res := &http.Response{StatusCode: code, Header: http.Header{"Content-Type": {"application/json"}},
		Body: http.NoBody, Request: req}
	if len(body) > 0 {
		res.Body = readCloser{bytes.NewReader(body)}
	}
	_, errs := s.v.ValidateHttpResponse(req, res)
	return messages(errs)
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
