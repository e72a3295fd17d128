package botapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
)

// Respond payload types.
const (
	RespondMessage     = "message"
	RespondTypingStart = "typing_start"
	RespondTypingStop  = "typing_stop"
)

// RespondRequest is the body of POST /bots/v3/respond (reference §3.1): a
// text message, a typing indicator, media, an Apple list picker, a raw
// passthrough payload or rich content. Type defaults to "message".
type RespondRequest struct {
	Type       string     `json:"type"`
	Coordinate Coordinate `json:"coordinate"`
	Author     Author     `json:"author"`
	Text       string     `json:"text,omitempty"`
	// List is a network-specific list definition (Apple list picker), sent as given.
	List json.RawMessage `json:"list,omitempty"`
	// Payload is a raw passthrough payload, sent as given; Khoros documents a
	// JSON string here. It cannot be combined with List.
	Payload     json.RawMessage `json:"payload,omitempty"`
	Media       MediaList       `json:"media,omitempty"`
	RichContent *RichContent    `json:"richContent,omitempty"`
	// ProcessSynchronously asks for a 200 with the message id instead of a 202
	// (seen in third-party typings, not in Khoros' pages).
	ProcessSynchronously bool `json:"processSynchronously,omitempty"`
}

// TextMessage returns a "message" RespondRequest carrying text.
func TextMessage(c Coordinate, a Author, text string) *RespondRequest {
	return &RespondRequest{Type: RespondMessage, Coordinate: c, Author: a, Text: text}
}

// Typing returns a typing_start (on) or typing_stop (off) RespondRequest.
func Typing(c Coordinate, a Author, on bool) *RespondRequest {
	t := RespondTypingStop
	if on {
		t = RespondTypingStart
	}
	return &RespondRequest{Type: t, Coordinate: c, Author: a}
}

// Media is one media attachment: {url, mediaType: IMAGE|VIDEO, title}.
type Media struct {
	URL       string `json:"url"`
	MediaType string `json:"mediaType,omitempty"`
	Title     string `json:"title,omitempty"`
}

// MediaList is the "media" array. It decodes from an array or from a single
// object (some integrations send one object), and always encodes as an array.
type MediaList []Media

// UnmarshalJSON accepts [{...}], {...} and null.
func (m *MediaList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		*m = nil
		return nil
	}
	if b[0] == '{' {
		var one Media
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*m = MediaList{one}
		return nil
	}
	var many []Media
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*m = many
	return nil
}

// RichContent is the richContent object of a response.
type RichContent struct {
	MediaType string `json:"mediaType,omitempty"`
	URL       string `json:"url,omitempty"`
	Title     string `json:"title,omitempty"`
	MediaURL  string `json:"mediaUrl,omitempty"`
	MimeType  string `json:"mimeType,omitempty"`
}

// RespondResult is the body of a synchronous (200) respond.
type RespondResult struct {
	MessageID    string `json:"messageId"`
	PayloadType  string `json:"payloadType"`
	RequestState string `json:"requestState"`
}

// Respond sends a message or typing indicator to the author. It returns a
// non-nil *RespondResult only for a synchronous 200; a 202 means accepted
// (poll the request record). NOT idempotent: a repeated call sends the
// message again, and Khoros has no idempotency key; after a sent-but-
// unanswered call, reconcile via the request records instead of resending.
// Khoros: POST /bots/v3/respond
func (c *Client) Respond(ctx context.Context, req *RespondRequest) (*RespondResult, *Response, error) {
	body := *req
	if body.Type == "" {
		body.Type = RespondMessage
	}
	var out struct {
		Data *RespondResult `json:"data"`
	}
	res, err := c.Do(ctx, http.MethodPost, "/bots/v3/respond", &body, &out)
	if err != nil {
		return nil, res, err
	}
	return out.Data, res, nil
}

// FormRequest is the body of POST /bots/v3/form: send a Khoros secure form.
// Type defaults to "secure_form"; Comment is required.
type FormRequest struct {
	Type         string     `json:"type"`
	Coordinate   Coordinate `json:"coordinate"`
	Author       Author     `json:"author"`
	Comment      string     `json:"comment"`
	SecureFormID string     `json:"secureFormId"`
}

// SendForm sends a secure form to the author. NOT idempotent: a repeated call
// sends the form again.
// Khoros: POST /bots/v3/form
func (c *Client) SendForm(ctx context.Context, req *FormRequest) (*Response, error) {
	body := *req
	if body.Type == "" {
		body.Type = "secure_form"
	}
	return c.Do(ctx, http.MethodPost, "/bots/v3/form", &body, nil)
}
