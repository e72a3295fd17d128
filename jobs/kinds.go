package jobs

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Action kinds. Their names are stable: they are stored in botq.action and,
// prefixed with "botq_", as River job kinds.
const (
	KindRespond            = "respond"
	KindForm               = "form"
	KindNote               = "note"
	KindControl            = "control"
	KindPriority           = "priority"
	KindTag                = "tag"
	KindTagRemove          = "tag_remove"
	KindWorkQueue          = "workqueue"
	KindResolve            = "resolve"
	KindAuthorAttributes   = "author_attributes"
	KindAuthorUpdate       = "author_update"
	KindRegistrationCreate = "registration_create"
	KindRegistrationUpdate = "registration_update"
	KindRegistrationDelete = "registration_delete"
	KindMode               = "mode"
	KindTokenRefresh       = "token_refresh"
	KindTokenRevoke        = "token_revoke"
)

// riverKindPrefix turns an action kind into its River job kind.
const riverKindPrefix = "botq_"

// RiverKind returns the River job kind of an action kind.
func RiverKind(kind string) string { return riverKindPrefix + kind }

// ActionKindOf returns the action kind a River job kind executes, and
// whether it is one: botq's maintenance jobs share the prefix, not the
// kinds.
func ActionKindOf(riverKind string) (string, bool) {
	k, ok := strings.CutPrefix(riverKind, riverKindPrefix)
	if !ok {
		return "", false
	}
	_, ok = kinds[k]
	return k, ok
}

// kindSpec is how one action kind is executed: one Bot v3 call.
type kindSpec struct {
	method string
	// path builds the request path from the app and the payload.
	path func(appID string, p json.RawMessage) (string, error)
	// body: the payload is the request body.
	body bool
	// idempotent: a blind resend is harmless (kind_config.idempotent agrees;
	// a test checks).
	idempotent bool
	// success lists the statuses Khoros documents for success; any other 2xx is
	// accepted too but noted.
	success []int
}

func fixed(p string) func(string, json.RawMessage) (string, error) {
	return func(string, json.RawMessage) (string, error) { return p, nil }
}

// registrationPath builds .../registrations/network/{nk}/externalId/{ext}/appId/{app}.
func registrationPath(suffix func(map[string]any) (string, error)) func(string, json.RawMessage) (string, error) {
	return func(appID string, p json.RawMessage) (string, error) {
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			return "", fmt.Errorf("decode payload: %w", err)
		}
		nk, _ := m["networkKey"].(string)
		ext, _ := m["externalId"].(string)
		if nk == "" || ext == "" {
			return "", fmt.Errorf("payload needs networkKey and externalId")
		}
		path := "/bots/v3/registrations/network/" + url.PathEscape(nk) + "/externalId/" + url.PathEscape(ext) + "/appId/" + url.PathEscape(appID)
		if suffix != nil {
			s, err := suffix(m)
			if err != nil {
				return "", err
			}
			path += s
		}
		return path, nil
	}
}

func tokenPath(appID string, _ json.RawMessage) (string, error) {
	return "/bots/v3/tokens/appId/" + url.PathEscape(appID), nil
}

var kinds = map[string]kindSpec{
	KindRespond:          {method: http.MethodPost, path: fixed("/bots/v3/respond"), body: true, success: []int{200, 202}},
	KindForm:             {method: http.MethodPost, path: fixed("/bots/v3/form"), body: true, success: []int{202}},
	KindNote:             {method: http.MethodPut, path: fixed("/bots/v3/note"), body: true, success: []int{202}},
	KindControl:          {method: http.MethodPut, path: fixed("/bots/v3/control"), body: true, idempotent: true, success: []int{200}},
	KindPriority:         {method: http.MethodPut, path: fixed("/bots/v3/priority"), body: true, idempotent: true, success: []int{202}},
	KindTag:              {method: http.MethodPut, path: fixed("/bots/v3/tag"), body: true, idempotent: true, success: []int{202}},
	KindTagRemove:        {method: http.MethodPut, path: fixed("/bots/v3/tag/remove"), body: true, idempotent: true, success: []int{202}},
	KindWorkQueue:        {method: http.MethodPut, path: fixed("/bots/v3/workqueue"), body: true, idempotent: true, success: []int{202}},
	KindResolve:          {method: http.MethodPut, path: fixed("/bots/v3/resolve"), body: true, idempotent: true, success: []int{202}},
	KindAuthorAttributes: {method: http.MethodPut, path: fixed("/bots/v3/authors/attributes"), body: true, idempotent: true, success: []int{202}},
	KindAuthorUpdate:     {method: http.MethodPut, path: fixed("/bots/v3/authors"), body: true, idempotent: true, success: []int{202}},
	KindRegistrationCreate: {method: http.MethodPost, path: fixed("/bots/v3/registrations"), body: true, idempotent: true,
		success: []int{202}},
	KindRegistrationUpdate: {method: http.MethodPut, path: fixed("/bots/v3/registrations"), body: true, idempotent: true,
		success: []int{202}},
	KindRegistrationDelete: {method: http.MethodDelete, path: registrationPath(nil), idempotent: true, success: []int{204}},
	KindMode: {method: http.MethodPut, idempotent: true, success: []int{202},
		path: registrationPath(func(m map[string]any) (string, error) {
			mode, _ := m["mode"].(string)
			if mode == "" {
				return "", fmt.Errorf("payload needs mode")
			}
			return "/mode/" + url.PathEscape(strings.ToUpper(mode)), nil
		})},
	KindTokenRefresh: {method: http.MethodPut, path: tokenPath, idempotent: true, success: []int{200}},
	KindTokenRevoke:  {method: http.MethodDelete, path: tokenPath, idempotent: true, success: []int{200}},
}

// Kinds returns every action kind, sorted.
func Kinds() []string {
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Idempotent reports whether a blind resend of kind is harmless.
func Idempotent(kind string) bool { return kinds[kind].idempotent }
