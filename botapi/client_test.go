package botapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/botapi/sim"
)

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		give     botapi.Config
		wantBase string
		wantErr  string
	}{
		{"region US", botapi.Config{Region: botapi.RegionUS, Tokens: botapi.StaticToken("x")}, "https://api.app.lithium.com", ""},
		{"region EMEA", botapi.Config{Region: botapi.RegionEMEA, Tokens: botapi.StaticToken("x")}, "https://api-eu.app.lithium.com", ""},
		{"region APAC", botapi.Config{Region: botapi.RegionAPAC, Tokens: botapi.StaticToken("x")}, "https://api-ap.app.lithium.com", ""},
		{"base wins, suffix trimmed", botapi.Config{BaseURL: "http://127.0.0.1:1/bots/v3/", Region: botapi.RegionUS, Tokens: botapi.StaticToken("x")}, "http://127.0.0.1:1", ""},
		{"no base", botapi.Config{Tokens: botapi.StaticToken("x")}, "", "BaseURL or Region is required"},
		{"bad region", botapi.Config{Region: "MARS", Tokens: botapi.StaticToken("x")}, "", "unknown region"},
		{"relative base", botapi.Config{BaseURL: "api.app.lithium.com", Tokens: botapi.StaticToken("x")}, "", "not an absolute URL"},
		{"no tokens", botapi.Config{Region: botapi.RegionUS}, "", "Tokens is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := botapi.New(tt.give)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantBase, c.BaseURL())
		})
	}
}

func TestParseRegion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give    string
		want    botapi.Region
		wantErr bool
	}{
		{"us", botapi.RegionUS, false},
		{" EMEA ", botapi.RegionEMEA, false},
		{"eu", botapi.RegionEMEA, false},
		{"apac", botapi.RegionAPAC, false},
		{"AP", botapi.RegionAPAC, false},
		{"", "", true},
		{"asia", "", true},
	}
	for _, tt := range tests {
		got, err := botapi.ParseRegion(tt.give)
		if tt.wantErr {
			require.Error(t, err, tt.give)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.want, got)
	}
}

func TestHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	out, _, err := b.client.Respond(ctx, botapi.TextMessage(coord(), author(), "hi"))
	require.NoError(t, err)
	require.Nil(t, out)
	got := b.rec.last(t)
	require.Equal(t, "Bearer "+b.token, got.Header.Get("Authorization"))
	require.Equal(t, "application/json; charset=utf-8", got.Header.Get("Content-Type"))
	require.Equal(t, "application/json", got.Header.Get("Accept"))
	require.Equal(t, "botq/"+botapi.Version, got.Header.Get("User-Agent"))
	require.Equal(t, "/bots/v3/respond", got.Path)

	_, _, err = b.client.GetHealth(ctx, testApp)
	require.NoError(t, err)
	got = b.rec.last(t)
	require.Empty(t, got.Header.Get("Content-Type"), "no body, no content type")
	require.Empty(t, got.Body)
}

func TestRespond(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	out, res, err := b.client.Respond(ctx, botapi.TextMessage(coord(), author(), "Hello 👋"))
	require.NoError(t, err)
	require.Nil(t, out, "a 202 carries no result")
	require.Equal(t, http.StatusAccepted, res.StatusCode)
	require.Len(t, res.RequestID, 36)
	require.Equal(t, res.RequestID, res.Header.Get("X-Amzn-Requestid"))

	req := botapi.TextMessage(coord(), author(), "sync")
	req.ProcessSynchronously = true
	out, res, err = b.client.Respond(ctx, req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "message", out.PayloadType)
	require.Equal(t, botapi.StateSuccess, out.RequestState)
	require.NotEmpty(t, out.MessageID)

	_, res, err = b.client.Respond(ctx, botapi.Typing(coord(), author(), true))
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, res.StatusCode)

	bad := botapi.TextMessage(coord(), author(), "x")
	bad.Coordinate.NetworkKey = "farcebook"
	_, res, err = b.client.Respond(ctx, bad)
	require.ErrorIs(t, err, botapi.ErrBadRequest)
	var ae *botapi.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, []string{"Invalid networkKey farcebook"}, ae.Messages)
	require.Equal(t, res.RequestID, ae.RequestID, "the failed call's request id is kept")
}

