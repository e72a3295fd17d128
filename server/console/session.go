package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/botq/botq/api"
	"github.com/botq/botq/store"
)

const (
	// sessionCookie holds the session's token.
	sessionCookie = "botq_session"
	// signInCookie holds the sign-in form's CSRF token (there is no
	// session yet to derive one from): the form must carry the same value,
	// which another site's page can neither read nor set.
	signInCookie = "botq_signin"
)

// newToken returns 32 random bytes, base64url.
func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// tokenHash is what the database keeps of a session token: the SHA-256 of
// its bytes. ok is false for a cookie that is not a token.
func tokenHash(token string) ([]byte, bool) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) != 32 {
		return nil, false
	}
	h := sha256.Sum256(b)
	return h[:], true
}

// csrfToken is the CSRF token of the session whose token is token: only
// the holder of the HttpOnly session cookie, that is the console's own
// pages, can know it.
func csrfToken(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("botq console csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func validCSRF(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// secure reports whether the browser reached botq over TLS: directly, or
// through a proxy that says so. A client that claims it falsely only makes
// its own cookie one its browser will not send back over plain HTTP.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value string, expires time.Time) {
	ck := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode}
	switch {
	case value == "":
		ck.MaxAge = -1
	default:
		ck.Expires = expires.UTC()
		ck.MaxAge = int(time.Until(expires).Seconds())
	}
	http.SetCookie(w, ck)
}

// currentUser returns the signed-in user of r, or nil.
func (c *Console) currentUser(r *http.Request) (*user, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, nil
	}
	hash, ok := tokenHash(ck.Value)
	if !ok {
		return nil, nil
	}
	s, err := c.cfg.Store.ConsoleSessionGet(r.Context(), c.cfg.DB, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// The key must still be configured, under the same name, with a role
	// that may sign in: its role now is the session's.
	p, ok := c.cfg.Lookup(s.KeyFingerprint)
	if !ok || p.Name != s.Principal || !mayConsole(p.Role) {
		return nil, nil
	}
	return &user{Principal: p, CSRF: csrfToken(ck.Value)}, nil
}

func mayConsole(r api.Role) bool { return r == api.RoleAuditor || r == api.RoleOperator }

// signInData is what the sign-in page shows.
type signInData struct {
	CSRF  string
	Next  string
	Error string
	TTL   string
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	if u, err := c.currentUser(r); err == nil && u != nil {
		http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.renderSignIn(w, r, http.StatusOK, r.URL.Query().Get("next"), "")
}

// renderSignIn shows the sign-in form with its CSRF token, kept in its
// cookie for an hour. A token the browser holds already is kept: a second
// sign-in page (another tab) must not void the first one's form.
func (c *Console) renderSignIn(w http.ResponseWriter, r *http.Request, status int, next, msg string) {
	token := newToken()
	if ck, err := r.Cookie(signInCookie); err == nil {
		if _, ok := tokenHash(ck.Value); ok {
			token = ck.Value
		}
	}
	c.setCookie(w, r, signInCookie, token, c.cfg.Now().Add(time.Hour))
	c.render(w, r, nil, status, "signin", "Sign in", signInData{CSRF: token, Next: localPath(next), Error: msg,
		TTL: roughDuration(c.cfg.SessionTTL)})
}

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	next := r.PostFormValue("next")
	ck, err := r.Cookie(signInCookie)
	if err != nil || !validCSRF(r.PostFormValue("csrf"), ck.Value) {
		c.renderError(w, r, nil, &httpError{Status: http.StatusForbidden,
			Message: "The sign-in form's security token is missing or wrong (an old form, or one from another site). Open the sign-in page again."})
		return
	}
	key := strings.TrimSpace(r.PostFormValue("key"))
	p, fingerprint, ok := c.cfg.SignIn(key)
	switch {
	case key == "":
		c.renderSignIn(w, r, http.StatusBadRequest, next, "Enter an API key.")
		return
	case !ok:
		c.cfg.Logger.Info().Str("remote", r.RemoteAddr).Msg("console: Sign-in refused: unknown key")
		c.renderSignIn(w, r, http.StatusUnauthorized, next, "That API key is not valid.")
		return
	case !mayConsole(p.Role):
		c.cfg.Logger.Info().Str("principal", p.Name).Str("role", string(p.Role)).Msg("console: Sign-in refused: role")
		c.renderSignIn(w, r, http.StatusForbidden, next,
			"The key of "+p.Name+" has role "+string(p.Role)+": only auditors' and operators' keys sign in to the console (an enqueuer reads its own actions through /v1).")
		return
	}
	token := newToken()
	hash, _ := tokenHash(token)
	exp, err := c.cfg.Store.ConsoleSessionStart(r.Context(), c.cfg.DB, &store.ConsoleSession{
		TokenHash: hash, Principal: p.Name, Role: string(p.Role), KeyFingerprint: fingerprint,
	}, c.cfg.SessionTTL)
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	c.setCookie(w, r, sessionCookie, token, exp)
	c.setCookie(w, r, signInCookie, "", time.Time{})
	c.cfg.Logger.Info().Str("principal", p.Name).Str("role", string(p.Role)).Time("expires_at", exp).Msg("console: Signed in")
	http.Redirect(w, r, localPath(next), http.StatusSeeOther)
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request, u *user) error {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		if hash, ok := tokenHash(ck.Value); ok {
			if _, err := c.cfg.Store.ConsoleSessionEnd(r.Context(), c.cfg.DB, hash); err != nil {
				return err
			}
		}
	}
	c.setCookie(w, r, sessionCookie, "", time.Time{})
	c.cfg.Logger.Info().Str("principal", u.Name).Msg("console: Signed out")
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
	return nil
}

// localPath returns next if it is a path of this site ("/..."), else "/":
// the sign-in page never sends a browser elsewhere.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/"
	}
	if u, err := url.Parse(next); err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return next
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
