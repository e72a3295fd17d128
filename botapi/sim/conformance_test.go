package sim_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi/sim"
)

const regShape = `{"platform":"LITHIUM","companyKey":"botq-sim","networkKey":"apple","networkInstance":"www.apple.com",
	"externalId":"117101b2-e66a-11e7-86ec-b1a405106b73","appId":"my-bot","name":"My bot","callbackUrl":"https://example.com/bot",
	"mode":"*","contact":{"email":"a@example.com"},"publicFilter":{"includeTargeted":true},
	"credentials":{"type":"BASIC_AUTH","identity":"user","secret":"secret"},"metadata":"*",
	"createdEpochMillis":"*","lastUpdatedEpochMillis":"*"}`

// TestConformance replays the documented examples of shared/botv3-reference.md
// against one simulator, in order (later steps build on earlier state), and
// checks status, body shape and the x-amzn-RequestId header of each.
func TestConformance(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *sim.Options) { o.SettleDelayMin, o.SettleDelayMax = time.Second, time.Second })
	other, err := b.sim.MintToken("other-bot", sim.MintOptions{})
	require.NoError(t, err)
	require.NoError(t, b.sim.SetFault("control", sim.Fault{ErrorRate: 1, ErrorCode: 409, Times: 1}))

	const basic = "botq:botq"
	tests := []struct {
		section    string
		name       string
		method     string
		path       string
		token      string // "tok", "other", "bad", "basic", "badbasic" or "" (none)
		body       string
		wantStatus int
		wantBody   string
	}{
		{"§4.2", "anonymous call is refused by the gateway", "GET", "/bots/v3/registrations", "", "", 403, `{"message":"Forbidden"}`},
		{"§2.3", "unknown token is 401 with error.requestId", "GET", "/bots/v3/registrations", "bad", "", 401, `{"error":{"message":"Unauthorized","requestId":"*"}}`},
		{"§2.1", "registration POST accepted", "POST", "/bots/v3/registrations", "tok", registrationJSON("my-bot", "LIVE"), 202, `{"requestId":"*"}`},
		{"§2.1", "registration POST validation lists empty fields", "POST", "/bots/v3/registrations", "tok",
			strings.Replace(strings.Replace(registrationJSON("my-bot", "LIVE"), `"https://example.com/bot"`, `""`, 1), `"secret":"secret"`, `"secret":""`, 1),
			422, `{"errors":["callbackUrl may not be empty","credentials.secret may not be empty"]}`},
		{"§10 U10", "registration POST on an existing one is 409", "POST", "/bots/v3/registrations", "tok", registrationJSON("my-bot", "LIVE"), 409, `{"errors":["*"]}`},
		{"§10 U10", "a second LIVE bot on the page is 409", "POST", "/bots/v3/registrations", "other", registrationJSON("other-bot", "LIVE"), 409, `{"errors":["*"]}`},
		{"§2.2", "registration PUT creates a MONITORING bot", "PUT", "/bots/v3/registrations", "other", registrationJSON("other-bot", "MONITORING"), 202, `{"requestId":"*"}`},
		{"§2.3", "registrations GET all", "GET", "/bots/v3/registrations", "tok", "", 200, `{"data":["*","*"],"requestId":"*"}`},
		{"§2.4", "registrations of a page", "GET", "/bots/v3/registrations/network/apple/externalId/" + pageExt, "tok", "", 200, `{"data":[` + regShape + `,"*"]}`},
		{"§2.4", "no registration on a page", "GET", "/bots/v3/registrations/network/facebook/externalId/nothing", "tok", "", 404, `{"error":{"message":"No bot registration found"}}`},
		{"§2.5", "one registration", "GET", "/bots/v3/registrations/network/apple/externalId/" + pageExt + "/appId/my-bot", "tok", "", 200, `{"data":` + regShape + `}`},
		{"§2.5", "unknown registration", "GET", "/bots/v3/registrations/network/apple/externalId/" + pageExt + "/appId/nobody", "tok", "", 404, `{"error":{"message":"No bot registration found"}}`},
		{"§2.7", "mode is case-insensitive", "PUT", "/bots/v3/registrations/network/apple/externalId/" + pageExt + "/appId/my-bot/mode/maintenance", "tok", "", 202, `{"requestId":"*"}`},
		{"§2.7", "invalid mode", "PUT", "/bots/v3/registrations/network/apple/externalId/" + pageExt + "/appId/my-bot/mode/liev", "tok", "", 400, `{"error":{"messages":["Invalid mode: liev"]}}`},
		{"§2.7", "mode of an unknown bot", "PUT", "/bots/v3/registrations/network/facebook/externalId/12345678901234/appId/my-bot/mode/LIVE", "tok", "", 404,
			`{"error":{"messages":["No such bot my-bot for company botq-sim network facebook external id 12345678901234"]}}`},
		{"§10 U8", "respond from a MAINTENANCE bot is 403", "POST", "/bots/v3/respond", "tok", actionJSON("message", `"text":"hi"`), 403, `{"error":{"messages":["*"]},"requestId":"*"}`},
		{"§2.7", "back to LIVE", "PUT", "/bots/v3/registrations/network/apple/externalId/" + pageExt + "/appId/my-bot/mode/LIVE", "tok", "", 202, `{"requestId":"*"}`},
		{"§3.1", "respond accepted", "POST", "/bots/v3/respond", "tok", actionJSON("message", `"text":"I have a question 👋"`), 202, `{"requestId":"*"}`},
		{"§5.1", "request record of the respond", "GET", "/bots/v3/request/{last}", "tok", "", 200,
			`{"data":{"id":"*","companyKey":"botq-sim","externalId":"117101b2-e66a-11e7-86ec-b1a405106b73","networkKey":"apple","appId":"my-bot",
			"callbackUrl":"https://example.com/bot","origin":"BOT","state":"PENDING","payload":"*","createdEpochMillis":"*","lastUpdatedEpochMillis":"*"}}`},
		{"§5.1", "unknown request record", "GET", "/bots/v3/request/03a913a3-552e-4e2a-8d23-d1e5257474b", "tok", "", 404,
			`{"error":{"messages":["03a913a3-552e-4e2a-8d23-d1e5257474b not found"]}}`},
		{"§3.1", "respond synchronously", "POST", "/bots/v3/respond", "tok", actionJSON("message", `"text":"sync","processSynchronously":true`), 200,
			`{"data":{"messageId":"*","payloadType":"message","requestState":"SUCCESS"},"requestId":"*"}`},
		{"§3.1", "typing_start", "POST", "/bots/v3/respond", "tok", actionJSON("typing_start", ""), 202, `{"requestId":"*"}`},
		{"§3.1", "media as a single object", "POST", "/bots/v3/respond", "tok", actionJSON("message", `"media":{"url":"https://e.com/a.png","mediaType":"IMAGE"}`), 202, `{"requestId":"*"}`},
		{"§3.1", "invalid networkKey", "POST", "/bots/v3/respond", "tok", strings.Replace(actionJSON("message", `"text":"x"`), `"apple"`, `"farcebook"`, 1), 400,
			`{"error":{"messages":["Invalid networkKey farcebook"]}}`},
		{"§3.1", "respond by a bot that does not own the conversation", "POST", "/bots/v3/respond", "other", actionJSON("message", `"text":"x"`), 403,
			`{"error":{"messages":["*"]},"requestId":"*"}`},
		{"§10 U23", "companyKey not of the token", "POST", "/bots/v3/respond", "tok", strings.Replace(actionJSON("message", `"text":"x"`), `"botq-sim"`, `"doghotel"`, 1), 403,
			`{"error":{"messages":["companyKey doghotel does not match the token"]},"requestId":"*"}`},
		{"§3.2", "who controls the conversation", "GET", "/bots/v3/control/network/apple/externalId/" + pageExt + "/author/" + authorID, "tok", "", 200,
			`{"data":{"author":{"id":"urn:mbid:AQAAY1","fullName":"Anonymous Alligator"},"coordinate":{"companyKey":"botq-sim","networkKey":"apple","externalId":"117101b2-e66a-11e7-86ec-b1a405106b73"},
			"owner":{"type":"BOT","appId":"my-bot"},"lastUpdatedTS":"*","type":"control"}}`},
		{"§3.2", "control with an invalid networkKey", "GET", "/bots/v3/control/network/farcebook/externalId/x/author/y", "tok", "", 400, `{"error":{"messages":["Invalid networkKey farcebook"]}}`},
		{"§10 U9", "control of an unknown author", "GET", "/bots/v3/control/network/apple/externalId/" + pageExt + "/author/nobody", "tok", "", 404, `{"error":{"messages":["*"]}}`},
		{"§3.3", "control conflict may be retried", "PUT", "/bots/v3/control", "tok", actionJSON("control", `"owner":{"type":"AGENT"}`), 409,
			`{"requestId":"*","error":{"messages":["A (possibly transient) conflict occurred. No change was made. This request may be retried."]}}`},
		{"§3.3", "pass control to an agent", "PUT", "/bots/v3/control", "tok", actionJSON("control", `"owner":{"type":"AGENT"},"comment":"<custom text>","conversationDisplayId":"4299","lastUpdateTS":"1540501501979"`), 200,
			`{"data":{"type":"control","owner":{"type":"AGENT"},"author":{"id":"urn:mbid:AQAAY1","fullName":"Anonymous Alligator"},"coordinate":` + coordJSON("botq-sim") + `,
			"conversationDisplayId":"4299","lastUpdateTS":1540501501979}}`},
		{"§3.4", "priority", "PUT", "/bots/v3/priority", "tok", actionJSON("priority", `"newPriority":2`), 202, `{"requestId":"*"}`},
		{"§3.5", "tag", "PUT", "/bots/v3/tag", "tok", actionJSON("tag", `"entityType":"POST","tagIds":[1,2,3]`), 202, `{"requestId":"*"}`},
		{"§3.5", "tag remove", "PUT", "/bots/v3/tag/remove", "tok", actionJSON("remove_tag", `"entityType":"POST","tagIds":[1]`), 202, `{"requestId":"*"}`},
		{"§3.6", "note", "PUT", "/bots/v3/note", "tok", actionJSON("note", `"note":"text for the internal note"`), 202, `{"requestId":"*"}`},
		{"§3.7", "workqueue", "PUT", "/bots/v3/workqueue", "tok", actionJSON("workqueue", `"comment":"Moved for reasons","newWorkQueue":21,"conversationDisplayId":4299`), 202, `{"requestId":"*"}`},
		{"§3.7", "workqueue without a queue", "PUT", "/bots/v3/workqueue", "tok", actionJSON("workqueue", ""), 400, `{"error":{"messages":["newWorkQueue may not be null"]}}`},
		{"§3.8", "resolve", "PUT", "/bots/v3/resolve", "tok", actionJSON("resolve", `"comment":"POST","disposition":"example resolution"`), 202, `{"requestId":"*"}`},
		{"§3.9", "author attributes (crm)", "PUT", "/bots/v3/authors/attributes", "tok", actionJSON("author_attributes", `"payload":{"handles":{"crm":[{"id":"x","networkinstance":"y","crmProperty1":"value"}]}}`), 202, `{"requestId":"*"}`},
		{"§3.9", "author attributes", "PUT", "/bots/v3/authors/attributes", "tok", actionJSON("author_attributes", `"payload":{"attributes":{"occupation":["pilot"]}}`), 202, `{"requestId":"*"}`},
		{"§3.9", "author update", "PUT", "/bots/v3/authors", "tok", actionJSON("author_update", `"properties":{"Page URL":"https://e.com"},"updatedName":"Ada"`), 202, `{"requestId":"*"}`},
		{"§3.10", "secure form", "POST", "/bots/v3/form", "tok", actionJSON("secure_form", `"comment":"Please pay","secureFormId":"f1"`), 202, `{"requestId":"*"}`},
		{"§5.2", "listing", "GET", "/bots/v3/request/appId/my-bot?from=6h&state=PENDING&state=ERROR&origin=BOT", "tok", "", 200, `{"data":"*"}`},
		{"§5.2", "listing with a bad from", "GET", "/bots/v3/request/appId/my-bot?from=6w", "tok", "", 400, `{"error":{"messages":["Incorrect syntax in \"from\""]}}`},
		{"§5.2", "listing beyond 31 days", "GET", "/bots/v3/request/appId/my-bot?from=32d", "tok", "", 400, `{"error":{"messages":["Incorrect syntax in \"from\""]}}`},
		{"§7.2", "health", "GET", "/bots/v3/health/appId/my-bot", "tok", "", 200, `{"data":[{"status":"HEALTHY","failureCount":0,"successCount":0}]}`},
		{"§4.4", "token refresh", "PUT", "/bots/v3/tokens/appId/my-bot", "tok", "", 200, `{"data":{"token":"*","expiresAtMillis":"*"},"requestId":"*"}`},
		{"§4.4", "a superseded token cannot refresh", "PUT", "/tokens/appId/my-bot", "tok", "", 401, `{"error":{"message":"Unauthorized","requestId":"*"}}`},
		{"§4.5", "token delete", "DELETE", "/bots/v3/tokens/appId/other-bot", "other", "", 200, `{}`},
		{"§10 U15", "revoked token", "GET", "/bots/v3/health/appId/other-bot", "other", "", 401, `{"error":{"message":"Unauthorized","requestId":"*"}}`},
		{"§4.1", "bootstrap bad credentials", "POST", "/api/v2/tokens/khorosapi/ownerId/other-bot", "badbasic", "", 401, `{"status":"fail","message":"Unauthorized"}`},
		{"§4.1", "bootstrap after a revoke", "POST", "/api/v2/tokens/khorosapi/ownerId/other-bot", "basic", "", 200, `{"status":"success","data":{"token":"*","expiresAtMillis":"*"}}`},
		{"§4.1", "bootstrap when a token exists", "POST", "/api/v2/tokens/khorosapi/ownerId/other-bot", "basic", "", 409, `{"status":"fail","message":"A token at this path already exists."}`},
		{"§4.1", "bootstrap GET", "GET", "/api/v2/tokens/khorosapi/ownerId/other-bot", "basic", "", 200, `{"status":"success","data":{"token":"*","expiresAtMillis":"*"}}`},
		{"§2.6", "delete registration", "DELETE", "/bots/v3/registrations/network/apple/externalId/" + pageExt + "/appId/my-bot", "tok", "", 204, ""},
		{"§10 U11", "delete it again", "DELETE", "/bots/v3/registrations/network/apple/externalId/" + pageExt + "/appId/my-bot", "tok", "", 404, `{"error":{"message":"No bot registration found"}}`},
	}
	last := ""
	for _, tt := range tests {
		path := strings.ReplaceAll(tt.path, "{last}", last)
		var res result
		switch tt.token {
		case "basic", "badbasic":
			req, err := http.NewRequest(tt.method, b.srv.URL+path, nil)
			require.NoError(t, err)
			user, pass, _ := strings.Cut(basic, ":")
			if tt.token == "badbasic" {
				pass = "nope"
			}
			req.SetBasicAuth(user, pass)
			hres, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			res = readResult(t, hres)
		default:
			tok := map[string]string{"tok": b.token, "other": other.Token, "bad": "not-a-token", "": ""}[tt.token]
			res = b.do(t, tt.method, path, tok, tt.body)
		}
		name := tt.section + " " + tt.name
		require.Equal(t, tt.wantStatus, res.status, "%s: %s", name, res.body)
		if !strings.HasPrefix(path, "/api/v2/") {
			require.Len(t, res.header.Get("x-amzn-RequestId"), 36, name)
		}
		if tt.wantBody != "" {
			require.Equal(t, "application/json", res.header.Get("Content-Type"), name)
		}
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) { requireShape(t, tt.wantBody, res.body) })
		last = res.header.Get("x-amzn-RequestId")
	}
}
