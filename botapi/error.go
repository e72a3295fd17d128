package botapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxErrorBody bounds Error.Body, so audit rows stay small.
const MaxErrorBody = 4 << 10

// Sentinels matched with errors.Is against an *[Error] by status code.
var (
	ErrBadRequest    = errors.New("botapi: bad request")          // 400
	ErrUnauthorized  = errors.New("botapi: unauthorized")         // 401
	ErrForbidden     = errors.New("botapi: forbidden")            // 403
	ErrNotFound      = errors.New("botapi: not found")            // 404
	ErrConflict      = errors.New("botapi: conflict")             // 409
	ErrUnprocessable = errors.New("botapi: unprocessable entity") // 422
	ErrRateLimited   = errors.New("botapi: rate limited")         // 429
	ErrServer        = errors.New("botapi: server error")         // any 5xx
)

// Error is a non-2xx answer from Bot v3 (or from the Care v2 token endpoint).
// It decodes every documented error body shape (reference §6.1).
type Error struct {
	// Op is "METHOD /path" of the call.
	Op string
	// StatusCode is the HTTP status.
	StatusCode int
	// RequestID is Khoros' id of the failed request, when one was given.
	RequestID string
	// Message is the messages joined with "; ", or the status text when the body had none.
	Message string
	// Messages are the individual messages from the body, in order.
	Messages []string
	// RetryAfter is the server's Retry-After, valid when HasRetryAfter.
	RetryAfter time.Duration
	// HasRetryAfter reports whether a parsable Retry-After header was present.
	HasRetryAfter bool
	// Body is the start of the raw body (at most MaxErrorBody bytes).
	Body []byte
	// Application reports that the body is one of Bot v3's own error shapes
	// (an "error" or "errors" member): the answer came from Bot v3 itself,
	// which may keep a request record of the call, not from the gateway in
	// front of it ({"message": ...}, an empty or non-JSON body), which keeps
	// none.
	Application bool
}

// Error reports the call, status, message and request id; never a token.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("botapi: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	b.WriteString(strconv.Itoa(e.StatusCode))
	if e.Message != "" {
		b.WriteString(" ")
		b.WriteString(e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request id ")
		b.WriteString(e.RequestID)
		b.WriteString(")")
	}
	return b.String()
}

// Is matches the status sentinels (ErrNotFound for 404, ErrServer for any 5xx, ...).
func (e *Error) Is(target error) bool {
	switch target {
	case ErrBadRequest:
		return e.StatusCode == http.StatusBadRequest
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	case ErrUnprocessable:
		return e.StatusCode == http.StatusUnprocessableEntity
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	case ErrServer:
		return e.StatusCode >= 500 && e.StatusCode <= 599
	}
	return false
}

// DecodeError builds an *Error from a status and a raw body. It accepts every
// body shape Khoros documents, any non-JSON body, and never fails.
func DecodeError(status int, body []byte) *Error { return decodeError(status, body) }

