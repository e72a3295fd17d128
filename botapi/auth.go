package botapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// redacted replaces secrets in every formatted form of the types that hold one.
const redacted = "REDACTED"

// ErrNoToken is returned by token sources that have nothing to give.
var ErrNoToken = errors.New("botapi: no token")

// ErrTokenExpired is returned by [RefreshingToken] when its token expired and no refresh replaced it.
var ErrTokenExpired = errors.New("botapi: token expired")

// ErrNoExpiry is returned by [TokenExpiry] for a value that is not a JWT with an exp claim.
var ErrNoExpiry = errors.New("botapi: token is not a JWT with an exp claim")

// TokenSource supplies the JWT sent as "Authorization: Bearer <token>".
// Implementations must be safe for concurrent use and must never put the
// token into an error.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// TokenExpiry returns the exp claim of a JWT. The signature is not verified:
// the token is Khoros' to check, botq only needs to know when to refresh it.
// The error never contains the token.
func TokenExpiry(token string) (time.Time, error) {
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil {
		// The jwt error is dropped on purpose: decoding errors can quote input.
		return time.Time{}, ErrNoExpiry
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return time.Time{}, ErrNoExpiry
	}
	return exp.Time, nil
}

// StaticToken returns a TokenSource that always returns token.
func StaticToken(token string) TokenSource { return staticToken(token) }

type staticToken string

func (t staticToken) Token(context.Context) (string, error) {
	if t == "" {
		return "", ErrNoToken
	}
	return string(t), nil
}

func (t staticToken) Format(f fmt.State, _ rune) { fmt.Fprint(f, "botapi.StaticToken("+redacted+")") }
func (t staticToken) String() string             { return "botapi.StaticToken(" + redacted + ")" }
func (t staticToken) GoString() string           { return t.String() }

// FileToken returns a TokenSource that reads the token from the file at path
// and re-reads it whenever the file's size or modification time changes, so an
// operator or a sidecar can rotate the token without a restart. Surrounding
// whitespace is ignored. The file is first read on use.
func FileToken(path string) TokenSource { return &fileToken{path: path} }

type fileToken struct {
	path string

	mu    sync.Mutex
	mod   time.Time
	size  int64
	token string
}

func (t *fileToken) Token(context.Context) (string, error) {
	fi, err := os.Stat(t.path)
	if err != nil {
		return "", fmt.Errorf("stat token file: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && fi.ModTime().Equal(t.mod) && fi.Size() == t.size {
		return t.token, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok := string(bytes.TrimSpace(b))
	if tok == "" {
		return "", fmt.Errorf("read token file %s: %w", t.path, ErrNoToken)
	}
	t.token, t.mod, t.size = tok, fi.ModTime(), fi.Size()
	return tok, nil
}

func (t *fileToken) Format(f fmt.State, _ rune) { fmt.Fprint(f, t.String()) }
func (t *fileToken) String() string             { return fmt.Sprintf("botapi.FileToken(%q)", t.path) }
func (t *fileToken) GoString() string           { return t.String() }

// RefreshFunc obtains a new token given the current one, typically
// [Client.TokenRefresher]. It is not idempotent on Khoros: each call issues a
// new token and starts the old one's 10-minute grace period.
type RefreshFunc func(ctx context.Context, current string) (IssuedToken, error)

// RefreshingTokenConfig configures a [RefreshingToken].
type RefreshingTokenConfig struct {
	// Initial is the first token. Required.
	Initial string
	// Refresh is called when the token is within Lead of its exp. Required.
	Refresh RefreshFunc
	// Lead is how long before exp the token is refreshed. Default 7 days,
	// which also matches Khoros' "refresh once a week" advice for 90-day tokens.
	Lead time.Duration
	// RetryInterval is the minimum time between failed refresh attempts while
	// the current token is still valid. Default 1 minute.
	RetryInterval time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// OnRefresh, if set, is called after each successful refresh, e.g. to
	// persist the new token. It must not block for long.
	OnRefresh func(IssuedToken)
}

// Format redacts the initial token.
func (c RefreshingTokenConfig) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "botapi.RefreshingTokenConfig{Initial:%s Lead:%s}", redacted, c.Lead)
}

// RefreshingToken is a TokenSource that refreshes its JWT ahead of the exp
// claim. Concurrent callers share one refresh. When a refresh fails and the
// current token has not expired, the current token is still returned (and
// the refresh retried after RetryInterval); once it has expired, the refresh
// error is returned.
type RefreshingToken struct {
	cfg RefreshingTokenConfig

	mu       sync.Mutex
	token    string
	exp      time.Time
	inflight chan struct{} // closed when the running refresh ends
	lastErr  error
	lastTry  time.Time
}

// NewRefreshingToken returns a RefreshingToken. The initial token must carry an exp claim.
func NewRefreshingToken(cfg RefreshingTokenConfig) (*RefreshingToken, error) {
	if cfg.Refresh == nil {
		return nil, errors.New("new refreshing token: Refresh is required")
	}
	exp, err := TokenExpiry(cfg.Initial)
	if err != nil {
		return nil, fmt.Errorf("new refreshing token: %w", err)
	}
	if cfg.Lead <= 0 {
		cfg.Lead = 7 * 24 * time.Hour
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &RefreshingToken{cfg: cfg, token: cfg.Initial, exp: exp}, nil
}

// Expiry returns the exp of the current token.
func (r *RefreshingToken) Expiry() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exp
}

