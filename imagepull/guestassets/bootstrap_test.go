package guestassets

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// shells returns the POSIX shells to run the script with: dash (Debian's
// /bin/sh), busybox sh (minimal images) and bash in POSIX mode (sh on
// Fedora and friends), those that are installed.
func shells(t *testing.T) map[string][]string {
	out := map[string][]string{}
	if p, err := exec.LookPath("dash"); err == nil {
		out["dash"] = []string{p}
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		switch {
		case exec.Command(p, "sh", "-c", "true").Run() != nil:
		case !runsPathFirst(t, p):
			// busybox-static (FEATURE_SH_STANDALONE, PREFER_APPLETS): its
			// shell runs its own ip, sleep... whatever PATH says, so the
			// fakes these tests put on PATH cannot stand in for them.
			t.Logf("busybox sh at %s runs its applets ahead of PATH (a standalone shell, as busybox-static's): left out, the tests' fakes would not run", p)
		default:
			out["busybox"] = []string{p, "sh"}
		}
	}
	if p, err := exec.LookPath("bash"); err == nil {
		out["bash"] = []string{p, "--posix"}
	}
	if len(out) == 0 {
		if p, err := exec.LookPath("sh"); err == nil {
			out["sh"] = []string{p}
		}
	}
	if len(out) == 0 {
		t.Skip("no POSIX shell (dash, busybox, bash, sh) on PATH")
	}
	return out
}

// runsPathFirst reports whether busybox's shell runs a program found on
// PATH rather than its applet of the same name.
func runsPathFirst(t *testing.T, busybox string) bool {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ip"), []byte("#!/bin/sh\necho path-ip\n"), 0o755))
	cmd := exec.Command(busybox, "sh", "-c", "ip")
	cmd.Env = []string{"PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH")}
	out, _ := cmd.Output()
	return strings.TrimSpace(string(out)) == "path-ip"
}

// sandbox is one run's world: fake ip on PATH, temp files for every path
// the script touches.
type sandbox struct {
	dir                                                     string
	script, ipLog, config, cmdline, resolv, hostname, khost string
	console, sysNet                                         string
	env                                                     []string
}

func newSandbox(t *testing.T, ifaces ...string) *sandbox {
	t.Helper()
	d := t.TempDir()
	s := &sandbox{
		dir:      d,
		script:   filepath.Join(d, "banger-network-bootstrap"),
		ipLog:    filepath.Join(d, "ip.log"),
		config:   filepath.Join(d, "etc", "banger", "network.env"),
		cmdline:  filepath.Join(d, "cmdline"),
		resolv:   filepath.Join(d, "etc", "resolv.conf"),
		hostname: filepath.Join(d, "etc", "hostname"),
		khost:    filepath.Join(d, "kernel-hostname"),
		console:  filepath.Join(d, "console"),
		sysNet:   filepath.Join(d, "sys-class-net"),
	}
	require.NoError(t, os.WriteFile(s.script, NetworkBootstrap(), 0o755))
	bin := filepath.Join(d, "bin")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	// The fake ip records its arguments and fails when told to.
	fakeIP := `#!/bin/sh
printf '%s\n' "$*" >>"$FAKE_IP_LOG"
case "$*" in
"${FAKE_IP_FAIL:-}"*) [ -n "${FAKE_IP_FAIL:-}" ] && { echo "RTNETLINK answers: fake failure" >&2; exit 7; } ;;
esac
exit 0
`
	require.NoError(t, os.WriteFile(filepath.Join(bin, "ip"), []byte(fakeIP), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Dir(s.config), 0o755))
	require.NoError(t, os.WriteFile(s.khost, []byte("localhost\n"), 0o644))
	require.NoError(t, os.WriteFile(s.console, nil, 0o644))
	require.NoError(t, os.WriteFile(s.cmdline, []byte("console=ttyS0 reboot=k panic=1\n"), 0o644))
	if len(ifaces) == 0 {
		ifaces = []string{"lo", "eth0"}
	}
	for _, i := range ifaces {
		require.NoError(t, os.MkdirAll(filepath.Join(s.sysNet, i), 0o755))
	}
	s.env = []string{
		"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"FAKE_IP_LOG=" + s.ipLog,
		"BANGER_NETWORK_ENV=" + s.config,
		"BANGER_CMDLINE=" + s.cmdline,
		"BANGER_RESOLV_CONF=" + s.resolv,
		"BANGER_HOSTNAME_FILE=" + s.hostname,
		"BANGER_KERNEL_HOSTNAME=" + s.khost, // never the real one
		"BANGER_CONSOLE=" + s.console,
		"BANGER_SYS_NET=" + s.sysNet,
		"BANGER_IFACE_TIMEOUT=0",
	}
	return s
}

