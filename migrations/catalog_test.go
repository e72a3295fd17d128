package migrations_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/botq/botq/migrations"
	"github.com/botq/botq/store"
	"github.com/botq/botq/store/storetest"
)

// preBaselineDir holds the migrations 00002-00021 that the baseline
// replaced, as they were, for the comparison below only (they are not
// embedded in the binary).
const preBaselineDir = "testdata/prebaseline"

// baselineLastVersion is the last version of the baseline; migrations
// after it change the schema the comparison below is about.
const baselineLastVersion = 5

// baselineDifferences lists every way the baseline's schema differs from the
// one the migrations before it built, each with its reason. The test fails
// on a difference missing here, and on an entry here that no longer differs.
var baselineDifferences = map[string]string{
	"function action_lane_advance()": "the per-row lane trigger function, replaced by the statement " +
		"trigger action_lanes_advance; the old chain kept it, unused, only for its Down migration",
}

// emptySchema returns a new schema, migrated by nothing, and a pool whose
// connections use it. The schema is dropped when the test ends; its name
// follows storetest's, so a killed run's schema is dropped by a later one.
func emptySchema(t *testing.T, what string) (string, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	url := storetest.DatabaseURL(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	schema := fmt.Sprintf("t_migrations_%s_%d_%s", what, time.Now().Unix(), hex.EncodeToString(b[:]))
	pool, err := store.NewPool(ctx, url, schema, store.PoolOptions{MaxConns: 2, AppName: "botq-test"})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = pool.Exec(context.WithoutCancel(ctx), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		pool.Close()
	})
	_, err = pool.Exec(ctx, "CREATE SCHEMA "+schema)
	require.NoError(t, err)
	return schema, pool
}

