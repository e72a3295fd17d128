// Package bench is `botq bench`: botq against plain River on the same
// machine, the same Postgres and the same Bot v3 simulator, in one run, so
// that every figure is a ratio against a baseline measured minutes apart.
// Each scenario works in schemas of its own; drains run in a child process
// (`botq bench child`) so that their memory is measured alone.
package bench
