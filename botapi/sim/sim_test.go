package sim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/botapi/sim"
)

func respondBody(author, text string) string {
	return strings.Replace(actionJSON("message", `"text":"`+text+`"`), authorID, author, 1)
}

func TestDefaultOwnership(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other, err := b.sim.MintToken("other-bot", sim.MintOptions{})
	require.NoError(t, err)

	// Nobody registered: the first bot to answer owns the conversation.
	require.Equal(t, 202, b.do(t, "POST", "/bots/v3/respond", b.token, respondBody("a1", "hi")).status)
	require.Equal(t, 403, b.do(t, "POST", "/bots/v3/respond", other.Token, respondBody("a1", "me too")).status)
	ctl, ok := b.sim.Owner(sim.Conversation{NetworkKey: "apple", ExternalID: pageExt, AuthorID: "a1"})
	require.True(t, ok)
	require.Equal(t, botapi.Owner{Type: botapi.OwnerBot, AppID: "my-bot"}, ctl.Owner)

	// A LIVE registration of other-bot makes it the owner of new conversations only.
	require.Equal(t, 202, b.do(t, "PUT", "/bots/v3/registrations", other.Token, registrationJSON("other-bot", "LIVE")).status)
	require.Equal(t, 403, b.do(t, "POST", "/bots/v3/respond", b.token, respondBody("a2", "hi")).status)
	require.Equal(t, 202, b.do(t, "POST", "/bots/v3/respond", other.Token, respondBody("a2", "hi")).status)
	require.Equal(t, 202, b.do(t, "POST", "/bots/v3/respond", b.token, respondBody("a1", "still mine")).status)

	// Admin ownership wins; MONITORING never responds.
	_, err = b.sim.SetOwner(sim.Conversation{NetworkKey: "apple", ExternalID: pageExt, AuthorID: "a1"}, botapi.Owner{Type: botapi.OwnerBot, AppID: "other-bot"})
	require.NoError(t, err)
	require.Equal(t, 403, b.do(t, "POST", "/bots/v3/respond", b.token, respondBody("a1", "x")).status)
	require.Equal(t, 202, b.do(t, "PUT", "/bots/v3/registrations/network/apple/externalId/"+pageExt+"/appId/other-bot/mode/MONITORING", other.Token, "").status)
	require.Equal(t, 403, b.do(t, "POST", "/bots/v3/respond", other.Token, respondBody("a3", "x")).status)
	ctl, _ = b.sim.Owner(sim.Conversation{NetworkKey: "apple", ExternalID: pageExt, AuthorID: "a1"})
	require.Equal(t, botapi.OwnerAgent, ctl.Owner.Type, "leaving LIVE hands the bot's conversations to agents")

	// Actions other than respond need no ownership (reference §10 U7).
	require.Equal(t, 202, b.do(t, "PUT", "/bots/v3/tag", other.Token, actionJSON("tag", `"tagIds":[1]`)).status)

	// Resolve resets ownership to the default rule.
	_, err = b.sim.SetOwner(sim.Conversation{NetworkKey: "apple", ExternalID: pageExt, AuthorID: "a4"}, botapi.Owner{Type: botapi.OwnerAgent})
	require.NoError(t, err)
	require.Equal(t, 403, b.do(t, "POST", "/bots/v3/respond", b.token, respondBody("a4", "x")).status)
	require.Equal(t, 202, b.do(t, "PUT", "/bots/v3/resolve", b.token, strings.Replace(actionJSON("resolve", ""), authorID, "a4", 1)).status)
	require.Equal(t, 202, b.do(t, "POST", "/bots/v3/respond", b.token, respondBody("a4", "x")).status)
}

func TestTenBotsPerPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 11 {
		app := fmt.Sprintf("bot-%d", i)
		tok, err := b.sim.MintToken(app, sim.MintOptions{})
		require.NoError(t, err)
		res := b.do(t, "POST", "/bots/v3/registrations", tok.Token, registrationJSON(app, "MONITORING"))
		if i < 10 {
			require.Equal(t, 202, res.status, string(res.body))
			continue
		}
		require.Equal(t, 409, res.status)
		requireShape(t, `{"errors":["At most 10 bots can be registered on network apple external id `+pageExt+`"]}`, res.body)
	}
}

func TestRecordLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *sim.Options) { o.SettleDelayMin, o.SettleDelayMax = 500*time.Millisecond, 1500*time.Millisecond })
	var ids []string
	for i := range 20 {
		res := b.do(t, "PUT", "/bots/v3/note", b.token, actionJSON("note", fmt.Sprintf(`"note":"n%d"`, i)))
		require.Equal(t, 202, res.status)
		ids = append(ids, res.header.Get("x-amzn-RequestId"))
	}
	recs := b.sim.Records(sim.RecordFilter{AppID: "my-bot"})
	require.Len(t, recs, 20)
	for i, r := range recs {
		require.Equal(t, ids[i], r.ID)
		require.Equal(t, botapi.StatePending, r.State)
		require.JSONEq(t, actionJSON("note", fmt.Sprintf(`"note":"n%d"`, i)), string(r.Payload))
	}
	b.clock.Add(time.Second)
	pending := len(b.sim.Records(sim.RecordFilter{AppID: "my-bot", State: botapi.StatePending}))
	require.Greater(t, pending, 0, "delays are drawn per record")
	require.Less(t, pending, 20)
	b.clock.Add(500 * time.Millisecond)
	require.Empty(t, b.sim.Records(sim.RecordFilter{State: botapi.StatePending}))

	// Validation failures get an ERROR record at once; 401s get none.
	res := b.do(t, "PUT", "/bots/v3/priority", b.token, actionJSON("priority", `"newPriority":9`))
	require.Equal(t, 400, res.status)
	res = b.do(t, "GET", "/bots/v3/request/"+res.header.Get("x-amzn-RequestId"), b.token, "")
	requireShape(t, `{"data":{"id":"*","companyKey":"botq-sim","externalId":"`+pageExt+`","networkKey":"apple","appId":"my-bot","callbackUrl":"","origin":"BOT",
		"details":{"code":"400","message":"newPriority must be between 0 and 5"},"state":"ERROR","payload":"*","createdEpochMillis":"*","completedEpochMillis":"*","lastUpdatedEpochMillis":"*"}}`, res.body)
	before := len(b.sim.Records(sim.RecordFilter{}))
	require.Equal(t, 401, b.do(t, "GET", "/bots/v3/registrations", "nope", "").status)
	require.Len(t, b.sim.Records(sim.RecordFilter{}), before)
}

func TestErrorRateAndSettleAll(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *sim.Options) { o.ErrorRate = 1; o.SettleDelayMin, o.SettleDelayMax = time.Hour, time.Hour })
	for range 3 {
		require.Equal(t, 202, b.do(t, "PUT", "/bots/v3/tag", b.token, actionJSON("tag", `"tagIds":[1]`)).status)
	}
	require.Equal(t, 3, b.sim.SettleAll())
	recs := b.sim.Records(sim.RecordFilter{AppID: "my-bot"})
	for _, r := range recs {
		require.Equal(t, botapi.StateError, r.State)
		require.NotEmpty(t, r.Details.Code)
		require.NotEmpty(t, r.Details.Message)
	}
	require.Zero(t, b.sim.SettleAll())
}

func TestListing(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *sim.Options) { o.SettleDelayMax = -1 })
	// 100k records over 10 days, each 8.64s apart, inserted through the Go API.
	const n = 100_000
	for i := range n {
		in := sim.Inbound{AppID: "my-bot", NetworkKey: "apple", ExternalID: pageExt, Payload: json.RawMessage(`{"type":"message"}`)}
		if i%10 == 0 {
			in.State = botapi.StateError
		}
		_, err := b.sim.InjectInbound(in)
		require.NoError(t, err)
		b.clock.Add(8640 * time.Millisecond)
	}
	for i := range 5 {
		require.Equal(t, 202, b.do(t, "PUT", "/bots/v3/tag", b.token, actionJSON("tag", fmt.Sprintf(`"tagIds":[%d]`, i))).status)
	}
	start := time.Now()
	res := b.do(t, "GET", "/bots/v3/request/appId/my-bot?from=1h&origin=KHOROS", b.token, "")
	elapsed := time.Since(start)
	require.Equal(t, 200, res.status)
	var out struct {
		Data []botapi.RequestRecord `json:"data"`
	}
	require.NoError(t, json.Unmarshal(res.body, &out))
	require.Equal(t, 416, len(out.Data)) // records 8.64s apart, the newest 8.64s ago
	for i := 1; i < len(out.Data); i++ {
		require.GreaterOrEqual(t, out.Data[i-1].CreatedEpochMillis, out.Data[i].CreatedEpochMillis, "newest first")
	}
	require.Less(t, elapsed, time.Second, "binary search, not a scan")

	res = b.do(t, "GET", "/bots/v3/request/appId/my-bot?from=1h&origin=BOT&state=SUCCESS", b.token, "")
	require.NoError(t, json.Unmarshal(res.body, &out))
	require.Equal(t, 6, len(out.Data), "5 tags and the previous listing call, all settled at once")
	res = b.do(t, "GET", "/bots/v3/request/appId/my-bot?from=2d&state=ERROR", b.token, "")
	require.NoError(t, json.Unmarshal(res.body, &out))
	require.Equal(t, 2000, len(out.Data))
	require.Equal(t, botapi.OriginKhoros, out.Data[0].Origin)
	res = b.do(t, "GET", "/bots/v3/request/appId/my-bot", b.token, "")
	require.NoError(t, json.Unmarshal(res.body, &out))
	require.Equal(t, 10000+8, len(out.Data), "default window is one day")
	res = b.do(t, "GET", "/bots/v3/request/appId/my-bot?state=DONE", b.token, "")
	require.Equal(t, 400, res.status)
}

