//go:build unix

package guestassets

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The scripts run for real here: signals and process checks are Unix's.

// TestSupervise: the sysvinit restart loop starts the agent again after
// it exits, and TERM stops both the loop and the agent.
func TestSupervise(t *testing.T) {
	for name, sh := range shells(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			script := filepath.Join(dir, "supervise")
			require.NoError(t, os.WriteFile(script, AgentSupervise(), 0o755))
			runs := filepath.Join(dir, "runs")
			agent := filepath.Join(dir, "agent")
			// Each run records itself; the third stays up until killed.
			require.NoError(t, os.WriteFile(agent, []byte("#!/bin/sh\necho run >>"+runs+"\n[ $(wc -l <"+runs+") -ge 3 ] && exec sleep 30\nexit 1\n"), 0o755))
			cmd := exec.Command(sh[0], append(sh[1:], script)...)
			cmd.Env = append(os.Environ(), "BANGER_AGENT="+agent, "BANGER_AGENT_RESTART_DELAY=0")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			require.NoError(t, cmd.Start())
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			deadline := time.Now().Add(10 * time.Second)
			for {
				b, _ := os.ReadFile(runs)
				if bytes.Count(b, []byte("\n")) >= 3 {
					break
				}
				require.True(t, time.Now().Before(deadline), "the agent was not restarted: %q, stderr %s", b, stderr.String())
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond) // let the third run reach its sleep
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatal("the loop did not stop on TERM")
			}
			require.Contains(t, stderr.String(), "banger-vsock-agent exited with status 1; restarting in 0s")
			b, _ := os.ReadFile(runs)
			require.Equal(t, 3, bytes.Count(b, []byte("\n")), "no restart after TERM")
		})
	}
}

// gone reports a process that has exited (a zombie whose parent has not
// reaped it yet counts: it runs nothing).
func gone(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return syscall.Kill(pid, 0) != nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || strings.HasPrefix(s[i+1:], " Z")
}

// TestSysvinitScriptsRun runs the rc scripts' actions with their paths
// pointed into a temporary directory.
func TestSysvinitScriptsRun(t *testing.T) {
	for name, sh := range shells(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			write := func(name string, data []byte) string {
				p := filepath.Join(dir, name)
				require.NoError(t, os.WriteFile(p, data, 0o755))
				return p
			}
			run := func(script string, env []string, args ...string) (int, string) {
				cmd := exec.Command(sh[0], append(append(sh[1:], script), args...)...)
				cmd.Env = append(os.Environ(), env...)
				out, err := cmd.CombinedOutput()
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				} else {
					require.NoError(t, err)
				}
				return code, string(out)
			}

			net := write("net", SysvinitNetworkScript())
			stamp := filepath.Join(dir, "stamp")
			for _, tc := range []struct {
				status int
				want   int
			}{{0, 0}, {1, 1}} {
				env := []string{"BANGER_BOOTSTRAP=" + write("bootstrap", []byte("#!/bin/sh\nexit "+strconv.Itoa(tc.status)+"\n")), "BANGER_STAMP=" + stamp}
				code, out := run(net, env, "start")
				require.Equal(t, tc.want, code, out)
				code, out = run(net, env, "status")
				require.Equal(t, map[bool]int{true: 0, false: 3}[tc.status == 0], code, out)
				code, _ = run(net, env, "stop")
				require.Zero(t, code)
				code, _ = run(net, env, "status")
				require.Equal(t, 3, code)
			}
			code, out := run(net, nil, "frobnicate")
			require.Equal(t, 2, code)
			require.Contains(t, out, "Usage:")

			runs := filepath.Join(dir, "runs")
			env := []string{
				"BANGER_AGENT=" + write("agent", []byte("#!/bin/sh\necho $$ >>"+runs+"\nexec sleep 30\n")),
				"BANGER_SUPERVISE=" + write("supervise", AgentSupervise()),
				"BANGER_PIDFILE=" + filepath.Join(dir, "pid"),
				"BANGER_CONSOLE=" + filepath.Join(dir, "console"),
				"BANGER_AGENT_RESTART_DELAY=0",
			}
			agent := write("agent-rc", SysvinitAgentScript())
			pids := func() []int {
				b, _ := os.ReadFile(runs)
				var out []int
				for _, f := range strings.Fields(string(b)) {
					n, err := strconv.Atoi(f)
					require.NoError(t, err)
					out = append(out, n)
				}
				return out
			}
			t.Cleanup(func() {
				for _, p := range pids() {
					_ = syscall.Kill(p, syscall.SIGKILL)
				}
			})
			code, out = run(agent, env, "status")
			require.Equal(t, 3, code, out)
			code, out = run(agent, env, "start")
			require.Zero(t, code, out)
			require.Eventually(t, func() bool { return len(pids()) == 1 }, 10*time.Second, 20*time.Millisecond)
			code, out = run(agent, env, "status")
			require.Zero(t, code, out)
			code, out = run(agent, env, "start")
			require.Zero(t, code, out)
			time.Sleep(200 * time.Millisecond)
			require.Len(t, pids(), 1, "a second start does not start a second loop")

			// The agent dies: the loop starts it again.
			require.NoError(t, syscall.Kill(pids()[0], syscall.SIGKILL))
			require.Eventually(t, func() bool { return len(pids()) == 2 }, 10*time.Second, 20*time.Millisecond)

			code, out = run(agent, env, "stop")
			require.Zero(t, code, out)
			code, _ = run(agent, env, "status")
			require.Equal(t, 3, code)
			require.Eventually(t, func() bool { return gone(pids()[1]) }, 10*time.Second, 20*time.Millisecond, "stop ends the agent")
			time.Sleep(200 * time.Millisecond)
			require.Len(t, pids(), 2, "no restart after stop")
		})
	}
}