func TestControlAndOwnership(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	_, _, err := b.client.GetControl(ctx, "apple", coord().ExternalID, author().ID)
	require.ErrorIs(t, err, botapi.ErrNotFound)

	_, _, err = b.client.Respond(ctx, botapi.TextMessage(coord(), author(), "hi"))
	require.NoError(t, err)
	ctl, _, err := b.client.GetControl(ctx, "apple", coord().ExternalID, author().ID)
	require.NoError(t, err)
	require.Equal(t, botapi.Owner{Type: botapi.OwnerBot, AppID: testApp}, ctl.Owner)
	require.NotZero(t, ctl.LastUpdatedTS)

	rec, res, err := b.client.PassControl(ctx, &botapi.ControlRequest{
		Owner: botapi.Owner{Type: botapi.OwnerAgent}, Author: author(), Coordinate: coord(),
		Comment: "needs a human", LastUpdateTS: 1540501501979,
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, botapi.OwnerAgent, rec.Owner.Type)
	require.Equal(t, botapi.EpochMillis(1540501501979), rec.LastUpdateTS)

	_, res, err = b.client.Respond(ctx, botapi.TextMessage(coord(), author(), "still me?"))
	require.ErrorIs(t, err, botapi.ErrForbidden)
	require.NotEmpty(t, res.RequestID)
	require.Contains(t, err.Error(), "doesn't own the conversation")

	_, _, err = b.client.PassControl(ctx, &botapi.ControlRequest{
		Owner: botapi.Owner{Type: botapi.OwnerBot, AppID: testApp}, Author: author(), Coordinate: coord(),
		ConversationDisplayID: "4299",
	})
	require.NoError(t, err)
	_, _, err = b.client.Respond(ctx, botapi.TextMessage(coord(), author(), "back"))
	require.NoError(t, err)
}

func TestConversationActions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	c, a := coord(), author()
	tests := []struct {
		name string
		call func() (*botapi.Response, error)
	}{
		{"priority", func() (*botapi.Response, error) {
			return b.client.SetPriority(ctx, &botapi.PriorityRequest{Coordinate: c, Author: a, NewPriority: 0})
		}},
		{"tag", func() (*botapi.Response, error) {
			return b.client.Tag(ctx, &botapi.TagRequest{Coordinate: c, Author: a, EntityType: "POST", TagIDs: []int64{1, 2, 3}})
		}},
		{"tag remove", func() (*botapi.Response, error) {
			return b.client.RemoveTag(ctx, &botapi.TagRequest{Coordinate: c, Author: a, EntityType: "POST", TagIDs: []int64{2}})
		}},
		{"note", func() (*botapi.Response, error) {
			return b.client.AddNote(ctx, &botapi.NoteRequest{Coordinate: c, Author: a, Note: "text for the internal note"})
		}},
		{"workqueue", func() (*botapi.Response, error) {
			return b.client.MoveToWorkQueue(ctx, &botapi.WorkQueueRequest{Coordinate: c, Author: a, NewWorkQueue: 21, Comment: "Moved for reasons"})
		}},
		{"resolve", func() (*botapi.Response, error) {
			return b.client.Resolve(ctx, &botapi.ResolveRequest{Coordinate: c, Author: a, Disposition: "example resolution"})
		}},
		{"author attributes", func() (*botapi.Response, error) {
			return b.client.SetAuthorAttributes(ctx, &botapi.AuthorAttributesRequest{Coordinate: c, Author: a,
				Payload: botapi.AuthorAttributesPayload{Attributes: map[string][]string{"occupation": {"pilot"}}}})
		}},
		{"author update", func() (*botapi.Response, error) {
			return b.client.UpdateAuthor(ctx, &botapi.AuthorUpdateRequest{Coordinate: c, Author: a, UpdatedName: "Ada"})
		}},
		{"form", func() (*botapi.Response, error) {
			return b.client.SendForm(ctx, &botapi.FormRequest{Coordinate: c, Author: a, Comment: "Please pay", SecureFormID: "form-1"})
		}},
	}
	for _, tt := range tests {
		res, err := tt.call()
		require.NoError(t, err, tt.name)
		require.Equal(t, http.StatusAccepted, res.StatusCode, tt.name)
		require.NotEmpty(t, res.RequestID, tt.name)
	}

	_, err := b.client.MoveToWorkQueue(ctx, &botapi.WorkQueueRequest{Coordinate: c, Author: a})
	require.NoError(t, err, "newWorkQueue 0 is sent, so the simulator accepts it")
	raw := json.RawMessage(`{"type":"workqueue","coordinate":{"companyKey":"botq-sim","networkKey":"apple","externalId":"e","scope":"PRIVATE"},"author":{"id":"a"}}`)
	_, err = b.client.Do(ctx, http.MethodPut, "/bots/v3/workqueue", raw, nil)
	var ae *botapi.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "newWorkQueue may not be null", ae.Message)
}

