package main

import (
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/botq/botq/botapi/sim"
)

func newSimCmd(env *cliEnv) *cobra.Command {
	var (
		listen     string
		opts       sim.Options
		mint       []string
		bodies     bool
		maxRecords int
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run the Bot v3 simulator (no Khoros account needed)",
		Long: `Serves a stateful simulator of the Khoros Care Bot API v3 until interrupted: every endpoint,
request records that settle after a delay, tokens, registrations and modes, conversation ownership,
and an admin API under /_sim/ to mint tokens, inject faults and read the call log (docs/simulator.md).`,
		Example: `  botq sim --listen 127.0.0.1:8089 --mint my-bot
  curl -s -X POST 127.0.0.1:8089/_sim/tokens -d '{"appId":"my-bot"}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, _, err := net.SplitHostPort(listen); err != nil {
				return usagef("--listen: %q is not host:port", listen)
			}
			if opts.ErrorRate < 0 || opts.ErrorRate > 1 {
				return usagef("--error-rate: %v is not between 0 and 1", opts.ErrorRate)
			}
			if opts.SettleDelayMin < 0 || (opts.SettleDelayMax > 0 && opts.SettleDelayMax < opts.SettleDelayMin) {
				return usagef("--settle-min/--settle-max: need 0 <= min <= max")
			}
			opts.CallLogBodies = bodies
			opts.MaxRecords = maxRecords
			s := sim.New(opts)
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %w", listen, err)
			}
			base := "http://" + ln.Addr().String()
			fmt.Fprintf(env.stdout, "Bot v3 simulator on %s (admin API: %s/_sim/)\n", base, base)
			for _, app := range mint {
				tok, err := s.MintToken(app, sim.MintOptions{})
				if err != nil {
					_ = ln.Close()
					return fmt.Errorf("--mint %s: %w", app, err)
				}
				fmt.Fprintf(env.stdout, "token for %s (expires %s):\n%s\n", app, tok.ExpiresAt().UTC().Format(time.RFC3339), tok.Token)
			}
			return sim.Serve(cmd.Context(), ln, s)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8089", "address to serve on")
	f.Int64Var(&opts.Seed, "seed", 1, "seed for every random choice (same seed, same calls: same answers)")
	durationVar(f, &opts.SettleDelayMin, "settle-min", 0, "shortest delay before a request record leaves PENDING")
	durationVar(f, &opts.SettleDelayMax, "settle-max", 2*time.Second, "longest delay before a request record leaves PENDING")
	f.Float64Var(&opts.ErrorRate, "error-rate", 0, "fraction of accepted requests whose record ends in ERROR")
	f.StringSliceVar(&mint, "mint", nil, "mint and print a token for these app ids at start (comma-separated)")
	f.BoolVar(&bodies, "call-log-bodies", false, "keep request bodies in the call log")
	f.IntVar(&maxRecords, "max-records", 0, "keep at most this many request records (0: all)")
	return cmd
}