// preBaselineProvider returns a goose provider that migrates schema with
// River's migration and the migrations that preceded the baseline.
func preBaselineProvider(t *testing.T, pool *pgxpool.Pool, schema string) *goose.Provider {
	t.Helper()
	p, err := migrations.NewProviderFS(stdlib.OpenDBFromPool(pool), schema, nil, os.DirFS(preBaselineDir))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// ensureRoles creates botq's roles if they are missing, so that the grants
// grant_roles makes are part of what is compared.
func ensureRoles(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, missing, err := store.RolesEnsure(context.Background(), pool)
	require.NoError(t, err)
	require.Empty(t, missing, "the test role may not create botq's roles")
}

// The baseline builds the schema the migrations before it built: every
// table, column, constraint, index, function, trigger, view, grant,
// statistics target, sequence and type, and the rows the migrations insert.
func TestBaselineMatchesPreBaselineChain(t *testing.T) {
	ctx := context.Background()
	oldSchema, oldPool := emptySchema(t, "old")
	newSchema, newPool := emptySchema(t, "new")
	ensureRoles(t, oldPool)

	_, err := preBaselineProvider(t, oldPool, oldSchema).Up(ctx)
	require.NoError(t, err)
	p, err := migrations.Open(ctx, newPool, newSchema, nil)
	require.NoError(t, err)
	defer p.Close()
	_, err = p.UpTo(ctx, baselineLastVersion)
	require.NoError(t, err)

	oldCat := catalog(t, oldPool, oldSchema)
	newCat := catalog(t, newPool, newSchema)
	for _, want := range []string{"table action", "function action_before_insert()", "trigger action.action_state_guard",
		"view action_status", "column action.payload", "rows action_transition"} {
		require.Contains(t, newCat, want, "the catalog query misses a kind of object")
	}

	var unexplained []string
	seen := map[string]bool{}
	for _, key := range unionKeys(oldCat, newCat) {
		o, inOld := oldCat[key]
		n, inNew := newCat[key]
		if inOld && inNew && o == n {
			continue
		}
		seen[key] = true
		if _, ok := baselineDifferences[key]; ok {
			continue
		}
		unexplained = append(unexplained, fmt.Sprintf("%s\n  before the baseline: %s\n  baseline:            %s",
			key, orAbsent(o, inOld), orAbsent(n, inNew)))
	}
	require.Empty(t, unexplained, "differences that baselineDifferences does not explain:\n%s", strings.Join(unexplained, "\n"))
	for key := range baselineDifferences {
		require.True(t, seen[key], "baselineDifferences lists %q, which no longer differs", key)
	}
}

// Each baseline migration's Down undoes exactly its Up: stepping down from
// the top gives back, at every version, the schema that stepping up built.
func TestBaselineDownUndoesUp(t *testing.T) {
	ctx := context.Background()
	schema, pool := emptySchema(t, "down")
	ensureRoles(t, pool)
	p, err := migrations.Open(ctx, pool, schema, nil)
	require.NoError(t, err)
	defer p.Close()

	sources := p.ListSources()
	require.Greater(t, len(sources), 2)
	var versions []int64
	up := map[int64]map[string]string{}
	for _, src := range sources {
		_, err := p.UpTo(ctx, src.Version)
		require.NoError(t, err)
		up[src.Version] = catalog(t, pool, schema)
		versions = append(versions, src.Version)
	}
	for i := len(versions) - 1; i > 0; i-- {
		_, err := p.DownTo(ctx, versions[i-1])
		require.NoError(t, err)
		require.Equal(t, up[versions[i-1]], catalog(t, pool, schema), "after undoing version %d", versions[i])
	}
}

// A schema that the migrations before the baseline migrated cannot be
// brought up to date: goose would see its version (17) above every
// baseline file and apply nothing, or, below it, apply baseline files on
// top of the old objects. Open refuses it and says what to do; a schema at
// version 1 (River's tables only, the same in both) goes on.
func TestPreBaselineSchemaRefused(t *testing.T) {
	ctx := context.Background()
	schema, pool := emptySchema(t, "refused")
	old := preBaselineProvider(t, pool, schema)
	_, err := old.Up(ctx)
	require.NoError(t, err)

	// What goose alone does with it: nothing, and no error.
	raw, err := migrations.NewProvider(stdlib.OpenDBFromPool(pool), schema, nil)
	require.NoError(t, err)
	defer raw.Close()
	res, err := raw.Up(ctx)
	require.NoError(t, err)
	require.Empty(t, res, "goose applies nothing to a schema at a version above its files")

	for _, version := range []int64{17, 3} {
		_, err = old.DownTo(ctx, version)
		require.NoError(t, err)
		_, err = migrations.Up(ctx, pool, schema, nil)
		require.ErrorIs(t, err, migrations.ErrPreBaseline, "at version %d", version)
		require.ErrorContains(t, err, "DROP SCHEMA "+schema+" CASCADE")
		require.ErrorContains(t, err, "botq migrate up")
		_, err = migrations.Open(ctx, pool, schema, nil)
		require.ErrorIs(t, err, migrations.ErrPreBaseline, "serve and migrate down open the schema too")
		_, err = migrations.Migrated(ctx, pool, schema)
		require.ErrorIs(t, err, migrations.ErrPreBaseline, "migrate status and serve look first")
	}

	_, err = old.DownTo(ctx, 1)
	require.NoError(t, err)
	migrated, err := migrations.Migrated(ctx, pool, schema)
	require.NoError(t, err)
	require.True(t, migrated)
	res, err = migrations.Up(ctx, pool, schema, nil)
	require.NoError(t, err)
	require.NotEmpty(t, res)
	migrated, err = migrations.Migrated(ctx, pool, schema)
	require.NoError(t, err)
	require.True(t, migrated)
}

func orAbsent(s string, ok bool) string {
	if !ok {
		return "(absent)"
	}
	return s
}

func unionKeys(a, b map[string]string) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// catalogQueries each return (key, definition) rows for the objects of
// schema $1. Keys name the object without its schema; definitions are
// compared as text after the schema's name is replaced. A NULL privilege
// list means the owner's default one, which a REVOKE writes out: both are
// compared as the default (acldefault).
var catalogQueries = []string{
	// The schema's own privileges (USAGE granted to botq's roles).
	`SELECT 'schema', coalesce(nspacl, acldefault('n', nspowner))::text FROM pg_namespace WHERE oid = $1::regnamespace`,

	// Tables, views, sequences and their options and privileges.
	`SELECT CASE c.relkind WHEN 'r' THEN 'table ' WHEN 'v' THEN 'view ' WHEN 'S' THEN 'sequence '
	            WHEN 'm' THEN 'matview ' WHEN 'p' THEN 'table ' WHEN 'f' THEN 'foreign table ' ELSE 'relation ' END || c.relname,
	        concat_ws(' | ', 'kind=' || c.relkind::text, 'persistence=' || c.relpersistence::text,
	                  'options=' || coalesce(c.reloptions::text, ''), 'acl=' || coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))::text,
	                  'rls=' || c.relrowsecurity::text, 'owner=' || pg_get_userbyid(c.relowner),
	                  'comment=' || coalesce(obj_description(c.oid, 'pg_class'), ''))
	 FROM pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'v', 'S', 'm', 'p', 'f')`,

	// Columns of tables and views: position, type, default, nullability,
	// identity, statistics target, collation, privileges, comment.
	`SELECT 'column ' || c.relname || '.' || a.attname,
	        concat_ws(' | ', 'position=' || a.attnum::text, 'type=' || format_type(a.atttypid, a.atttypmod),
	                  'notnull=' || a.attnotnull::text, 'default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''),
	                  'identity=' || a.attidentity::text, 'generated=' || a.attgenerated::text,
	                  'statistics=' || a.attstattarget::text, 'storage=' || a.attstorage::text,
	                  'collation=' || coalesce(co.collname, ''), 'acl=' || coalesce(a.attacl::text, ''),
	                  'comment=' || coalesce(col_description(c.oid, a.attnum), ''))
	 FROM pg_attribute a
	 JOIN pg_class c ON c.oid = a.attrelid
	 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
	 LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
	 WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
	   AND a.attnum > 0 AND NOT a.attisdropped`,

	// Constraints, by definition.
	`SELECT 'constraint ' || coalesce(c.relname, t.typname) || '.' || k.conname,
	        concat_ws(' | ', 'type=' || k.contype::text, pg_get_constraintdef(k.oid), 'validated=' || k.convalidated::text,
	                  'deferrable=' || k.condeferrable::text, 'deferred=' || k.condeferred::text)
	 FROM pg_constraint k
	 LEFT JOIN pg_class c ON c.oid = k.conrelid
	 LEFT JOIN pg_type t ON t.oid = k.contypid
	 WHERE k.connamespace = $1::regnamespace`,

	// Indexes, by definition.
	`SELECT 'index ' || c.relname,
	        concat_ws(' | ', pg_get_indexdef(c.oid), 'options=' || coalesce(c.reloptions::text, ''),
	                  'comment=' || coalesce(obj_description(c.oid, 'pg_class'), ''))
	 FROM pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('i', 'I')`,

	// Functions: the whole definition (arguments, result, language, body),
	// and the settings it carries, one by one, so that a difference names
	// them: SET clauses, SECURITY DEFINER, volatility, EXECUTE privileges.
	`SELECT 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
	        concat_ws(' | ', 'config=' || coalesce(p.proconfig::text, ''), 'secdef=' || p.prosecdef::text,
	                  'volatility=' || p.provolatile::text, 'strict=' || p.proisstrict::text, 'leakproof=' || p.proleakproof::text,
	                  'parallel=' || p.proparallel::text, 'cost=' || p.procost::text, 'rows=' || p.prorows::text,
	                  'acl=' || coalesce(p.proacl, acldefault('f', p.proowner))::text, 'owner=' || pg_get_userbyid(p.proowner),
	                  'comment=' || coalesce(obj_description(p.oid, 'pg_proc'), ''),
	                  CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) ELSE p.prosrc END)
	 FROM pg_proc p WHERE p.pronamespace = $1::regnamespace`,

	// Triggers: the definition (timing, events, columns, WHEN condition,
	// transition tables, arguments) and whether it is enabled.
	`SELECT 'trigger ' || c.relname || '.' || g.tgname,
	        concat_ws(' | ', pg_get_triggerdef(g.oid), 'enabled=' || g.tgenabled::text)
	 FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
	 WHERE c.relnamespace = $1::regnamespace AND NOT g.tgisinternal`,

	// Views, by definition (their options are with the relations).
	`SELECT 'view definition ' || c.relname, pg_get_viewdef(c.oid)
	 FROM pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('v', 'm')`,

	// Rules other than views' own, and row-security policies.
	`SELECT 'rule ' || c.relname || '.' || r.rulename, pg_get_ruledef(r.oid)
	 FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
	 WHERE c.relnamespace = $1::regnamespace AND r.rulename <> '_RETURN'`,
	`SELECT 'policy ' || c.relname || '.' || p.polname,
	        concat_ws(' | ', p.polcmd::text, pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
	 FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE c.relnamespace = $1::regnamespace`,

	// Sequences: parameters and the column that owns one (identity).
	`SELECT 'sequence parameters ' || c.relname,
	        concat_ws(' | ', format_type(s.seqtypid, NULL), 'start=' || s.seqstart::text, 'increment=' || s.seqincrement::text,
	                  'min=' || s.seqmin::text, 'max=' || s.seqmax::text, 'cache=' || s.seqcache::text, 'cycle=' || s.seqcycle::text,
	                  'owned by=' || coalesce((
	                      SELECT o.relname || '.' || a.attname || ' (' || d.deptype::text || ')'
	                      FROM pg_depend d
	                      JOIN pg_class o ON o.oid = d.refobjid
	                      JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
	                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
	                        AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')), ''))
	 FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = $1::regnamespace`,

	// Types of the schema's own (enums, domains, composites), not a
	// relation's row type.
	`SELECT 'type ' || t.typname,
	        concat_ws(' | ', 'kind=' || t.typtype::text,
	                  'labels=' || coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
	                                         FROM pg_enum e WHERE e.enumtypid = t.oid), ''),
	                  'base=' || CASE WHEN t.typbasetype <> 0 THEN format_type(t.typbasetype, t.typtypmod) ELSE '' END,
	                  'acl=' || coalesce(t.typacl, acldefault('T', t.typowner))::text)
	 FROM pg_type t
	 LEFT JOIN pg_class c ON c.oid = t.typrelid
	 WHERE t.typnamespace = $1::regnamespace AND t.typelem = 0 AND (c.oid IS NULL OR c.relkind = 'c')`,
}

// catalogRows are the tables whose rows the migrations insert and the
// enqueue checks read.
var catalogRows = map[string]string{
	"kind_config":       `SELECT kind, max_attempts, queue, priority, idempotent, conversation FROM %s.kind_config`,
	"channel_limit":     `SELECT network_key, max_text_chars FROM %s.channel_limit`,
	"action_transition": `SELECT from_state, to_state FROM %s.action_transition`,
}

// catalog describes schema's objects as key -> definition, with the
// schema's name replaced by "<schema>".
func catalog(t *testing.T, pool *pgxpool.Pool, schema string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	norm := func(s string) string { return strings.ReplaceAll(s, schema, "<schema>") }
	for _, q := range catalogQueries {
		rows, err := pool.Query(ctx, q, schema)
		require.NoError(t, err, q)
		for rows.Next() {
			var key, def string
			require.NoError(t, rows.Scan(&key, &def))
			key = norm(key)
			require.NotContains(t, out, key, "two objects share a key")
			out[key] = norm(def)
		}
		require.NoError(t, rows.Err(), q)
	}
	for table, q := range catalogRows {
		var exists bool
		require.NoError(t, pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, schema+"."+table).Scan(&exists))
		if !exists {
			continue
		}
		var def string
		require.NoError(t, pool.QueryRow(ctx, fmt.Sprintf(
			`SELECT coalesce(string_agg(x::text, E'\n' ORDER BY x::text), '') FROM (%s) x`, fmt.Sprintf(q, schema))).Scan(&def))
		out["rows "+table] = def
	}
	return out
}
