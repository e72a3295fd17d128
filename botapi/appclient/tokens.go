package appclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/store"
)

// ErrNoKey is returned when a token must be stored or read and no
// encryption key is configured.
var ErrNoKey = errors.New("no token encryption key: set BOTQ_ENCRYPTION_KEY or encryption.key_file")

// StoreToken seals token, stores it as the app's and records a token_set
// event by actor; an app paused for its token is resumed (resumed).
func (r *Registry) StoreToken(ctx context.Context, appID, token, actor, reason string) (app *store.App, resumed bool, err error) {
	if r.External(appID) {
		return nil, false, fmt.Errorf("app %s takes its token from the config (token_env or token_file), so a stored token would never be used", appID)
	}
	if r.cfg.Keyring == nil {
		return nil, false, ErrNoKey
	}
	var exp *time.Time
	if t, err := botapi.TokenExpiry(token); err == nil {
		exp = &t
	}
	k := r.cfg.Keyring
	return r.cfg.Store.AppSetTokenAudited(ctx, r.cfg.Pool, appID, k.Seal(appID, token), k.ID(), exp, actor, reason)
}

// Bootstrap gets the app's first token from Khoros Care's v2 token
// endpoint with a Care user's Basic credentials (or, existing, the token
// the app has already) and stores it.
func (r *Registry) Bootstrap(ctx context.Context, careBaseURL, user, password, appID string, existing bool, actor string) (*store.App, bool, error) {
	if careBaseURL == "" {
		return nil, false, errors.New("khoros.care_base_url is not set (https://<instance>.response.lithium.com)")
	}
	if _, err := r.cfg.Store.AppGet(ctx, r.cfg.Pool, appID); err != nil {
		return nil, false, err
	}
	b, err := botapi.NewBootstrap(botapi.BootstrapConfig{BaseURL: careBaseURL, Username: user, Password: password})
	if err != nil {
		return nil, false, err
	}
	call, reason := b.CreateToken, "bootstrapped from Khoros Care"
	if existing {
		call, reason = b.GetToken, "fetched the existing token from Khoros Care"
	}
	issued, _, err := call(ctx, appID)
	if errors.Is(err, botapi.ErrConflict) {
		return nil, false, fmt.Errorf("%w: the app has a token already; use --existing to fetch it, or botq token refresh", err)
	}
	if err != nil {
		return nil, false, fmt.Errorf("bootstrap token of app %s: %w", appID, err)
	}
	return r.StoreToken(ctx, appID, issued.Token, actor, reason)
}

// Revoke revokes every token of the app at Khoros (no grace period),
// forgets the stored one, pauses the app until a new token is set and
// records a token_revoke event by actor.
func (r *Registry) Revoke(ctx context.Context, appID, actor, reason string) (*store.App, error) {
	app, err := r.cfg.Store.AppGet(ctx, r.cfg.Pool, appID)
	if err != nil {
		return nil, err
	}
	c, err := r.Client(app)
	if err != nil {
		return nil, err
	}
	if _, err := c.RevokeTokens(ctx, app.ID); err != nil {
		return nil, fmt.Errorf("revoke tokens of app %s: %w", app.ID, err)
	}
	app, err = r.cfg.Store.AppRevokeTokenAudited(ctx, r.cfg.Pool, app.ID, actor, reason)
	if err != nil {
		return nil, fmt.Errorf("record revoke (the tokens ARE revoked at Khoros): %w", err)
	}
	return app, nil
}

// TokenStatus describes an app's token, never the token itself.
type TokenStatus struct {
	AppID       string     `json:"app_id"`
	Source      string     `json:"source"` // stored, external or none
	Version     int        `json:"version"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	RefreshedAt *time.Time `json:"refreshed_at,omitempty"`
	// KeyOK says whether the configured encryption key opens the stored
	// token (null when there is none to open, or no key).
	KeyOK       *bool      `json:"key_ok,omitempty"`
	PausedUntil *time.Time `json:"paused_until,omitempty"`
	PauseReason string     `json:"pause_reason,omitempty"`
}

// TokenStatuses describes the tokens of apps.
func (r *Registry) TokenStatuses(apps []*store.App) []TokenStatus {
	out := make([]TokenStatus, 0, len(apps))
	for _, a := range apps {
		st := TokenStatus{AppID: a.ID, Source: "none", Version: a.TokenVersion, ExpiresAt: a.TokenExpiresAt,
			RefreshedAt: a.TokenRefreshedAt, PausedUntil: a.PausedUntil, PauseReason: a.PauseReason}
		switch {
		case r.External(a.ID):
			st.Source = "external"
		case len(a.TokenCiphertext) > 0:
			st.Source = "stored"
			if r.cfg.Keyring != nil {
				_, err := r.cfg.Keyring.Open(a.ID, a.TokenKeyID, a.TokenCiphertext)
				ok := err == nil
				st.KeyOK = &ok
			}
		}
		out = append(out, st)
	}
	return out
}
