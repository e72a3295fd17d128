package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/botq/botq/server"
)

// There is no Docker engine (nor compose) on our machines, so the compose
// file is checked here: well-formed, standard keys only, dependencies that
// exist, and a botq command line and environment that botq itself accepts.
func TestDockerComposeFile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../docker-compose.yml")
	require.NoError(t, err)
	var f struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
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
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&f))
	require.Contains(t, f.Services, "postgres")
	require.Contains(t, f.Services, "botq")

	known := map[string]bool{}
	for _, name := range server.EnvNames() {
		known[name] = true
	}
	for name, s := range f.Services {
		require.NotEmpty(t, s.Image, "service %s has an image", name)
		for dep, d := range s.DependsOn {
			require.Contains(t, f.Services, dep, "%s depends on a service that exists", name)
			require.Contains(t, []string{"service_started", "service_healthy", "service_completed_successfully"}, d.Condition)
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
	}

	// The botq command line parses (flags and subcommand) without running.
	cmd := f.Services["botq"].Command
	require.Equal(t, []string{"go", "run", "./cmd/botq"}, cmd[:3])
	root := newRootCmd(&cliEnv{lookupEnv: envOf()})
	sub, rest, err := root.Find(cmd[3:])
	require.NoError(t, err)
	require.NoError(t, sub.ParseFlags(rest))
	require.Equal(t, "dev", sub.Name())
	env := []string{}
	for k, v := range f.Services["botq"].Environment {
		env = append(env, k, v)
	}
	_, err = server.LoadConfig("", envOf(env...))
	require.NoError(t, err, "the environment is a valid botq configuration")
}
