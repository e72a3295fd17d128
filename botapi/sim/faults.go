package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration that reads from JSON as a Go duration string
// ("250ms") or a number of milliseconds, and writes as a string.
type Duration time.Duration

// MarshalJSON writes the Go syntax, e.g. "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts "250ms" or 250 (milliseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" || s == "" {
		return nil
	}
	if s[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		if v == "" {
			*d = 0
			return nil
		}
		p, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("parse duration: %w", err)
		}
		*d = Duration(p)
		return nil
	}
	ms, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return errors.New("parse duration: want a string like \"250ms\" or milliseconds")
	}
	*d = Duration(ms * float64(time.Millisecond))
	return nil
}

// Fault is what the simulator does to calls of one endpoint (or of all, "*")
// before or instead of answering them. Rates are probabilities in [0,1] drawn
// from the seeded generator, in call-arrival order, so sequential tests with
// the same seed see the same faults.
type Fault struct {
	// Latency delays every matching call before anything else happens, plus a
	// uniformly drawn extra of up to Jitter. A client that gives up during the
	// delay leaves nothing applied.
	Latency Duration `json:"latency,omitempty"`
	Jitter  Duration `json:"jitter,omitempty"`
	// ErrorRate answers that fraction of calls with ErrorCode (default 503)
	// without applying them and without a request record. A 409 on control uses
	// Khoros' documented "may be retried" body.
	ErrorRate float64 `json:"errorRate,omitempty"`
	ErrorCode int     `json:"errorCode,omitempty"`
	// RateLimitRate answers that fraction with 429 and a Retry-After header of
	// RetryAfter (seconds or an HTTP date; default "1"), without applying.
	RateLimitRate float64 `json:"rateLimitRate,omitempty"`
	RetryAfter    string  `json:"retryAfter,omitempty"`
	// HangRate makes that fraction block, unapplied, until the client gives up
	// (its connection or context ends) or the Server is closed; the connection
	// is then aborted with no response.
	HangRate float64 `json:"hangRate,omitempty"`
	// DropRate applies that fraction fully (state change and request record)
	// and then closes the connection without writing a response: the client
	// sees a sent request with an unknown outcome.
	DropRate float64 `json:"dropRate,omitempty"`
	// StallRate applies that fraction fully and then holds the response until
	// the client gives up or the Server is closed, as a Khoros that applied a
	// call whose caller died before the answer came back. The connection is
	// then aborted with no response.
	StallRate float64 `json:"stallRate,omitempty"`
	// Times, when positive, removes the fault after it has matched that many
	// calls, and puts Next, if given, in its place.
	Times int    `json:"times,omitempty"`
	Next  *Fault `json:"next,omitempty"`
	// AppID, when set, limits the fault to calls made with that app's
	// token. An app's fault for an endpoint (or "*") is looked up before
	// the one for every app.
	AppID string `json:"appId,omitempty"`
}

func (f Fault) validate() error {
	for _, r := range []float64{f.ErrorRate, f.RateLimitRate, f.HangRate, f.DropRate, f.StallRate} {
		if r < 0 || r > 1 {
			return fmt.Errorf("rate %v is outside [0,1]", r)
		}
	}
	if f.ErrorCode != 0 && (f.ErrorCode < 400 || f.ErrorCode > 599) {
		return fmt.Errorf("errorCode %d is not a 4xx or 5xx", f.ErrorCode)
	}
	if f.Latency < 0 || f.Jitter < 0 || f.Times < 0 {
		return errors.New("latency, jitter and times must not be negative")
	}
	if f.Next != nil {
		if f.Times == 0 {
			return errors.New("next needs times: the fault it follows must end")
		}
		if f.Next.AppID != "" && f.Next.AppID != f.AppID {
			return errors.New("next is for the same app as the fault it follows")
		}
		if err := f.Next.validate(); err != nil {
			return fmt.Errorf("next: %w", err)
		}
	}
	return nil
}

