package server

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/botq/botq/api"
)

// This file turns the YAML decoder's errors into problems in the words of
// the configuration: the key, what it takes, and an example, at the line
// where the mistake is.

var durationType = reflect.TypeOf(time.Duration(0))

// configPath walks from Config along a dotted key path ("apps[0].rate_limit",
// "kinds.respond.queue"), returning the type there and the value of the
// default configuration there (zero past a list or a map).
func configPath(key string) (reflect.Type, reflect.Value, bool) {
	t, v := reflect.TypeOf(Config{}), reflect.ValueOf(DefaultConfig())
	if key == "" {
		return t, v, true
	}
	for _, part := range strings.Split(key, ".") {
		name, indexed := part, false
		if i := strings.IndexByte(part, '['); i >= 0 {
			name, indexed = part[:i], true
		}
		switch t.Kind() {
		case reflect.Struct:
			f, ok := fieldByTag(t, name)
			if !ok {
				return nil, reflect.Value{}, false
			}
			t, v = f.Type, v.FieldByIndex(f.Index)
		case reflect.Map:
			t = t.Elem()
			v = reflect.Zero(t)
		default:
			return nil, reflect.Value{}, false
		}
		if indexed && t.Kind() == reflect.Slice {
			t = t.Elem()
			v = reflect.Zero(t)
		}
	}
	return t, v, true
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := strings.Split(f.Tag.Get("yaml"), ",")[0]; tag == name && tag != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// sectionKeys lists the keys a struct type takes, in file order.
func sectionKeys(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

// closest returns the candidate nearest to s, if it is a plausible typo.
func closest(s string, candidates []string) string {
	best, bestDist := "", 3 // more than 2 edits away is not a typo
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

var (
	unknownFieldRe = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	wrongTypeRe    = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")
)

// typeProblem words one of the decoder's errors about the key at line.
func typeProblem(path string, line int, key, msg string) string {
	where := fmt.Sprintf("%s line %d", path, line)
	if key != "" {
		where += ", key " + key
	}
	if m := unknownFieldRe.FindStringSubmatch(msg); m != nil {
		return where + ": " + unknownKey(key, m[1])
	}
	if m := wrongTypeRe.FindStringSubmatch(msg); m != nil {
		return where + ": " + wrongType(key, m[1], m[2])
	}
	return where + ": " + msg
}

// unknownKey says that name is not a key of key's section, and which are.
func unknownKey(key, name string) string {
	section := ""
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		section = key[:i]
	}
	t, _, ok := configPath(section)
	if !ok || t.Kind() != reflect.Struct {
		return fmt.Sprintf("%s is not a botq setting (config.example.yaml lists them all)", name)
	}
	keys := sectionKeys(t)
	where := "section " + section
	if section == "" {
		where = "the top level"
	}
	s := fmt.Sprintf("%s is not a key of %s", name, where)
	if c := closest(name, keys); c != "" {
		s += fmt.Sprintf(" (did you mean %s?)", c)
	}
	return s + "; its keys are " + strings.Join(keys, ", ")
}

// wrongType says what key takes instead of the value found (value is the
// YAML text, "" for a list or a map; tag its YAML type).
func wrongType(key, tag, value string) string {
	t, def, ok := configPath(key)
	found := strconv.Quote(value)
	switch tag {
	case "seq":
		found = "a list"
	case "map":
		found = "a section (key: value lines)"
	}
	if !ok {
		return fmt.Sprintf("%s is not a value this key takes", found)
	}
	name := key[strings.LastIndexAny(key, ".]")+1:]
	want, example := describeType(t, def)
	if example == "" {
		return fmt.Sprintf("%s is not %s", found, want)
	}
	return fmt.Sprintf("%s is not %s; for example %s: %s", found, want, name, example)
}

// describeType names what a value of type t is, with an example: the
// default value when there is one.
func describeType(t reflect.Type, def reflect.Value) (string, string) {
	nonZero := def.IsValid() && !def.IsZero()
	switch {
	case t == durationType:
		ex := "30s"
		if nonZero {
			ex = formatDuration(time.Duration(def.Int()))
		}
		return "a duration (a number and a unit: ms, s, m, h or d)", ex
	case t.Kind() == reflect.Bool:
		return "true or false", "true"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		ex := "10"
		if nonZero {
			ex = strconv.FormatInt(def.Int(), 10)
		}
		return "a whole number", ex
	case t.Kind() == reflect.Float64:
		ex := "10"
		if nonZero {
			ex = strconv.FormatFloat(def.Float(), 'f', -1, 64)
		}
		return "a number", ex
	case t.Kind() == reflect.String:
		return "a single value (quote it if it holds ': ' or starts with a special character)", ""
	case t.Kind() == reflect.Slice:
		return "a list (lines starting with '- ')", ""
	default:
		return "a section (key: value lines, indented under it)", ""
	}
}

// formatDuration writes d as a config file would: 24h, 7d, 30s.
func formatDuration(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	s := d.String()
	s = strings.TrimSuffix(strings.TrimSuffix(s, "0s"), "0m")
	if s == "" {
		return "0s"
	}
	return s
}

// yamlProblems words the YAML parser's commonest problems.
var yamlProblems = map[string]string{
	"did not find expected ',' or ']'":                "a list opened with [ is not closed with ] (or its items are not separated by commas)",
	"did not find expected ',' or '}'":                "a section opened with { is not closed with } (or its keys are not separated by commas)",
	"did not find expected '-' indicator":             "a list item does not start with '- ' at the list's indentation",
	"did not find expected key":                       "expected a key (key: value) at this indentation; check that the keys of a section line up",
	"did not find expected node content":              "a key or a list item without a value",
	"found character that cannot start any token":     "a character that cannot start a value here (YAML indents with spaces, never tabs; quote values that start with @, ` or %)",
	"found a tab character that violates indentation": "a tab in the indentation (YAML indents with spaces, never tabs)",
	"mapping values are not allowed in this context":  "an unexpected ':' (quote a value that holds ': ', or check the indentation)",
	"could not find expected ':'":                     "expected 'key: value'",
	"found unexpected end of stream":                  "the file ends inside a quoted value",
}

var yamlErrRe = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// syntaxProblem words a YAML syntax error in data, at the line where it
// is. The parser's own line is not that: it numbers some problems from 0,
// others from 1, and names where the enclosing value began rather than
// where the mistake is.
func syntaxProblem(path string, data []byte, err error) string {
	m := yamlErrRe.FindStringSubmatch(err.Error())
	if m == nil {
		return fmt.Sprintf("%s: %v", path, err)
	}
	line, _ := strconv.Atoi(m[1])
	if l := syntaxLine(data); l > 0 {
		line = l
	}
	msg := m[2]
	if plain, ok := yamlProblems[msg]; ok {
		msg = plain
	}
	if line == 0 {
		return fmt.Sprintf("%s: %s", path, msg)
	}
	return fmt.Sprintf("%s line %d: %s", path, line, msg)
}

// syntaxLine is the line from which on data does not parse: the last line
// k such that the first k-1 lines parse and the first k do not. (A value
// spread over several lines fails while it is open and parses once it is
// closed, so the last such line is the one that breaks the file for good.)
// It is 0 for a file too long to search or one that parses.
func syntaxLine(data []byte) int {
	lines := strings.SplitAfter(string(data), "\n")
	if len(lines) > 5000 {
		return 0
	}
	found, prevOK := 0, true
	var prefix strings.Builder
	for k, l := range lines {
		prefix.WriteString(l)
		var n yaml.Node
		ok := yaml.Unmarshal([]byte(prefix.String()), &n) == nil
		if prevOK && !ok {
			found = k + 1
		}
		prevOK = ok
	}
	if prevOK {
		return 0
	}
	return found
}

// dayDurations rewrites duration values given in days (7d, 1d12h) to
// hours in data, where the YAML decoder, which knows Go's syntax only,
// reads them; lines stay where they are. n is the node decoded into t.
func dayDurations(data []byte, n *yaml.Node, t reflect.Type) []byte {
	lines := strings.Split(string(data), "\n")
	var edits []*yaml.Node
	collectDayDurations(n, t, &edits)
	sort.Slice(edits, func(i, j int) bool { return edits[i].Column > edits[j].Column })
	changed := false
	for _, e := range edits {
		d, _ := api.ParseDuration(e.Value)
		i, col := e.Line-1, e.Column-1
		if i < 0 || i >= len(lines) || col < 0 || col > len(lines[i]) {
			continue
		}
		rest := lines[i][col:]
		for _, q := range []string{"", `"`, "'"} {
			if strings.HasPrefix(rest, q+e.Value+q) {
				lines[i] = lines[i][:col] + q + d.String() + q + rest[len(q+e.Value+q):]
				changed = true
				break
			}
		}
	}
	if !changed {
		return data
	}
	return []byte(strings.Join(lines, "\n"))
}

func collectDayDurations(n *yaml.Node, t reflect.Type, out *[]*yaml.Node) {
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			return
		}
		if _, err := time.ParseDuration(n.Value); err == nil {
			return
		}
		if _, err := api.ParseDuration(n.Value); err == nil {
			*out = append(*out, n)
		}
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if f, ok := fieldByTag(t, n.Content[i].Value); ok {
				collectDayDurations(n.Content[i+1], f.Type, out)
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			collectDayDurations(n.Content[i+1], t.Elem(), out)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for _, c := range n.Content {
			collectDayDurations(c, t.Elem(), out)
		}
	}
}
