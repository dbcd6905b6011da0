package guestassets

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestInitManifest(t *testing.T) {
	require.Equal(t, Files(), FilesFor(Systemd), "systemd's set is exactly what it always was")
	require.Equal(t, Symlinks(), SymlinksFor(Systemd))
	require.Nil(t, AppendsFor(Systemd))
	require.Nil(t, FilesFor("upstart"))
	used := map[string]bool{}
	for _, init := range Inits() {
		t.Run(string(init), func(t *testing.T) {
			files := FilesFor(init)
			require.Equal(t, AgentPath, files[0].Path, "the big file first")
			require.True(t, files[0].Companion)
			seen := map[string]bool{}
			for _, f := range files {
				require.True(t, path.IsAbs(f.Path) && path.Clean(f.Path) == f.Path, f.Path)
				require.False(t, seen[f.Path], "duplicate %s", f.Path)
				seen[f.Path] = true
				if f.Companion {
					continue
				}
				want := fs.FileMode(0o644)
				if bytes.HasPrefix(f.Data, []byte("#!")) {
					want = 0o755
				}
				require.Equal(t, want, f.Mode, f.Path)
				used[string(f.Data)] = true
			}
			for _, l := range SymlinksFor(init) {
				target := l.Target
				if !path.IsAbs(target) {
					target = path.Join(path.Dir(l.Path), target)
				}
				require.True(t, seen[target], "%s -> %s names an asset", l.Path, l.Target)
				require.False(t, seen[l.Path])
				seen[l.Path] = true
			}
			for _, a := range AppendsFor(init) {
				require.True(t, bytes.HasSuffix(a.Lines, []byte("\n")))
				require.False(t, seen[a.Path])
				used[string(a.Lines)], used[string(a.Default)] = true, true
			}
		})
	}
	// Every embedded per-init file is installed by some init.
	ents, err := fs.ReadDir(initFiles, "initfiles")
	require.NoError(t, err)
	for _, e := range ents {
		b, err := initFiles.ReadFile("initfiles/" + e.Name())
		require.NoError(t, err)
		require.True(t, used[string(b)], "initfiles/%s is installed by no init", e.Name())
		require.NotContains(t, string(b), "\r")
	}
}