// faultKey is where a fault is installed: an endpoint (or "*"), for one app
// or ("") for all.
type faultKey struct{ endpoint, app string }

func (k faultKey) String() string {
	if k.app == "" {
		return k.endpoint
	}
	return k.endpoint + "@" + k.app
}

// faultPlan is what was drawn for one call.
type faultPlan struct {
	delay      time.Duration
	hang       bool
	errCode    int
	rateLimit  bool
	retryAfter string
	drop       bool
	stall      bool
}

type faultRule struct {
	Fault
	left int // remaining matches when Times > 0
}

// plan draws the faults for one call of endpoint name by app ("" when the
// caller is not known). The app's own rules win over everyone's, and an
// endpoint's own rule over "*".
func (s *Server) plan(name, app string) faultPlan {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if len(s.faults) == 0 {
		return faultPlan{}
	}
	var key faultKey
	var r *faultRule
	for _, k := range []faultKey{{name, app}, {"*", app}, {name, ""}, {"*", ""}} {
		if r = s.faults[k]; r != nil {
			key = k
			break
		}
	}
	if r == nil {
		return faultPlan{}
	}
	if r.Times > 0 {
		r.left--
		if r.left <= 0 {
			delete(s.faults, key)
			if r.Next != nil {
				next := *r.Next
				next.AppID = key.app
				s.faults[key] = &faultRule{Fault: next, left: next.Times}
			}
		}
	}
	var p faultPlan
	p.delay = time.Duration(r.Latency)
	if r.Jitter > 0 {
		p.delay += time.Duration(s.int64n(int64(r.Jitter) + 1))
	}
	switch {
	case s.draw(r.HangRate):
		p.hang = true
	case s.draw(r.ErrorRate):
		p.errCode = r.ErrorCode
		if p.errCode == 0 {
			p.errCode = 503
		}
	case s.draw(r.RateLimitRate):
		p.rateLimit = true
		p.retryAfter = r.RetryAfter
		if p.retryAfter == "" {
			p.retryAfter = "1"
		}
	case s.draw(r.DropRate):
		p.drop = true
	case s.draw(r.StallRate):
		p.stall = true
	}
	return p
}

// draw reports a Bernoulli(rate) outcome; it consumes randomness only for
// rates strictly between 0 and 1, so adding a certain fault does not shift
// the sequence seen by others.
func (s *Server) draw(rate float64) bool {
	switch {
	case rate <= 0:
		return false
	case rate >= 1:
		return true
	}
	return s.float64() < rate
}

// SetFault installs f for endpoint (one of [Endpoints], or "*" for every
// endpoint without its own fault), for f.AppID's calls or everyone's,
// replacing any previous one there.
func (s *Server) SetFault(endpoint string, f Fault) error {
	if endpoint != "*" && endpointByName(endpoint) == 0 {
		return fmt.Errorf("set fault: unknown endpoint %q", endpoint)
	}
	if err := f.validate(); err != nil {
		return fmt.Errorf("set fault for %s: %w", endpoint, err)
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.faults[faultKey{endpoint, f.AppID}] = &faultRule{Fault: f, left: f.Times}
	return nil
}

// ClearFaults removes the faults of the given endpoints (for every app), or
// all faults when none is given.
func (s *Server) ClearFaults(endpoints ...string) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if len(endpoints) == 0 {
		clear(s.faults)
		return
	}
	for k := range s.faults {
		if slices.Contains(endpoints, k.endpoint) {
			delete(s.faults, k)
		}
	}
}

// Faults returns the installed faults by endpoint, "endpoint@app" for an
// app's own.
func (s *Server) Faults() map[string]Fault {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	out := make(map[string]Fault, len(s.faults))
	for k, r := range s.faults {
		f := r.Fault
		if f.Times > 0 {
			f.Times = r.left
		}
		out[k.String()] = f
	}
	return out
}