func TestMaxRecords(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *sim.Options) { o.MaxRecords = 3 })
	var ids []string
	for range 5 {
		res := b.do(t, "PUT", "/bots/v3/tag", b.token, actionJSON("tag", `"tagIds":[1]`))
		ids = append(ids, res.header.Get("x-amzn-RequestId"))
	}
	recs := b.sim.Records(sim.RecordFilter{})
	require.Len(t, recs, 3)
	require.Equal(t, ids[2:], []string{recs[0].ID, recs[1].ID, recs[2].ID})
	require.Equal(t, 404, b.do(t, "GET", "/bots/v3/request/"+ids[0], b.token, "").status)
}

func TestFaults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Error(t, b.sim.SetFault("nope", sim.Fault{}))
	require.Error(t, b.sim.SetFault("tag", sim.Fault{ErrorRate: 2}))

	require.NoError(t, b.sim.SetFault("tag", sim.Fault{ErrorRate: 1, Times: 2}))
	for range 2 {
		res := b.do(t, "PUT", "/bots/v3/tag", b.token, actionJSON("tag", `"tagIds":[1]`))
		require.Equal(t, 503, res.status)
		requireShape(t, `{"message":"Service Unavailable"}`, res.body)
	}
	require.Empty(t, b.sim.Records(sim.RecordFilter{}), "an injected 5xx applies nothing")
	require.Equal(t, 202, b.do(t, "PUT", "/bots/v3/tag", b.token, actionJSON("tag", `"tagIds":[1]`)).status, "Times ran out")
	require.Empty(t, b.sim.Faults())

	require.NoError(t, b.sim.SetFault("*", sim.Fault{RateLimitRate: 1, RetryAfter: "7"}))
	res := b.do(t, "PUT", "/bots/v3/note", b.token, actionJSON("note", `"note":"x"`))
	require.Equal(t, 429, res.status)
	require.Equal(t, "7", res.header.Get("Retry-After"))
	require.NoError(t, b.sim.SetFault("note", sim.Fault{Latency: sim.Duration(30 * time.Millisecond)}))
	start := time.Now()
	require.Equal(t, 202, b.do(t, "PUT", "/bots/v3/note", b.token, actionJSON("note", `"note":"x"`)).status, "the endpoint's own fault wins over *")
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
	b.sim.ClearFaults()
	require.Equal(t, 202, b.do(t, "PUT", "/bots/v3/tag", b.token, actionJSON("tag", `"tagIds":[1]`)).status)

	calls := b.sim.Calls(sim.CallFilter{})
	require.Equal(t, []string{"error", "error", "", "rate_limit", "", ""}, faultsOf(calls))
}