func decodeError(status int, body []byte) *Error {
	e := &Error{StatusCode: status}
	if len(body) > 0 {
		e.Body = bytes.Clone(body[:min(len(body), MaxErrorBody)])
	}
	// Every field is RawMessage so that one unexpected type (a number where a
	// string was documented) does not lose the rest of the body.
	var b struct {
		Error     json.RawMessage `json:"error"`
		Errors    json.RawMessage `json:"errors"`
		Message   json.RawMessage `json:"message"`
		RequestID json.RawMessage `json:"requestId"`
	}
	if json.Unmarshal(body, &b) == nil {
		e.Application = len(b.Error) > 0 || len(b.Errors) > 0
		e.RequestID = rawString(b.RequestID)
		var inner struct {
			Message   json.RawMessage `json:"message"`
			Messages  json.RawMessage `json:"messages"`
			RequestID json.RawMessage `json:"requestId"`
		}
		if len(b.Error) > 0 && json.Unmarshal(b.Error, &inner) == nil {
			e.Messages = append(e.Messages, rawStrings(inner.Messages)...)
			if m := rawString(inner.Message); m != "" {
				e.Messages = append(e.Messages, m)
			}
			if e.RequestID == "" {
				e.RequestID = rawString(inner.RequestID)
			}
		} else if m := rawString(b.Error); m != "" {
			e.Messages = append(e.Messages, m)
		}
		e.Messages = append(e.Messages, rawStrings(b.Errors)...)
		if m := rawString(b.Message); m != "" {
			e.Messages = append(e.Messages, m)
		}
	} else if t := strings.TrimSpace(string(e.Body)); t != "" && !looksLikeMarkup(t) {
		// A plain-text body from a proxy: keep its first line, bounded. HTML
		// and broken JSON stay in Body only.
		line, _, _ := strings.Cut(t, "\n")
		if len(line) > 200 {
			line = strings.ToValidUTF8(line[:200], "")
		}
		if line = strings.TrimSpace(line); line != "" {
			e.Messages = []string{line}
		}
	}
	e.Message = strings.Join(e.Messages, "; ")
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

func looksLikeMarkup(s string) bool { return s[0] == '{' || s[0] == '[' || s[0] == '<' }

// rawString returns a JSON string's value, a number's text, or "".
func rawString(r json.RawMessage) string {
	r = bytes.TrimSpace(r)
	if len(r) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(r, &s) == nil {
		return s
	}
	if r[0] == '-' || (r[0] >= '0' && r[0] <= '9') {
		return string(r)
	}
	return ""
}

// rawStrings accepts an array of strings (or of anything with a text form) or a single string.
func rawStrings(r json.RawMessage) []string {
	r = bytes.TrimSpace(r)
	if len(r) == 0 {
		return nil
	}
	if r[0] != '[' {
		if s := rawString(r); s != "" {
			return []string{s}
		}
		return nil
	}
	var items []json.RawMessage
	if json.Unmarshal(r, &items) != nil {
		return nil
	}
	var out []string
	for _, it := range items {
		if s := rawString(it); s != "" {
			out = append(out, s)
		} else if it = bytes.TrimSpace(it); len(it) > 0 && it[0] == '{' {
			var m struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(it, &m) == nil && m.Message != "" {
				out = append(out, m.Message)
			}
		}
	}
	return out
}

// TransportError is a call that got no HTTP response: dial failure, timeout,
// dropped connection, cancelled context. It unwraps to the *url.Error (and so
// to context.DeadlineExceeded or context.Canceled where that was the cause).
type TransportError struct {
	// Op is "METHOD /path" of the call.
	Op string
	// Sent reports whether the whole request was written to the connection: if
	// so Khoros may have applied it even though no answer arrived.
	Sent bool
	// Err is the underlying error.
	Err error
}

// Error reports the call, whether it was sent, and the cause.
func (e *TransportError) Error() string {
	state := "not sent"
	if e.Sent {
		state = "sent, no response"
	}
	return fmt.Sprintf("botapi: %s (%s): %v", e.Op, state, e.Err)
}

// Unwrap returns the underlying error (usually a *url.Error).
func (e *TransportError) Unwrap() error { return e.Err }

// Sent reports whether the request behind err reached the wire: true for any
// *Error (a response came back) and for a *TransportError written before it
// failed; false for a refused or hung dial, a token or encoding failure, and nil.
// A sent, unanswered non-idempotent call (respond, form, note) has an unknown
// outcome and must be reconciled rather than blindly resent.
func Sent(err error) bool {
	var te *TransportError
	if errors.As(err, &te) {
		return te.Sent
	}
	var ae *Error
	return errors.As(err, &ae)
}

// Retryable reports whether repeating the call that returned err is safe and
// may succeed, with a short reason for the audit record. Only facts the client
// knows are used: 5xx, 429, a 409 whose body says it may be retried (control),
// and a transport error before anything was written are retryable. A transport
// error after the request was written is not: whether a resend is safe depends
// on the endpoint's idempotency, which the caller knows (see [Sent]).
func Retryable(err error) (bool, string) {
	if err == nil {
		return false, "no error"
	}
	var ae *Error
	if errors.As(err, &ae) {
		switch {
		case ae.StatusCode == http.StatusTooManyRequests:
			return true, "rate limited (429)"
		case ae.StatusCode >= 500:
			return true, fmt.Sprintf("server error (%d)", ae.StatusCode)
		case ae.StatusCode == http.StatusConflict && strings.Contains(strings.ToLower(ae.Message), "may be retried"):
			return true, "transient conflict (409)"
		case ae.HasRetryAfter:
			return true, fmt.Sprintf("status %d with Retry-After", ae.StatusCode)
		}
		return false, fmt.Sprintf("client error (%d)", ae.StatusCode)
	}
	var te *TransportError
	if errors.As(err, &te) {
		if te.Sent {
			return false, "sent without response: outcome unknown"
		}
		return true, "not sent: " + transportCause(te.Err)
	}
	return false, "not an HTTP outcome"
}

func transportCause(err error) string {
	var e interface{ Timeout() bool }
	if errors.As(err, &e) && e.Timeout() {
		return "timeout"
	}
	return "connection error"
}

// RetryAfter returns the server's Retry-After hint carried by err.
func RetryAfter(err error) (time.Duration, bool) {
	var ae *Error
	if errors.As(err, &ae) && ae.HasRetryAfter {
		return ae.RetryAfter, true
	}
	return 0, false
}

// ParseRetryAfter parses a Retry-After value: delay-seconds or an HTTP-date
// relative to now. A date in the past gives 0. Values that are neither, or
// negative, give false.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			return 0, false
		}
		// Anything over a year is nonsense; cap rather than overflow Duration.
		const maxSeconds = 365 * 24 * 3600
		if n > maxSeconds {
			n = maxSeconds
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		d = 0
	}
	return d, true
}
