package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/botq/botq/server"
)

// composeBuild is a service's build: a context directory, or
// {context, dockerfile}.
type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func (b *composeBuild) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	type plain composeBuild
	return n.Decode((*plain)(b))
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       *composeBuild     `yaml:"build"`
	WorkingDir  string            `yaml:"working_dir"`
	Volumes     []string          `yaml:"volumes"`
	Environment map[string]string `yaml:"environment"`
	Command     []string          `yaml:"command"`
	Ports       []string          `yaml:"ports"`
	Healthcheck *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

// composeDefaults replaces ${VAR:-default} with its default, as compose
// does when VAR is not set (the test reads no environment).
var composeVarRe = regexp.MustCompile(`\$\{[A-Z_]+:-([^}]*)\}`)

func composeDefaults(s string) string { return composeVarRe.ReplaceAllString(s, "$1") }

// There is no Docker engine (nor compose) on our machines, so the compose
// file and the Dockerfile are checked here: well-formed, standard keys only,
// images or build contexts that exist, dependencies that exist, healthchecks,
// no host port that a local Postgres or another service holds, and a botq
// command line and environment that botq itself accepts.
func TestDockerComposeFile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../docker-compose.yml")
	require.NoError(t, err)
	var f struct {
		Services map[string]composeService `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
	}
	dec := yaml.NewDecoder(strings.NewReader(composeDefaults(string(raw))))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&f))
	for _, name := range []string{"postgres", "migrate", "botq"} {
		require.Contains(t, f.Services, name)
	}

	known := map[string]bool{}
	for _, name := range server.EnvNames() {
		known[name] = true
	}
	for name, s := range f.Services {
		require.True(t, s.Image != "" || s.Build != nil, "service %s has an image or a build", name)
		if s.Build != nil {
			dockerfile := s.Build.Dockerfile
			if dockerfile == "" {
				dockerfile = "Dockerfile"
			}
			path := filepath.Join("../..", s.Build.Context, dockerfile)
			_, err := os.Stat(path)
			require.NoError(t, err, "service %s builds %s", name, path)
		}
		for dep, d := range s.DependsOn {
			require.Contains(t, f.Services, dep, "%s depends on a service that exists", name)
			require.Contains(t, []string{"service_started", "service_healthy", "service_completed_successfully"}, d.Condition)
			if d.Condition == "service_healthy" {
				require.NotNil(t, f.Services[dep].Healthcheck, "%s waits for %s to be healthy: it has a healthcheck", name, dep)
			}
		}
		for _, v := range s.Volumes {
			src := strings.SplitN(v, ":", 2)[0]
			if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				require.Contains(t, f.Volumes, src, "named volume %s is declared", src)
			}
		}
		for k := range s.Environment {
			if strings.HasPrefix(k, "BOTQ_") || k == "DATABASE_URL" {
				require.True(t, known[k], "%s: %s is not a botq setting", name, k)
			}
		}
		for _, p := range s.Ports {
			// Published on loopback only, and never on a port a local
			// Postgres (5432) is likely to hold.
			require.True(t, strings.HasPrefix(p, "127.0.0.1:"), "%s publishes %s on loopback only", name, p)
			require.NotEqual(t, "5432", strings.Split(p, ":")[1], "%s: host port 5432 clashes with a local Postgres", name)
		}
	}
	require.NotNil(t, f.Services["postgres"].Healthcheck)
	require.NotNil(t, f.Services["botq"].Healthcheck, "botq has a healthcheck")
	require.Equal(t, "service_completed_successfully", f.Services["botq"].DependsOn["migrate"].Condition, "botq starts once the schema is migrated")

	// The command lines parse (subcommand and flags) without running,
	// and so does the healthcheck's botq command.
	root := newRootCmd(&cliEnv{lookupEnv: envOf()})
	for name, want := range map[string]string{"migrate": "up", "botq": "dev"} {
		sub, rest, err := root.Find(f.Services[name].Command)
		require.NoError(t, err, name)
		require.NoError(t, sub.ParseFlags(rest), name)
		require.Equal(t, want, sub.Name(), name)
	}
	hc := f.Services["botq"].Healthcheck.Test
	require.Equal(t, []string{"CMD", "/usr/local/bin/botq", "probe"}, hc[:3], "the image has no shell or curl: botq probes itself")
	require.Contains(t, hc[3], "/readyz")
	env := []string{}
	for k, v := range f.Services["botq"].Environment {
		env = append(env, k, v)
	}
	cfg, err := server.LoadConfig("", envOf(env...))
	require.NoError(t, err, "the environment is a valid botq configuration")
	require.Contains(t, hc[3], strings.Split(cfg.HTTP.Listen, ":")[1], "the healthcheck probes the port botq listens on")
}

// The Dockerfile builds a static binary (cgo off) in a Go stage and runs
// it as a non-root user on a small base; every file it copies from the
// build context exists, every stage it copies from is defined, and the
// entrypoint is the binary it copied.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	cont := ""
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cont += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		lines = append(lines, cont+l)
		cont = ""
	}
	require.Empty(t, cont, "no instruction ends with a continuation")

	type stage struct{ base, name string }
	var stages []stage
	var copied []string // destinations copied into the last stage
	var user, entrypoint, build string
	for _, l := range lines {
		instr, args, _ := strings.Cut(l, " ")
		instr = strings.ToUpper(instr)
		require.Contains(t, []string{"FROM", "WORKDIR", "COPY", "RUN", "ARG", "ENV", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "LABEL"}, instr, "instruction %q", l)
		switch instr {
		case "FROM":
			f := strings.Fields(args)
			s := stage{base: f[0]}
			if len(f) == 3 {
				require.Equal(t, "AS", strings.ToUpper(f[1]), l)
				s.name = f[2]
			}
			stages = append(stages, s)
			copied, user = nil, ""
		case "COPY":
			f := strings.Fields(args)
			from := ""
			if strings.HasPrefix(f[0], "--from=") {
				from, f = strings.TrimPrefix(f[0], "--from="), f[1:]
				require.True(t, slices.ContainsFunc(stages[:len(stages)-1], func(s stage) bool { return s.name == from }),
					"COPY --from=%s names an earlier stage", from)
			}
			require.GreaterOrEqual(t, len(f), 2, l)
			for _, src := range f[:len(f)-1] {
				if from == "" && src != "." {
					_, err := os.Stat(filepath.Join("../..", src))
					require.NoError(t, err, "COPY %s: in the build context", src)
				}
			}
			copied = append(copied, f[len(f)-1])
		case "RUN":
			if strings.Contains(args, "go build") {
				build = args
			}
		case "USER":
			user = args
		case "ENTRYPOINT":
			entrypoint = args
		}
	}
	require.GreaterOrEqual(t, len(stages), 2, "a multi-stage build")
	require.True(t, strings.HasPrefix(stages[0].base, "golang:1.26"), "built with the Go of go.mod: %s", stages[0].base)
	require.Contains(t, build, "CGO_ENABLED=0", "a static binary")
	require.Contains(t, build, "./cmd/botq")
	final := stages[len(stages)-1].base
	require.True(t, strings.HasPrefix(final, "gcr.io/distroless/static") || strings.HasPrefix(final, "alpine:"), "a small base: %s", final)
	require.NotEmpty(t, user, "the last stage sets a user")
	require.NotContains(t, []string{"root", "0", "root:root", "0:0"}, user, "not root")
	require.Equal(t, `["/usr/local/bin/botq"]`, entrypoint)
	require.Contains(t, copied, "/usr/local/bin/botq", "the entrypoint is the binary copied from the build stage")

	ignore, err := os.ReadFile("../../.dockerignore")
	require.NoError(t, err)
	for _, p := range []string{".git", ".botq", "bin"} {
		require.Contains(t, strings.Fields(string(ignore)), p, ".dockerignore leaves out %s", p)
	}
}

// botq probe, the container's healthcheck, exits 0 on 2xx only.
func TestProbe(t *testing.T) {
	t.Parallel()
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(int(status.Load())) }))
	defer srv.Close()
	var out bytes.Buffer
	require.Equal(t, 0, runEnv(context.Background(), []string{"probe", srv.URL + "/readyz"}, envOf(), strings.NewReader(""), &out, &out), out.String())
	status.Store(http.StatusServiceUnavailable)
	out.Reset()
	require.Equal(t, 1, runEnv(context.Background(), []string{"probe", srv.URL + "/readyz"}, envOf(), strings.NewReader(""), &out, &out))
	require.Contains(t, out.String(), "503")
	require.Equal(t, 1, runEnv(context.Background(), []string{"probe", "http://127.0.0.1:1/readyz", "--timeout", "2s"}, envOf(), strings.NewReader(""), &out, &out))
}