// An app's own fault applies to its calls only and wins over everyone's;
// next follows a fault whose times ran out; a stall applies the call and
// never answers it.
func TestAppFaultsNextAndStall(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other, err := b.sim.MintToken("other-bot", sim.MintOptions{})
	require.NoError(t, err)
	require.Error(t, b.sim.SetFault("tag", sim.Fault{Next: &sim.Fault{}}), "next needs times")
	require.Error(t, b.sim.SetFault("tag", sim.Fault{AppID: "my-bot", Times: 1, Next: &sim.Fault{AppID: "other-bot"}}))

	require.NoError(t, b.sim.SetFault("*", sim.Fault{ErrorRate: 1, ErrorCode: 500}))
	require.NoError(t, b.sim.SetFault("tag", sim.Fault{AppID: "my-bot", RateLimitRate: 1, Times: 1,
		Next: &sim.Fault{StallRate: 1}}))
	require.Contains(t, b.sim.Faults(), "tag@my-bot")
	tag := actionJSON("tag", `"tagIds":[1]`)
	require.Equal(t, 500, b.do(t, "PUT", "/bots/v3/tag", other.Token, tag).status, "another app's call sees everyone's fault")
	require.Equal(t, 429, b.do(t, "PUT", "/bots/v3/tag", b.token, tag).status, "the app's own fault wins")

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "PUT", b.srv.URL+"/bots/v3/tag", strings.NewReader(tag))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+b.token)
	_, err = http.DefaultClient.Do(req)
	require.ErrorIs(t, err, context.DeadlineExceeded, "a stalled call is never answered")
	require.Len(t, b.sim.Records(sim.RecordFilter{AppID: "my-bot"}), 1, "but it was applied")
	require.Eventually(t, func() bool {
		calls := b.sim.Calls(sim.CallFilter{AppID: "my-bot"})
		return len(calls) == 2 && calls[1].Fault == "stall"
	}, time.Second, 10*time.Millisecond)
}

func faultsOf(calls []sim.Call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.Fault)
	}
	return out
}

// The same seed and the same sequence of calls see the same faults, ids and outcomes.
func TestDeterminism(t *testing.T) {
	t.Parallel()
	run := func() []string {
		b := setup(t, func(o *sim.Options) { o.ErrorRate = 0.3 })
		require.NoError(t, b.sim.SetFault("respond", sim.Fault{ErrorRate: 0.3, RateLimitRate: 0.2}))
		var out []string
		for i := range 40 {
			res := b.do(t, "POST", "/bots/v3/respond", b.token, respondBody("a", fmt.Sprint(i)))
			out = append(out, fmt.Sprint(res.status, " ", res.header.Get("x-amzn-RequestId")))
		}
		b.sim.SettleAll()
		for _, r := range b.sim.Records(sim.RecordFilter{}) {
			out = append(out, r.ID+" "+r.State)
		}
		return append(out, b.token)
	}
	first, second := run(), run()
	require.Equal(t, first, second)
	statuses := map[string]bool{}
	for _, s := range first[:40] {
		statuses[s[:3]] = true
	}
	require.Len(t, statuses, 3, "202, 503 and 429 all drawn: %v", statuses)
}

func TestCallLog(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *sim.Options) { o.MaxCallLog = 3 })
	for range 4 {
		b.do(t, "PUT", "/bots/v3/tag", b.token, actionJSON("tag", `"tagIds":[1]`))
	}
	b.do(t, "GET", "/bots/v3/health/appId/my-bot", b.token, "")
	b.do(t, "GET", "/bots/v3/health/appId/my-bot", "bad", "")
	calls := b.sim.Calls(sim.CallFilter{})
	require.Len(t, calls, 3, "bounded")
	require.Equal(t, []uint64{4, 5, 6}, []uint64{calls[0].Seq, calls[1].Seq, calls[2].Seq})
	require.Equal(t, "PUT", calls[0].Method)
	require.Equal(t, "/bots/v3/tag", calls[0].Path)
	require.Equal(t, "tag", calls[0].Endpoint)
	require.Equal(t, "my-bot", calls[0].AppID)
	require.Equal(t, 202, calls[0].Status)
	require.Nil(t, calls[0].Body, "bodies are off by default")
	require.Empty(t, calls[2].AppID, "unknown token")
	require.Equal(t, 401, calls[2].Status)
	require.Equal(t, 4, b.sim.CallCount(sim.CallFilter{Endpoint: "tag"}), "counts are exact beyond the ring")
	require.Equal(t, 5, b.sim.CallCount(sim.CallFilter{AppID: "my-bot"}))
	require.Equal(t, 6, b.sim.CallCount(sim.CallFilter{}))
	require.Len(t, b.sim.Calls(sim.CallFilter{Endpoint: "health", Limit: 1}), 1)
	require.Len(t, b.sim.Calls(sim.CallFilter{Since: 5}), 1)
	require.Contains(t, sim.Endpoints(), "respond")

	b.sim.Reset()
	require.Zero(t, b.sim.CallCount(sim.CallFilter{}))
	require.Equal(t, 401, b.do(t, "GET", "/bots/v3/health/appId/my-bot", b.token, "").status, "reset forgets tokens")
}