type result struct {
	code    int
	stderr  string
	console string
	ipCalls []string
}

func (s *sandbox) run(t *testing.T, shell []string, extraEnv ...string) result {
	t.Helper()
	_ = os.Remove(s.ipLog)
	require.NoError(t, os.WriteFile(s.console, nil, 0o644))
	cmd := exec.Command(shell[0], append(shell[1:], s.script)...)
	cmd.Env = append(append([]string{}, s.env...), extraEnv...)
	cmd.Dir = s.dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	r := result{stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	if b, err := os.ReadFile(s.ipLog); err == nil {
		r.ipCalls = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	b, err := os.ReadFile(s.console)
	require.NoError(t, err)
	r.console = string(b)
	return r
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

const fullConfig = `# banger network
IFACE=eth0
ADDRESS=172.16.0.2/30
GATEWAY=172.16.0.1
DNS=1.1.1.1,8.8.8.8
MTU=1400
HOSTNAME=vm-1
`

func TestBootstrapConfigures(t *testing.T) {
	for name, sh := range shells(t) {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				name, config, cmdline string
				ifaces                []string
				wantCalls             []string
				wantLine              string
				wantResolv            string // "" means no file
				wantHostname          string
			}{
				{
					name:   "full config",
					config: fullConfig,
					wantCalls: []string{
						"link set dev eth0 mtu 1400",
						"link set dev eth0 up",
						"addr replace 172.16.0.2/30 dev eth0",
						"route replace default via 172.16.0.1 dev eth0 onlink",
					},
					wantLine:     "banger-network: configured eth0 172.16.0.2/30\n",
					wantResolv:   "# written by banger-network-bootstrap\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n",
					wantHostname: "vm-1",
				},
				{
					name:   "quotes, blanks, comments and CRLF",
					config: "\r\n  # comment\r\nADDRESS = \"10.0.0.2/24\"\r\n\tDNS='9.9.9.9 149.112.112.112'\r\nGATEWAY=10.0.0.1",
					wantCalls: []string{
						"link set dev eth0 up",
						"addr replace 10.0.0.2/24 dev eth0",
						"route replace default via 10.0.0.1 dev eth0 onlink",
					},
					wantLine:   "banger-network: configured eth0 10.0.0.2/24\n",
					wantResolv: "# written by banger-network-bootstrap\nnameserver 9.9.9.9\nnameserver 149.112.112.112\n",
				},
				{
					name:   "address only; IPv6 nameserver",
					config: "ADDRESS=192.168.7.9/32\nDNS=2606:4700:4700::1111\n",
					wantCalls: []string{
						"link set dev eth0 up",
						"addr replace 192.168.7.9/32 dev eth0",
					},
					wantLine:   "banger-network: configured eth0 192.168.7.9/32\n",
					wantResolv: "# written by banger-network-bootstrap\nnameserver 2606:4700:4700::1111\n",
				},
				{
					name:    "kernel command line fallback",
					cmdline: "console=ttyS0 reboot=k banger.iface=eth1 banger.ip=10.1.0.2/24 banger.gw=10.1.0.1 banger.dns=9.9.9.9,1.1.1.1 banger.mtu=9000 banger.hostname=guest banger.other=x quiet\n",
					ifaces:  []string{"lo", "eth0", "eth1"},
					wantCalls: []string{
						"link set dev eth1 mtu 9000",
						"link set dev eth1 up",
						"addr replace 10.1.0.2/24 dev eth1",
						"route replace default via 10.1.0.1 dev eth1 onlink",
					},
					wantLine:     "banger-network: configured eth1 10.1.0.2/24\n",
					wantResolv:   "# written by banger-network-bootstrap\nnameserver 9.9.9.9\nnameserver 1.1.1.1\n",
					wantHostname: "guest",
				},
				{
					name:      "config file wins over the command line",
					config:    "ADDRESS=10.9.0.2/30\n",
					cmdline:   "banger.ip=10.1.0.2/24 banger.gw=10.1.0.1\n",
					wantCalls: []string{"link set dev eth0 up", "addr replace 10.9.0.2/30 dev eth0"},
					wantLine:  "banger-network: configured eth0 10.9.0.2/30\n",
				},
				{
					name:      "no config: link up only",
					wantCalls: []string{"link set dev eth0 up"},
					wantLine:  "banger-network: no config, link up only\n",
				},
				{
					name:      "no eth0: first non-loopback interface",
					config:    "ADDRESS=10.2.0.2/24\n",
					ifaces:    []string{"ens3", "lo"},
					wantCalls: []string{"link set dev ens3 up", "addr replace 10.2.0.2/24 dev ens3"},
					wantLine:  "banger-network: configured ens3 10.2.0.2/24\n",
				},
			} {
				t.Run(tc.name, func(t *testing.T) {
					s := newSandbox(t, tc.ifaces...)
					if tc.config != "" {
						require.NoError(t, os.WriteFile(s.config, []byte(tc.config), 0o644))
					}
					if tc.cmdline != "" {
						require.NoError(t, os.WriteFile(s.cmdline, []byte(tc.cmdline), 0o644))
					}
					r := s.run(t, sh)
					require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
					require.Equal(t, tc.wantCalls, r.ipCalls)
					require.Equal(t, tc.wantLine, r.console, "exactly one line on the console")
					require.Equal(t, tc.wantLine, r.stderr, "the same line on stderr (the journal)")
					if tc.wantResolv == "" {
						require.NoFileExists(t, s.resolv)
					} else {
						require.Equal(t, tc.wantResolv, readFile(t, s.resolv))
					}
					if tc.wantHostname == "" {
						require.NoFileExists(t, s.hostname)
						require.Equal(t, "localhost\n", readFile(t, s.khost))
					} else {
						require.Equal(t, tc.wantHostname+"\n", readFile(t, s.hostname))
						require.Equal(t, tc.wantHostname+"\n", readFile(t, s.khost))
					}
				})
			}
		})
	}
}

