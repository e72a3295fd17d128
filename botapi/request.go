package botapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// MaxListWindow is the longest "from" window Khoros accepts (31 days).
const MaxListWindow = 31 * 24 * time.Hour

// RequestRecord is Khoros' record of one request (reference §5.1): made by
// the bot (origin BOT) or delivered to it (origin KHOROS).
type RequestRecord struct {
	ID          string          `json:"id"`
	CompanyKey  string          `json:"companyKey,omitempty"`
	ExternalID  string          `json:"externalId,omitempty"`
	NetworkKey  string          `json:"networkKey,omitempty"`
	AppID       string          `json:"appId,omitempty"`
	CallbackURL string          `json:"callbackUrl,omitempty"`
	Origin      string          `json:"origin,omitempty"`
	Details     *RequestDetails `json:"details,omitempty"`
	State       string          `json:"state"`
	// Payload is the JSON value of the request's payload. Khoros sends it as
	// a JSON string holding JSON, or as a raw object; both decode to the
	// inner JSON. A string that does not hold JSON is kept as that JSON string.
	Payload                json.RawMessage `json:"payload,omitempty"`
	CreatedEpochMillis     EpochMillis     `json:"createdEpochMillis,omitempty"`
	CompletedEpochMillis   EpochMillis     `json:"completedEpochMillis,omitempty"`
	LastUpdatedEpochMillis EpochMillis     `json:"lastUpdatedEpochMillis,omitempty"`
}

// RequestDetails explains an ERROR record, e.g. {"code":"403","message":"Forbidden"}.
type RequestDetails struct {
	Code    FlexString `json:"code,omitempty"`
	Message string     `json:"message,omitempty"`
}

// UnmarshalJSON decodes a record, normalising payload (see RequestRecord.Payload).
func (r *RequestRecord) UnmarshalJSON(b []byte) error {
	type plain RequestRecord
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	payload, err := normalizePayload(p.Payload)
	if err != nil {
		return err
	}
	p.Payload = payload
	*r = RequestRecord(p)
	return nil
}

// UnmarshalJSON accepts an object (unknown keys ignored), a bare string (kept
// as the message) and null, because "details" is documented only as a map.
func (d *RequestDetails) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		return nil
	case b[0] == '"':
		return json.Unmarshal(b, &d.Message)
	case b[0] != '{':
		d.Message = string(b)
		return nil
	}
	var w struct {
		Code    json.RawMessage `json:"code"`
		Message json.RawMessage `json:"message"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	d.Code = FlexString(rawString(w.Code))
	d.Message = rawString(w.Message)
	return nil
}

// normalizePayload turns a payload field into the JSON value it denotes.
func normalizePayload(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '"' {
		return bytes.Clone(raw), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, errors.New("decode request payload: malformed string")
	}
	inner := bytes.TrimSpace([]byte(s))
	if len(inner) > 0 && json.Valid(inner) {
		return inner, nil
	}
	return bytes.Clone(raw), nil
}

// ListRequestsOptions filters GET /bots/v3/request/appId/{appId}.
type ListRequestsOptions struct {
	// From is how far back to look, sent as whole minutes, hours or days
	// (rounded up to a minute). Zero uses Khoros' default of one day; the
	// maximum is MaxListWindow.
	From time.Duration
	// States keeps only records in these states (PENDING, SUCCESS, ERROR).
	States []string
	// Origin keeps only BOT or KHOROS records.
	Origin string
}

// FormatFrom renders d in the "from" syntax (^\d+[mhd]$), using the largest
// exact unit and rounding sub-minute remainders up.
func FormatFrom(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	switch {
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	m := (d + time.Minute - 1) / time.Minute
	return strconv.FormatInt(int64(m), 10) + "m"
}

// GetRequest returns one request record (404 [ErrNotFound] when unknown).
// Khoros: GET /bots/v3/request/{requestId}
func (c *Client) GetRequest(ctx context.Context, requestID string) (*RequestRecord, *Response, error) {
	var out data[*RequestRecord]
	res, err := c.Do(ctx, http.MethodGet, "/bots/v3/request/"+seg(requestID), nil, &out)
	if err != nil {
		return nil, res, err
	}
	return out.Data, res, nil
}

// ListRequests returns the app's request records within the window, as
// Khoros orders them (newest first in the simulator). opts may be nil. A
// listing returns every record of its window: see [Client.ListRequestsEach]
// to read a large one without holding it.
// Khoros: GET /bots/v3/request/appId/{appId}
func (c *Client) ListRequests(ctx context.Context, appID string, opts *ListRequestsOptions) ([]RequestRecord, *Response, error) {
	var out []RequestRecord
	res, err := c.ListRequestsEach(ctx, appID, opts, func(r *RequestRecord) error {
		out = append(out, *r)
		return nil
	})
	return out, res, err
}

// ListRequestsEach is ListRequests that hands fn each record as it is
// decoded from the answer, in Khoros' order, and keeps none: memory does not
// grow with the listing. fn must not keep r (it may copy it); an error from
// fn stops the listing and is returned. A listing cut off midway returns a
// *TransportError after fn has seen the records before the cut.
// Khoros: GET /bots/v3/request/appId/{appId}
func (c *Client) ListRequestsEach(ctx context.Context, appID string, opts *ListRequestsOptions, fn func(r *RequestRecord) error) (*Response, error) {
	return c.stream(ctx, listPath(appID, opts), func(body io.Reader) error { return eachData(body, fn) })
}

// eachData decodes {"data": [record, ...]} one record at a time; other keys
// are skipped, and an empty body or a null data holds no record.
func eachData(body io.Reader, fn func(*RequestRecord) error) error {
	dec := json.NewDecoder(body)
	tok, err := dec.Token()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("want a JSON object")
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return err
		}
		if key != "data" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return err
			}
			continue
		}
		if err := eachElement(dec, fn); err != nil {
			return err
		}
	}
	_, err = dec.Token() // the closing brace
	return err
}

func eachElement(dec *json.Decoder, fn func(*RequestRecord) error) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil // "data": null
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return errors.New(`want "data" to be an array`)
	}
	for dec.More() {
		var r RequestRecord
		if err := dec.Decode(&r); err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	_, err = dec.Token() // the closing bracket
	return err
}

func listPath(appID string, opts *ListRequestsOptions) string {
	q := url.Values{}
	if opts != nil {
		if f := FormatFrom(opts.From); f != "" {
			q.Set("from", f)
		}
		for _, s := range opts.States {
			q.Add("state", s)
		}
		if opts.Origin != "" {
			q.Set("origin", opts.Origin)
		}
	}
	path := "/bots/v3/request/appId/" + seg(appID)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return path
}
