package server

import (
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/botq/botq/api"
)

// servedRoutes are the HTTP routes botq serves, as "METHOD pattern": the
// /v1 API's, and those mounted beside it. River UI serves every method
// under /riverui/ (the document's /riverui/{path}, since OpenAPI paths end
// without a slash); the document lists the methods by role. The web
// console's pages at / are for browsers, not an API, and are documented in
// docs/console.md instead.
func servedRoutes() map[string][]string {
	out := map[string][]string{
		"GET /healthz":         {"public"},
		"GET /readyz":          {"public"},
		"GET /metrics":         {"enqueuer", "auditor", "operator"},
		"GET /riverui/{path}":  {"auditor", "operator"},
		"POST /riverui/{path}": {"operator"},
	}
	for _, r := range api.Routes() {
		roles := make([]string, len(r.Roles))
		for i, role := range r.Roles {
			roles[i] = string(role)
		}
		out[r.Method+" "+r.Pattern] = roles
	}
	return out
}

type openAPIDoc struct {
	Paths map[string]map[string]yaml.Node `yaml:"paths"`
}

func documentedRoutes(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile("../docs/openapi.yaml")
	require.NoError(t, err)
	var doc openAPIDoc
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	out := map[string][]string{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			var o struct {
				Roles []string `yaml:"x-botq-roles"`
			}
			require.NoError(t, op.Decode(&o), "%s %s", method, path)
			out[strings.ToUpper(method)+" "+path] = o.Roles
		}
	}
	return out
}

func keys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIMatchesRoutes keeps docs/openapi.yaml and the server in step:
// every route is documented with its roles, every documented operation is
// served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	served, documented := servedRoutes(), documentedRoutes(t)
	require.Equal(t, keys(served), keys(documented), "routes served vs documented in docs/openapi.yaml")
	for route, roles := range served {
		require.ElementsMatch(t, roles, documented[route], "x-botq-roles of %s", route)
	}

	// Each documented operation reaches a handler of the running server:
	// neither the mux's 404/405 nor the API's "no such endpoint".
	_, base := startAPIMain(t, nil)
	for route := range documented {
		method, path, _ := strings.Cut(route, " ")
		path = strings.NewReplacer("{id}", "1", "{request_id}", "none", "{path}", "").Replace(path)
		if route == "POST /riverui/{path}" {
			path = "/riverui/api/jobs/cancel" // River UI's actions live under its API
		}
		resp, body := send(t, method, base+path, bearerKey(testKeyOperator), "")
		require.NotEqual(t, http.StatusMethodNotAllowed, resp.StatusCode, route)
		require.NotContains(t, body, "no such endpoint", route)
		require.NotContains(t, body, "404 page not found", route)
	}
}

// TestOpenAPIIsValid validates docs/openapi.yaml as OpenAPI 3.0 (kin-openapi,
// the same structural checks as `make lint`'s Redocly CLI and swagger-cli,
// which need npm) and requires what generators and linters expect: a
// unique operationId on every operation and a license.
func TestOpenAPIIsValid(t *testing.T) {
	t.Parallel()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../docs/openapi.yaml")
	require.NoError(t, err)
	require.NoError(t, doc.Validate(loader.Context))
	require.NotNil(t, doc.Info.License, "info.license")
	require.Equal(t, "Apache-2.0", doc.Info.License.Name)

	seen := map[string]string{}
	for path, item := range doc.Paths.Map() {
		require.False(t, len(path) > 1 && strings.HasSuffix(path, "/"), "path %s ends with a slash", path)
		for method, op := range item.Operations() {
			route := method + " " + path
			require.NotEmpty(t, op.OperationID, "%s has an operationId", route)
			require.Empty(t, seen[op.OperationID], "operationId %s of %s is also %s's", op.OperationID, route, seen[op.OperationID])
			seen[op.OperationID] = route
		}
	}
	require.Len(t, seen, len(servedRoutes()))
}
