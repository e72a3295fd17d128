package jobs

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/store"
)

// verdict is what one Bot v3 call means for its action, its job and its app.
// classify is the one place where API answers become queue decisions.
type verdict struct {
	outcome store.AttemptOutcome
	// state is the action's new state; "" leaves it.
	state store.ActionState
	// requestState is recorded for the call's requestId, if it has one.
	requestState store.RequestState
	// snooze delays the job without using an attempt (outcome snooze).
	snooze time.Duration
	// throttle stops every call of the app for this long (429, Retry-After).
	throttle time.Duration
	// unauthorized: the token was refused (401).
	unauthorized bool
	// reason explains a non-ok verdict for the audit; "" when ok.
	reason string
}

// defaultRetryAfter is the pause after a 429 that named no Retry-After.
const defaultRetryAfter = 5 * time.Second

// maxRetryAfter caps a server's Retry-After, so a broken gateway cannot park
// work for days.
const maxRetryAfter = time.Hour

// classify maps one call's result to a verdict, following Bot v3's rules:
//
//   - 2xx: ok. A 202 leaves the request PENDING at Khoros (the action is
//     sent, the reconciler settles it), unless the answer already says
//     SUCCESS or ERROR (a synchronous respond). Any other 2xx (200, 204)
//     answers a finished change: succeeded. No request id means nothing to
//     reconcile (succeeded).
//   - 429, or any answer with Retry-After: snooze for that long without using
//     an attempt, and throttle the whole app until then.
//   - 401: the token was refused; the worker refreshes it once, then pauses
//     the app. No attempt is used.
//   - 5xx, control's 409: retry with backoff.
//   - other 4xx: do not retry (Khoros: "A 4xx response indicates that you
//     should not retry"); the action fails with the error recorded.
//   - no answer, request never written: retry (safe for every kind).
//   - no answer after the request was written: retry an idempotent kind;
//     for respond, form and note the outcome is unknown and the reconciler
//     decides, because a blind resend could reach the customer twice.
func classify(kind string, ok okBody, res *botapi.Response, err error) verdict {
	if err == nil {
		switch ok.Data.RequestState {
		case "SUCCESS":
			return verdict{outcome: store.OutcomeOK, state: store.ActionSucceeded, requestState: store.RequestSuccess}
		case "ERROR":
			return verdict{outcome: store.OutcomeOK, state: store.ActionFailed, requestState: store.RequestError,
				reason: "Khoros processed the request synchronously and reported ERROR"}
		}
		if res == nil || res.RequestID == "" {
			return verdict{outcome: store.OutcomeOK, state: store.ActionSucceeded}
		}
		if res.StatusCode != http.StatusAccepted {
			// 200 and 204 answer a finished change (control's new record, a
			// new token, a deleted registration); only 202 leaves work
			// pending at Khoros.
			return verdict{outcome: store.OutcomeOK, state: store.ActionSucceeded, requestState: store.RequestSuccess}
		}
		return verdict{outcome: store.OutcomeOK, state: store.ActionSent, requestState: store.RequestPending}
	}

	var apiErr *botapi.Error
	if errors.As(err, &apiErr) {
		reqState := store.RequestState("")
		if apiErr.RequestID != "" {
			reqState = store.RequestPending // the reconciler learns the record's final state
		}
		switch {
		case apiErr.StatusCode == http.StatusTooManyRequests || apiErr.HasRetryAfter:
			d := apiErr.RetryAfter
			if !apiErr.HasRetryAfter {
				d = defaultRetryAfter
			}
			d = min(max(d, 0), maxRetryAfter)
			return verdict{outcome: store.OutcomeSnooze, snooze: d, throttle: d, requestState: reqState,
				reason: fmt.Sprintf("Khoros asked to wait %s: %s", d, apiErr.Error())}
		case apiErr.StatusCode == http.StatusUnauthorized:
			return verdict{outcome: store.OutcomeSnooze, unauthorized: true, requestState: reqState,
				reason: "Khoros refused the token (401)"}
		case apiErr.StatusCode >= 500,
			apiErr.StatusCode == http.StatusConflict && kind == KindControl:
			return verdict{outcome: store.OutcomeRetry, state: store.ActionRetrying, requestState: reqState, reason: apiErr.Error()}
		default:
			return verdict{outcome: store.OutcomeCancel, state: store.ActionFailed, requestState: reqState, reason: apiErr.Error()}
		}
	}

	if botapi.Sent(err) && !kinds[kind].idempotent {
		return verdict{outcome: store.OutcomeUnknown, state: store.ActionUnknown,
			reason: "sent but no answer (" + err.Error() + "); waiting for the reconciler, not resending"}
	}
	return verdict{outcome: store.OutcomeRetry, state: store.ActionRetrying, reason: err.Error()}
}

// okBody is the part of a 2xx answer botq reads.
type okBody struct {
	Data struct {
		RequestState    string `json:"requestState"`
		MessageID       string `json:"messageId"`
		Token           string `json:"token"`
		ExpiresAtMillis int64  `json:"expiresAtMillis"`
	} `json:"data"`
}

var jwtRe = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)

// excerpt is the bounded, redacted part of an answer kept with an attempt:
// error bodies (which carry Khoros' messages) with anything token-shaped
// removed; never a 2xx body, which may hold a new token.
func excerpt(err error) string {
	var apiErr *botapi.Error
	if !errors.As(err, &apiErr) || len(apiErr.Body) == 0 {
		return ""
	}
	b := apiErr.Body
	if len(b) > store.MaxResponseExcerpt {
		b = b[:store.MaxResponseExcerpt]
	}
	return jwtRe.ReplaceAllString(string(b), "[redacted-token]")
}