func TestRegistrations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	reg := registration()

	res, err := b.client.CreateRegistration(ctx, reg)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, res.StatusCode)
	_, err = b.client.CreateRegistration(ctx, reg)
	require.ErrorIs(t, err, botapi.ErrConflict)

	all, res, err := b.client.ListRegistrations(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.NotEmpty(t, res.RequestID)
	page, _, err := b.client.ListPageRegistrations(ctx, "apple", reg.ExternalID)
	require.NoError(t, err)
	require.Len(t, page, 1)
	got, _, err := b.client.GetRegistration(ctx, "apple", reg.ExternalID, testApp)
	require.NoError(t, err)
	require.Equal(t, botapi.ModeLive, got.Mode)
	require.Equal(t, "www.apple.com", got.NetworkInstance)
	require.NotZero(t, got.CreatedEpochMillis)
	require.Equal(t, reg.Credentials.Secret, got.Credentials.Secret)

	res, err = b.client.SetMode(ctx, "apple", reg.ExternalID, testApp, "maintenance")
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, res.StatusCode)
	got, _, err = b.client.GetRegistration(ctx, "apple", reg.ExternalID, testApp)
	require.NoError(t, err)
	require.Equal(t, botapi.ModeMaintenance, got.Mode)
	_, _, err = b.client.Respond(ctx, botapi.TextMessage(coord(), author(), "in maintenance"))
	require.ErrorIs(t, err, botapi.ErrForbidden, "a MAINTENANCE bot cannot respond")
	_, err = b.client.SetMode(ctx, "apple", reg.ExternalID, testApp, "liev")
	require.ErrorIs(t, err, botapi.ErrBadRequest)

	reg.Name = "Renamed"
	_, err = b.client.PutRegistration(ctx, reg)
	require.NoError(t, err)
	got, _, err = b.client.GetRegistration(ctx, "apple", reg.ExternalID, testApp)
	require.NoError(t, err)
	require.Equal(t, "Renamed", got.Name)

	res, err = b.client.DeleteRegistration(ctx, "apple", reg.ExternalID, testApp)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, res.StatusCode)
	_, _, err = b.client.GetRegistration(ctx, "apple", reg.ExternalID, testApp)
	require.ErrorIs(t, err, botapi.ErrNotFound)
	require.ErrorContains(t, err, "No bot registration found")
	_, _, err = b.client.ListPageRegistrations(ctx, "apple", reg.ExternalID)
	require.ErrorIs(t, err, botapi.ErrNotFound)

	invalid := registration()
	invalid.CallbackURL, invalid.Credentials.Secret = "", ""
	_, err = b.client.CreateRegistration(ctx, invalid)
	require.ErrorIs(t, err, botapi.ErrUnprocessable)
	var ae *botapi.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, []string{"callbackUrl may not be empty", "credentials.secret may not be empty"}, ae.Messages)
}

