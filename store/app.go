package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// App is one Bot v3 appId and the settings botq keeps for it.
type App struct {
	ID               string
	Region           string // US, EMEA, APAC or CUSTOM
	BaseURL          string // set for CUSTOM
	CompanyKey       string
	TokenCiphertext  []byte
	TokenKeyID       string
	TokenExpiresAt   *time.Time
	TokenRefreshedAt *time.Time
	TokenVersion     int
	RateLimit        *float64 // calls per second, fleet-wide
	RateBurst        int
	ConcurrencyLimit *int
	PausedUntil      *time.Time
	PauseReason      string
	ThrottledUntil   *time.Time
	LaneOnFailure    string // continue or block
	HealthStatus     string
	HealthCheckedAt  *time.Time
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

const appColumns = `id, region, coalesce(base_url, ''), company_key, token_ciphertext, coalesce(token_key_id, ''),
	token_expires_at, token_refreshed_at, token_version, rate_limit, rate_burst, concurrency_limit,
	paused_until, coalesce(pause_reason, ''), throttled_until, lane_on_failure, coalesce(health_status, ''),
	health_checked_at, created_at, updated_at`

func scanApp(row pgx.Row) (*App, error) {
	var a App
	err := row.Scan(&a.ID, &a.Region, &a.BaseURL, &a.CompanyKey, &a.TokenCiphertext, &a.TokenKeyID,
		&a.TokenExpiresAt, &a.TokenRefreshedAt, &a.TokenVersion, &a.RateLimit, &a.RateBurst, &a.ConcurrencyLimit,
		&a.PausedUntil, &a.PauseReason, &a.ThrottledUntil, &a.LaneOnFailure, &a.HealthStatus,
		&a.HealthCheckedAt, &a.CreatedAt, &a.UpdatedAt)
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// AppUpsertParams are the settings of an app that configuration owns.
type AppUpsertParams struct {
	ID               string
	Region           string
	BaseURL          string
	CompanyKey       string
	RateLimit        *float64
	RateBurst        int
	ConcurrencyLimit *int
	LaneOnFailure    string
}

// AppUpsert creates the app or updates its configured settings, leaving its
// token, pause, throttle and health as they are.
func (s *Store) AppUpsert(ctx context.Context, db DBTX, p AppUpsertParams) (*App, error) {
	if p.Region == "" {
		p.Region = "US"
	}
	if p.RateBurst == 0 {
		p.RateBurst = 1
	}
	if p.LaneOnFailure == "" {
		p.LaneOnFailure = "continue"
	}
	a, err := scanApp(db.QueryRow(ctx, s.q(`
		INSERT INTO botq.app (id, region, base_url, company_key, rate_limit, rate_burst, concurrency_limit, lane_on_failure)
		VALUES ($1, $2, nullif($3, ''), $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET
			region = EXCLUDED.region, base_url = EXCLUDED.base_url, company_key = EXCLUDED.company_key,
			rate_limit = EXCLUDED.rate_limit, rate_burst = EXCLUDED.rate_burst,
			concurrency_limit = EXCLUDED.concurrency_limit, lane_on_failure = EXCLUDED.lane_on_failure,
			updated_at = now()
		RETURNING `+appColumns),
		p.ID, p.Region, p.BaseURL, p.CompanyKey, p.RateLimit, p.RateBurst, p.ConcurrencyLimit, p.LaneOnFailure))
	if err != nil {
		return nil, fmt.Errorf("upsert app %q: %w", p.ID, mapError(err))
	}
	return a, nil
}

// AppGet returns the app, or ErrNotFound.
func (s *Store) AppGet(ctx context.Context, db DBTX, id string) (*App, error) {
	a, err := scanApp(db.QueryRow(ctx, s.q(`SELECT `+appColumns+` FROM botq.app WHERE id = $1`), id))
	if err != nil {
		return nil, fmt.Errorf("get app %q: %w", id, mapError(err))
	}
	return a, nil
}

// AppList returns every app, by id.
func (s *Store) AppList(ctx context.Context, db DBTX) ([]*App, error) {
	rows, err := db.Query(ctx, s.q(`SELECT `+appColumns+` FROM botq.app ORDER BY id`))
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", mapError(err))
	}
	defer rows.Close()
	var out []*App
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, fmt.Errorf("list apps: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list apps: %w", mapError(err))
	}
	return out, nil
}
