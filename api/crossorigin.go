package api

import (
	"fmt"
	"net/http"
	"net/url"
)

// Cross-site requests. A browser attaches the HTTP Basic credentials it
// cached for River UI (an API key: Authorize takes it as well as a bearer
// token) to any request to botq's origin: to a form another site posts, and
// to a "simple" fetch (text/plain, no header of its own) that CORS does not
// stop, since CORS only keeps the answer from the page, not the request from
// botq. So botq refuses the unsafe methods (all but GET, HEAD and OPTIONS) of
// a request a browser says comes from elsewhere:
//
//   - Sec-Fetch-Site, which every current browser sends (on HTTPS and
//     localhost): same-origin and none (the address bar, a bookmark) pass;
//     cross-site and same-site are refused (a sibling host under the same
//     domain is someone else's page).
//   - Without it (plain HTTP to another host), the Origin header: it must be
//     the request's own Host; any other, and "null" (a sandboxed frame, a
//     file: page), is refused.
//   - Neither header: not a browser (curl, the CLI, Go, a bot) or a browser
//     that sends no Origin even on a POST; it passes.
//
// An origin listed in http.trusted_origins passes too. This is net/http's
// CrossOriginProtection, with botq's answer. The other usual defence, a
// header that a form cannot send and every write must carry, would need
// River UI's own pages (not botq's) to send it and would add a step to every
// client that is not a browser, which CSRF does not concern.
type CrossOriginGuard struct {
	p *http.CrossOriginProtection
}

// NewCrossOriginGuard returns a guard that also accepts the browser origins
// trusted ("scheme://host[:port]"). It is safe for concurrent use.
func NewCrossOriginGuard(trusted []string) (*CrossOriginGuard, error) {
	p := http.NewCrossOriginProtection()
	for _, o := range trusted {
		if err := CheckOrigin(o); err != nil {
			return nil, err
		}
		if err := p.AddTrustedOrigin(o); err != nil {
			return nil, err
		}
	}
	return &CrossOriginGuard{p: p}, nil
}

// CheckOrigin checks that o is a browser origin: http or https, a host and
// an optional port, nothing else.
func CheckOrigin(o string) error {
	if err := http.NewCrossOriginProtection().AddTrustedOrigin(o); err != nil {
		return err
	}
	if u, _ := url.Parse(o); u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("invalid origin %q: the scheme must be http or https", o)
	}
	return nil
}

// Check returns the 403 that refuses r as a cross-origin request, or nil.
// Its field is the header that showed it.
func (g *CrossOriginGuard) Check(r *http.Request) *Error {
	if g.p.Check(r) == nil {
		return nil
	}
	const rule = "botq accepts writes only from its own pages and from clients that are not browsers"
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return &Error{Status: http.StatusForbidden, Code: "cross_origin", Field: "Sec-Fetch-Site", Message: fmt.Sprintf(
			"cross-site request refused: the browser says this %s %s comes from another site's page (Sec-Fetch-Site: %s); %s",
			r.Method, r.URL.Path, site, rule)}
	}
	return &Error{Status: http.StatusForbidden, Code: "cross_origin", Field: "Origin", Message: fmt.Sprintf(
		"cross-origin request refused: this %s %s comes from a page of origin %q, not of this server (Host %q); %s (behind a proxy that changes the Host header, list the public origin in http.trusted_origins)",
		r.Method, r.URL.Path, r.Header.Get("Origin"), r.Host, rule)}
}
