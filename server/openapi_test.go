package server

import (
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/botq/botq/api"
)

// servedRoutes are the HTTP routes botq serves, as "METHOD pattern": the
// /v1 API's, and those mounted beside it. River UI serves every method
// under /riverui/; the document lists the methods by role.
func servedRoutes() map[string][]string {
	out := map[string][]string{
		"GET /healthz":   {"public"},
		"GET /readyz":    {"public"},
		"GET /metrics":   {"enqueuer", "auditor", "operator"},
		"GET /riverui/":  {"auditor", "operator"},
		"POST /riverui/": {"operator"},
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
	Paths map[string]map[string]struct {
		Roles []string `yaml:"x-botq-roles"`
	} `yaml:"paths"`
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
			out[strings.ToUpper(method)+" "+path] = op.Roles
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
		path = strings.NewReplacer("{id}", "1", "{request_id}", "none").Replace(path)
		if route == "POST /riverui/" {
			path = "/riverui/api/jobs/cancel" // River UI's actions live under its API
		}
		resp, body := send(t, method, base+path, bearerKey(testKeyOperator), "")
		require.NotEqual(t, http.StatusMethodNotAllowed, resp.StatusCode, route)
		require.NotContains(t, body, "no such endpoint", route)
		require.NotContains(t, body, "404 page not found", route)
	}
}