func TestRequestRecords(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *sim.Options) { o.SettleDelayMin, o.SettleDelayMax = time.Second, time.Second })
	ctx := context.Background()
	req := botapi.TextMessage(coord(), author(), "track me")
	_, res, err := b.client.Respond(ctx, req)
	require.NoError(t, err)

	rec, _, err := b.client.GetRequest(ctx, res.RequestID)
	require.NoError(t, err)
	require.Equal(t, botapi.StatePending, rec.State)
	require.Equal(t, botapi.OriginBot, rec.Origin)
	require.Equal(t, testApp, rec.AppID)
	require.Equal(t, "apple", rec.NetworkKey)
	sent := b.rec.reqs[0].Body
	require.JSONEq(t, string(sent), string(rec.Payload), "the record's payload is what was sent")

	b.clock.Add(time.Second)
	rec, _, err = b.client.GetRequest(ctx, res.RequestID)
	require.NoError(t, err)
	require.Equal(t, botapi.StateSuccess, rec.State)
	require.Equal(t, rec.CreatedEpochMillis+1000, rec.CompletedEpochMillis)

	list, _, err := b.client.ListRequests(ctx, testApp, &botapi.ListRequestsOptions{
		From: 2 * time.Hour, States: []string{botapi.StateSuccess}, Origin: botapi.OriginBot,
	})
	require.NoError(t, err)
	require.NotEmpty(t, list)
	require.Equal(t, res.RequestID, list[len(list)-1].ID, "newest first: the respond is the oldest")
	require.Contains(t, b.rec.last(t).Path, "/bots/v3/request/appId/test-bot")

	_, _, err = b.client.ListRequests(ctx, testApp, &botapi.ListRequestsOptions{From: 32 * 24 * time.Hour})
	require.ErrorIs(t, err, botapi.ErrBadRequest)
	require.ErrorContains(t, err, `Incorrect syntax in "from"`)

	_, _, err = b.client.GetRequest(ctx, "03a913a3-552e-4e2a-8d23-d1e5257474b")
	require.ErrorIs(t, err, botapi.ErrNotFound)
	require.ErrorContains(t, err, "03a913a3-552e-4e2a-8d23-d1e5257474b not found")
}

func TestFormatFrom(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give time.Duration
		want string
	}{
		{0, ""},
		{30 * time.Minute, "30m"},
		{90 * time.Second, "2m"},
		{2 * time.Hour, "2h"},
		{36 * time.Hour, "36h"},
		{3 * 24 * time.Hour, "3d"},
		{time.Second, "1m"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, botapi.FormatFrom(tt.give), tt.give.String())
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	h, _, err := b.client.GetHealth(ctx, testApp)
	require.NoError(t, err)
	require.Equal(t, []botapi.Health{{Status: botapi.HealthHealthy}}, h)
	require.NoError(t, b.sim.SetHealth(testApp, []botapi.Health{{Status: botapi.HealthDegraded, FailureCount: 2, SuccessCount: 23}}))
	h, _, err = b.client.GetHealth(ctx, testApp)
	require.NoError(t, err)
	require.Equal(t, []botapi.Health{{Status: botapi.HealthDegraded, FailureCount: 2, SuccessCount: 23}}, h)
}

func TestTokens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	// The first token comes from the Care v2 endpoint.
	boot, err := botapi.NewBootstrap(botapi.BootstrapConfig{BaseURL: b.srv.URL, Username: sim.DefaultBootstrapUser, Password: sim.DefaultBootstrapPassword})
	require.NoError(t, err)
	first, res, err := boot.CreateToken(ctx, "fresh-bot")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	exp, err := botapi.TokenExpiry(first.Token)
	require.NoError(t, err)
	require.WithinDuration(t, b.clock.Now().Add(sim.DefaultTokenTTL), exp, 0)
	require.WithinDuration(t, exp, first.ExpiresAt(), 0)
	_, _, err = boot.CreateToken(ctx, "fresh-bot")
	require.ErrorIs(t, err, botapi.ErrConflict)
	require.ErrorContains(t, err, "A token at this path already exists.")
	again, _, err := boot.GetToken(ctx, "fresh-bot")
	require.NoError(t, err)
	require.Equal(t, first.Token, again.Token)
	badBoot, err := botapi.NewBootstrap(botapi.BootstrapConfig{BaseURL: b.srv.URL, Username: "botq", Password: "wrong"})
	require.NoError(t, err)
	_, _, err = badBoot.CreateToken(ctx, "fresh-bot")
	require.ErrorIs(t, err, botapi.ErrUnauthorized)

	c := b.clientFor(t, first.Token)
	second, res, err := c.RefreshToken(ctx, "fresh-bot")
	require.NoError(t, err)
	require.NotEmpty(t, res.RequestID)
	require.NotEqual(t, first.Token, second.Token)
	_, _, err = c.GetHealth(ctx, "fresh-bot")
	require.NoError(t, err, "the old token is valid during the grace period")
	_, _, err = c.RefreshToken(ctx, "fresh-bot")
	require.ErrorIs(t, err, botapi.ErrUnauthorized, "a superseded token cannot refresh")
	b.clock.Add(sim.DefaultTokenGrace)
	_, _, err = c.GetHealth(ctx, "fresh-bot")
	require.ErrorIs(t, err, botapi.ErrUnauthorized, "the grace period is over")

	c2 := b.clientFor(t, second.Token)
	res, err = c2.RevokeTokens(ctx, "fresh-bot")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	_, _, err = c2.GetHealth(ctx, "fresh-bot")
	require.ErrorIs(t, err, botapi.ErrUnauthorized)
	var ae *botapi.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "Unauthorized", ae.Message)
	require.NotEmpty(t, ae.RequestID, "error.requestId is read")

	// After a revoke the bootstrap works again.
	_, _, err = boot.CreateToken(ctx, "fresh-bot")
	require.NoError(t, err)
}