func TestBootstrapIdempotent(t *testing.T) {
	for name, sh := range shells(t) {
		t.Run(name, func(t *testing.T) {
			s := newSandbox(t)
			require.NoError(t, os.WriteFile(s.config, []byte(fullConfig), 0o644))
			first := s.run(t, sh)
			require.Equal(t, 0, first.code, first.stderr)
			resolv1, err := os.Stat(s.resolv)
			require.NoError(t, err)
			host1, err := os.Stat(s.hostname)
			require.NoError(t, err)
			files := func() []string {
				return []string{readFile(t, s.resolv), readFile(t, s.hostname), readFile(t, s.khost)}
			}
			want := files()

			second := s.run(t, sh)
			require.Equal(t, 0, second.code, second.stderr)
			require.Equal(t, first.ipCalls, second.ipCalls, "same invocations (all replace/set: no state piles up)")
			for _, c := range second.ipCalls {
				require.NotContains(t, c, " add ", "add is not idempotent: %s", c)
			}
			require.Equal(t, first.console, second.console)
			require.Equal(t, want, files())
			resolv2, err := os.Stat(s.resolv)
			require.NoError(t, err)
			host2, err := os.Stat(s.hostname)
			require.NoError(t, err)
			require.True(t, os.SameFile(resolv1, resolv2), "unchanged resolv.conf is not rewritten")
			require.True(t, os.SameFile(host1, host2), "unchanged hostname is not rewritten")
			entries, err := os.ReadDir(filepath.Dir(s.resolv))
			require.NoError(t, err)
			for _, e := range entries {
				require.NotContains(t, e.Name(), "banger-new", "no temp file left behind")
			}
		})
	}
}

