package botapi

import (
	"context"
	"net/http"
)

// ControlRequest is the body of PUT /bots/v3/control (reference §3.3): pass
// the conversation to an agent ({type: AGENT}) or to a bot ({type: BOT, appId}).
// Type defaults to "control".
type ControlRequest struct {
	Type       string     `json:"type"`
	Owner      Owner      `json:"owner"`
	Author     Author     `json:"author"`
	Coordinate Coordinate `json:"coordinate"`
	// Comment is shown in the Care UI with the handoff.
	Comment string `json:"comment,omitempty"`
	// ConversationDisplayID is set when an agent hands back to a bot.
	ConversationDisplayID FlexString `json:"conversationDisplayId,omitempty"`
	// LastUpdateTS is when control is passed, in epoch milliseconds.
	LastUpdateTS EpochMillis `json:"lastUpdateTS,omitempty"`
}

// ControlRecord is who controls a conversation, as returned by GET and PUT
// control. GET names the timestamp lastUpdatedTS, PUT echoes lastUpdateTS.
type ControlRecord struct {
	Type                  string      `json:"type"`
	Owner                 Owner       `json:"owner"`
	Author                Author      `json:"author"`
	Coordinate            Coordinate  `json:"coordinate"`
	Comment               string      `json:"comment,omitempty"`
	ConversationDisplayID FlexString  `json:"conversationDisplayId,omitempty"`
	LastUpdatedTS         EpochMillis `json:"lastUpdatedTS,omitempty"`
	LastUpdateTS          EpochMillis `json:"lastUpdateTS,omitempty"`
}

// GetControl returns who controls the author's conversation on the page.
// Khoros: GET /bots/v3/control/network/{networkKey}/externalId/{externalId}/author/{authorId}
func (c *Client) GetControl(ctx context.Context, networkKey, externalID, authorID string) (*ControlRecord, *Response, error) {
	var out data[*ControlRecord]
	res, err := c.Do(ctx, http.MethodGet, "/bots/v3/control/network/"+seg(networkKey)+"/externalId/"+seg(externalID)+"/author/"+seg(authorID), nil, &out)
	if err != nil {
		return nil, res, err
	}
	return out.Data, res, nil
}

// PassControl sets the conversation's owner and returns the new control
// record (synchronous 200). Idempotent: passing to the same owner twice
// leaves the same state. A 409 "may be retried" is transient ([Retryable]).
// Khoros: PUT /bots/v3/control
func (c *Client) PassControl(ctx context.Context, req *ControlRequest) (*ControlRecord, *Response, error) {
	body := *req
	if body.Type == "" {
		body.Type = "control"
	}
	var out data[*ControlRecord]
	res, err := c.Do(ctx, http.MethodPut, "/bots/v3/control", &body, &out)
	if err != nil {
		return nil, res, err
	}
	return out.Data, res, nil
}
