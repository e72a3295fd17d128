package migrations_test

import (
	"context"
	"testing"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/migrations"
	"github.com/botq/botq/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

type pingArgs struct{ N int }

func (pingArgs) Kind() string { return "test_ping" }

type pingWorker struct {
	river.WorkerDefaults[pingArgs]
	done chan int
}

func (w *pingWorker) Work(_ context.Context, j *river.Job[pingArgs]) error {
	w.done <- j.Args.N
	return nil
}

func TestUpDownUp(t *testing.T) {
	ctx := context.Background()
	schema, pool := storetest.NewSchema(t, 8)

	countTables := func() int {
		var n int
		require.NoError(t, pool.QueryRow(ctx,
			`SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename <> 'goose_db_version'`, schema).Scan(&n))
		return n
	}
	full := countTables()
	require.GreaterOrEqual(t, full, 12, "botq and River tables after the first up")

	p, err := migrations.Open(ctx, pool, schema, nil)
	require.NoError(t, err)
	defer p.Close()

	res, err := p.Up(ctx)
	require.NoError(t, err)
	require.Empty(t, res, "a second up applies nothing")
	require.NoError(t, migrations.CheckCurrent(ctx, p))

	_, err = p.DownTo(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 0, countTables(), "down to zero removes every table, River's included")
	require.ErrorIs(t, migrations.CheckCurrent(ctx, p), migrations.ErrBehind)

	res, err = p.Up(ctx)
	require.NoError(t, err)
	require.Len(t, res, len(p.ListSources()), "every migration again")
	require.Equal(t, full, countTables())

	// River works in the schema: a client inserts a job and a worker runs it.
	workers := river.NewWorkers()
	w := &pingWorker{done: make(chan int, 1)}
	river.AddWorker(workers, w)
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Schema:            schema,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}},
		Workers:           workers,
		FetchCooldown:     10 * time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		TestOnly:          true,
	})
	require.NoError(t, err)
	require.NoError(t, client.Start(ctx))
	defer func() { require.NoError(t, client.Stop(context.WithoutCancel(ctx))) }()

	_, err = client.Insert(ctx, pingArgs{N: 42}, nil)
	require.NoError(t, err)
	select {
	case n := <-w.done:
		require.Equal(t, 42, n)
	case <-time.After(10 * time.Second):
		t.Fatal("River did not work the job in the migrated schema")
	}
}

func TestValidateSchema(t *testing.T) {
	t.Parallel()
	tests := []struct {
		give    string
		wantErr bool
	}{
		{give: "botq"},
		{give: "botq_test_1"},
		{give: "_x"},
		{give: "Botq", wantErr: true},
		{give: "1botq", wantErr: true},
		{give: "bo-tq", wantErr: true},
		{give: "botq; drop table x", wantErr: true},
		{give: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			err := migrations.ValidateSchema(tt.give)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
		})
	}
}

// The per-row trigger functions must keep cached plans whatever the calling
// function or session sets: a force_custom_plan inherited from a caller, or
// set on a trigger function, plans every statement again for every row, a
// large part of the cost of an enqueued or finished action.
func TestRowTriggersKeepCachedPlans(t *testing.T) {
	ctx := context.Background()
	schema, pool := storetest.NewSchema(t, 2)

	rows, err := pool.Query(ctx, `
		SELECT DISTINCT p.proname, coalesce(array_to_string(p.proconfig, ','), '')
		FROM pg_trigger t
		JOIN pg_proc p ON p.oid = t.tgfoid
		JOIN pg_class c ON c.oid = t.tgrelid
		WHERE c.relnamespace = $1::regnamespace AND NOT t.tgisinternal AND t.tgtype & 1 = 1
		  AND c.relname = 'action'`, schema)
	require.NoError(t, err)
	config := map[string]string{}
	for rows.Next() {
		var name, conf string
		require.NoError(t, rows.Scan(&name, &conf))
		config[name] = conf
	}
	require.NoError(t, rows.Err())

	for _, fn := range []string{"action_before_insert", "action_before_update", "action_update_refused", "action_caller_columns"} {
		require.Contains(t, config, fn, "a row trigger on action")
		require.Contains(t, config[fn], "plan_cache_mode=auto", fn)
		delete(config, fn)
	}
	require.Empty(t, config, "a new row trigger on action: pin its plan_cache_mode to auto too")

	// The lanes' statement trigger plans its statements once per session
	// (generic plans), and they must stay index lookups even when made while
	// lane and action were empty.
	var conf string
	require.NoError(t, pool.QueryRow(ctx, `
		SELECT coalesce(array_to_string(p.proconfig, ','), '')
		FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
		WHERE t.tgrelid = ($1 || '.action')::regclass AND t.tgname = 'action_lanes_advance'`, schema).Scan(&conf))
	for _, want := range []string{"plan_cache_mode=force_generic_plan", "enable_seqscan=off", "enable_hashjoin=off", "enable_mergejoin=off"} {
		require.Contains(t, conf, want)
	}
}

// Status only looks: on a schema never migrated it lists every migration
// as pending and creates nothing. Down undoes the last migration, or every
// one above a version.
func TestStatusAndDown(t *testing.T) {
	ctx := context.Background()
	schema, pool := emptySchema(t, "status")
	st, migrated, err := migrations.Status(ctx, pool, schema)
	require.NoError(t, err)
	require.False(t, migrated)
	require.NotEmpty(t, st)
	for _, s := range st {
		require.Equal(t, goose.StatePending, s.State)
	}
	require.Equal(t, "River's tables", migrations.SourceName(st[0].Source))
	require.Equal(t, "00002_botq_tables.sql", migrations.SourceName(st[1].Source))
	migrated, err = migrations.Migrated(ctx, pool, schema)
	require.NoError(t, err)
	require.False(t, migrated, "status created goose's version table")

	ensureRoles(t, pool)
	_, err = migrations.Up(ctx, pool, schema, nil)
	require.NoError(t, err)
	st, migrated, err = migrations.Status(ctx, pool, schema)
	require.NoError(t, err)
	require.True(t, migrated)
	last := st[len(st)-1].Source.Version
	for _, s := range st {
		require.Equal(t, goose.StateApplied, s.State)
		require.False(t, s.AppliedAt.IsZero())
	}

	res, err := migrations.Down(ctx, pool, schema, -1)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, last, res[0].Source.Version)
	res, err = migrations.Down(ctx, pool, schema, 0)
	require.NoError(t, err)
	require.Len(t, res, len(st)-1)
	st, _, err = migrations.Status(ctx, pool, schema)
	require.NoError(t, err)
	for _, s := range st {
		require.Equal(t, goose.StatePending, s.State)
	}
}
