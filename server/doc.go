// Package server is one `botq serve` process: its configuration (file,
// environment, defaults), the wiring of its parts (Main: the pool, the
// River client and workers, the reconciler's periodic jobs, the HTTP
// surfaces), its metrics and maintenance tasks, and the local setup of
// `botq dev`. The CLI in cmd/botq loads a Config and runs a Main; tests and
// the benchmark run Mains in process.
package server
