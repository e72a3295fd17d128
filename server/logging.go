package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/botq/botq/jobs"
)

// NewLogger returns botq's JSON (or console) logger. River and goose log
// through the same zerolog stream via zerolog's slog handler. The console
// format is coloured only when w is a terminal, so that a log redirected to
// a file or a pipe holds no escape sequences.
func NewLogger(cfg LogConfig, w io.Writer) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	if cfg.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !isTerminal(w)}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// SlogFor adapts a zerolog logger for libraries that take *slog.Logger.
func SlogFor(l zerolog.Logger) *slog.Logger {
	return slog.New(zerolog.NewSlogHandler(l))
}

// riverLogger is the logger of a River client that works actions.
func riverLogger(l zerolog.Logger) *slog.Logger {
	return slog.New(quietRiver{jobs.RiverLogHandler(zerolog.NewSlogHandler(l))})
}

// riverRoutine are the endings of River's info lines that report routine
// work on a timer: the producer's job counts every few seconds while jobs
// run, and a maintenance service that did something ("Ran successfully").
// botq's own logs and metrics cover the same ground.
var riverRoutine = []string{": Producer job counts", ": Ran successfully"}

// quietRiver logs River's routine lines at debug level instead of info, so
// that they show with log.level debug and only then.
type quietRiver struct{ slog.Handler }

func (h quietRiver) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo {
		for _, suffix := range riverRoutine {
			if strings.HasSuffix(r.Message, suffix) {
				if !h.Handler.Enabled(ctx, slog.LevelDebug) {
					return nil
				}
				r.Level = slog.LevelDebug
				break
			}
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietRiver) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietRiver{h.Handler.WithAttrs(attrs)}
}

func (h quietRiver) WithGroup(name string) slog.Handler {
	return quietRiver{h.Handler.WithGroup(name)}
}
