package server

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

var descRe = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

// exportedMetrics are the series names botq's /metrics serves, each with its
// labels, read from the registry's own collectors: a histogram's name
// stands for its _bucket (with le), _sum and _count series.
func exportedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	m := NewMetrics(nil, nil, zerolog.Nop())
	collectors := []prometheus.Collector{m.attempts, m.latency, m.phases, m.reconcilerCalls, m.fetched, m.settled, m.settleLag,
		m.taskFailures, &dbCollector{}}
	histograms := map[prometheus.Collector]bool{m.latency: true, m.phases: true, m.settleLag: true}
	out := map[string][]string{}
	for _, c := range collectors {
		ch := make(chan *prometheus.Desc, 32)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			sm := descRe.FindStringSubmatch(d.String())
			require.NotNil(t, sm, d.String())
			var labels []string
			if sm[2] != "" {
				labels = strings.Split(sm[2], ",")
			}
			if !histograms[c] {
				out[sm[1]] = labels
				continue
			}
			out[sm[1]+"_bucket"] = append(append([]string(nil), labels...), "le")
			out[sm[1]+"_sum"] = labels
			out[sm[1]+"_count"] = labels
		}
	}
	return out
}

// metricsTable reads the metrics table of docs/operations.md: name -> labels.
func metricsTable(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile("../docs/operations.md")
	require.NoError(t, err)
	doc := string(raw)
	start := strings.Index(doc, "## Metrics (")
	require.GreaterOrEqual(t, start, 0, "docs/operations.md has a Metrics section")
	section := doc[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	rowRe := regexp.MustCompile("(?m)^\\| `(botq_[a-z_]+)` \\| (counter|gauge|histogram) \\| *([a-z_, ]*?) *\\|")
	out := map[string][]string{}
	for _, m := range rowRe.FindAllStringSubmatch(section, -1) {
		var labels []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
		out[m[1]] = labels
	}
	require.NotEmpty(t, out)
	return out
}

// docs/operations.md lists every metric botq exports, with its labels,
// and nothing else.
func TestMetricsTableIsTheCode(t *testing.T) {
	t.Parallel()
	exported := exportedMetrics(t)
	table := metricsTable(t)
	for name, labels := range exported {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if _, histogram := exported[base+"_bucket"]; histogram {
			name = base
			labels = exported[base+"_sum"]
		}
		require.Contains(t, table, name, "docs/operations.md's metrics table lists %s", name)
		require.ElementsMatch(t, labels, table[name], "labels of %s in docs/operations.md", name)
	}
	for name := range table {
		_, plain := exported[name]
		_, histogram := exported[name+"_bucket"]
		require.True(t, plain || histogram, "docs/operations.md lists %s, which botq does not export", name)
	}
}

// checkExpr parses a PromQL expression and requires every metric it reads
// to be one botq exports, and every label it matches on to be one of
// that metric's (or the instance and job labels Prometheus adds).
func checkExpr(t *testing.T, exported map[string][]string, where, expr string) {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	require.NoError(t, err, "%s: %s", where, expr)
	selectors := 0
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		selectors++
		labels, ok := exported[vs.Name]
		require.True(t, ok, "%s: %s is not a metric botq exports (%s)", where, vs.Name, expr)
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel || m.Name == "instance" || m.Name == "job" {
				continue
			}
			require.Contains(t, labels, m.Name, "%s: %s has no label %s (%s)", where, vs.Name, m.Name, expr)
		}
		return nil
	})
	require.Positive(t, selectors, "%s reads a metric: %s", where, expr)
}

// alertsTable reads docs/operations.md's alerts: name -> expression, for.
func alertsTable(t *testing.T) map[string][2]string {
	t.Helper()
	raw, err := os.ReadFile("../docs/operations.md")
	require.NoError(t, err)
	rowRe := regexp.MustCompile("(?m)^\\| `(Botq[A-Za-z]+)` \\| `([^`]+)` \\| *([0-9a-z]*) *\\|")
	out := map[string][2]string{}
	for _, m := range rowRe.FindAllStringSubmatch(string(raw), -1) {
		out[m[1]] = [2]string{m[2], m[3]}
	}
	return out
}

// deploy/prometheus/botq-rules.yml parses with Prometheus' own rule parser,
// reads only metrics and labels botq exports, and holds the alerts of
// docs/operations.md, with their expressions and durations.
func TestPrometheusRules(t *testing.T) {
	t.Parallel()
	const path = "../deploy/prometheus/botq-rules.yml"
	groups, errs := rulefmt.ParseFile(path, false, model.UTF8Validation, parser.NewParser(parser.Options{}), nil)
	require.Empty(t, errs, "%s: %v", path, errs)
	exported := exportedMetrics(t)
	got := map[string][2]string{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "every rule of %s is an alert", path)
			checkExpr(t, exported, path+" "+r.Alert, r.Expr)
			require.NotEmpty(t, r.Annotations["summary"], "%s has a summary", r.Alert)
			require.NotEmpty(t, r.Labels["severity"], "%s has a severity", r.Alert)
			forText := ""
			if r.For != 0 {
				forText = r.For.String()
			}
			got[r.Alert] = [2]string{r.Expr, forText}
		}
	}
	want := alertsTable(t)
	require.Len(t, want, 9, "docs/operations.md lists its alerts")
	require.Equal(t, want, got, "the rules are docs/operations.md's alerts (name, expression, for)")
}

// grafanaVars replaces the dashboard's variables with values a query may
// take, so that its expressions parse as Prometheus will get them.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "$app", ".*")

// deploy/grafana/botq.json is a dashboard whose every query parses and
// reads only metrics and labels botq exports.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../deploy/grafana/botq.json")
	require.NoError(t, err)
	type target struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	}
	type panel struct {
		Title   string   `json:"title"`
		Type    string   `json:"type"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		Title      string  `json:"title"`
		UID        string  `json:"uid"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	require.NoError(t, dec.Decode(&d))
	require.Equal(t, "botq", d.UID)
	exported := exportedMetrics(t)
	var all []panel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	used := map[string]bool{}
	queries := 0
	for _, p := range all {
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q has a query", p.Title)
		for _, tg := range p.Targets {
			expr := grafanaVars.Replace(tg.Expr)
			checkExpr(t, exported, "deploy/grafana/botq.json panel "+p.Title, expr)
			e, _ := parser.NewParser(parser.Options{}).ParseExpr(expr)
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					used[strings.TrimSuffix(vs.Name, "_bucket")] = true
				}
				return nil
			})
			queries++
		}
	}
	require.Positive(t, queries)
	for _, v := range d.Templating.List {
		if v.Definition == "" {
			continue
		}
		m := regexp.MustCompile(`^label_values\((\w+), (\w+)\)$`).FindStringSubmatch(v.Definition)
		require.NotNil(t, m, "variable %s: %s", v.Name, v.Definition)
		require.Contains(t, exported[m[1]], m[2], "variable %s reads label %s of %s", v.Name, m[2], m[1])
	}
	// Every botq metric has a panel.
	var missing []string
	for _, name := range keysOf(metricsTable(t)) {
		if !used[name] {
			missing = append(missing, name)
		}
	}
	require.Empty(t, missing, "metrics without a panel in deploy/grafana/botq.json")
}

func keysOf(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
