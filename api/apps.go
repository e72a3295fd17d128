package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/botq/botq/store"
)

// AppList answers GET /v1/apps.
type AppList struct {
	Apps []App `json:"apps"`
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request, _ Principal) error {
	if _, err := newQuery(r); err != nil {
		return err
	}
	apps, err := LoadApps(r.Context(), s.cfg.Store, s.cfg.DB, "", s.cfg.ExternalToken, s.cfg.Now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, AppList{Apps: apps})
	return nil
}

// LoadApps reads the apps (or the one of appID; "" for all) with their
// queues, as GET /v1/apps, the console and botq app list show them.
// external reports whether an app's token comes from outside the database.
func LoadApps(ctx context.Context, s *store.Store, db store.DBTX, appID string, external func(string) bool, now time.Time) ([]App, error) {
	sts, err := s.AppStatusList(ctx, db, appID)
	if err != nil {
		return nil, err
	}
	apps := make([]App, len(sts))
	for i, st := range sts {
		apps[i] = NewApp(st, external(st.ID), now)
	}
	return apps, nil
}

// AppDetail answers the app endpoints.
type AppDetail struct {
	App App `json:"app"`
}

func (s *Server) writeApp(w http.ResponseWriter, r *http.Request, id string) error {
	apps, err := LoadApps(r.Context(), s.cfg.Store, s.cfg.DB, id, s.cfg.ExternalToken, s.cfg.Now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, AppDetail{App: apps[0]})
	return nil
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request, _ Principal) error {
	return s.writeApp(w, r, r.PathValue("id"))
}

// PauseRequest is the body of POST /v1/apps/{id}/pause. Without Until or
// For the app stays paused until resumed.
type PauseRequest struct {
	Reason string `json:"reason"`
	// Until is an RFC 3339 time; For a Go duration ("30m").
	Until string `json:"until,omitempty"`
	For   string `json:"for,omitempty"`
}

func (s *Server) pauseApp(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req PauseRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if strings.TrimSpace(req.Reason) == "" {
		return badBody("reason", "is required: say why the app is paused")
	}
	until := store.Forever
	switch {
	case req.Until != "" && req.For != "":
		return badBody("for", "give until or for, not both")
	case req.Until != "":
		t, err := ParseTime(req.Until)
		if err != nil {
			return badBody("until", "%v", err)
		}
		if !t.After(s.cfg.Now()) {
			return badBody("until", "is in the past")
		}
		until = t
	case req.For != "":
		d, err := ParseDuration(req.For)
		if err != nil || d <= 0 {
			return badBody("for", "must be a positive duration like 30m, 2h or 1d, not %q", req.For)
		}
		until = s.cfg.Now().Add(d)
	}
	id := r.PathValue("id")
	if _, err := s.cfg.Store.AppPauseAudited(r.Context(), s.cfg.DB, id, until, p.Actor(), req.Reason); err != nil {
		return err
	}
	return s.writeApp(w, r, id)
}

// ResumeRequest is the optional body of POST /v1/apps/{id}/resume.
type ResumeRequest struct {
	Reason string `json:"reason,omitempty"`
}

func (s *Server) resumeApp(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req ResumeRequest
	if err := decodeBody(w, r, &req, true); err != nil {
		return err
	}
	id := r.PathValue("id")
	if _, err := s.cfg.Store.AppResumeAudited(r.Context(), s.cfg.DB, id, p.Actor(), req.Reason); err != nil {
		return err
	}
	return s.writeApp(w, r, id)
}

// EventKinds are the kinds of botq.event (its CHECK constraint).
var EventKinds = []string{
	"replay", "cancel", "pause", "resume", "throttle",
	"token_set", "token_refresh", "token_revoke", "token_unauthorized",
	"registration", "mode_change", "health_change",
	"lane_blocked", "lane_unblocked", "ambiguous_resolved", "ambiguous_released",
	"app_upsert", "retention", "riverui", "grant", "grant_revoke",
}

// EventList answers GET /v1/events.
type EventList struct {
	Events     []Event `json:"events"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, _ Principal) error {
	q, err := newQuery(r, "app", "action_id", "kind", "actor", "from", "to", "limit", "cursor")
	if err != nil {
		return err
	}
	f := store.EventFilter{AppID: q.str("app"), Kind: q.str("kind"), Actor: q.str("actor")}
	if f.Kind != "" && !slices.Contains(EventKinds, f.Kind) {
		return badFilter("kind", "%q is not an event kind (one of %s)", f.Kind, strings.Join(EventKinds, ", "))
	}
	if f.ActionID, err = q.id("action_id"); err != nil {
		return err
	}
	if f.From, f.To, err = q.timeRange(); err != nil {
		return err
	}
	limit, err := q.limit()
	if err != nil {
		return err
	}
	c, err := q.cursor("events")
	if err != nil {
		return err
	}
	p := store.EventQueryParams{Filter: f, Limit: limit}
	if c != nil {
		p.AfterID = c.ID
	}
	evs, more, err := s.cfg.Store.EventQuery(r.Context(), s.cfg.DB, p)
	if err != nil {
		return err
	}
	out := EventList{Events: NewEvents(evs)}
	if more {
		out.NextCursor = encodeCursor(cursor{Listing: "events", ID: evs[len(evs)-1].ID})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
