package store

import (
	"context"
	"errors"
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

// scanFields are the scan destinations of appColumns, in order.
func (a *App) scanFields() []any {
	return []any{&a.ID, &a.Region, &a.BaseURL, &a.CompanyKey, &a.TokenCiphertext, &a.TokenKeyID,
		&a.TokenExpiresAt, &a.TokenRefreshedAt, &a.TokenVersion, &a.RateLimit, &a.RateBurst, &a.ConcurrencyLimit,
		&a.PausedUntil, &a.PauseReason, &a.ThrottledUntil, &a.LaneOnFailure, &a.HealthStatus,
		&a.HealthCheckedAt, &a.CreatedAt, &a.UpdatedAt}
}

func scanApp(row pgx.Row) (*App, error) {
	var a App
	if err := row.Scan(a.scanFields()...); err != nil {
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

// AppSetToken stores a sealed token and its expiry, bumping token_version so
// every process notices the new token on its next load.
func (s *Store) AppSetToken(ctx context.Context, db DBTX, appID string, sealed []byte, keyID string, expiresAt *time.Time) (*App, error) {
	a, err := scanApp(db.QueryRow(ctx, s.q(`
		UPDATE botq.app
		SET token_ciphertext = $2, token_key_id = nullif($3, ''), token_expires_at = $4,
		    token_refreshed_at = now(), token_version = token_version + 1, updated_at = now()
		WHERE id = $1
		RETURNING `+appColumns), appID, sealed, keyID, expiresAt))
	if err != nil {
		return nil, fmt.Errorf("set token of app %q: %w", appID, mapError(err))
	}
	return a, nil
}

// AppClearToken forgets the stored token (after a revoke).
func (s *Store) AppClearToken(ctx context.Context, db DBTX, appID string) error {
	_, err := db.Exec(ctx, s.q(`
		UPDATE botq.app
		SET token_ciphertext = NULL, token_key_id = NULL, token_expires_at = NULL,
		    token_version = token_version + 1, updated_at = now()
		WHERE id = $1`), appID)
	if err != nil {
		return fmt.Errorf("clear token of app %q: %w", appID, mapError(err))
	}
	return nil
}

// AppPause stops calls for the app until until (use Forever for "until an
// operator resumes it").
func (s *Store) AppPause(ctx context.Context, db DBTX, appID string, until time.Time, reason string) (*App, error) {
	a, err := scanApp(db.QueryRow(ctx, s.q(`
		UPDATE botq.app SET paused_until = $2, pause_reason = nullif($3, ''), updated_at = now()
		WHERE id = $1
		RETURNING `+appColumns), appID, until, reason))
	if err != nil {
		return nil, fmt.Errorf("pause app %q: %w", appID, mapError(err))
	}
	return a, nil
}

// AppResume clears the app's pause and throttle and makes its waiting jobs
// due now, so work resumes at once rather than at each job's next check.
func (s *Store) AppResume(ctx context.Context, db DBTX, appID string) (*App, error) {
	a, err := scanApp(db.QueryRow(ctx, s.q(`
		UPDATE botq.app SET paused_until = NULL, pause_reason = NULL, throttled_until = NULL, updated_at = now()
		WHERE id = $1
		RETURNING `+appColumns), appID))
	if err != nil {
		return nil, fmt.Errorf("resume app %q: %w", appID, mapError(err))
	}
	if err := s.AppWake(ctx, db, appID); err != nil {
		return nil, err
	}
	return a, nil
}

// Forever is the pause end of an app paused until an operator resumes it.
var Forever = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// AppThrottle records that Khoros asked for no calls to the app before until;
// an earlier deadline never shortens a later one.
func (s *Store) AppThrottle(ctx context.Context, db DBTX, appID string, until time.Time) error {
	_, err := db.Exec(ctx, s.q(`
		UPDATE botq.app SET throttled_until = greatest(coalesce(throttled_until, $2), $2), updated_at = now()
		WHERE id = $1`), appID, until)
	if err != nil {
		return fmt.Errorf("throttle app %q: %w", appID, mapError(err))
	}
	return nil
}

// AppRateReserve takes the app's next call slot under its fleet-wide rate
// limit (GCRA on the app row). When the slot is at most maxWait away it is
// reserved and wait says how long to sleep before calling; otherwise nothing
// is reserved, ok is false, and wait says when to try again.
func (s *Store) AppRateReserve(ctx context.Context, db DBTX, appID string, maxWait time.Duration) (wait time.Duration, ok bool, err error) {
	var reservedSecs *float64
	var retrySecs float64
	err = db.QueryRow(ctx, s.q(`
		WITH cur AS (
			SELECT id,
			       clock_timestamp() AS now,
			       greatest(coalesce(rate_tat, clock_timestamp()), clock_timestamp()) AS tat,
			       make_interval(secs => 1.0 / rate_limit) AS t,
			       make_interval(secs => (rate_burst - 1) / rate_limit) AS tau
			FROM botq.app WHERE id = $1 AND rate_limit IS NOT NULL
			FOR UPDATE
		), upd AS (
			UPDATE botq.app a SET rate_tat = cur.tat + cur.t
			FROM cur
			WHERE a.id = cur.id AND cur.tat - cur.now <= cur.tau + make_interval(secs => $2)
			RETURNING extract(epoch FROM greatest(cur.tat - cur.tau, cur.now) - cur.now)::float8 AS wait
		)
		SELECT (SELECT wait FROM upd),
		       coalesce((SELECT extract(epoch FROM cur.tat - cur.tau - cur.now)::float8 - $2 FROM cur), 0)`),
		appID, maxWait.Seconds()).Scan(&reservedSecs, &retrySecs)
	if err != nil {
		return 0, false, fmt.Errorf("reserve rate slot of app %q: %w", appID, mapError(err))
	}
	if reservedSecs != nil {
		return time.Duration(*reservedSecs * float64(time.Second)), true, nil
	}
	return time.Duration(retrySecs * float64(time.Second)), false, nil
}

// AppSlotAcquire leases one of the app's concurrency slots to holder until
// lease ends. ok is false when every slot is taken.
func (s *Store) AppSlotAcquire(ctx context.Context, db DBTX, appID string, holder int64, lease time.Duration) (slot int, ok bool, err error) {
	err = db.QueryRow(ctx, s.q(`
		UPDATE botq.app_slot SET holder = $2, lease_until = clock_timestamp() + make_interval(secs => $3)
		WHERE (app_id, slot) = (
			SELECT app_id, slot FROM botq.app_slot
			WHERE app_id = $1 AND (holder IS NULL OR lease_until < clock_timestamp())
			ORDER BY slot
			LIMIT 1
			FOR UPDATE SKIP LOCKED)
		RETURNING slot`), appID, holder, lease.Seconds()).Scan(&slot)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("acquire concurrency slot of app %q: %w", appID, mapError(err))
	}
	return slot, true, nil
}

const appSlotReleaseSQL = `
WITH r AS (
	UPDATE botq.app_slot SET holder = NULL, lease_until = NULL
	WHERE app_id = $1 AND slot = $2 AND holder = $3
	RETURNING app_id)
SELECT CASE WHEN $4 > 0 AND EXISTS (SELECT 1 FROM r) THEN botq.app_slot_wake($1, $4) ELSE 0 END`

// AppSlotRelease returns a leased slot and makes up to wake of the app's
// oldest jobs waiting for a slot (AppSlotWait) available again.
func (s *Store) AppSlotRelease(ctx context.Context, db DBTX, appID string, slot int, holder int64, wake int) error {
	if _, err := db.Exec(ctx, s.q(appSlotReleaseSQL), appID, slot, holder, wake); err != nil {
		return fmt.Errorf("release concurrency slot of app %q: %w", appID, mapError(err))
	}
	return nil
}

// AppSlotRenew extends the lease of a slot still held by holder; ok is
// false when it is not (the lease ran out and another took it, or the
// app's limit shrank).
func (s *Store) AppSlotRenew(ctx context.Context, db DBTX, appID string, slot int, holder int64, lease time.Duration) (ok bool, err error) {
	tag, err := db.Exec(ctx, s.q(`
		UPDATE botq.app_slot SET lease_until = clock_timestamp() + make_interval(secs => $4)
		WHERE app_id = $1 AND slot = $2 AND holder = $3`), appID, slot, holder, lease.Seconds())
	if err != nil {
		return false, fmt.Errorf("renew concurrency slot of app %q: %w", appID, mapError(err))
	}
	return tag.RowsAffected() == 1, nil
}

// AppSlotWake makes up to n of the app's oldest jobs waiting for a slot
// (AppSlotWait) available again.
func (s *Store) AppSlotWake(ctx context.Context, db DBTX, appID string, n int) error {
	if _, err := db.Exec(ctx, s.q(`SELECT botq.app_slot_wake($1, $2)`), appID, n); err != nil {
		return fmt.Errorf("wake jobs waiting for a concurrency slot of app %q: %w", appID, mapError(err))
	}
	return nil
}

// AppSlotWakeFree makes as many waiting jobs available as their app has free
// slots, for one app or (appID "") every app, and returns how many it woke.
func (s *Store) AppSlotWakeFree(ctx context.Context, db DBTX, appID string) (int, error) {
	var arg *string
	if appID != "" {
		arg = &appID
	}
	var n int
	if err := db.QueryRow(ctx, s.q(`SELECT botq.app_slot_wake_free($1)`), arg).Scan(&n); err != nil {
		return 0, fmt.Errorf("wake jobs waiting for concurrency slots: %w", mapError(err))
	}
	return n, nil
}

// KindConfigParams overrides a kind's River settings; zero values keep the
// current ones.
type KindConfigParams struct {
	Kind        string
	MaxAttempts int
	Queue       string
	Priority    int
}

// KindConfigUpdate applies configured River settings of a kind, which the
// enqueue trigger uses for every new job.
func (s *Store) KindConfigUpdate(ctx context.Context, db DBTX, p KindConfigParams) error {
	tag, err := db.Exec(ctx, s.q(`
		UPDATE botq.kind_config
		SET max_attempts = coalesce(nullif($2, 0), max_attempts),
		    queue = coalesce(nullif($3, ''), queue),
		    priority = coalesce(nullif($4, 0), priority)
		WHERE kind = $1`), p.Kind, p.MaxAttempts, p.Queue, p.Priority)
	if err != nil {
		return fmt.Errorf("configure kind %q: %w", p.Kind, mapError(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("configure kind %q: %w", p.Kind, ErrNotFound)
	}
	return nil
}

// KindConfig is one row of botq.kind_config.
type KindConfig struct {
	Kind         string
	MaxAttempts  int
	Queue        string
	Priority     int
	Idempotent   bool
	Conversation bool
}

// KindConfigList returns every kind's settings.
func (s *Store) KindConfigList(ctx context.Context, db DBTX) ([]KindConfig, error) {
	rows, err := db.Query(ctx, s.q(`SELECT kind, max_attempts, queue, priority, idempotent, conversation FROM botq.kind_config ORDER BY kind`))
	if err != nil {
		return nil, fmt.Errorf("list kinds: %w", mapError(err))
	}
	defer rows.Close()
	var out []KindConfig
	for rows.Next() {
		var k KindConfig
		if err := rows.Scan(&k.Kind, &k.MaxAttempts, &k.Queue, &k.Priority, &k.Idempotent, &k.Conversation); err != nil {
			return nil, fmt.Errorf("list kinds: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}
