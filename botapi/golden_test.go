package botapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi"
)

// TestGoldenRequestBodies pins every outgoing request body byte for byte.
// Rewrite the files with UPDATE_GOLDEN=1 go test ./botapi -run Golden.
func TestGoldenRequestBodies(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	c, a := coord(), author()
	media := botapi.TextMessage(c, a, "")
	media.Media = botapi.MediaList{{URL: "https://example.com/cat.jpg", MediaType: "IMAGE", Title: "A cat"}}
	passthrough := &botapi.RespondRequest{Coordinate: c, Author: a, Payload: json.RawMessage(`"{\"custom\":true}"`)}
	list := &botapi.RespondRequest{Coordinate: c, Author: a, Text: "Pick one",
		List: json.RawMessage(`{"title":"Options","items":[{"identifier":"1","title":"One"}]}`)}
	rich := &botapi.RespondRequest{Coordinate: c, Author: a, RichContent: &botapi.RichContent{
		MediaType: "IMAGE", URL: "https://example.com/r", Title: "Rich", MediaURL: "https://example.com/r.png", MimeType: "image/png"}}
	sync := botapi.TextMessage(c, a, "Hello 👋 <b>&</b>")
	sync.ProcessSynchronously = true
	a2 := a
	a2.Properties = map[string]string{"locale": "en_GB"}
	tests := []struct {
		name string
		call func() error
	}{
		{"respond_text", func() error { _, _, err := b.client.Respond(ctx, sync); return err }},
		{"respond_typing_start", func() error { _, _, err := b.client.Respond(ctx, botapi.Typing(c, a, true)); return err }},
		{"respond_typing_stop", func() error { _, _, err := b.client.Respond(ctx, botapi.Typing(c, a, false)); return err }},
		{"respond_media", func() error { _, _, err := b.client.Respond(ctx, media); return err }},
		{"respond_passthrough", func() error { _, _, err := b.client.Respond(ctx, passthrough); return err }},
		{"respond_list", func() error { _, _, err := b.client.Respond(ctx, list); return err }},
		{"respond_rich_content", func() error { _, _, err := b.client.Respond(ctx, rich); return err }},
		{"control_agent", func() error {
			_, _, err := b.client.PassControl(ctx, &botapi.ControlRequest{Owner: botapi.Owner{Type: botapi.OwnerAgent}, Author: a, Coordinate: c, Comment: "<custom text>", LastUpdateTS: 1540501501979})
			return err
		}},
		{"control_bot", func() error {
			_, _, err := b.client.PassControl(ctx, &botapi.ControlRequest{Owner: botapi.Owner{Type: botapi.OwnerBot, AppID: testApp}, Author: a, Coordinate: c, ConversationDisplayID: "4299"})
			return err
		}},
		{"priority", func() error {
			_, err := b.client.SetPriority(ctx, &botapi.PriorityRequest{Coordinate: c, Author: a, NewPriority: 0})
			return err
		}},
		{"tag", func() error {
			_, err := b.client.Tag(ctx, &botapi.TagRequest{Coordinate: c, Author: a, EntityType: "POST", TagIDs: []int64{1, 2, 3}})
			return err
		}},
		{"tag_remove", func() error {
			_, err := b.client.RemoveTag(ctx, &botapi.TagRequest{Coordinate: c, Author: a, EntityType: "POST", TagIDs: []int64{3}})
			return err
		}},
		{"note", func() error {
			_, err := b.client.AddNote(ctx, &botapi.NoteRequest{Coordinate: c, Author: a, Note: "text for the internal note"})
			return err
		}},
		{"workqueue", func() error {
			_, err := b.client.MoveToWorkQueue(ctx, &botapi.WorkQueueRequest{Coordinate: c, Author: a, Comment: "Moved for reasons", NewWorkQueue: 21, ConversationDisplayID: 4299})
			return err
		}},
		{"resolve", func() error {
			_, err := b.client.Resolve(ctx, &botapi.ResolveRequest{Coordinate: c, Author: a, Comment: "done", Disposition: "example resolution"})
			return err
		}},
		{"author_attributes_crm", func() error {
			_, err := b.client.SetAuthorAttributes(ctx, &botapi.AuthorAttributesRequest{Coordinate: c, Author: botapi.Author{ID: a.ID},
				Payload: botapi.AuthorAttributesPayload{Handles: map[string][]map[string]string{"crm": {{"id": "crm-1", "networkinstance": "salesforce", "crmProperty1": "value"}}}}})
			return err
		}},
		{"author_attributes", func() error {
			_, err := b.client.SetAuthorAttributes(ctx, &botapi.AuthorAttributesRequest{Coordinate: c, Author: botapi.Author{ID: a.ID},
				Payload: botapi.AuthorAttributesPayload{Attributes: map[string][]string{"occupation": {"pilot"}, "socialnetwork": {"instagram"}}}})
			return err
		}},
		{"author_update", func() error {
			_, err := b.client.UpdateAuthor(ctx, &botapi.AuthorUpdateRequest{Coordinate: c, Author: a2,
				Properties: map[string]string{"Page URL": "https://example.com", "Platform": "web"}, UpdatedName: "Ada Lovelace"})
			return err
		}},
		{"form", func() error {
			_, err := b.client.SendForm(ctx, &botapi.FormRequest{Coordinate: c, Author: a, Comment: "Please fill in", SecureFormID: "form-123"})
			return err
		}},
		{"registration_create", func() error { _, err := b.client.CreateRegistration(ctx, registration()); return err }},
		{"registration_put", func() error {
			r := registration()
			r.Mode = botapi.ModeMaintenance
			r.PublicFilter.IncludeSourceTagIDs = []int64{999, 1002}
			_, err := b.client.PutRegistration(ctx, r)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, tt.call())
			got := b.rec.last(t)
			require.True(t, json.Valid(got.Body))
			var pretty bytes.Buffer
			require.NoError(t, json.Indent(&pretty, got.Body, "", "  "))
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", tt.name+".golden.json")
			if os.Getenv("UPDATE_GOLDEN") == "1" {
				require.NoError(t, os.WriteFile(path, pretty.Bytes(), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run with UPDATE_GOLDEN=1 to create it")
			require.Equal(t, string(want), pretty.String())
		})
	}
}
