package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/botq/botq/store"
)

// funcs are the templates' functions.
var funcs = template.FuncMap{
	"time":      fmtTime,
	"timep":     fmtTimePtr,
	"ago":       ago,
	"seconds":   fmtSeconds,
	"json":      prettyJSON,
	"excerpt":   excerpt,
	"ms":        func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"stateTag":  stateTag,
	"optLabel":  optionLabel,
	"idText":    func(id int64) string { return strconv.FormatInt(id, 10) },
	"deref":     func(p *int64) int64 { return *p },
	"riverJob":  func(prefix string, id int64) string { return prefix + "/jobs/" + strconv.FormatInt(id, 10) },
	"plural":    plural,
	"payloadTx": payloadText,
	"list":      func(s ...string) []string { return s },
}

// fmtTime shows a time in UTC, to the second.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return fmtTime(*t)
}

// ago says how long before now t was, roughly.
func ago(now time.Time, t *time.Time) string {
	if t == nil {
		return ""
	}
	d := now.Sub(*t)
	if d < 0 {
		return "in " + roughDuration(-d)
	}
	return roughDuration(d) + " ago"
}

func fmtSeconds(s *float64) string {
	if s == nil {
		return ""
	}
	return roughDuration(time.Duration(*s * float64(time.Second)))
}

func roughDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

// prettyJSON indents a JSON value for reading; what is not JSON is shown
// as it is.
func prettyJSON(b json.RawMessage) string {
	if len(b) == 0 {
		return ""
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return string(b)
	}
	return out.String()
}

// excerpt is s cut to n runes.
func excerpt(n int, s string) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// payloadText is what a payload says, for a listing: its text, note or
// tags, else nothing.
func payloadText(p json.RawMessage) string {
	var m struct {
		Text string   `json:"text"`
		Note string   `json:"note"`
		Tags []string `json:"tags"`
	}
	if json.Unmarshal(p, &m) != nil {
		return ""
	}
	switch {
	case m.Text != "":
		return m.Text
	case m.Note != "":
		return m.Note
	case len(m.Tags) > 0:
		return "tags: " + strings.Join(m.Tags, ", ")
	}
	return ""
}

// stateTag is the CSS class of an action's or a request's state.
func stateTag(s string) string {
	switch strings.ToLower(s) {
	case string(store.ActionSucceeded), "success", "ok":
		return "st-ok"
	case string(store.ActionFailed), "error", "cancel", "expired":
		return "st-bad"
	case string(store.ActionCancelled), "absent":
		return "st-off"
	case string(store.ActionUnknown), "retry", string(store.ActionRetrying), "snooze":
		return "st-warn"
	}
	return "st-busy"
}

// optionLabel is how the console names a replay option.
func optionLabel(option string) string {
	switch option {
	case store.ReplayOptionSucceeded:
		return "Send again although it succeeded"
	case store.ReplayOptionPossiblySent:
		return "Replay although it may have reached the customer"
	case store.ReplayOptionReplayOfReplay:
		return "Replay a replay"
	case store.ReplayOptionReplayed:
		return "Replay again although it was replayed"
	case "unfinished":
		return "Not finished yet (never replayed)"
	case "changed_meanwhile":
		return "Changed meanwhile (another replay took it)"
	}
	return option
}

// href is a link to one of the console's pages with query q.
func href(path string, q url.Values) template.URL {
	if len(q) == 0 {
		return template.URL(path)
	}
	return template.URL(path + "?" + q.Encode())
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
