//go:build linux

package testimg

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireKernelMount skips t unless this process can mount images through
// loop devices: it must run as root, /dev/loop-control must exist, and
// losetup, mount and umount must be on PATH. Unlike Require it never
// fails under CI: most CI runners are unprivileged containers.
func RequireKernelMount(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel mount test: not running as root (mounting a loop device needs root)")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("kernel mount test: no loop devices (/dev/loop-control: %v)", err)
	}
	for _, tool := range []string{"losetup", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("kernel mount test: %s not found on PATH", tool)
		}
	}
}

// mountRefusal reports whether out (from losetup or mount) says the
// environment cannot mount at all, as opposed to the kernel rejecting the
// image: a missing filesystem driver, missing privileges, or no free loop
// device.
func mountRefusal(out string) bool {
	o := strings.ToLower(out)
	for _, s := range []string{
		"unknown filesystem",
		"permission denied",
		"operation not permitted",
		"must be superuser",
		"could not find any free loop device",
		"cannot find an unused loop device",
	} {
		if strings.Contains(o, s) {
			return true
		}
	}
	return false
}

// Mount attaches img to a free loop device (read-only when ro) and mounts
// it as ext4 (the ext4 driver also serves ext2 and ext3) on a new
// directory under t.TempDir(), which it returns with a function that
// unmounts and detaches. Calling that function is optional and idempotent:
// t.Cleanup calls it too. If the environment cannot mount at all (see
// RequireKernelMount) the test is skipped; a mount the kernel refuses for
// any other reason (a corrupt image) fails the test.
func Mount(t testing.TB, img string, ro bool) (dir string, unmount func()) {
	t.Helper()
	RequireKernelMount(t)
	dir, err := os.MkdirTemp(t.TempDir(), "mnt")
	if err != nil {
		t.Fatal(err)
	}
	largs := []string{"-f", "--show"}
	if ro {
		largs = append(largs, "-r")
	}
	out, err := exec.Command("losetup", append(largs, img)...).CombinedOutput()
	if err != nil {
		if mountRefusal(string(out)) {
			t.Skipf("kernel mount test: losetup cannot attach %s: %v: %s", img, err, out)
		}
		t.Fatalf("losetup %v %s: %v\n%s", largs, img, err, out)
	}
	dev := strings.TrimSpace(string(out))
	mounted := false
	done := false
	unmount = func() {
		if done {
			return
		}
		done = true
		if mounted {
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				// Retry lazily so that the loop device is not left behind.
				out2, err2 := exec.Command("umount", "-l", dir).CombinedOutput()
				t.Errorf("umount %s: %v\n%s (lazy umount: %v %s)", dir, err, out, err2, out2)
			}
		}
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
		}
	}
	t.Cleanup(unmount)
	opts := "rw"
	if ro {
		opts = "ro"
	}
	out, err = exec.Command("mount", "-t", "ext4", "-o", opts, dev, dir).CombinedOutput()
	if err != nil {
		if mountRefusal(string(out)) {
			unmount()
			t.Skipf("kernel mount test: cannot mount %s (%s): %v: %s", img, dev, err, out)
		}
		t.Fatalf("mount -t ext4 -o %s %s (%s) %s: %v\n%s%s", opts, dev, img, dir, err, out, kernelLog())
	}
	mounted = true
	return dir, unmount
}

// kernelLog returns the last lines of the kernel log, where the reason a
// mount failed is written, or "" when dmesg cannot be read.
func kernelLog() string {
	out, err := exec.Command("dmesg").CombinedOutput()
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return "\nkernel log (tail):\n" + strings.Join(lines, "\n")
}