func TestRefreshingTokenAgainstSimulator(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tok, err := b.sim.MintToken("rot-bot", sim.MintOptions{TTL: time.Hour})
	require.NoError(t, err)
	var refresher *botapi.Client
	src, err := botapi.NewRefreshingToken(botapi.RefreshingTokenConfig{
		Initial: tok.Token, Lead: 10 * time.Minute, Now: b.clock.Now,
		Refresh: func(ctx context.Context, cur string) (botapi.IssuedToken, error) {
			return refresher.TokenRefresher("rot-bot")(ctx, cur)
		},
	})
	require.NoError(t, err)
	refresher, err = botapi.New(botapi.Config{BaseURL: b.srv.URL, Tokens: src})
	require.NoError(t, err)
	_, _, err = refresher.GetHealth(ctx, "rot-bot")
	require.NoError(t, err)
	require.Equal(t, 0, b.sim.CallCount(sim.CallFilter{AppID: "rot-bot", Endpoint: "token_refresh"}))
	b.clock.Add(55 * time.Minute)
	_, _, err = refresher.GetHealth(ctx, "rot-bot")
	require.NoError(t, err)
	require.Equal(t, 1, b.sim.CallCount(sim.CallFilter{AppID: "rot-bot", Endpoint: "token_refresh"}))
	require.WithinDuration(t, b.clock.Now().Add(sim.DefaultTokenTTL), src.Expiry(), 0)
}

func TestDo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	raw := json.RawMessage(`{"type":"message","coordinate":{"companyKey":"botq-sim","networkKey":"apple","externalId":"x","scope":"PRIVATE"},"author":{"id":"a"},"text":"raw  bytes"}`)
	var out json.RawMessage
	res, err := b.client.Do(ctx, http.MethodPost, "/bots/v3/respond", raw, &out)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, res.StatusCode)
	require.JSONEq(t, `{"requestId":"`+res.RequestID+`"}`, string(out))
	require.Equal(t, []byte(raw), b.rec.last(t).Body, "sent byte for byte")
	calls := b.sim.Calls(sim.CallFilter{Endpoint: "respond"})
	require.Len(t, calls, 1)
	require.Equal(t, string(raw), string(calls[0].Body))
	require.Equal(t, res.RequestID, calls[0].RequestID)
}

func TestRequestIDFromBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		giveStatus int
		giveBody   string
		want       string
	}{
		{"top level", 200, `{"data":{},"requestId":"top"}`, "top"},
		{"error object", 401, `{"error":{"message":"Unauthorized","requestId":"inner"}}`, "inner"},
		{"none", 202, ``, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.giveStatus)
				_, _ = w.Write([]byte(tt.giveBody))
			}))
			defer srv.Close()
			c, err := botapi.New(botapi.Config{BaseURL: srv.URL, Tokens: botapi.StaticToken("t")})
			require.NoError(t, err)
			res, err := c.Do(context.Background(), http.MethodGet, "/bots/v3/x", nil, nil)
			require.NotNil(t, res)
			require.Equal(t, tt.want, res.RequestID)
			var ae *botapi.Error
			if errors.As(err, &ae) {
				require.Equal(t, tt.want, ae.RequestID)
			}
		})
	}
}
