package botapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// Scopes of a coordinate.
const (
	ScopePrivate = "PRIVATE"
	ScopePublic  = "PUBLIC"
)

// Owner types of a conversation.
const (
	OwnerBot   = "BOT"
	OwnerAgent = "AGENT"
)

// Registration modes (reference §7.1).
const (
	ModeLive        = "LIVE"
	ModeMaintenance = "MAINTENANCE"
	ModeMonitoring  = "MONITORING"
)

// Request record states and origins (reference §5.3).
const (
	StatePending = "PENDING"
	StateSuccess = "SUCCESS"
	StateError   = "ERROR"

	OriginBot    = "BOT"
	OriginKhoros = "KHOROS"
)

// Health statuses (reference §7.2).
const (
	HealthHealthy  = "HEALTHY"
	HealthDegraded = "DEGRADED"
	HealthDown     = "DOWN"
)

// Coordinate addresses a message or conversation on a network. Echo the
// coordinate received in a webhook event unchanged (reference §3.12).
type Coordinate struct {
	CompanyKey         string `json:"companyKey,omitempty"`
	NetworkKey         string `json:"networkKey,omitempty"`
	NetworkInstance    string `json:"networkInstance,omitempty"`
	ExternalID         string `json:"externalId,omitempty"`
	BotID              string `json:"botId,omitempty"`
	NormalizedAuthorID string `json:"normalizedAuthorId,omitempty"`
	MessageID          string `json:"messageId,omitempty"`
	Scope              string `json:"scope,omitempty"`
	ParentID           string `json:"parentId,omitempty"`
	TopLevelID         string `json:"topLevelId,omitempty"`
}

// Author is the end user of a conversation, identified by the network's id.
type Author struct {
	ID         string            `json:"id"`
	FullName   string            `json:"fullName,omitempty"`
	Properties map[string]string `json:"properties,omitempty"`
}

// Owner is who controls a conversation: {type: BOT, appId} or {type: AGENT}.
type Owner struct {
	Type  string `json:"type"`
	AppID string `json:"appId,omitempty"`
}

// EpochMillis is a time in epoch milliseconds. It decodes from a JSON number
// or a numeric string (Khoros examples show both) and encodes as a number.
type EpochMillis int64

// Time converts to time.Time (zero for 0).
func (m EpochMillis) Time() time.Time {
	if m == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(m))
}

// UnmarshalJSON accepts 123, "123", "" and null.
func (m *EpochMillis) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			*m = 0
			return nil
		}
		b = []byte(s)
	}
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		*m = EpochMillis(n)
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return errors.New("epoch millis: not a number")
	}
	*m = EpochMillis(f)
	return nil
}

// FlexString is a string that also decodes from a JSON number, for fields
// such as conversationDisplayId that Khoros shows both ways. It encodes as a string.
type FlexString string

// UnmarshalJSON accepts "x", 123 and null.
func (s *FlexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	if b[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = FlexString(v)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("flex string: not a string or number")
	}
	*s = FlexString(n.String())
	return nil
}
