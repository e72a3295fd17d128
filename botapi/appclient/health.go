package appclient

import (
	"context"
	"time"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/store"
)

// HealthReport is an app's webhook health: live from Khoros (GET
// /bots/v3/health) and as the reconciler last recorded it.
type HealthReport struct {
	AppID     string          `json:"app_id"`
	Live      []botapi.Health `json:"live,omitempty"`
	LiveError string          `json:"live_error,omitempty"`
	Stored    string          `json:"stored,omitempty"`
	CheckedAt *time.Time      `json:"checked_at,omitempty"`
}

// Health reports the recorded health of apps and, with live, asks Khoros
// for each app's health now. An app whose health could not be read says
// why (LiveError) and counts in failed.
func (r *Registry) Health(ctx context.Context, apps []*store.App, live bool) (reports []HealthReport, failed int) {
	for _, a := range apps {
		rep := HealthReport{AppID: a.ID, Stored: a.HealthStatus, CheckedAt: a.HealthCheckedAt}
		if live {
			c, err := r.Client(a)
			if err == nil {
				rep.Live, _, err = c.GetHealth(ctx, a.ID)
			}
			if err != nil {
				rep.LiveError = err.Error()
				failed++
			}
		}
		reports = append(reports, rep)
	}
	return reports, failed
}
