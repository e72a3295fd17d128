package botapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Version is botq's version, sent in the default User-Agent ("botq/<Version>").
// The build sets it with -ldflags "-X github.com/botq/botq/botapi.Version=...".
var Version = "dev"

// DefaultTimeout bounds one HTTP call when Config.HTTPClient is nil.
const DefaultTimeout = 30 * time.Second

// maxBodyRead bounds how much of any response body is read, so a broken or
// hostile gateway cannot make a worker allocate without limit.
const maxBodyRead = 64 << 20

// Region is a Khoros data-residency region. A Care instance must call the
// gateway of its own region; there is no redirect between them.
type Region string

// The three public Bot v3 gateways (reference §1.1).
const (
	RegionUS   Region = "US"
	RegionEMEA Region = "EMEA"
	RegionAPAC Region = "APAC"
)

// BaseURL returns the gateway host of r, without a trailing slash, or "" when
// r is not a known region.
func (r Region) BaseURL() string {
	switch r {
	case RegionUS:
		return "https://api.app.lithium.com"
	case RegionEMEA:
		return "https://api-eu.app.lithium.com"
	case RegionAPAC:
		return "https://api-ap.app.lithium.com"
	}
	return ""
}

// ParseRegion parses a region name case-insensitively. "EU" is accepted for
// EMEA and "AP" for APAC because operators type them.
func ParseRegion(s string) (Region, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "US":
		return RegionUS, nil
	case "EMEA", "EU":
		return RegionEMEA, nil
	case "APAC", "AP":
		return RegionAPAC, nil
	}
	return "", fmt.Errorf("parse region %q: want US, EMEA or APAC", s)
}

// Config configures a [Client]. Either BaseURL or Region must be set.
type Config struct {
	// BaseURL is the gateway host, e.g. "https://api.app.lithium.com" or a
	// simulator's "http://127.0.0.1:8089". A trailing "/bots/v3" is tolerated.
	// It wins over Region.
	BaseURL string
	// Region selects a public gateway when BaseURL is empty.
	Region Region
	// HTTPClient sends the requests. Nil means a client with DefaultTimeout that
	// does not follow redirects (a followed redirect would be a hidden second attempt).
	HTTPClient *http.Client
	// Tokens supplies the bearer token for every call. Required.
	Tokens TokenSource
	// UserAgent defaults to "botq/" + Version.
	UserAgent string
	// Now is the clock used to turn an HTTP-date Retry-After into a duration.
	// Nil means time.Now.
	Now func() time.Time
}

// Format redacts the config: Tokens may hold a token.
func (c Config) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "botapi.Config{BaseURL:%q Region:%q UserAgent:%q Tokens:%s}", c.BaseURL, c.Region, c.UserAgent, redacted)
}

// Client calls Bot v3. It makes exactly one HTTP attempt per method call and
// never retries: the caller (River) is the retry loop, so that every attempt is
// audited. A Client is safe for concurrent use.
type Client struct {
	base      string
	http      *http.Client
	tokens    TokenSource
	userAgent string
	now       func() time.Time
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	base := cfg.BaseURL
	if base == "" {
		if cfg.Region == "" {
			return nil, errors.New("new botapi client: BaseURL or Region is required")
		}
		base = cfg.Region.BaseURL()
		if base == "" {
			return nil, fmt.Errorf("new botapi client: unknown region %q", cfg.Region)
		}
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("new botapi client: base URL %q is not an absolute URL", base)
	}
	base = strings.TrimSuffix(strings.TrimRight(base, "/"), "/bots/v3")
	if cfg.Tokens == nil {
		return nil, errors.New("new botapi client: Tokens is required")
	}
	c := &Client{base: base, http: cfg.HTTPClient, tokens: cfg.Tokens, userAgent: cfg.UserAgent, now: cfg.Now}
	if c.http == nil {
		c.http = defaultHTTPClient()
	}
	if c.userAgent == "" {
		c.userAgent = "botq/" + Version
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

func defaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout:       DefaultTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// BaseURL returns the gateway host the client calls.
func (c *Client) BaseURL() string { return c.base }

// Format keeps the token source out of any formatted output.
func (c Client) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "botapi.Client{BaseURL:%q}", c.base)
}

// Response is what is known about one HTTP exchange. Methods return it even
// together with an error whenever a response arrived, so the requestId of a
// failed call can still be audited.
type Response struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// RequestID is Khoros' id for the request: the x-amzn-RequestId header,
	// else the body's requestId, else error.requestId. It may be empty.
	RequestID string
	// Header is the response header.
	Header http.Header
}

// Do sends one request to path (relative to the gateway, e.g. "/bots/v3/respond",
// optionally with a query) and decodes a 2xx JSON body into out when out is
// non-nil. body is nil for no body, a json.RawMessage or []byte to send byte for
// byte, or any value to marshal as JSON (marshalled once, so the request can be
// re-sent identically). A non-2xx answer is returned as *[Error]; a failure to
// exchange as *[TransportError]. The *Response is non-nil whenever a response
// arrived. Do is as idempotent as the endpoint it calls.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) (*Response, error) {
	token, err := c.tokens.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("get token for %s %s: %w", method, stripQuery(path), err)
	}
	return c.send(ctx, request{method: method, url: c.base + path, body: body, auth: "Bearer " + token}, out)
}

