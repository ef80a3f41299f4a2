// Package docs holds smsgate's documentation. Its only Go content is the OpenAPI document, embedded
// so the gateway serves the very file in this folder at /openapi.yaml.
package docs

import _ "embed"

// OpenAPI is docs/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