func TestBootstrapRejectsBadConfig(t *testing.T) {
	for name, sh := range shells(t) {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				name, config, cmdline string
				want                  []string // substrings of the message
			}{
				{name: "unknown key", config: "ADDRESS=10.0.0.2/24\nGATEWAY_IP=10.0.0.1\n", want: []string{"line 2", `unknown key "GATEWAY_IP"`}},
				{name: "octet out of range", config: "ADDRESS=10.0.0.300/24\n", want: []string{"line 1", `ADDRESS="10.0.0.300/24"`, "not an IPv4 address with a prefix length"}},
				{name: "no prefix length", config: "ADDRESS=10.0.0.2\n", want: []string{`ADDRESS="10.0.0.2"`}},
				{name: "prefix too long", config: "ADDRESS=10.0.0.2/33\n", want: []string{`ADDRESS="10.0.0.2/33"`}},
				{name: "three octets", config: "ADDRESS=10.0.2/24\n", want: []string{`ADDRESS="10.0.2/24"`}},
				{name: "gateway", config: "ADDRESS=10.0.0.2/24\nGATEWAY=router\n", want: []string{`GATEWAY="router"`, "not an IPv4 address"}},
				{name: "dns", config: "ADDRESS=10.0.0.2/24\nDNS=1.1.1.1,dns.example\n", want: []string{`DNS="1.1.1.1,dns.example"`, `"dns.example"`}},
				{name: "dns glob is not expanded", config: "ADDRESS=10.0.0.2/24\nDNS=*\n", want: []string{`DNS="*"`, `holds "*"`}},
				{name: "mtu too small", config: "ADDRESS=10.0.0.2/24\nMTU=9\n", want: []string{`MTU="9"`}},
				{name: "mtu not a number", config: "ADDRESS=10.0.0.2/24\nMTU=1500b\n", want: []string{`MTU="1500b"`}},
				{name: "hostname", config: "ADDRESS=10.0.0.2/24\nHOSTNAME=-vm\n", want: []string{`HOSTNAME="-vm"`}},
				{name: "iface too long", config: "IFACE=abcdefghijklmnop\nADDRESS=10.0.0.2/24\n", want: []string{`IFACE="abcdefghijklmnop"`}},
				{name: "iface with slash", config: "IFACE=../eth0\nADDRESS=10.0.0.2/24\n", want: []string{`IFACE="../eth0"`}},
				{name: "not KEY=VALUE", config: "ADDRESS=10.0.0.2/24\n\nrm -rf /\n", want: []string{"line 3", `"rm -rf /" is not KEY=VALUE`}},
				{name: "address missing", config: "IFACE=eth0\nDNS=1.1.1.1\n", want: []string{"ADDRESS is missing"}},
				{name: "empty config file", config: "# nothing\n", want: []string{"ADDRESS is missing"}},
				{name: "bad kernel parameter", cmdline: "quiet banger.ip=10.0.0.2 banger.gw=10.0.0.1\n", want: []string{"kernel command line", `banger.ip="10.0.0.2"`}},
				{name: "kernel parameters without an address", cmdline: "banger.gw=10.0.0.1\n", want: []string{"kernel command line", "banger.ip is missing"}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					s := newSandbox(t)
					if tc.config != "" {
						require.NoError(t, os.WriteFile(s.config, []byte(tc.config), 0o644))
					}
					if tc.cmdline != "" {
						require.NoError(t, os.WriteFile(s.cmdline, []byte(tc.cmdline), 0o644))
					}
					r := s.run(t, sh)
					require.Equal(t, 1, r.code, "a bad config fails the unit; stderr: %s", r.stderr)
					for _, w := range tc.want {
						require.Contains(t, r.stderr, w)
						require.Contains(t, r.console, w, "the failure reaches the console too")
					}
					require.True(t, strings.HasPrefix(r.stderr, "banger-network: "), r.stderr)
					require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
					require.Empty(t, r.ipCalls, "nothing is configured before the whole config is valid")
					require.NoFileExists(t, s.resolv)
				})
			}
		})
	}
}

