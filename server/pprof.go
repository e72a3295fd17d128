package server

import (
	"net/http"
	"net/http/pprof"

	"github.com/botq/botq/api"
)

// pprofPrefix is where Go's profiles are served when http.pprof is on.
const pprofPrefix = "/debug/pprof/"

// mountPprof serves Go's runtime profiles (net/http/pprof: heap, allocs,
// goroutine, profile, trace, ...) under /debug/pprof/ to operator keys,
// when http.pprof is on. It is off by default: a profile shows the process'
// internals (its command line, its goroutines' stacks) and a CPU profile or
// trace costs CPU while it runs, so it is for an operator looking into a
// running process, not for every key. The handlers are mounted on botq's
// own mux, not on http.DefaultServeMux. Off, the prefix answers 404 rather
// than falling through to the console, which would send a caller with a key
// to its sign-in page as if profiles were one sign-in away.
func (m *Main) mountPprof(mux *http.ServeMux) {
	if !m.Config.HTTP.Pprof || m.auth == nil {
		mux.Handle(pprofPrefix, http.NotFoundHandler())
		return
	}
	profiles := http.NewServeMux()
	profiles.HandleFunc(pprofPrefix, pprof.Index) // the index and every named profile
	profiles.HandleFunc(pprofPrefix+"cmdline", pprof.Cmdline)
	profiles.HandleFunc(pprofPrefix+"profile", pprof.Profile)
	profiles.HandleFunc(pprofPrefix+"symbol", pprof.Symbol)
	profiles.HandleFunc(pprofPrefix+"trace", pprof.Trace)
	mux.Handle(pprofPrefix, api.Authorize(m.auth, []api.Role{api.RoleOperator}, func(w http.ResponseWriter, r *http.Request, _ api.Principal) {
		profiles.ServeHTTP(w, r)
	}))
}
