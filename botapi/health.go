package botapi

import (
	"context"
	"net/http"
)

// Health is one entry of a bot's webhook health over the last 2 minutes.
type Health struct {
	Status       string `json:"status"`
	FailureCount int    `json:"failureCount"`
	SuccessCount int    `json:"successCount"`
}

// GetHealth returns the bot's health entries (Khoros returns an array).
// Khoros: GET /bots/v3/health/appId/{appId}
func (c *Client) GetHealth(ctx context.Context, appID string) ([]Health, *Response, error) {
	var out data[[]Health]
	res, err := c.Do(ctx, http.MethodGet, "/bots/v3/health/appId/"+seg(appID), nil, &out)
	return out.Data, res, err
}
