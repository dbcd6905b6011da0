package guestassets

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// unitKeys parses a systemd unit into section.Key -> values.
func unitKeys(t *testing.T, unit []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			require.True(t, ok, "unit line %q is not Key=Value", line)
			require.NotEmpty(t, section, "key %q outside a section", k)
			out[section+"."+strings.TrimSpace(k)] = append(out[section+"."+strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return out
}

func words(vals []string) []string {
	var out []string
	for _, v := range vals {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

func TestNetworkUnit(t *testing.T) {
	u := unitKeys(t, NetworkService())
	require.Equal(t, []string{"oneshot"}, u["Service.Type"])
	require.Equal(t, []string{"yes"}, u["Service.RemainAfterExit"])
	require.Equal(t, []string{NetworkBootstrapPath}, u["Service.ExecStart"])
	require.Subset(t, words(u["Unit.Before"]), []string{"network.target", "network-online.target", "ssh.service", "sshd.service"})
	require.Contains(t, words(u["Unit.Wants"]), "network.target")
	require.NotContains(t, words(u["Unit.Wants"]), "network-online.target", "a provider orders itself before network-online.target; pulling it in is for consumers")
	require.NotContains(t, u, "Unit.DefaultDependencies", "default dependencies: runs after sysinit (udev, modules, local filesystems)")
	require.Equal(t, []string{WantedBy}, u["Install.WantedBy"])
}

func TestAgentUnit(t *testing.T) {
	u := unitKeys(t, AgentService())
	require.Equal(t, []string{AgentPath}, u["Service.ExecStart"])
	require.Subset(t, words(u["Unit.After"]), []string{"systemd-modules-load.service", NetworkUnit})
	require.Equal(t, []string{"on-failure"}, u["Service.Restart"])
	require.Equal(t, []string{WantedBy}, u["Install.WantedBy"])
}

func TestModulesLoad(t *testing.T) {
	var mods []string
	for _, l := range strings.Split(string(ModulesLoad()), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			mods = append(mods, l)
		}
	}
	// The module names of Linux's net/vmw_vsock (CONFIG_VSOCKETS,
	// CONFIG_VIRTIO_VSOCKETS); the common part is a dependency.
	require.Equal(t, []string{"vsock", "vmw_vsock_virtio_transport"}, mods)
}

func TestScriptDefaults(t *testing.T) {
	s := string(NetworkBootstrap())
	require.True(t, strings.HasPrefix(s, "#!/bin/sh\n"))
	require.Contains(t, s, "${BANGER_NETWORK_ENV:-"+NetworkConfigPath+"}", "the script reads NetworkConfigPath")
	require.NotContains(t, s, "\r")
}

func TestManifest(t *testing.T) {
	files, links := Files(), Symlinks()
	seen := map[string]bool{}
	companions := 0
	for _, f := range files {
		require.True(t, path.IsAbs(f.Path) && path.Clean(f.Path) == f.Path, f.Path)
		require.False(t, seen[f.Path], "duplicate %s", f.Path)
		seen[f.Path] = true
		require.Equal(t, f.Mode, f.Mode.Perm(), "plain permission bits")
		if f.Companion {
			companions++
			require.Equal(t, AgentPath, f.Path)
			require.Nil(t, f.Data)
			require.Equal(t, fs.FileMode(0o755), f.Mode)
			continue
		}
		require.NotEmpty(t, f.Data, f.Path)
		want := fs.FileMode(0o644)
		if bytes.HasPrefix(f.Data, []byte("#!")) {
			want = 0o755
		}
		require.Equal(t, want, f.Mode, f.Path)
	}
	require.Equal(t, 1, companions)
	require.Equal(t, AgentPath, files[0].Path, "the big file first")
	require.Len(t, links, 2)
	for _, l := range links {
		require.True(t, seen[l.Target], "link %s targets an asset", l.Path)
		require.True(t, path.IsAbs(l.Target), "absolute target, as systemctl enable makes")
		require.Equal(t, WantsDir, path.Dir(l.Path))
		require.Equal(t, path.Base(l.Target), path.Base(l.Path))
		require.False(t, seen[l.Path])
		seen[l.Path] = true
	}
	// Every embedded file is installed.
	entries, err := fs.ReadDir(FS(), "files")
	require.NoError(t, err)
	require.Len(t, entries, len(files)-companions)
	// Fresh slices per call.
	Files()[1].Data[0] = 'X'
	require.Equal(t, byte('#'), Files()[1].Data[0])
}

// TestDocListsEveryPath keeps the package documentation's table in step
// with the manifest.
func TestDocListsEveryPath(t *testing.T) {
	src, err := os.ReadFile("assets.go")
	require.NoError(t, err)
	doc := string(src[:bytes.Index(src, []byte("package guestassets"))])
	for _, f := range Files() {
		require.Regexp(t, regexp.MustCompile(regexp.QuoteMeta(f.Path)+fmt.Sprintf(`\s+%04o\s`, uint32(f.Mode))), doc)
	}
	require.Contains(t, doc, WantsDir+"/<unit> -> "+UnitDir+"/<unit>")
}
