package main

import (
	"bytes"
	"context"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// `botq --version` and `botq version` print the same line; the version is
// the one -ldflags set, else the one Go recorded in the binary.
func TestVersionFlag(t *testing.T) {
	t.Parallel()
	var flag, sub bytes.Buffer
	require.Equal(t, 0, runEnv(context.Background(), []string{"--version"}, envOf(), strings.NewReader(""), &flag, &flag))
	require.Equal(t, 0, runEnv(context.Background(), []string{"version"}, envOf(), strings.NewReader(""), &sub, &sub))
	require.Equal(t, "botq "+buildVersion()+"\n", flag.String())
	require.Equal(t, flag.String(), sub.String())

	bin := filepath.Join(t.TempDir(), "botq")
	out, err := osexec.Command("go", "build", "-ldflags", "-X main.version=v1.2.3-test", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = osexec.Command(bin, "--version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "botq v1.2.3-test\n", string(out))
}
