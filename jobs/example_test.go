package jobs_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/jobs"
	"github.com/botq/botq/migrations"
	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

// A bot enqueues a reply in the same transaction as its own writes: both
// commit, or neither does. README.md shows this function's body.
func ExampleEnqueue() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// ... the bot's own writes, in tx ...
		id, existed, err := jobs.Enqueue(ctx, tx, jobs.Action{
			AppID:          "my-bot",
			Kind:           jobs.KindRespond,
			IdempotencyKey: "order-1234-shipped",
			Payload: botapi.TextMessage(
				botapi.Coordinate{CompanyKey: "mycompany", NetworkKey: "facebook", ExternalID: "page-1", Scope: "PRIVATE"},
				botapi.Author{ID: "customer-42"},
				"Your order 1234 has shipped.",
			),
		})
		if err != nil {
			return err // a *jobs.ValidationError names the bad field
		}
		fmt.Printf("action %d, already enqueued: %v\n", id, existed)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// ExampleEnqueue runs against the default schema (botq) of the test
// database, with the app it names.
func TestExampleEnqueue(t *testing.T) {
	url := storetest.DatabaseURL(t)
	// This pool, and the one connection of the example's own pool.
	storetest.Conns(t, 5)
	ctx := context.Background()
	pool, err := store.NewPool(ctx, url, "botq", store.PoolOptions{MaxConns: 4})
	require.NoError(t, err)
	defer pool.Close()
	// The schema is shared with nothing else in the test database; drop
	// what an earlier run left.
	_, err = pool.Exec(ctx, "DROP SCHEMA IF EXISTS botq CASCADE")
	require.NoError(t, err)
	_, err = migrations.Up(ctx, pool, "botq", nil)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS botq CASCADE") })
	s, err := store.New("botq")
	require.NoError(t, err)
	_, err = s.AppUpsert(ctx, pool, store.AppUpsertParams{ID: "my-bot", CompanyKey: "mycompany"})
	require.NoError(t, err)

	t.Setenv("DATABASE_URL", url)
	ExampleEnqueue()
	ExampleEnqueue() // the same idempotency key: the same action

	a, err := s.ActionGetByKey(ctx, pool, "my-bot", "order-1234-shipped")
	require.NoError(t, err)
	require.Equal(t, store.ActionQueued, a.State)
	require.JSONEq(t, `{"type":"message","coordinate":{"companyKey":"mycompany","networkKey":"facebook","externalId":"page-1","scope":"PRIVATE"},"author":{"id":"customer-42"},"text":"Your order 1234 has shipped."}`, string(a.Payload))
}
