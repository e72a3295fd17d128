// Package reconciler settles the final status of every Bot v3 request botq
// made, resolves ambiguous sends, refreshes app tokens before they expire and
// polls app health. It runs as River periodic jobs on the maintenance queue,
// enqueued by whichever process River elects leader.
package reconciler
