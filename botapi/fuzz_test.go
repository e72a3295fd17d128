package botapi_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/botq/botq/botapi"
)

// The seed corpus lives in testdata/fuzz/<FuzzName>; plain go test runs it.

func FuzzDecodeError(f *testing.F) {
	f.Add(400, []byte(`{"error":{"messages":["Invalid networkKey farcebook"]}}`))
	f.Add(401, []byte(`{"error":{"message":"Unauthorized","requestId":"x"}}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := botapi.DecodeError(status, body)
		if e == nil {
			t.Fatal("nil error")
		}
		if len(e.Body) > botapi.MaxErrorBody {
			t.Fatalf("body of %d bytes kept", len(e.Body))
		}
		if len(body) > 0 && len(e.Body) == 0 {
			t.Fatal("body dropped")
		}
		_ = e.Error()
		if e.RequestID != "" && !utf8.ValidString(e.RequestID) && json.Valid(body) {
			t.Fatalf("invalid request id %q", e.RequestID)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	f.Add("120")
	f.Add("Sun, 01 Mar 2026 12:00:30 GMT")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := botapi.ParseRetryAfter(v, now)
		if !ok && d != 0 {
			t.Fatalf("%q: duration %v without ok", v, d)
		}
		if d < 0 {
			t.Fatalf("%q: duration %v", v, d)
		}
	})
}

func FuzzRequestRecord(f *testing.F) {
	f.Add([]byte(`{"data":{"id":"03a913a3","state":"PENDING","payload":"{\"a\":1}","details":{"code":"403","message":"Forbidden"}}}`))
	f.Add([]byte(`{"id":"x","payload":{"raw":true},"createdEpochMillis":"1551757370603"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r botapi.RequestRecord
		if err := json.Unmarshal(b, &r); err != nil {
			return
		}
		if r.Payload != nil && !json.Valid(r.Payload) {
			t.Fatalf("payload %q is not JSON", r.Payload)
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var again botapi.RequestRecord
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("decode re-encoded %s: %v", out, err)
		}
	})
}

// A token response from Khoros (Care v2 token endpoint, Bot v3 refresh) is
// outside input that carries a secret: decoding it never panics, and an
// error never repeats the token.
func FuzzIssuedToken(f *testing.F) {
	for _, seed := range []string{
		`{"token":"s3cr3t-token-value","expiresAtMillis":1767225600000}`,
		`{"token":"s3cr3t-token-value","expiresAtMillis: ":"1767225600000"}`,
		`{"token":"s3cr3t-token-value","expiresAtMillis":"soon"}`, `{"token":"s3cr3t-token-value","expiresAtMillis":-1}`,
		`{"token":1}`, `[]`, `null`, `{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var tok botapi.IssuedToken
		err := json.Unmarshal(body, &tok)
		if err != nil && strings.Contains(err.Error(), "s3cr3t-token-value") {
			t.Fatalf("the token reached the error: %v", err)
		}
	})
}
