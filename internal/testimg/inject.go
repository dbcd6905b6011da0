package testimg

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// AgentPackage is the import path of the guest vsock agent command.
const AgentPackage = "github.com/banger/ext4kit/cmd/banger-vsock-agent"

var agentBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// AgentBinary builds cmd/banger-vsock-agent once per test binary (static,
// CGO_ENABLED=0, GOOS=linux, the host's GOARCH) and returns its path. A
// package using it should call CleanupBuilds from TestMain after m.Run.
// Skips when the go tool is missing (fails under CI=true).
func AgentBinary(t testing.TB) string {
	t.Helper()
	Require(t, "go")
	p, err := BuildAgent()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// BuildAgent is AgentBinary for code without a testing.TB (Examples): it
// builds the agent once per test binary and returns its path or why not.
func BuildAgent() (string, error) {
	agentBuild.once.Do(func() {
		agentBuild.dir, agentBuild.err = os.MkdirTemp("", "banger-agent-build-")
		if agentBuild.err != nil {
			return
		}
		agentBuild.path = filepath.Join(agentBuild.dir, "banger-vsock-agent")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", agentBuild.path, AgentPackage)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		out, err := cmd.CombinedOutput()
		if err != nil {
			agentBuild.err = fmt.Errorf("building %s: %v\n%s", AgentPackage, err, out)
		}
	})
	return agentBuild.path, agentBuild.err
}

// CleanupBuilds removes what AgentBinary built.
func CleanupBuilds() {
	if agentBuild.dir != "" {
		os.RemoveAll(agentBuild.dir)
	}
}

// CopyFile copies a host file (an image template) to dst.
func CopyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
