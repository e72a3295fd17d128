package server

import (
	"io"
	"log/slog"
	"time"

	"github.com/rs/zerolog"

	"github.com/botq/botq/jobs"
)

// NewLogger returns botq's JSON (or console) logger. River and goose log
// through the same zerolog stream via zerolog's slog handler.
func NewLogger(cfg LogConfig, w io.Writer) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	if cfg.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// SlogFor adapts a zerolog logger for libraries that take *slog.Logger.
func SlogFor(l zerolog.Logger) *slog.Logger {
	return slog.New(zerolog.NewSlogHandler(l))
}

// riverLogger is the logger of a River client that works actions.
func riverLogger(l zerolog.Logger) *slog.Logger {
	return slog.New(jobs.RiverLogHandler(zerolog.NewSlogHandler(l)))
}