func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *sim.Options) { o.TokenTTL = time.Hour })
	require.Equal(t, 200, b.do(t, "GET", "/bots/v3/health/appId/my-bot", b.token, "").status)
	b.clock.Add(time.Hour)
	require.Equal(t, 401, b.do(t, "GET", "/bots/v3/health/appId/my-bot", b.token, "").status)
	tok, err := b.sim.MintToken("my-bot", sim.MintOptions{TTL: 24 * time.Hour})
	require.NoError(t, err)
	require.Equal(t, 200, b.do(t, "GET", "/bots/v3/health/appId/my-bot", tok.Token, "").status)
	require.Equal(t, 1, b.sim.ExpireTokens("my-bot"))
	require.Equal(t, 401, b.do(t, "GET", "/bots/v3/health/appId/my-bot", tok.Token, "").status)
	_, err = b.sim.MintToken("my-bot", sim.MintOptions{CompanyKey: "another"})
	require.Error(t, err, "an app belongs to one company")
}

func TestAdminHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *sim.Options) { o.CallLogBodies = true })
	admin := func(method, path, body string) result { return b.do(t, method, path, "", body) }

	res := admin("GET", "/_sim/", "")
	require.Equal(t, 200, res.status)
	res = admin("POST", "/_sim/tokens", `{"appId":"http-bot","companyKey":"acme","ttl":"1h"}`)
	require.Equal(t, 200, res.status, string(res.body))
	var minted struct {
		AppID, CompanyKey, Token string
		ExpiresAtMillis          int64
	}
	require.NoError(t, json.Unmarshal(res.body, &minted))
	require.Equal(t, "acme", minted.CompanyKey)
	require.Equal(t, b.clock.Now().Add(time.Hour).UnixMilli(), minted.ExpiresAtMillis)
	exp, err := botapi.TokenExpiry(minted.Token)
	require.NoError(t, err)
	require.Equal(t, minted.ExpiresAtMillis, exp.UnixMilli())
	require.Equal(t, 400, admin("POST", "/_sim/tokens", `{"appId":""}`).status)
	require.Equal(t, 400, admin("POST", "/_sim/tokens", `{"app":"x"}`).status, "unknown fields are rejected")

	res = admin("PUT", "/_sim/owner", `{"companyKey":"acme","networkKey":"apple","externalId":"p","authorId":"a","owner":{"type":"AGENT"}}`)
	require.Equal(t, 200, res.status, string(res.body))
	res = b.do(t, "GET", "/bots/v3/control/network/apple/externalId/p/author/a", minted.Token, "")
	require.Equal(t, 200, res.status)
	require.Contains(t, string(res.body), `"owner":{"type":"AGENT"}`)
	require.Equal(t, 200, admin("PUT", "/_sim/owner", `{"companyKey":"acme","networkKey":"apple","externalId":"p","authorId":"a"}`).status)
	require.Equal(t, 404, b.do(t, "GET", "/bots/v3/control/network/apple/externalId/p/author/a", minted.Token, "").status)

	res = admin("PUT", "/_sim/faults", `{"endpoint":"health","fault":{"errorRate":1,"errorCode":500,"latency":"1ms","times":1}}`)
	require.Equal(t, 200, res.status, string(res.body))
	requireShape(t, `{"faults":{"health":{"latency":"1ms","errorRate":1,"errorCode":500,"times":1}}}`, res.body)
	require.Equal(t, 500, b.do(t, "GET", "/bots/v3/health/appId/http-bot", minted.Token, "").status)
	require.Equal(t, 400, admin("PUT", "/_sim/faults", `{"endpoint":"bogus","fault":{}}`).status)
	admin("PUT", "/_sim/faults", `{"endpoint":"tag","fault":{"dropRate":0.5}}`)
	res = admin("DELETE", "/_sim/faults?endpoint=tag", "")
	requireShape(t, `{"faults":{}}`, res.body)

	res = admin("PUT", "/_sim/health", `{"appId":"http-bot","health":[{"status":"DOWN","failureCount":12,"successCount":0}]}`)
	require.Equal(t, 200, res.status)
	res = b.do(t, "GET", "/bots/v3/health/appId/http-bot", minted.Token, "")
	requireShape(t, `{"data":[{"status":"DOWN","failureCount":12,"successCount":0}]}`, res.body)
	require.Equal(t, 400, admin("PUT", "/_sim/health", `{"appId":"http-bot","health":[{"status":"MEH"}]}`).status)

	res = admin("POST", "/_sim/inbound", `{"appId":"http-bot","networkKey":"apple","externalId":"p","payload":{"type":"message","text":"hello"},"state":"ERROR","details":{"code":"403","message":"Forbidden"}}`)
	require.Equal(t, 200, res.status, string(res.body))
	res = b.do(t, "GET", "/bots/v3/request/appId/http-bot?origin=KHOROS", minted.Token, "")
	requireShape(t, `{"data":[{"id":"*","companyKey":"acme","externalId":"p","networkKey":"apple","appId":"http-bot","callbackUrl":"","origin":"KHOROS",
		"details":{"code":"403","message":"Forbidden"},"state":"ERROR","payload":"{\"type\":\"message\",\"text\":\"hello\"}","createdEpochMillis":"*","completedEpochMillis":"*","lastUpdatedEpochMillis":"*"}]}`, res.body)

	res = admin("GET", "/_sim/records?appId=http-bot&origin=KHOROS", "")
	require.Equal(t, 200, res.status)
	require.Contains(t, string(res.body), `"payload":{"type":"message","text":"hello"}`, "admin records carry the raw payload")

	res = admin("GET", "/_sim/calls?appId=http-bot&endpoint=health&limit=1", "")
	requireShape(t, `{"count":2,"calls":[{"seq":"*","time":"*","method":"GET","path":"/bots/v3/health/appId/http-bot","appId":"http-bot","endpoint":"health","status":500,"requestId":"*","fault":"error"}]}`, res.body)
	res = admin("GET", "/_sim/calls/count?endpoint=control_get", "")
	requireShape(t, `{"count":2}`, res.body)
	require.Equal(t, 400, admin("GET", "/_sim/calls?since=x", "").status)

	b.do(t, "PUT", "/bots/v3/tag", b.token, actionJSON("tag", `"tagIds":[1]`))
	res = admin("GET", "/_sim/calls?endpoint=tag", "")
	require.Contains(t, string(res.body), `"body":{"type":"tag"`, "bodies are logged when asked")
	res = admin("POST", "/_sim/settle", "")
	requireShape(t, `{"settled":1}`, res.body)
	res = admin("POST", "/_sim/tokens/expire", `{"appId":"http-bot"}`)
	requireShape(t, `{"expired":1}`, res.body)
	require.Equal(t, 401, b.do(t, "GET", "/bots/v3/health/appId/http-bot", minted.Token, "").status)
	require.Equal(t, 200, admin("POST", "/_sim/reset", "").status)
	require.Equal(t, 401, b.do(t, "GET", "/bots/v3/health/appId/my-bot", b.token, "").status)
}

