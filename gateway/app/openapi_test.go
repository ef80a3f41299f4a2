package app

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	vconfig "github.com/pb33f/libopenapi-validator/config"

	"github.com/smsgate/smsgate/docs"
	"github.com/smsgate/smsgate/gateway/httpapi"
)

// apiDoc is docs/openapi.yaml compiled once. Every exchange a test makes through harness.do is
// checked against it (request and answer), so the document cannot drift from what the gateway
// really answers: a status, a field or an error code it does not describe fails the test that
// produced it.
var apiDoc = sync.OnceValues(func() (validator.Validator, error) {
	doc, err := libopenapi.NewDocument(docs.OpenAPI)
	if err != nil {
		return nil, err
	}
	v, errs := validator.NewValidator(doc, vconfig.WithoutSecurityValidation())
	if len(errs) > 0 {
		return nil, errs[0]
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		var msgs []string
		for _, e := range verrs {
			msgs = append(msgs, e.Message+": "+e.Reason)
			for _, se := range e.SchemaValidationErrors {
				msgs = append(msgs, se.FieldPath+": "+se.Reason)
			}
		}
		return nil, fmt.Errorf("not a valid OpenAPI document: %s", strings.Join(msgs, "; "))
	}
	return v, nil
})

// checkAPI validates one answer against docs/openapi.yaml. Requests are not checked: tests send
// bad ones on purpose. Paths the gateway does not serve (404, 405 tests) are not in the document.
func checkAPI(t testing.TB, method, url string, hdr http.Header, body []byte, res *http.Response, raw []byte) {
	t.Helper()
	v, err := apiDoc()
	if err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header = hdr.Clone()
	resp := &http.Response{StatusCode: res.StatusCode, Header: res.Header.Clone(), Body: io.NopCloser(bytes.NewReader(raw)), Request: req}
	if ok, errs := v.ValidateHttpResponse(req, resp); !ok {
		for _, e := range errs {
			if e.ValidationType == "path" && res.StatusCode >= 400 {
				continue
			}
			msg := e.Message
			if e.Reason != "" {
				msg += ": " + e.Reason
			}
			for _, se := range e.SchemaValidationErrors {
				msg += "; " + se.FieldPath + ": " + se.Reason
			}
			t.Errorf("docs/openapi.yaml does not describe %s %s -> %d %s: %s", method, req.URL.Path, res.StatusCode, strings.TrimSpace(string(raw)), msg)
		}
	}
}

// TestOpenAPIServedAndValid: the gateway serves the document in docs/ byte for byte, and it
// compiles as OpenAPI 3.1.
func TestOpenAPIServedAndValid(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	res, err := http.Get(h.url + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	file, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || !bytes.Equal(raw, file) || res.Header.Get("Content-Type") != "application/yaml" {
		t.Fatalf("%d %s, %d bytes (file %d)", res.StatusCode, res.Header.Get("Content-Type"), len(raw), len(file))
	}
	doc, err := libopenapi.NewDocument(raw)
	if err != nil {
		t.Fatal(err)
	}
	if doc.GetVersion() != "3.1.0" {
		t.Errorf("version %s", doc.GetVersion())
	}
	if _, err := apiDoc(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenAPIListsEveryRoute: every route the HTTP layer serves is a path and method of
// docs/openapi.yaml, and every path and method there is served.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	t.Parallel()
	h := start(t, baseConfig, Options{})
	served := map[string]bool{}
	for _, r := range httpapi.New(h.app, slog.New(slog.DiscardHandler)).Routes() {
		if r.Method == "echo_route_any" {
			continue
		}
		served[r.Method+" "+echoPathParams.ReplaceAllString(r.Path, "{$1}")] = true
	}
	doc, err := libopenapi.NewDocument(docs.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range model.Model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	for r := range served {
		if !documented[r] {
			t.Errorf("%s is served but not in docs/openapi.yaml", r)
		}
	}
	for r := range documented {
		if !served[r] {
			t.Errorf("%s is in docs/openapi.yaml but not served", r)
		}
	}
	if len(served) < 20 {
		t.Errorf("only %d routes: %v", len(served), served)
	}
}

var echoPathParams = regexp.MustCompile(`:([A-Za-z]+)`)