// lsb parses an LSB header into keyword -> value.
func lsb(t *testing.T, script []byte) map[string]string {
	t.Helper()
	s := string(script)
	begin, end := strings.Index(s, "### BEGIN INIT INFO\n"), strings.Index(s, "### END INIT INFO\n")
	require.True(t, begin >= 0 && end > begin, "LSB header")
	out := map[string]string{}
	for _, l := range strings.Split(s[begin:end], "\n")[1:] {
		if l == "" {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(l, "#"), ":")
		require.True(t, ok && strings.HasPrefix(l, "# "), "header line %q", l)
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out
}

func TestSysvinitScripts(t *testing.T) {
	net, agent := lsb(t, SysvinitNetworkScript()), lsb(t, SysvinitAgentScript())
	require.Equal(t, NetworkScriptName, net["Provides"])
	require.Equal(t, AgentScriptName, agent["Provides"])
	for _, h := range []map[string]string{net, agent} {
		require.Equal(t, "2 3 4 5", h["Default-Start"])
		require.Equal(t, "0 1 6", h["Default-Stop"])
		require.Contains(t, strings.Fields(h["Required-Start"]), "$local_fs")
	}
	require.Contains(t, strings.Fields(agent["Required-Start"]), NetworkScriptName, "the agent after the network")
	require.Contains(t, strings.Fields(net["X-Start-Before"]), AgentScriptName)
	for _, s := range [][]byte{SysvinitNetworkScript(), SysvinitAgentScript()} {
		require.True(t, bytes.HasPrefix(s, []byte("#!/bin/sh\n")))
		for _, action := range []string{"start)", "stop)", "restart |", "status)"} {
			require.Contains(t, string(s), "\n"+action)
		}
	}
	require.Contains(t, string(SysvinitNetworkScript()), NetworkBootstrapPath)
	require.Contains(t, string(SysvinitAgentScript()), SupervisePath)
	require.Contains(t, string(AgentSupervise()), AgentPath)

	// The rc links: network before agent going up, after it going down.
	ls := SymlinksFor(Sysvinit)
	require.Len(t, ls, 14)
	for _, l := range ls {
		base := path.Base(l.Path)
		lvl := strings.TrimSuffix(strings.TrimPrefix(path.Dir(l.Path), "/etc/rc"), ".d")
		require.Equal(t, "../init.d/"+base[3:], l.Target)
		if strings.Contains("2345", lvl) {
			require.Regexp(t, `^S0(1banger-network|2banger-vsock-agent)$`, base)
		} else {
			require.Contains(t, "016", lvl)
			require.Regexp(t, `^K0(1banger-vsock-agent|2banger-network)$`, base)
		}
	}
}

func TestOpenRCScripts(t *testing.T) {
	net, agent := string(OpenRCNetworkScript()), string(OpenRCAgentScript())
	for _, s := range []string{net, agent} {
		require.True(t, strings.HasPrefix(s, "#!/sbin/openrc-run\n"))
		require.Regexp(t, `(?s)\ndepend\(\) \{\n.*\n\}\n`, s)
	}
	require.Regexp(t, `\n\tbefore [^\n]*\bbanger-vsock-agent\b`, net)
	require.Contains(t, net, "\n\t"+NetworkBootstrapPath+"\n")
	require.Contains(t, agent, "\n\twant banger-network\n\tafter banger-network\n", "ordered after the network, not bound to it")
	require.NotContains(t, agent, "need banger-network")
	require.Contains(t, agent, "\nsupervisor=supervise-daemon\n")
	require.Contains(t, agent, "\ncommand="+AgentPath+"\n")
	require.Regexp(t, `\nrespawn_delay=\d+\n`, agent)
	require.Contains(t, agent, "\nrespawn_max=0\n", "never give up, like StartLimitIntervalSec=0")
	for _, l := range SymlinksFor(OpenRC) {
		require.Equal(t, RunlevelDir, path.Dir(l.Path))
		require.Equal(t, InitDir+"/"+path.Base(l.Path), l.Target, "absolute, as rc-update add makes")
	}
}

func TestBusyboxAssets(t *testing.T) {
	s := string(BusyboxSysinit())
	m := regexp.MustCompile(`\nfor m in ([^;]*); do\n\tmodprobe "\$m"`).FindStringSubmatch(s)
	require.NotNil(t, m, "the sysinit script loads the modules")
	require.Equal(t, ModuleNames(), strings.Fields(m[1]), "the same modules as %s", ModulesLoadPath)
	require.Contains(t, s, "\nexec "+NetworkBootstrapPath+"\n")
	require.Equal(t, "::sysinit:"+BusyboxSysinitPath+"\n::respawn:"+SupervisePath+"\n", string(BusyboxInittabEntries()))
	require.Contains(t, FilesFor(Busybox), File{Path: SupervisePath, Mode: 0o755, Data: AgentSupervise()}, "the respawn entry's loop is installed")
	for _, l := range strings.Split(strings.TrimSpace(string(BusyboxInittabDefault())), "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		require.Len(t, strings.SplitN(l, ":", 4), 4, "inittab entry %q", l)
	}
	require.Equal(t, []string{"vsock", "vmw_vsock_virtio_transport"}, ModuleNames())
	modules := Append{Path: ModulesPath, Mode: 0o644, Lines: []byte("vsock\nvmw_vsock_virtio_transport\n")}
	require.Equal(t, []Append{modules}, AppendsFor(OpenRC))
	require.Equal(t, []Append{
		modules,
		{Path: DependStartPath, Mode: 0o644, Lines: SysvinitDependStart(), IfExists: true},
		{Path: DependStopPath, Mode: 0o644, Lines: SysvinitDependStop(), IfExists: true},
	}, AppendsFor(Sysvinit))
	require.Nil(t, AppendsFor(Systemd))
}

// TestSysvinitDependAssets reads the lines added to insserv's makefiles the
// way startpar's parse_makefile does ("TARGETS = a b", "a: b c", '#'
// comments): both scripts are targets, and the order is the rc links'
// (SymlinksFor): the network starts before the agent, the agent stops
// before the network.
func TestSysvinitDependAssets(t *testing.T) {
	parse := func(b []byte) (targets []string, deps map[string][]string) {
		deps = map[string][]string{}
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			l = strings.TrimSpace(l)
			switch {
			case l == "" || strings.HasPrefix(l, "#"):
			case strings.HasPrefix(l, "TARGETS ="):
				targets = append(targets, strings.Fields(strings.TrimPrefix(l, "TARGETS ="))...)
			default:
				name, rest, ok := strings.Cut(l, ":")
				require.True(t, ok, "startpar ignores %q", l)
				deps[name] = append(deps[name], strings.Fields(rest)...)
			}
		}
		return targets, deps
	}
	both := []string{NetworkScriptName, AgentScriptName}
	targets, deps := parse(SysvinitDependStart())
	require.ElementsMatch(t, both, targets)
	require.Equal(t, map[string][]string{AgentScriptName: {NetworkScriptName}}, deps, "the agent starts after the network")
	targets, deps = parse(SysvinitDependStop())
	require.ElementsMatch(t, both, targets)
	require.Equal(t, map[string][]string{NetworkScriptName: {AgentScriptName}}, deps, "the network stops after the agent")
	for _, b := range [][]byte{SysvinitDependStart(), SysvinitDependStop()} {
		require.True(t, bytes.HasSuffix(b, []byte("\n")))
		require.NotContains(t, string(b), "\t", "insserv's makefiles have no recipes")
	}
	// The rc links agree: S01 network, S02 agent; K01 agent, K02 network.
	for _, l := range SymlinksFor(Sysvinit) {
		base := path.Base(l.Path)
		switch base[:3] {
		case "S01", "K02":
			require.Equal(t, NetworkScriptName, base[3:])
		case "S02", "K01":
			require.Equal(t, AgentScriptName, base[3:])
		}
	}
}

