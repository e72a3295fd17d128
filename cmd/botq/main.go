// Command botq is the one binary of botq, a durable, audited action queue for
// bots on the Khoros Care Bot API v3: `botq serve` runs the HTTP API, the
// River workers that execute actions against Bot v3 and the reconciler;
// the other subcommands migrate the schema, inspect and operate the queue,
// run the Bot v3 simulator and the benchmark.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/botq/botq/botapi"
	"github.com/botq/botq/server"
)

// version is set at build time with -ldflags "-X main.version=..." (make
// build does).
var version = ""

// buildVersion is botq's version: the -ldflags one, else the version Go
// recorded in the binary (the module version for `go install ...@v1.2.3`
// or @latest, a pseudo-version of the commit for `go build` in a git
// checkout), else "dev" (a build without version control information,
// e.g. with -buildvcs=false).
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// gcPercent is the garbage collector's target when GOGC is not set. botq's
// live heap is small (a few MB in a drain) and a busy worker allocates fast,
// so at Go's default of 100 the collector and its assists took a large share
// of botq's CPU; at 400 a drain costs less CPU for a little more memory
// (docs/operations.md). Every botq process takes it, the benchmark's River
// baselines included, so that they are compared on the same runtime
// settings.
const gcPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runEnv(ctx, os.Args[1:], os.LookupEnv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ error }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// runEnv executes one command line, with the environment given as a lookup
// function, and returns the exit status. Errors are printed once, as one
// line naming what is wrong; never a stack trace.
func runEnv(ctx context.Context, args []string, env func(string) (string, bool), stdin io.Reader, stdout, stderr io.Writer) int {
	botapi.Version = buildVersion()
	root := newRootCmd(&cliEnv{stdin: stdin, stdout: stdout, stderr: stderr, lookupEnv: env})
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, errorLine(err))
	return exitCode(err)
}

// exitCode is the exit status of a command that failed with err: 2 for a
// mistake in the command line, 1 for a failure.
func exitCode(err error) int {
	var ue usageError
	// Cobra's own refusal of an unknown subcommand is a usage error too.
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command ") {
		return 2
	}
	return 1
}

// errorLine is the one line a failed command prints. A missing table or
// schema almost always means the schema was never migrated, or is behind
// this binary: the line says what to run.
func errorLine(err error) string {
	line := "botq: " + err.Error()
	var pgErr *pgconn.PgError
	// undefined_table, invalid_schema_name, undefined_function
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000" || pgErr.Code == "42883") {
		line += " (is the schema migrated? `botq migrate status` shows it, `botq migrate up` brings it up to date)"
	}
	return line
}

// cliEnv is what every command reads: streams, the environment, and the
// --config flag.
type cliEnv struct {
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
	lookupEnv  func(string) (string, bool)
	configPath string
}

// config loads the configuration from --config (or BOTQ_CONFIG).
func (e *cliEnv) config() (server.Config, error) {
	path := e.configPath
	if path == "" {
		path, _ = e.lookupEnv("BOTQ_CONFIG")
	}
	return server.LoadConfig(path, e.lookupEnv)
}

func newRootCmd(env *cliEnv) *cobra.Command {
	root := &cobra.Command{
		Use:           "botq",
		Short:         "A durable, audited action queue for bots on the Khoros Care Bot API v3",
		Version:       buildVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("botq {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVar(&env.configPath, "config", "", "YAML configuration file (default: $BOTQ_CONFIG; see config.example.yaml)")
	root.AddCommand(
		newVersionCmd(env),
		newMigrateCmd(env),
		newConfigCmd(env),
		newServeCmd(env),
		newSimCmd(env),
		newDevCmd(env),
		newBenchCmd(env),
		newEnqueueCmd(env),
		newActionsCmd(env),
		newRequestsCmd(env),
		newReplayCmd(env),
		newEventsCmd(env),
		newAppCmd(env),
		newGrantCmd(env),
		newTokenCmd(env),
		newRegistrationCmd(env),
		newModeCmd(env),
		newHealthCmd(env),
		newProbeCmd(env),
	)
	for _, c := range root.Commands() {
		strictArgs(c)
	}
	return root
}

// strictArgs makes argument-count mistakes usage errors, and a command
// group (app, token, ...) refuse an argument that names none of its
// subcommands, as the root does, instead of printing its help and
// succeeding; alone, it still prints its help. Subcommands too.
func strictArgs(c *cobra.Command) {
	if c.Args != nil {
		inner := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := inner(cmd, args); err != nil {
				return usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
			}
			return nil
		}
	}
	if c.HasSubCommands() && !c.Runnable() {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			cmd.SuggestionsMinimumDistance = 2
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf("; did you mean %s?", strings.Join(s, " or "))
			}
			return usagef("%s (see %s --help)", msg, cmd.CommandPath())
		}
	}
	for _, sub := range c.Commands() {
		strictArgs(sub)
	}
}

func newVersionCmd(env *cliEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print botq's version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(env.stdout, "botq %s\n", buildVersion())
			return err
		},
	}
}
