package botapi

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// RefreshToken exchanges the client's current token (from its TokenSource)
// for a new one. The old token stays valid for a 10-minute grace period. NOT
// idempotent: each call issues a new token, and a token that was already
// superseded cannot refresh.
// Khoros: PUT /bots/v3/tokens/appId/{appId}
func (c *Client) RefreshToken(ctx context.Context, appID string) (IssuedToken, *Response, error) {
	token, err := c.tokens.Token(ctx)
	if err != nil {
		return IssuedToken{}, nil, fmt.Errorf("get token to refresh: %w", err)
	}
	return c.refreshWith(ctx, appID, token)
}

// TokenRefresher returns a RefreshFunc for appID that sends the token it is
// given rather than asking the client's TokenSource, so it can back a
// [RefreshingToken] that is itself the client's TokenSource.
// Khoros: PUT /bots/v3/tokens/appId/{appId}
func (c *Client) TokenRefresher(appID string) RefreshFunc {
	return func(ctx context.Context, current string) (IssuedToken, error) {
		tok, _, err := c.refreshWith(ctx, appID, current)
		return tok, err
	}
}

func (c *Client) refreshWith(ctx context.Context, appID, token string) (IssuedToken, *Response, error) {
	var out data[IssuedToken]
	res, err := c.send(ctx, request{method: http.MethodPut, url: c.base + "/bots/v3/tokens/appId/" + seg(appID), auth: "Bearer " + token}, &out)
	if err != nil {
		return IssuedToken{}, res, err
	}
	if out.Data.Token == "" {
		return IssuedToken{}, res, errors.New("refresh token: response has no token")
	}
	return out.Data, res, nil
}

// RevokeTokens invalidates every token of appID at once, with no grace
// period; a new first token must then be bootstrapped. Idempotent.
// Khoros: DELETE /bots/v3/tokens/appId/{appId}
func (c *Client) RevokeTokens(ctx context.Context, appID string) (*Response, error) {
	return c.Do(ctx, http.MethodDelete, "/bots/v3/tokens/appId/"+seg(appID), nil, nil)
}

// BootstrapConfig configures a [Bootstrap] client for the Care v2 token
// endpoint, which issues an app's first token against HTTP Basic credentials
// of a Care user with the Bot API role.
type BootstrapConfig struct {
	// Instance is the Care instance name: https://<Instance>.response.lithium.com.
	Instance string
	// BaseURL overrides the instance URL, e.g. a simulator's address.
	BaseURL string
	// Username and Password are the Care user's Basic credentials.
	Username string
	Password string
	// HTTPClient defaults like Config.HTTPClient.
	HTTPClient *http.Client
	// UserAgent defaults to "botq/" + Version.
	UserAgent string
}

// Format redacts the password.
func (c BootstrapConfig) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "botapi.BootstrapConfig{Instance:%q BaseURL:%q Username:%q Password:%s}", c.Instance, c.BaseURL, c.Username, redacted)
}

// Bootstrap calls the Care v2 token endpoint. It is safe for concurrent use.
type Bootstrap struct {
	c    *Client
	auth string
}

// NewBootstrap returns a Bootstrap client.
func NewBootstrap(cfg BootstrapConfig) (*Bootstrap, error) {
	base := cfg.BaseURL
	if base == "" {
		if cfg.Instance == "" || strings.ContainsAny(cfg.Instance, "/:@") {
			return nil, fmt.Errorf("new bootstrap client: need BaseURL or a plain Instance name, got %q", cfg.Instance)
		}
		base = "https://" + cfg.Instance + ".response.lithium.com"
	}
	if cfg.Username == "" {
		return nil, errors.New("new bootstrap client: Username is required")
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("new bootstrap client: base URL %q is not an absolute URL", base)
	}
	c := &Client{base: strings.TrimRight(base, "/"), http: cfg.HTTPClient, userAgent: cfg.UserAgent, now: time.Now}
	if c.http == nil {
		c.http = defaultHTTPClient()
	}
	if c.userAgent == "" {
		c.userAgent = "botq/" + Version
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.Username+":"+cfg.Password))
	return &Bootstrap{c: c, auth: auth}, nil
}

// Format redacts the credentials.
func (b Bootstrap) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "botapi.Bootstrap{BaseURL:%q}", b.c.base)
}

// CreateToken issues the first token for appID. A second call while a token
// exists gets 409 [ErrConflict] ("A token at this path already exists."). NOT
// idempotent.
// Khoros: POST https://<instance>.response.lithium.com/api/v2/tokens/khorosapi/ownerId/{appId}
func (b *Bootstrap) CreateToken(ctx context.Context, appID string) (IssuedToken, *Response, error) {
	return b.call(ctx, http.MethodPost, appID)
}

// GetToken returns the app's existing token.
// Khoros: GET https://<instance>.response.lithium.com/api/v2/tokens/khorosapi/ownerId/{appId}
func (b *Bootstrap) GetToken(ctx context.Context, appID string) (IssuedToken, *Response, error) {
	return b.call(ctx, http.MethodGet, appID)
}

func (b *Bootstrap) call(ctx context.Context, method, appID string) (IssuedToken, *Response, error) {
	var out struct {
		Status string      `json:"status"`
		Data   IssuedToken `json:"data"`
	}
	res, err := b.c.send(ctx, request{method: method, url: b.c.base + "/api/v2/tokens/khorosapi/ownerId/" + seg(appID), auth: b.auth}, &out)
	if err != nil {
		return IssuedToken{}, res, err
	}
	if out.Data.Token == "" {
		return IssuedToken{}, res, fmt.Errorf("bootstrap token: response status %q has no token", out.Status)
	}
	return out.Data, res, nil
}
