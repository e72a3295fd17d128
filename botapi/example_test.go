package botapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/botapi/sim"
)

func Example() {
	s := sim.New(sim.Options{Seed: 1})
	srv := httptest.NewServer(s)
	defer srv.Close()
	tok, _ := s.MintToken("my-bot", sim.MintOptions{})

	c, err := botapi.New(botapi.Config{BaseURL: srv.URL, Tokens: botapi.StaticToken(tok.Token)})
	if err != nil {
		panic(err)
	}
	coord := botapi.Coordinate{CompanyKey: sim.DefaultCompanyKey, NetworkKey: "apple", ExternalID: "page-1", Scope: botapi.ScopePrivate}
	_, res, err := c.Respond(context.Background(), botapi.TextMessage(coord, botapi.Author{ID: "urn:mbid:1"}, "Hello"))
	switch {
	case err == nil:
		fmt.Println("accepted:", res.StatusCode, len(res.RequestID) > 0)
	case !botapi.Sent(err):
		fmt.Println("never reached Khoros; safe to resend")
	default:
		ok, reason := botapi.Retryable(err)
		fmt.Println("failed:", ok, reason)
	}
	// Output: accepted: 202 true
}

func ExampleSent() {
	// A transport failure after the request was written: Khoros may have
	// applied it, so a respond must be reconciled, not resent.
	err := &botapi.TransportError{Op: "POST /bots/v3/respond", Sent: true, Err: errors.New("EOF")}
	fmt.Println(botapi.Sent(err))
	fmt.Println(botapi.Retryable(err))
	// Output:
	// true
	// false sent without response: outcome unknown
}
