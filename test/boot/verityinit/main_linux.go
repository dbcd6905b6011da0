// Command verityinit is the /init of the dm-verity boot test's initramfs
// (test/boot/verity_test.go): it does in the guest what a kernel with
// dm-verity and CONFIG_DM_INIT built in does with image.json's
// kernel_cmdline, for Debian's kernel, whose dm-mod and dm-verity are
// modules (dm-mod.create needs them built in). It loads the modules the
// initramfs lists in /modules, creates the mapping that the command
// line's dm-mod.create="name,uuid,minor,flags,table" describes (the same
// ioctls dmsetup makes), mounts the mapping read-only as the new root and
// runs its /sbin/init.
//
// It prints "verityinit: ..." lines on the console for the test to judge,
// and on any failure the reason, then powers the machine off (qemu
// -no-reboot ends).
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if err := run(); err != nil {
		logf("FAILED: %v", err)
		time.Sleep(time.Second)
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		os.Exit(1)
	}
}

var console *os.File = os.Stdout

func logf(format string, args ...any) {
	fmt.Fprintf(console, "verityinit: "+format+"\n", args...)
}

func run() error {
	for _, m := range []struct{ dir, fstype string }{{"/dev", "devtmpfs"}, {"/proc", "proc"}, {"/sys", "sysfs"}} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.fstype, m.dir, m.fstype, 0, ""); err != nil {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	if c, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		console = c
	}
	if err := loadModules("/modules"); err != nil {
		return err
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	spec, ok := cmdlineValue(string(cmdline), "dm-mod.create")
	if !ok {
		return errors.New("no dm-mod.create= on the kernel command line")
	}
	name, readOnly, target, err := parseCreate(spec)
	if err != nil {
		return err
	}
	for _, dev := range target.devices {
		if err := waitFor(dev, 30*time.Second); err != nil {
			return err
		}
	}
	if err := dmCreate(name, readOnly, target); err != nil {
		return err
	}
	if err := waitFor("/dev/dm-0", 10*time.Second); err != nil {
		return err
	}
	logf("created %q (%s, %d sectors, read-only %v) as /dev/dm-0", name, target.kind, target.length, readOnly)
	if err := os.MkdirAll("/newroot", 0o755); err != nil {
		return err
	}
	if err := unix.Mount("/dev/dm-0", "/newroot", "ext4", unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount /dev/dm-0 read-only: %w", err)
	}
	logf("mounted /dev/dm-0 read-only as the root; running /sbin/init")
	if err := unix.Mount("/dev", "/newroot/dev", "", unix.MS_MOVE, ""); err != nil {
		logf("moving /dev into the new root: %v (its init mounts its own)", err)
	}
	_ = unix.Unmount("/proc", unix.MNT_DETACH)
	_ = unix.Unmount("/sys", unix.MNT_DETACH)
	if err := os.Chdir("/newroot"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the new root to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	return syscall.Exec("/sbin/init", []string{"/sbin/init"}, []string{"PATH=/sbin:/usr/sbin:/bin:/usr/bin", "TERM=linux"})
}

// loadModules loads the modules listed in path, one file per line, in
// that order (dependencies first).
func loadModules(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" {
			continue
		}
		m, err := os.Open(p)
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(m.Fd()), "", 0)
		m.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load %s: %w", p, err)
		}
	}
	return sc.Err()
}

// cmdlineValue returns the value of key=VALUE on the kernel command line,
// VALUE possibly in double quotes (which may hold spaces).
func cmdlineValue(cmdline, key string) (string, bool) {
	i := strings.Index(cmdline, key+"=")
	if i < 0 || (i > 0 && cmdline[i-1] != ' ') {
		return "", false
	}
	v := cmdline[i+len(key)+1:]
	if strings.HasPrefix(v, `"`) {
		end := strings.Index(v[1:], `"`)
		if end < 0 {
			return "", false
		}
		return v[1 : 1+end], true
	}
	if end := strings.IndexAny(v, " \n"); end >= 0 {
		v = v[:end]
	}
	return v, true
}

