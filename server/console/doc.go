// Package console is botq's web console for auditors and operators: the
// request history (actions, a conversation's timeline, attempts, request
// records, KHOROS-origin records, events) and the operator's actions
// (replay, replay by filter, cancel, pause, resume) in a browser, served at
// / by `botq serve` with the API role.
//
// It is server-rendered HTML (html/template, templates and stylesheet
// embedded in the binary), with no script: links and forms work with the
// keyboard and without JavaScript, and the stylesheet lays the pages out
// for a laptop and for a phone.
//
// Sign-in. A person signs in with an API key of role auditor or operator
// (an enqueuer's key is refused) and gets a session: a random token in a
// cookie (HttpOnly, SameSite=Strict, Secure when the request came over
// TLS, expiring with the session), kept in botq.console_session by its
// SHA-256 only, so any botq process with the API role serves it and a
// sign-out ends it everywhere. Every request checks that the key the
// session was opened with is still configured with a role that may sign
// in: removing or demoting the key ends its sessions.
//
// Writes. Every form carries a CSRF token derived from the session's token
// (the sign-in form: a random token also set in a cookie), every POST is
// checked for it, and a browser's POST from another site's page is refused
// with 403 before anything else (api.CrossOriginGuard). Only an operator
// may act; an auditor's pages show no control, and the server refuses an
// auditor's POST with 403. Each operator action needs a reason and is
// recorded as an event whose actor is "console:<key name>", by the same
// store functions the API uses.
//
// Scale. Listing pages are keyset-paginated and bounded in time (the last
// 24 hours unless asked otherwise), and filters that no index serves (kind,
// author, text, creator) need a time range of at most MaxScanSpan.
package console
