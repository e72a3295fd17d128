// Package sim is a stateful simulator of the Khoros Care Bot API v3, used by
// tests (wrap a [Server] in httptest.NewServer), by `botq sim` and `make run`
// for local development, and as the benchmark target. It follows
// shared/botv3-reference.md and the assumptions of its section 10; where
// Khoros documents nothing, the choices below are the simulator's own.
//
// # Surface
//
// A [Server] is an http.Handler serving:
//
//   - every Bot v3 endpoint under /bots/v3/... (reference §11);
//   - PUT and DELETE /tokens/appId/{appId}, the token paths without the prefix (§4.4);
//   - POST and GET /api/v2/tokens/khorosapi/ownerId/{appId}, the Care v2 token
//     bootstrap with HTTP Basic auth (Options.BootstrapUser/BootstrapPassword,
//     default botq/botq); the host part of the real URL is ignored;
//   - the admin API under /_sim/ (below), which needs no authentication.
//
// Every API response carries an x-amzn-RequestId header; JSON bodies carry
// requestId where Khoros' examples show one (and {"requestId":...} on 202s).
//
// # State and rules
//
// Apps and tokens: tokens are HS512 JWTs signed with a per-simulator secret
// derived from Options.Seed, with claims companyKey, appId, ownerId, userName,
// awsRegion, iat, exp (seconds) and jti. They are valid for Options.TokenTTL
// (90 days). An app has one current token; PUT /bots/v3/tokens/appId/{appId}
// with the current token issues a new one and keeps the old one valid for
// Options.TokenGrace (10 minutes); a superseded token cannot refresh (401).
// DELETE revokes every token of the app at once, after which the Care v2
// bootstrap works again (it answers 409 while a valid token exists). An
// unknown, expired or revoked bearer token gets 401
// {"error":{"message":"Unauthorized","requestId":...}}; a call without an
// Authorization header gets the gateway's 403 {"message":"Forbidden"}.
// A token works only for its own company and app: a coordinate whose
// companyKey is not the token's gets 403.
//
// Registrations are keyed by (companyKey, networkKey, externalId, appId) and
// must name the token's app. POST on an existing one, a second LIVE bot on a
// page, or an 11th bot on a page get 409 {"errors":[...]}; empty required
// fields get 422 {"errors":["callbackUrl may not be empty", ...]}. An empty
// mode means LIVE. The mode path segment is case-insensitive. Leaving LIVE or
// deleting a registration hands the bot's conversations on that page to AGENT.
//
// Conversation ownership (who may POST /respond), in order:
//
//  1. a bot registered on the page in MONITORING or MAINTENANCE never owns (403);
//  2. if the conversation has a control record (PUT /bots/v3/control, the
//     admin owner endpoint, or an earlier respond), its owner decides;
//  3. otherwise the calling app owns it, unless another app is LIVE on the
//     page. So a fresh simulator needs no setup: any app can answer any
//     author, and the first answer records that app as owner, which later
//     LIVE registrations of other apps do not override.
//
// A non-owner gets 403 {"error":{"messages":["This bot doesn't own the
// conversation ..."]},"requestId":...}. Other actions (tag, note, priority,
// workqueue, resolve, authors, form) need no ownership; resolve deletes the
// control record so the default rule applies again. GET control returns 404
// for a conversation without a control record.
//
// Request records: every authenticated call creates a BOT-origin record whose
// id is the call's requestId and whose payload is the request body (returned by
// the API as a JSON string). Accepted (202) writes start PENDING and settle
// after a delay drawn per record from [SettleDelayMin, SettleDelayMax] (default
// 0..2s), to SUCCESS, or to ERROR with details {"code","message"} for a
// fraction Options.ErrorRate. Reads, DELETEs, control, synchronous responds and
// token calls are SUCCESS at once; 4xx answers other than 401 are ERROR at
// once with details {"code":"<status>","message":"<first message>"}. States are
// computed from the clock when read (no timers), so tests move Options.Now.
// The listing returns records newest first, using per-app slices and a binary
// search on creation time; from is ^\d+[mhd]$ (default 1d, at most 31d, else
// 400 {"error":{"messages":["Incorrect syntax in \"from\""]}}), state may
// repeat, origin is BOT or KHOROS. Options.MaxRecords bounds memory.
//
// Health is one HEALTHY entry per registration of the app (at least one)
// until set through the admin API.
//
// # Faults
//
// A [Fault] is installed per endpoint name (see [Endpoints]: respond, control,
// tag, tag_remove, note, priority, workqueue, resolve, author_attributes,
// author_update, form, registration_create, registration_update,
// registration_list, registration_page, registration_get, registration_delete,
// mode, control_get, request_get, request_list, health, token_refresh,
// token_revoke, token_bootstrap, token_bootstrap_get, unknown) or "*" for
// every endpoint without its own. For each call, in this order: Latency plus
// up to Jitter is slept (no lock held; a client giving up meanwhile leaves
// nothing applied); then at most one of hang (block until the client goes away
// or [Server.Close], then abort the connection), error (answer ErrorCode,
// default 503, applying nothing; 409 on control uses Khoros' "may be retried"
// body), rate limit (429 with Retry-After, applying nothing), drop (apply
// fully, create the record, then close the connection without a response) or
// stall (apply fully, then hold the answer until the client goes away). A
// fault with an AppID applies to that app's calls only and is looked up
// first; a fault with Times is replaced by its Next when they run out, so a
// test can script "one 429, then a stall" for one app.
// Draws come from one generator seeded by Options.Seed, so the same seed and
// the same sequence of calls give the same faults, request ids, delays and
// record outcomes.
//
// # Admin API
//
// All bodies are JSON; each endpoint has a Go method on [Server] too.
//
//	GET    /_sim/                     {"endpoints":["registration_create",...]}
//	POST   /_sim/tokens               {"appId":"my-bot","companyKey":"acme","ttl":"1h"}      (MintToken)
//	       -> {"appId":"my-bot","companyKey":"acme","token":"eyJ...","expiresAtMillis":1780142400000}
//	POST   /_sim/tokens/expire        {"appId":"my-bot"} -> {"expired":1}                    (ExpireTokens)
//	PUT    /_sim/owner                {"companyKey":"acme","networkKey":"apple","externalId":"page",
//	                                   "authorId":"urn:mbid:1","owner":{"type":"AGENT"}}       (SetOwner)
//	       -> {"data":{control record}}; without "owner" the record is removed -> {"data":null}
//	GET    /_sim/faults               -> {"faults":{"respond":{...}}}                        (Faults)
//	PUT    /_sim/faults               {"endpoint":"respond","fault":{"latency":"50ms","jitter":"10ms",
//	                                   "errorRate":0.1,"errorCode":503,"rateLimitRate":0.05,"retryAfter":"2",
//	                                   "hangRate":0,"dropRate":0.01,"stallRate":0,"times":0,
//	                                   "appId":"","next":null}} -> {"faults":{...}} (SetFault)
//	DELETE /_sim/faults?endpoint=respond   (no endpoint: all) -> {"faults":{...}}             (ClearFaults)
//	GET    /_sim/calls?appId=&endpoint=&since=<seq>&limit=                                    (Calls)
//	       -> {"count":N,"calls":[{"seq":1,"time":"...","method":"POST","path":"/bots/v3/respond",
//	          "appId":"my-bot","endpoint":"respond","status":202,"requestId":"...","dropped":false,
//	          "fault":"","body":{...}}]}   (body only with Options.CallLogBodies)
//	GET    /_sim/calls/count?appId=&endpoint= -> {"count":N}                                  (CallCount)
//	GET    /_sim/records?appId=&origin=&state= -> {"data":[request records, payload as JSON]} (Records)
//	POST   /_sim/settle               -> {"settled":N}                                        (SettleAll)
//	PUT    /_sim/health               {"appId":"my-bot","health":[{"status":"DEGRADED",
//	                                   "failureCount":2,"successCount":23}]} -> {"data":[...]}  (SetHealth)
//	POST   /_sim/inbound              {"appId":"my-bot","networkKey":"apple","externalId":"page",
//	                                   "payload":{...},"state":"ERROR","details":{"code":"403","message":"Forbidden"}}
//	       -> {"data":{record}}; a KHOROS-origin record (webhook delivery)                    (InjectInbound)
//	POST   /_sim/reset                -> {}                                                   (Reset)
//
// Admin errors are 400 {"error":"..."}.
//
// The call log keeps the last Options.MaxCallLog calls (default 100,000, about
// 100 bytes each plus the path, and the body when kept); counts are exact for
// the life of the Server. Admin calls are not logged.
//
// # Running
//
// [ListenAndServe] (or [Server.ListenAndServe] with Options.Listen, default
// 127.0.0.1:8089) serves until its context ends.
package sim
