// Package mittotest is a fake Mitto SMS API for tests: a real HTTP handler that checks the method,
// the path /sms, the X-Mitto-API-Key header and the JSON body's required fields, records
// requests, and answers as the reference documents (responseCode in every answer). Its mode
// switches at run time.
package mittotest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/smsgate/smsgate/providers/internal/fakeserver"
)

// Mode is how the fake answers.
type Mode int32

// Modes.
const (
	OK              Mode = iota // 200, responseCode 0, an id
	Unavailable                 // 503
	Hang                        // never answers until the client gives up or Release is called
	InvalidReceiver             // 200 with responseCode 8 (the reference leaves open whether Mitto uses 200 or 400)
)

// Request is one recorded call.
type Request struct {
	Method, Path, APIKey, ContentType string
	Body                              map[string]any
}

// Fake is the handler; use it with httptest.NewServer.
type Fake struct {
	fakeserver.Control[Request]
	key string
}

// New returns a fake that accepts key; record keeps every request.
func New(key string, record bool) *Fake {
	f := &Fake{key: key}
	f.Init(record)
	return f
}

// SetMode switches how sends are answered.
func (f *Fake) SetMode(m Mode) { f.SetModeValue(int32(m)) }

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/sms" {
		writeJSON(w, 404, `{"responseCode":1,"responseText":"Not found"}`)
		return
	}
	raw, _ := io.ReadAll(r.Body)
	n := f.NextCall()
	req := Request{Method: r.Method, Path: r.URL.Path, APIKey: r.Header.Get("X-Mitto-API-Key"), ContentType: r.Header.Get("Content-Type")}
	_ = json.Unmarshal(raw, &req.Body)
	f.Record(req)
	switch {
	case r.Method != http.MethodPost:
		writeJSON(w, 405, `{"responseCode":1,"responseText":"Method not allowed"}`)
		return
	case req.APIKey != f.key:
		writeJSON(w, 401, `{"responseCode":1,"responseText":"Unauthorized"}`)
		return
	}
	m, ok := f.Begin(w, r, int32(Hang))
	if !ok {
		return
	}
	mode := Mode(m)
	for _, k := range []string{"from", "to", "text"} {
		if s, _ := req.Body[k].(string); s == "" {
			code := map[string]int{"from": 5, "to": 7, "text": 3}[k]
			writeJSON(w, 400, fmt.Sprintf(`{"responseCode":%d,"responseText":"empty %s"}`, code, k))
			return
		}
	}
	switch mode {
	case Unavailable:
		writeJSON(w, 503, `Service Unavailable`)
		return
	case InvalidReceiver:
		writeJSON(w, 200, `{"responseCode":8,"responseText":"Invalid receiver"}`)
		return
	}
	writeJSON(w, 200, fmt.Sprintf(`{"id":"%032x","timestamp":"2026-11-30T12:00:00.0000000Z","to":%q,"responseCode":0,"textLength":%d,"responseText":"SMS sent"}`,
		n, req.Body["to"], len(fmt.Sprint(req.Body["text"]))))
}

func writeJSON(w http.ResponseWriter, status int, body string) { fakeserver.WriteJSON(w, status, body) }
