package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

func newProbeCmd(env *cliEnv) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "probe [url]",
		Short: "GET a health URL and exit 0 if it answers 2xx (container healthchecks; the image has no curl)",
		Long: `GETs the URL (default http://127.0.0.1:8080/readyz, botq serve's readiness) and exits 0 when
it answers 2xx, 1 otherwise, printing the status. For healthchecks of botq's container image,
which holds nothing but botq:

  healthcheck:
    test: ["CMD", "botq", "probe", "http://127.0.0.1:8080/readyz"]`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			url := "http://127.0.0.1:8080/readyz"
			if len(args) == 1 {
				url = args[0]
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return usagef("probe: %v", err)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("probe %s: %w", url, err)
			}
			defer res.Body.Close()
			_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
			if res.StatusCode/100 != 2 {
				return fmt.Errorf("probe %s: %s", url, res.Status)
			}
			_, err = fmt.Fprintf(env.stdout, "%s: %s\n", url, res.Status)
			return err
		},
	}
	durationVar(cmd.Flags(), &timeout, "timeout", 5*time.Second, "give up after this long")
	return cmd
}