func TestUnknownPathAndMethods(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.do(t, "GET", "/bots/v3/nothing", b.token, "")
	require.Equal(t, 404, res.status)
	require.NotEmpty(t, res.header.Get("x-amzn-RequestId"))
	res = b.do(t, "POST", "/bots/v3/respond", b.token, `{"type":`)
	require.Equal(t, 400, res.status)
	requireShape(t, `{"error":{"messages":["Unable to parse request body"]}}`, res.body)
}

func TestListenAndServe(t *testing.T) {
	t.Parallel()
	s := sim.New(sim.Options{})
	ctx, cancel := contextWithCancel(t)
	done := make(chan error, 1)
	ln := listen(t)
	go func() { done <- sim.Serve(ctx, ln, s) }()
	res, err := http.Get("http://" + ln.Addr().String() + "/_sim/")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 200, res.StatusCode)
	cancel()
	require.NoError(t, <-done)
}

func BenchmarkRespond(b *testing.B) {
	s := sim.New(sim.Options{MaxCallLog: -1, MaxRecords: 100_000})
	tok, err := s.MintToken("my-bot", sim.MintOptions{})
	if err != nil {
		b.Fatal(err)
	}
	body := actionJSON("message", `"text":"hello"`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", "/bots/v3/respond", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok.Token)
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != 202 {
				b.Fatal(w.Code, w.Body.String())
			}
		}
	})
}

// Reset takes every lock; concurrent calls with faults and records must not deadlock.
func TestResetUnderLoad(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *sim.Options) { o.ErrorRate = 0.5 })
	require.NoError(t, b.sim.SetFault("*", sim.Fault{ErrorRate: 0.2}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			req, _ := http.NewRequest("PUT", b.srv.URL+"/bots/v3/tag", strings.NewReader(actionJSON("tag", `"tagIds":[1]`)))
			req.Header.Set("Authorization", "Bearer "+b.token)
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
		}
	}()
	for range 50 {
		b.sim.Reset()
		require.NoError(t, b.sim.SetFault("*", sim.Fault{ErrorRate: 0.2}))
	}
	<-done
}