type dmTarget struct {
	start, length uint64
	kind, params  string
	devices       []string // the /dev paths params name, to wait for
}

// parseCreate parses one device of dm-mod.create: "name,uuid,minor,flags,
// table" (Documentation/admin-guide/device-mapper/dm-init.rst), with one
// target in the table.
func parseCreate(spec string) (name string, readOnly bool, t dmTarget, err error) {
	parts := strings.SplitN(spec, ",", 5)
	if len(parts) != 5 {
		return "", false, t, fmt.Errorf("dm-mod.create %q: want name,uuid,minor,flags,table", spec)
	}
	if strings.Contains(parts[4], ";") {
		return "", false, t, fmt.Errorf("dm-mod.create %q: one device with one target only", spec)
	}
	name, readOnly = parts[0], parts[3] == "ro"
	f := strings.Fields(parts[4])
	if len(f) < 4 {
		return "", false, t, fmt.Errorf("dm-mod.create table %q: want start length type args", parts[4])
	}
	if t.start, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return "", false, t, err
	}
	if t.length, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return "", false, t, err
	}
	t.kind, t.params = f[2], strings.Join(f[3:], " ")
	for _, a := range f[3:] {
		if strings.HasPrefix(a, "/dev/") {
			t.devices = append(t.devices, a)
		}
	}
	return name, readOnly, t, nil
}

func waitFor(path string, limit time.Duration) error {
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s", path, limit)
		}
	}
}

// dmCreate makes the mapping as dmsetup create does: DM_DEV_CREATE,
// DM_TABLE_LOAD with the one target, DM_DEV_SUSPEND without the suspend
// flag (which resumes: the table goes live).
func dmCreate(name string, readOnly bool, t dmTarget) error {
	ctl, err := os.OpenFile("/dev/mapper/control", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer ctl.Close()
	call := func(op string, req uintptr, buf []byte) error {
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, ctl.Fd(), req, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
			return fmt.Errorf("%s %q: %w", op, name, e)
		}
		return nil
	}
	header := func(buf []byte) *unix.DmIoctl {
		d := (*unix.DmIoctl)(unsafe.Pointer(&buf[0]))
		d.Version = [3]uint32{unix.DM_VERSION_MAJOR, 0, 0}
		d.Data_size = uint32(len(buf))
		d.Data_start = unix.SizeofDmIoctl
		copy(d.Name[:len(d.Name)-1], name)
		return d
	}
	buf := make([]byte, unix.SizeofDmIoctl)
	header(buf)
	if err := call("DM_DEV_CREATE", unix.DM_DEV_CREATE, buf); err != nil {
		return err
	}
	// The table: the header, one target spec, its parameters (a C
	// string), padded to 8 bytes.
	n := unix.SizeofDmIoctl + unix.SizeofDmTargetSpec + len(t.params) + 1
	n = (n + 7) &^ 7
	buf = make([]byte, n)
	d := header(buf)
	d.Target_count = 1
	if readOnly {
		d.Flags = unix.DM_READONLY_FLAG
	}
	s := (*unix.DmTargetSpec)(unsafe.Pointer(&buf[unix.SizeofDmIoctl]))
	s.Sector_start, s.Length = t.start, t.length
	copy(s.Target_type[:len(s.Target_type)-1], t.kind)
	copy(buf[unix.SizeofDmIoctl+unix.SizeofDmTargetSpec:], t.params)
	if err := call("DM_TABLE_LOAD", unix.DM_TABLE_LOAD, buf); err != nil {
		return err
	}
	buf = make([]byte, unix.SizeofDmIoctl)
	header(buf)
	return call("DM_DEV_SUSPEND (resume)", unix.DM_DEV_SUSPEND, buf)
}