// Token returns the current token, refreshing it first when it is within Lead
// of expiry. A refresh is attempted at most once per RetryInterval; in between,
// a token that has not yet expired is returned as is.
func (r *RefreshingToken) Token(ctx context.Context) (string, error) {
	r.mu.Lock()
	now := r.cfg.Now()
	if now.Before(r.exp.Add(-r.cfg.Lead)) {
		tok := r.token
		r.mu.Unlock()
		return tok, nil
	}
	wait := r.inflight
	if wait == nil {
		if !r.lastTry.IsZero() && now.Sub(r.lastTry) < r.cfg.RetryInterval {
			defer r.mu.Unlock()
			return r.currentLocked(now)
		}
		wait = make(chan struct{})
		r.inflight = wait
		// The refresh outlives a cancelled first caller: the other waiters still want it.
		go r.refresh(context.WithoutCancel(ctx), r.token, wait)
	}
	r.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
		return "", fmt.Errorf("wait for token refresh: %w", ctx.Err())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.currentLocked(r.cfg.Now())
}

// currentLocked returns the token if it has not expired, else the last refresh error.
func (r *RefreshingToken) currentLocked(now time.Time) (string, error) {
	if now.Before(r.exp) {
		return r.token, nil
	}
	if r.lastErr != nil {
		return "", r.lastErr
	}
	return "", ErrTokenExpired
}

func (r *RefreshingToken) refresh(ctx context.Context, current string, done chan struct{}) {
	issued, err := r.cfg.Refresh(ctx, current)
	var exp time.Time
	if err == nil {
		exp = issued.ExpiresAt()
		if e, perr := TokenExpiry(issued.Token); perr == nil {
			exp = e
		}
		if exp.IsZero() {
			err = errors.New("new token has no expiry")
		}
	}
	r.mu.Lock()
	r.lastTry = r.cfg.Now()
	if err != nil {
		r.lastErr = fmt.Errorf("refresh token: %w", err)
	} else {
		r.token, r.exp, r.lastErr = issued.Token, exp, nil
	}
	r.inflight = nil
	r.mu.Unlock()
	close(done)
	if err == nil && r.cfg.OnRefresh != nil {
		r.cfg.OnRefresh(issued)
	}
}

// Format redacts the token.
func (r *RefreshingToken) Format(f fmt.State, _ rune) { fmt.Fprint(f, r.String()) }

// String redacts the token.
func (r *RefreshingToken) String() string { return "botapi.RefreshingToken(" + redacted + ")" }

// GoString redacts the token.
func (r *RefreshingToken) GoString() string { return r.String() }

// IssuedToken is a token returned by Khoros (refresh or Care v2 bootstrap).
// Every formatted and JSON form of it redacts the token; read the field.
type IssuedToken struct {
	// Token is the JWT.
	Token string
	// ExpiresAtMillis is the expiry in epoch milliseconds, as Khoros reports it.
	ExpiresAtMillis int64
}

// ExpiresAt returns the expiry as a time.Time (zero when unknown).
func (t IssuedToken) ExpiresAt() time.Time {
	if t.ExpiresAtMillis == 0 {
		return time.Time{}
	}
	return time.UnixMilli(t.ExpiresAtMillis)
}

// String redacts the token.
func (t IssuedToken) String() string {
	return fmt.Sprintf("botapi.IssuedToken{Token:%s ExpiresAtMillis:%d}", redacted, t.ExpiresAtMillis)
}

// GoString redacts the token.
func (t IssuedToken) GoString() string { return t.String() }

// Format redacts the token.
func (t IssuedToken) Format(f fmt.State, _ rune) { fmt.Fprint(f, t.String()) }

// MarshalJSON redacts the token so that logging the value cannot leak it.
func (t IssuedToken) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Token           string `json:"token"`
		ExpiresAtMillis int64  `json:"expiresAtMillis"`
	}{redacted, t.ExpiresAtMillis})
}

// UnmarshalJSON reads {"token":..., "expiresAtMillis":...}, also accepting the
// key "expiresAtMillis: " that the Care v2 documentation literally shows.
func (t *IssuedToken) UnmarshalJSON(b []byte) error {
	var w struct {
		Token   string          `json:"token"`
		Exp     json.RawMessage `json:"expiresAtMillis"`
		ExpTypo json.RawMessage `json:"expiresAtMillis: "`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return errors.New("decode issued token: malformed JSON")
	}
	raw := w.Exp
	if len(raw) == 0 {
		raw = w.ExpTypo
	}
	var ms EpochMillis
	if len(raw) > 0 {
		if err := ms.UnmarshalJSON(raw); err != nil {
			return fmt.Errorf("decode issued token expiry: %w", err)
		}
	}
	t.Token, t.ExpiresAtMillis = w.Token, int64(ms)
	return nil
}
