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
	// requestState is recorded for the call's requestId, if it has one, with
	// requestReason when botq ends the record itself (ABSENT).
	requestState  store.RequestState
	requestReason string
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
//
// The request id of a non-2xx answer is recorded as refusedRecord says.
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
		v := classifyRefusal(kind, apiErr)
		v.requestState, v.requestReason = refusedRecord(apiErr)
		return v
	}

	if botapi.Sent(err) && !kinds[kind].idempotent {
		return verdict{outcome: store.OutcomeUnknown, state: store.ActionUnknown,
			reason: "sent but no answer (" + err.Error() + "); waiting for the reconciler, not resending"}
	}
	return verdict{outcome: store.OutcomeRetry, state: store.ActionRetrying, reason: err.Error()}
}

// refusedRecord is what botq records for the request id of a non-2xx
// answer. The gateway in front of Bot v3 (a 429, or a body that is not one
// of Bot v3's error shapes: {"message": ...}, HTML, nothing) hands out an
// x-amzn-RequestId but keeps no record under it, so the record is ABSENT at
// once. Bot v3 itself, refusing a call with its own error body, may or may
// not keep an ERROR record (Khoros does not say), so the record is PENDING
// and the reconciler settles it within minutes: found, or ABSENT once a
// check a clock-skew margin after the call has not found it.
func refusedRecord(e *botapi.Error) (store.RequestState, string) {
	switch {
	case e.RequestID == "":
		return "", ""
	case e.StatusCode == http.StatusTooManyRequests || !e.Application:
		return store.RequestAbsent, fmt.Sprintf("the gateway refused the call (HTTP %d); Khoros keeps no record of it", e.StatusCode)
	}
	return store.RequestPending, ""
}

// classifyRefusal maps a non-2xx answer to a verdict, without its request
// record.
func classifyRefusal(kind string, apiErr *botapi.Error) verdict {
	switch {
	case apiErr.StatusCode == http.StatusTooManyRequests || apiErr.HasRetryAfter:
		d := apiErr.RetryAfter
		if !apiErr.HasRetryAfter {
			d = defaultRetryAfter
		}
		d = min(max(d, 0), maxRetryAfter)
		return verdict{outcome: store.OutcomeSnooze, snooze: d, throttle: d,
			reason: fmt.Sprintf("Khoros asked to wait %s: %s", d, apiErr.Error())}
	case apiErr.StatusCode == http.StatusUnauthorized:
		return verdict{outcome: store.OutcomeSnooze, unauthorized: true, reason: "Khoros refused the token (401)"}
	case apiErr.StatusCode >= 500,
		apiErr.StatusCode == http.StatusConflict && kind == KindControl:
		return verdict{outcome: store.OutcomeRetry, state: store.ActionRetrying, reason: apiErr.Error()}
	default:
		return verdict{outcome: store.OutcomeCancel, state: store.ActionFailed, reason: apiErr.Error()}
	}
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
