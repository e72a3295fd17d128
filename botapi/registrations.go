package botapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// Registration is a bot registered on one network page (reference §2.8).
// POST and PUT need the full payload. NetworkInstance and the epoch fields are
// filled by Khoros in responses.
type Registration struct {
	Platform        string         `json:"platform"`
	CompanyKey      string         `json:"companyKey"`
	NetworkKey      string         `json:"networkKey"`
	NetworkInstance string         `json:"networkInstance,omitempty"`
	ExternalID      string         `json:"externalId"`
	AppID           string         `json:"appId"`
	Name            string         `json:"name"`
	AvatarURL       string         `json:"avatarUrl,omitempty"`
	CallbackURL     string         `json:"callbackUrl"`
	Mode            string         `json:"mode,omitempty"`
	Contact         *Contact       `json:"contact,omitempty"`
	PublicFilter    *PublicFilter  `json:"publicFilter,omitempty"`
	Credentials     *Credentials   `json:"credentials,omitempty"`
	Metadata        map[string]any `json:"metadata,omitempty"`
	// CreatedEpochMillis and LastUpdatedEpochMillis are set by Khoros.
	CreatedEpochMillis     EpochMillis `json:"createdEpochMillis,omitempty"`
	LastUpdatedEpochMillis EpochMillis `json:"lastUpdatedEpochMillis,omitempty"`
}

// Contact is where Khoros e-mails health notifications.
type Contact struct {
	Email string `json:"email,omitempty"`
}

// PublicFilter selects public posts delivered to the bot.
type PublicFilter struct {
	IncludeTargeted     bool    `json:"includeTargeted"`
	IncludeSourceTagIDs []int64 `json:"includeSourceTagIds,omitempty"`
}

// Credentials are how Khoros authenticates to the bot's webhook: Type
// BASIC_AUTH (Identity:Secret as HTTP Basic) or HMAC.
type Credentials struct {
	Type     string `json:"type"`
	Identity string `json:"identity"`
	Secret   string `json:"secret"`
}

// Format redacts the secret.
func (c Credentials) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "{Type:%s Identity:%s Secret:%s}", c.Type, c.Identity, redacted)
}

// CreateRegistration registers a bot on a page; it fails if the registration
// exists. Not idempotent in outcome (a repeat gets 4xx) but harmless to repeat.
// Khoros: POST /bots/v3/registrations
func (c *Client) CreateRegistration(ctx context.Context, reg *Registration) (*Response, error) {
	return c.Do(ctx, http.MethodPost, "/bots/v3/registrations", reg, nil)
}

// PutRegistration creates or replaces a registration. Idempotent.
// Khoros: PUT /bots/v3/registrations
func (c *Client) PutRegistration(ctx context.Context, reg *Registration) (*Response, error) {
	return c.Do(ctx, http.MethodPut, "/bots/v3/registrations", reg, nil)
}

// ListRegistrations returns every registration visible to the token.
// Khoros: GET /bots/v3/registrations
func (c *Client) ListRegistrations(ctx context.Context) ([]Registration, *Response, error) {
	var out data[[]Registration]
	res, err := c.Do(ctx, http.MethodGet, "/bots/v3/registrations", nil, &out)
	return out.Data, res, err
}

// ListPageRegistrations returns the registrations of one network page
// (404 [ErrNotFound] when there is none).
// Khoros: GET /bots/v3/registrations/network/{networkKey}/externalId/{externalId}
func (c *Client) ListPageRegistrations(ctx context.Context, networkKey, externalID string) ([]Registration, *Response, error) {
	var out data[[]Registration]
	res, err := c.Do(ctx, http.MethodGet, pagePath(networkKey, externalID), nil, &out)
	return out.Data, res, err
}

// GetRegistration returns one registration (404 [ErrNotFound] when unknown).
// Khoros: GET /bots/v3/registrations/network/{networkKey}/externalId/{externalId}/appId/{appId}
func (c *Client) GetRegistration(ctx context.Context, networkKey, externalID, appID string) (*Registration, *Response, error) {
	var out data[*Registration]
	res, err := c.Do(ctx, http.MethodGet, regPath(networkKey, externalID, appID), nil, &out)
	if err != nil {
		return nil, res, err
	}
	return out.Data, res, nil
}

// DeleteRegistration deletes a registration (204); ongoing conversations are
// handed to agents. Idempotent in effect (a repeat gets 404).
// Khoros: DELETE /bots/v3/registrations/network/{networkKey}/externalId/{externalId}/appId/{appId}
func (c *Client) DeleteRegistration(ctx context.Context, networkKey, externalID, appID string) (*Response, error) {
	return c.Do(ctx, http.MethodDelete, regPath(networkKey, externalID, appID), nil, nil)
}

// SetMode switches a registration to LIVE, MAINTENANCE or MONITORING.
// Idempotent.
// Khoros: PUT /bots/v3/registrations/network/{networkKey}/externalId/{externalId}/appId/{appId}/mode/{mode}
func (c *Client) SetMode(ctx context.Context, networkKey, externalID, appID, mode string) (*Response, error) {
	return c.Do(ctx, http.MethodPut, regPath(networkKey, externalID, appID)+"/mode/"+seg(strings.ToUpper(mode)), nil, nil)
}

func pagePath(networkKey, externalID string) string {
	return "/bots/v3/registrations/network/" + seg(networkKey) + "/externalId/" + seg(externalID)
}

func regPath(networkKey, externalID, appID string) string {
	return pagePath(networkKey, externalID) + "/appId/" + seg(appID)
}