func TestBootstrapFailures(t *testing.T) {
	for name, sh := range shells(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("ip fails", func(t *testing.T) {
				s := newSandbox(t)
				require.NoError(t, os.WriteFile(s.config, []byte(fullConfig), 0o644))
				r := s.run(t, sh, "FAKE_IP_FAIL=addr replace")
				require.Equal(t, 2, r.code, r.stderr)
				require.Contains(t, r.stderr, "banger-network: command failed (exit 7): ip addr replace 172.16.0.2/30 dev eth0")
				require.Equal(t, []string{"link set dev eth0 mtu 1400", "link set dev eth0 up", "addr replace 172.16.0.2/30 dev eth0"}, r.ipCalls, "stops at the failure")
			})
			t.Run("interface never appears", func(t *testing.T) {
				s := newSandbox(t, "lo")
				require.NoError(t, os.WriteFile(s.config, []byte("IFACE=eth9\nADDRESS=10.0.0.2/24\n"), 0o644))
				r := s.run(t, sh)
				require.Equal(t, 1, r.code, r.stderr)
				require.Contains(t, r.console, "interface eth9 not found")
				require.Empty(t, r.ipCalls)
			})
			t.Run("console missing: stderr still gets the line", func(t *testing.T) {
				s := newSandbox(t)
				require.NoError(t, os.WriteFile(s.config, []byte("ADDRESS=10.0.0.2/24\n"), 0o644))
				r := s.run(t, sh, "BANGER_CONSOLE="+filepath.Join(s.dir, "no", "console"))
				require.Equal(t, 0, r.code, r.stderr)
				require.Equal(t, "banger-network: configured eth0 10.0.0.2/24\n", r.stderr)
			})
			t.Run("resolv.conf symlink is replaced by a file", func(t *testing.T) {
				s := newSandbox(t)
				require.NoError(t, os.WriteFile(s.config, []byte("ADDRESS=10.0.0.2/24\nDNS=10.0.0.1\n"), 0o644))
				require.NoError(t, os.Symlink("../run/systemd/resolve/stub-resolv.conf", s.resolv))
				r := s.run(t, sh)
				require.Equal(t, 0, r.code, r.stderr)
				fi, err := os.Lstat(s.resolv)
				require.NoError(t, err)
				require.True(t, fi.Mode().IsRegular())
				require.Equal(t, "# written by banger-network-bootstrap\nnameserver 10.0.0.1\n", readFile(t, s.resolv))
			})
			t.Run("unreadable config path", func(t *testing.T) {
				s := newSandbox(t)
				require.NoError(t, os.MkdirAll(s.config, 0o755)) // a directory where the file goes
				r := s.run(t, sh)
				require.Equal(t, 1, r.code, r.stderr)
				require.Contains(t, r.stderr, "not a regular file")
			})
		})
	}
}

// minimalPath makes a PATH holding only the tools the script needs besides
// ip (cat, mv, rm, sleep), plus whatever extra files are given.
func minimalPath(t *testing.T, s *sandbox, extra map[string]string) string {
	t.Helper()
	bin := filepath.Join(s.dir, "minbin")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	for _, tool := range []string{"cat", "mv", "rm", "sleep"} {
		p, err := exec.LookPath(tool)
		require.NoError(t, err)
		require.NoError(t, os.Symlink(p, filepath.Join(bin, tool)))
	}
	for name, content := range extra {
		require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte(content), 0o755))
	}
	return "PATH=" + bin
}

