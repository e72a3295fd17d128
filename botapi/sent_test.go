package botapi_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/botapi/sim"
)

func TestSentRefusedConnection(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	c, err := botapi.New(botapi.Config{BaseURL: "http://" + addr, Tokens: botapi.StaticToken("tok")})
	require.NoError(t, err)

	_, res, err := c.Respond(context.Background(), botapi.TextMessage(coord(), author(), "hi"))
	require.Nil(t, res, "no response arrived")
	require.False(t, botapi.Sent(err))
	retry, reason := botapi.Retryable(err)
	require.True(t, retry)
	require.Equal(t, "not sent: connection error", reason)
	var ue *url.Error
	require.ErrorAs(t, err, &ue)
	var te *botapi.TransportError
	require.ErrorAs(t, err, &te)
	require.Equal(t, "POST /bots/v3/respond", te.Op)
}

func TestSentTimeoutBeforeWrite(t *testing.T) {
	t.Parallel()
	hung := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done() // a dial that never completes
		return nil, ctx.Err()
	}}
	c, err := botapi.New(botapi.Config{BaseURL: "http://192.0.2.1", Tokens: botapi.StaticToken("tok"), HTTPClient: &http.Client{Transport: hung}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()

	_, err = c.AddNote(ctx, &botapi.NoteRequest{Coordinate: coord(), Author: author(), Note: "n"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, botapi.Sent(err))
	retry, reason := botapi.Retryable(err)
	require.True(t, retry)
	require.Equal(t, "not sent: timeout", reason)
}

func TestSentTimeoutAfterWrite(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.sim.SetFault("respond", sim.Fault{HangRate: 1}))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()

	_, res, err := b.client.Respond(ctx, botapi.TextMessage(coord(), author(), "hi"))
	require.Nil(t, res)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.True(t, botapi.Sent(err), "the request was written before the timeout")
	retry, reason := botapi.Retryable(err)
	require.False(t, retry)
	require.Equal(t, "sent without response: outcome unknown", reason)
	require.Empty(t, b.sim.Records(sim.RecordFilter{AppID: testApp}), "a hung call is not applied")
}

func TestSentClientTimeoutAfterWrite(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.sim.SetFault("*", sim.Fault{HangRate: 1}))
	c, err := botapi.New(botapi.Config{BaseURL: b.srv.URL, Tokens: botapi.StaticToken(b.token), HTTPClient: &http.Client{Timeout: 80 * time.Millisecond}})
	require.NoError(t, err)
	_, err = c.Tag(context.Background(), &botapi.TagRequest{Coordinate: coord(), Author: author(), TagIDs: []int64{1}})
	require.True(t, botapi.Sent(err))
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout())
}

func TestSentApplyThenDrop(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.sim.SetFault("respond", sim.Fault{DropRate: 1}))

	_, res, err := b.client.Respond(context.Background(), botapi.TextMessage(coord(), author(), "did it go?"))
	require.Nil(t, res)
	require.Error(t, err)
	require.True(t, botapi.Sent(err))
	require.False(t, errors.Is(err, context.DeadlineExceeded))

	recs := b.sim.Records(sim.RecordFilter{AppID: testApp})
	require.Len(t, recs, 1, "the dropped call was applied")
	require.JSONEq(t, string(b.rec.last(t).Body), string(recs[0].Payload))
	calls := b.sim.Calls(sim.CallFilter{Endpoint: "respond"})
	require.Len(t, calls, 1)
	require.True(t, calls[0].Dropped)
	require.Equal(t, recs[0].ID, calls[0].RequestID)
}

func TestSentOnErrorResponse(t *testing.T) {
	t.Parallel()
	require.True(t, botapi.Sent(botapi.DecodeError(500, nil)))
	require.False(t, botapi.Sent(nil))
	require.False(t, botapi.Sent(errors.New("token source failed")))
}

func TestCancelledContextNotSent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := b.client.Respond(ctx, botapi.TextMessage(coord(), author(), "hi"))
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, botapi.Sent(err))
	require.Zero(t, b.sim.CallCount(sim.CallFilter{}))
}