// TestInitScriptsParse runs every per-init script through the shells'
// syntax check (openrc-run scripts are sh too) and shellcheck if present.
func TestInitScriptsParse(t *testing.T) {
	scripts := map[string][]byte{}
	for _, init := range Inits() {
		for _, f := range FilesFor(init) {
			if bytes.HasPrefix(f.Data, []byte("#!")) {
				scripts[string(init)+":"+f.Path] = f.Data
			}
		}
	}
	dir := t.TempDir()
	for name, sh := range shells(t) {
		for id, data := range scripts {
			p := filepath.Join(dir, "s")
			require.NoError(t, os.WriteFile(p, data, 0o755))
			out, err := exec.Command(sh[0], append(sh[1:], "-n", p)...).CombinedOutput()
			require.NoError(t, err, "%s -n %s: %s", name, id, out)
		}
	}
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Log("shellcheck not installed; syntax checked only")
		return
	}
	for id, data := range scripts {
		p := filepath.Join(dir, "s")
		require.NoError(t, os.WriteFile(p, data, 0o755))
		// openrc-run scripts set variables openrc reads (SC2034) and
		// are sh underneath.
		out, err := exec.Command(sc, "-s", "sh", "-e", "SC2034", p).CombinedOutput()
		require.NoError(t, err, "shellcheck %s:\n%s", id, out)
	}
}

// TestDocListsEveryInitPath keeps the package documentation's per-init
// tables in step with FilesFor.
func TestDocListsEveryInitPath(t *testing.T) {
	src, err := os.ReadFile("assets.go")
	require.NoError(t, err)
	doc := string(src[:bytes.Index(src, []byte("package guestassets"))])
	for _, init := range Inits() {
		for _, f := range FilesFor(init) {
			require.Regexp(t, regexp.MustCompile(regexp.QuoteMeta(f.Path)+fmt.Sprintf(`\s+%04o\s`, uint32(f.Mode))), doc, "%s: %s", init, f.Path)
		}
		for _, a := range AppendsFor(init) {
			require.Regexp(t, regexp.MustCompile(regexp.QuoteMeta(a.Path)+`\s+lines added: `), doc)
		}
	}
	for _, d := range []string{RunlevelDir + "/<name> -> " + InitDir + "/<name>", "S01banger-network, S02banger-vsock-agent -> ../init.d/<name>", "K01banger-vsock-agent, K02banger-network -> ../init.d/<name>"} {
		require.Contains(t, doc, d)
	}
}
