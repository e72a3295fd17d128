// Package sim is a stateful simulator of the Khoros Care Bot API v3, for
// tests, local development (botq sim) and benchmarks. See the package
// documentation in README form below; it follows shared/botv3-reference.md
// and its assumptions (section 10 there).
package sim
