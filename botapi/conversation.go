package botapi

import (
	"context"
	"net/http"
)

// PriorityRequest is the body of PUT /bots/v3/priority. NewPriority is 0
// (highest) to 5. Type defaults to "priority".
type PriorityRequest struct {
	Type        string     `json:"type"`
	Coordinate  Coordinate `json:"coordinate"`
	Author      Author     `json:"author"`
	NewPriority int        `json:"newPriority"`
}

// TagRequest is the body of PUT /bots/v3/tag and PUT /bots/v3/tag/remove.
// EntityType is "POST"; TagIDs are existing Care tag ids. Type defaults to
// "tag" or "remove_tag" by method.
type TagRequest struct {
	Type       string     `json:"type"`
	Coordinate Coordinate `json:"coordinate"`
	Author     Author     `json:"author"`
	EntityType string     `json:"entityType,omitempty"`
	TagIDs     []int64    `json:"tagIds"`
}

// NoteRequest is the body of PUT /bots/v3/note. Type defaults to "note".
type NoteRequest struct {
	Type       string     `json:"type"`
	Coordinate Coordinate `json:"coordinate"`
	Author     Author     `json:"author"`
	Note       string     `json:"note"`
}

// WorkQueueRequest is the body of PUT /bots/v3/workqueue. NewWorkQueue is the
// integer Care work-queue id (required); ConversationDisplayID, when set, must
// match an existing conversation. Type defaults to "workqueue".
type WorkQueueRequest struct {
	Type                  string     `json:"type"`
	Coordinate            Coordinate `json:"coordinate"`
	Author                Author     `json:"author"`
	Comment               string     `json:"comment,omitempty"`
	NewWorkQueue          int64      `json:"newWorkQueue"`
	ConversationDisplayID int64      `json:"conversationDisplayId,omitempty"`
}

// ResolveRequest is the body of PUT /bots/v3/resolve. Disposition names an
// existing close disposition (Care's default when empty). Type defaults to "resolve".
type ResolveRequest struct {
	Type        string     `json:"type"`
	Coordinate  Coordinate `json:"coordinate"`
	Author      Author     `json:"author"`
	Comment     string     `json:"comment,omitempty"`
	Disposition string     `json:"disposition,omitempty"`
}

// AuthorAttributesRequest is the body of PUT /bots/v3/authors/attributes.
// Type defaults to "author_attributes".
type AuthorAttributesRequest struct {
	Type       string                  `json:"type"`
	Coordinate Coordinate              `json:"coordinate"`
	Author     Author                  `json:"author"`
	Payload    AuthorAttributesPayload `json:"payload"`
}

// AuthorAttributesPayload carries CRM handles and/or profile attributes.
type AuthorAttributesPayload struct {
	// Handles maps a handle kind ("crm") to handle objects such as
	// {"id": ..., "networkinstance": ..., "<property>": ...}.
	Handles map[string][]map[string]string `json:"handles,omitempty"`
	// Attributes maps an attribute name to its values.
	Attributes map[string][]string `json:"attributes,omitempty"`
}

// AuthorUpdateRequest is the body of PUT /bots/v3/authors: flat profile
// properties and a display name. Type defaults to "author_update".
type AuthorUpdateRequest struct {
	Type        string            `json:"type"`
	Coordinate  Coordinate        `json:"coordinate"`
	Author      Author            `json:"author"`
	Properties  map[string]string `json:"properties,omitempty"`
	UpdatedName string            `json:"updatedName,omitempty"`
}

// SetPriority sets the conversation's priority. Idempotent.
// Khoros: PUT /bots/v3/priority
func (c *Client) SetPriority(ctx context.Context, req *PriorityRequest) (*Response, error) {
	body := *req
	body.Type = orDefault(body.Type, "priority")
	return c.Do(ctx, http.MethodPut, "/bots/v3/priority", &body, nil)
}

// Tag adds Care tags to the conversation's post. Idempotent.
// Khoros: PUT /bots/v3/tag
func (c *Client) Tag(ctx context.Context, req *TagRequest) (*Response, error) {
	body := *req
	body.Type = orDefault(body.Type, "tag")
	return c.Do(ctx, http.MethodPut, "/bots/v3/tag", &body, nil)
}

// RemoveTag removes Care tags from the conversation's post. Idempotent.
// Khoros: PUT /bots/v3/tag/remove
func (c *Client) RemoveTag(ctx context.Context, req *TagRequest) (*Response, error) {
	body := *req
	body.Type = orDefault(body.Type, "remove_tag")
	return c.Do(ctx, http.MethodPut, "/bots/v3/tag/remove", &body, nil)
}

// AddNote adds an internal note to the conversation. NOT idempotent: a
// repeated call adds the note again.
// Khoros: PUT /bots/v3/note
func (c *Client) AddNote(ctx context.Context, req *NoteRequest) (*Response, error) {
	body := *req
	body.Type = orDefault(body.Type, "note")
	return c.Do(ctx, http.MethodPut, "/bots/v3/note", &body, nil)
}

// MoveToWorkQueue moves the conversation to a work queue. Idempotent (the
// optional comment becomes a note each time).
// Khoros: PUT /bots/v3/workqueue
func (c *Client) MoveToWorkQueue(ctx context.Context, req *WorkQueueRequest) (*Response, error) {
	body := *req
	body.Type = orDefault(body.Type, "workqueue")
	return c.Do(ctx, http.MethodPut, "/bots/v3/workqueue", &body, nil)
}

// Resolve closes the conversation as resolved; its owner resets to BOT.
// Idempotent.
// Khoros: PUT /bots/v3/resolve
func (c *Client) Resolve(ctx context.Context, req *ResolveRequest) (*Response, error) {
	body := *req
	body.Type = orDefault(body.Type, "resolve")
	return c.Do(ctx, http.MethodPut, "/bots/v3/resolve", &body, nil)
}

// SetAuthorAttributes sets the author's CRM handles or attributes. Idempotent.
// Khoros: PUT /bots/v3/authors/attributes
func (c *Client) SetAuthorAttributes(ctx context.Context, req *AuthorAttributesRequest) (*Response, error) {
	body := *req
	body.Type = orDefault(body.Type, "author_attributes")
	return c.Do(ctx, http.MethodPut, "/bots/v3/authors/attributes", &body, nil)
}

// UpdateAuthor sets the author's profile properties and display name. Idempotent.
// Khoros: PUT /bots/v3/authors
func (c *Client) UpdateAuthor(ctx context.Context, req *AuthorUpdateRequest) (*Response, error) {
	body := *req
	body.Type = orDefault(body.Type, "author_update")
	return c.Do(ctx, http.MethodPut, "/bots/v3/authors", &body, nil)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
