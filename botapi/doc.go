// Package botapi is a typed client for the Khoros Care Bot API v3 (the
// Automation Framework), as described in shared/botv3-reference.md.
//
// A [Client] has one method per endpoint and makes exactly one HTTP attempt
// per call: botq's durable queue is the retry loop, so that every attempt is
// recorded. Every method returns a [*Response] (status, Khoros requestId,
// headers) whenever an answer arrived, even together with an error, so the
// requestId of a failed call can be audited. [Client.Do] is the low-level call
// the typed methods are built on; job workers use it to send stored payloads
// byte for byte.
//
// Errors are either a [*Error] (a non-2xx answer, decoded from any of
// Khoros' error body shapes and matched with errors.Is against [ErrNotFound],
// [ErrConflict], ...) or a [*TransportError] (no answer). [Retryable],
// [RetryAfter] and [Sent] classify them; Sent tells "never reached Khoros,
// safe to resend" from "written, outcome unknown", which matters because
// respond, form and note are not idempotent and Khoros has no idempotency key.
//
// Tokens come from a [TokenSource]: [StaticToken], [FileToken], or a
// [RefreshingToken] that refreshes ahead of the JWT's exp claim. The first
// token of an app is issued by the Care v2 endpoint through [Bootstrap].
// Tokens never appear in errors or in any formatted value of this package's types.
//
// The stateful simulator in package botapi/sim serves the same API locally.
package botapi