// request is one outgoing exchange; auth is the whole Authorization header.
type request struct {
	method string
	url    string
	body   any
	auth   string
}

func encodeBody(body any) ([]byte, error) {
	switch b := body.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		return b, nil
	case []byte:
		return b, nil
	}
	// HTML escaping would turn "<" into \u003c: valid, but not what the
	// caller wrote, and harder to match against Khoros' stored payload.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(body); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func (c *Client) send(ctx context.Context, in request, out any) (*Response, error) {
	op := in.method + " " + stripQuery(strings.TrimPrefix(in.url, c.base))
	hres, res, err := c.roundTrip(ctx, op, in)
	if err != nil {
		return res, err
	}
	defer hres.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(hres.Body, maxBodyRead))
	if err != nil {
		return res, &TransportError{Op: op + " (read body)", Sent: true, Err: err}
	}
	if res.RequestID == "" {
		res.RequestID = bodyRequestID(raw)
	}
	if hres.StatusCode < 200 || hres.StatusCode > 299 {
		return res, c.statusError(op, hres, res, raw)
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return res, fmt.Errorf("decode %s response: %w", op, err)
		}
	}
	return res, nil
}

// stream is send for a GET whose successful answer may be large: decode
// reads the body as it arrives instead of from one buffer, so memory does
// not grow with the answer. An error answer is read and mapped as send does.
func (c *Client) stream(ctx context.Context, path string, decode func(io.Reader) error) (*Response, error) {
	token, err := c.tokens.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("get token for GET %s: %w", stripQuery(path), err)
	}
	op := "GET " + stripQuery(path)
	hres, res, err := c.roundTrip(ctx, op, request{method: http.MethodGet, url: c.base + path, auth: "Bearer " + token})
	if err != nil {
		return res, err
	}
	defer hres.Body.Close()
	if hres.StatusCode < 200 || hres.StatusCode > 299 {
		raw, err := io.ReadAll(io.LimitReader(hres.Body, maxBodyRead))
		if err != nil {
			return res, &TransportError{Op: op + " (read body)", Sent: true, Err: err}
		}
		if res.RequestID == "" {
			res.RequestID = bodyRequestID(raw)
		}
		return res, c.statusError(op, hres, res, raw)
	}
	body := &readErr{r: hres.Body}
	if err := decode(body); err != nil {
		if body.err != nil {
			return res, &TransportError{Op: op + " (read body)", Sent: true, Err: body.err}
		}
		return res, fmt.Errorf("decode %s response: %w", op, err)
	}
	return res, nil
}

// readErr remembers the error its reader failed with (other than EOF): a
// body cut off while being decoded is a transport failure, not bad JSON.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// statusError is the *Error of a non-2xx answer.
func (c *Client) statusError(op string, hres *http.Response, res *Response, raw []byte) error {
	e := decodeError(hres.StatusCode, raw)
	e.Op = op
	if e.RequestID == "" {
		e.RequestID = res.RequestID
	}
	if v := hres.Header.Get("Retry-After"); v != "" {
		e.RetryAfter, e.HasRetryAfter = ParseRetryAfter(v, c.now())
	}
	return e
}

// roundTrip makes one HTTP exchange and returns the answer with its body
// unread (the caller closes it), or a *TransportError when none came.
func (c *Client) roundTrip(ctx context.Context, op string, in request) (*http.Response, *Response, error) {
	payload, err := encodeBody(in.body)
	if err != nil {
		return nil, nil, fmt.Errorf("encode %s body: %w", op, err)
	}
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		if info.Err == nil {
			wrote.Store(true)
		}
	}}
	var rdr io.Reader
	if payload != nil {
		rdr = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), in.method, in.url, rdr)
	if err != nil {
		return nil, nil, fmt.Errorf("build %s request: %w", op, err)
	}
	if payload != nil {
		// NewRequest already sets GetBody for a *bytes.Reader; being explicit
		// documents that the bytes are the same on any transport-level resend.
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(payload)), nil }
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if in.auth != "" {
		req.Header.Set("Authorization", in.auth)
	}

	hres, err := c.http.Do(req)
	if err != nil {
		return nil, nil, &TransportError{Op: op, Sent: wrote.Load(), Err: err}
	}
	return hres, &Response{StatusCode: hres.StatusCode, Header: hres.Header, RequestID: hres.Header.Get("X-Amzn-Requestid")}, nil
}

// bodyRequestID finds requestId at the top level or inside "error".
func bodyRequestID(raw []byte) string {
	if len(raw) == 0 || !bytes.Contains(raw, []byte(`"requestId"`)) {
		return ""
	}
	var b struct {
		RequestID string `json:"requestId"`
		Error     struct {
			RequestID string `json:"requestId"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &b) != nil {
		return ""
	}
	if b.RequestID != "" {
		return b.RequestID
	}
	return b.Error.RequestID
}

func stripQuery(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

// seg escapes one path segment; author ids such as "urn:mbid:..." stay readable.
func seg(s string) string { return url.PathEscape(s) }

// data is the {"data": ...} envelope of successful Bot v3 bodies.
type data[T any] struct {
	Data T `json:"data"`
}
