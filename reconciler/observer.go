package reconciler

import "time"

// Observer receives what the reconciler measures (metrics). Implementations
// must be fast and safe for concurrent use.
type Observer interface {
	// Call reports one Bot v3 call the reconciler made: op is "list",
	// "get", "health" or "token_refresh".
	Call(appID, op string, status int, d time.Duration)
	// Fetched reports the request records one call returned: op is "list"
	// (a listing of BOT-origin records: every record of its window),
	// "list_khoros" (KHOROS-origin records) or "get".
	Fetched(appID, op string, records int)
	// Settled reports request records that reached a final state (SUCCESS,
	// ERROR or EXPIRED), and the lag between Khoros settling them and botq
	// recording it (zero when unknown).
	Settled(appID string, state string, lag time.Duration)
	// TokenExpiry reports an app's current token expiry.
	TokenExpiry(appID string, expiresAt time.Time)
	// Health reports an app's health as last polled.
	Health(appID, status string)
	// TaskFailed reports a maintenance run (a Task* constant, or an
	// ExtraTask's name) that returned an error.
	TaskFailed(task string)
}