func TestBootstrapIPCommand(t *testing.T) {
	for name, sh := range shells(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("busybox ip where there is no ip", func(t *testing.T) {
				s := newSandbox(t)
				require.NoError(t, os.WriteFile(s.config, []byte("ADDRESS=10.0.0.2/24\nGATEWAY=10.0.0.1\n"), 0o644))
				fakeBusybox := "#!/bin/sh\nprintf '%s\\n' \"$*\" >>\"$FAKE_IP_LOG\"\n"
				r := s.run(t, sh, minimalPath(t, s, map[string]string{"busybox": fakeBusybox}))
				require.Equal(t, 0, r.code, r.stderr)
				require.Equal(t, []string{
					"ip link set dev eth0 up",
					"ip addr replace 10.0.0.2/24 dev eth0",
					"ip route replace default via 10.0.0.1 dev eth0 onlink",
				}, r.ipCalls)
			})
			t.Run("neither ip nor busybox", func(t *testing.T) {
				s := newSandbox(t)
				require.NoError(t, os.WriteFile(s.config, []byte("ADDRESS=10.0.0.2/24\n"), 0o644))
				r := s.run(t, sh, minimalPath(t, s, nil))
				require.Equal(t, 2, r.code, r.stderr)
				require.Equal(t, "banger-network: no ip command (install iproute2, or busybox)\n", r.stderr)
				require.Equal(t, r.stderr, r.console)
			})
		})
	}
}

// TestBootstrapRealIP runs the script against the real ip (iproute2, then
// busybox) in a private network namespace, on its loopback interface, and
// reads the result back from the kernel.
func TestBootstrapRealIP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a private network namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare not found")
	}
	if err := exec.Command(unshare, "-n", "true").Run(); err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	sh, err := exec.LookPath("sh")
	require.NoError(t, err)
	variants := map[string]string{}
	if p, err := exec.LookPath("ip"); err == nil {
		variants["iproute2"] = p
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		variants["busybox"] = p
	}
	if len(variants) == 0 {
		t.Skip("neither ip nor busybox found")
	}
	for name, ipBin := range variants {
		t.Run(name, func(t *testing.T) {
			s := newSandbox(t, "lo")
			bin := filepath.Join(s.dir, "realbin")
			require.NoError(t, os.MkdirAll(bin, 0o755))
			require.NoError(t, os.Symlink(ipBin, filepath.Join(bin, "ip"))) // busybox picks the applet from the name
			require.NoError(t, os.WriteFile(s.config, []byte("IFACE=lo\nADDRESS=10.77.0.2/32\nGATEWAY=10.78.0.1\nMTU=1400\n"), 0o644))
			env := append([]string{}, s.env...)
			env[0] = "PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")
			// A /32 with a gateway outside it, as point-to-point guest
			// setups do: only an on-link route can reach it. (On lo a
			// gateway inside the prefix would be a local address.)
			// Run twice, then show what the kernel holds, all in one namespace.
			prog := `set -e
"$1" "$2"; "$1" "$2"
echo ADDR; ip -4 -o addr show dev lo
echo ROUTE; ip route show default
echo LINK; ip -o link show dev lo
`
			cmd := exec.Command(unshare, "-n", sh, "-c", prog, "sh", sh, s.script)
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			o := string(out)
			require.Equal(t, 2, strings.Count(o, "banger-network: configured lo 10.77.0.2/32"), o)
			addrs := o[strings.Index(o, "ADDR\n"):strings.Index(o, "ROUTE\n")]
			require.Equal(t, 1, strings.Count(addrs, "inet 10.77.0.2/32"), "replace, not add: %s", o)
			require.Regexp(t, `default via 10\.78\.0\.1 dev lo\s+onlink`, o)
			require.Contains(t, o, "mtu 1400")
			require.Contains(t, o, "UP")
		})
	}
}

func TestBootstrapStaticChecks(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "banger-network-bootstrap")
	require.NoError(t, os.WriteFile(script, NetworkBootstrap(), 0o755))
	for name, sh := range shells(t) {
		t.Run(name+" -n", func(t *testing.T) {
			out, err := exec.Command(sh[0], append(sh[1:], "-n", script)...).CombinedOutput()
			require.NoError(t, err, "%s", out)
		})
	}
	t.Run("shellcheck", func(t *testing.T) {
		sc, err := exec.LookPath("shellcheck")
		if err != nil {
			t.Skip("shellcheck not installed (apt-get install shellcheck)")
		}
		out, err := exec.Command(sc, "--shell=sh", "--severity=style", script).CombinedOutput()
		require.NoError(t, err, "%s", out)
	})
}
