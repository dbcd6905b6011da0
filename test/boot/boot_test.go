//go:build linux

// Package boot holds the opt-in end-to-end boot test (see README.md): four
// guests, one per init system banger installs for (systemd, sysvinit with
// sysv-rc, OpenRC, busybox init), made by build-rootfs.sh (debootstrap
// from Debian's archive, or busybox-static), turned into ext4 images by
// imagepull.BuildExt4, given banger's guest assets by
// imagepull.InjectGuestAgentsFile with the init detected, booted with the
// Debian kernel under qemu TCG, and judged by their serial console,
// e2fsck and (systemd) their journal; and TestBootVerity (verity_test.go),
// which boots a dm-verity sealed guest and a tampered copy of it.
package boot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull"
	"github.com/banger/ext4kit/imagepull/guestagent"
)

// Settings, all from the environment.
const (
	envEnable  = "BANGER_BOOT_TEST"    // 1 runs the test
	envCache   = "BANGER_BOOT_CACHE"   // build-rootfs.sh's cache directory
	envBuilder = "BANGER_BOOT_BUILDER" // buildext4 (default) or mkfs
	envSettle  = "BANGER_BOOT_SETTLE"  // how long the services must stay up (Go duration, default 15s)
	envForward = "BANGER_BOOT_FORWARD" // 0: no systemd.journald.forward_to_console=1
	envKeep    = "BANGER_BOOT_KEEP"    // 1: keep the booted images in the cache's last-run/GUEST/

	defaultCache    = "/var/tmp/banger-boot-cache"
	buildTimeout    = 25 * time.Minute
	bootTimeout     = 5 * time.Minute
	shutdownTimeout = 2 * time.Minute
	imageSize       = 2 << 30
	consoleTail     = 80 // console lines shown when a guest fails

	// qemu user networking's own addresses (the guest, the gateway and the
	// DNS forwarder of its slirp); with restrict=on nothing leaves the host.
	guestIface = "eth0"
	guestAddr  = "10.0.2.15/24"
	guestGW    = "10.0.2.2"
	guestDNS   = "10.0.2.3"

	// The two lines every guest must show, by their event names: the
	// network bootstrap's and the agent's (it logs once it listens).
	evBootstrap = "bootstrap line"
	evAgent     = "agent line"
)

// How the test asks a guest to shut down.
type shutdownMethod int

const (
	// acpiPowerdown presses the ACPI power button (QMP system_powerdown):
	// systemd-logind powers off.
	acpiPowerdown shutdownMethod = iota
	// ctrlAltDel sends Ctrl-Alt-Del to the PS/2 keyboard (QMP send-key):
	// the kernel signals init, whose inittab ctrlaltdel entry reboots
	// (sysvinit: shutdown -r, busybox: reboot), and qemu's -no-reboot
	// turns the reboot into an exit. The guests have no acpid.
	ctrlAltDel
)

// guest is one row of the boot table.
type guest struct {
	name string // the subtest, build-rootfs.sh's argument, the cache directory
	init imagepull.InitSystem
	// Console lines awaited besides the bootstrap's and the agent's:
	// init-specific evidence that boot finished and the services started.
	events []eventSpec
	// More lines that fail the test whenever they appear.
	failures []*regexp.Regexp
	shutdown shutdownMethod
	// The kernel's last words after a clean shutdown.
	haltLine string
	// systemd only: journald forwarding and the journal read back.
	journal bool
}

type eventSpec struct {
	name, re string
	required bool
}

var agentPort = strconv.Itoa(guestagent.DefaultPort)

// guests: one per init system imagepull installs for. DetectInit must
// find init in each image.
var guests = []guest{
	{
		name: "systemd",
		init: imagepull.InitSystemd,
		events: []eventSpec{
			{"banger-network.service finished", `Finished (.*banger-network\.service|banger guest network bootstrap)`, true},
			{"banger-vsock-agent.service started", `Started (.*banger-vsock-agent\.service|banger guest vsock agent)`, true},
			{"multi-user.target reached", `Reached target (.*multi-user\.target|Multi-User System)`, true},
			{"startup finished", `Startup finished in `, false},
		},
		shutdown: acpiPowerdown,
		haltLine: `reboot: Power down`,
		journal:  true,
	},
	{
		name: "sysvinit",
		init: imagepull.InitSysvinit,
		events: []eventSpec{
			{"runlevel 2", `INIT: Entering runlevel: 2`, true},
			{"makefile-style boot", `Using makefile-style concurrent boot in runlevel 2`, false},
		},
		failures: []*regexp.Regexp{
			regexp.MustCompile(`startpar: service\(s\) (returned failure|skipped).*banger`),
		},
		shutdown: ctrlAltDel,
		haltLine: `reboot: Restarting system`,
	},
	{
		name: "openrc",
		init: imagepull.InitOpenRC,
		events: []eventSpec{
			{"openrc: network service", `\* Configuring the banger guest network`, true},
			{"openrc: agent service", `\* Starting banger-vsock-agent`, true},
		},
		failures: []*regexp.Regexp{
			regexp.MustCompile(`ERROR: banger-`),
			regexp.MustCompile(`\* .*banger.*\[ !! \]`),
			regexp.MustCompile(`supervise-daemon.*banger.*(respawn|exited|crashed)`),
		},
		shutdown: ctrlAltDel,
		haltLine: `reboot: Restarting system`,
	},
	{
		name: "busybox",
		init: imagepull.InitBusybox,
		events: []eventSpec{
			{"rcS done", `rcS: busybox guest up`, true},
		},
		shutdown: ctrlAltDel,
		haltLine: `reboot: Restarting system`,
	},
}

// bootEvent is one console line the test waits for.
type bootEvent struct {
	name     string
	re       *regexp.Regexp
	required bool
	host     time.Duration // since qemu started; 0: not seen
	line     string        // the first matching line
	kernel   string        // guest monotonic seconds, from the first matching line that has them
}

// consoleLine is one line of the serial console with its host arrival time.
type consoleLine struct {
	at   time.Duration
	text string // ANSI sequences and CRs removed
}

var (
	ansiRE    = regexp.MustCompile(`\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]`)
	kstampRE  = regexp.MustCompile(`^\[\s*(\d+\.\d+)\]`)
	netLineRE = regexp.MustCompile(`banger-network: (.*)`)
	// Lines that fail the test whenever they appear, on every guest.
	failureREs = []*regexp.Regexp{
		regexp.MustCompile(`Failed to start`),
		regexp.MustCompile(`\[FAILED\]`),
		regexp.MustCompile(`EXT4-fs error`),
		regexp.MustCompile(`EXT4-fs warning|EXT4-fs \(.*\): (warning|error|mounting fs with errors)`),
		regexp.MustCompile(`Kernel panic`),
		regexp.MustCompile(`I/O error`),
		regexp.MustCompile(`Dependency failed`),
		regexp.MustCompile(`banger-[a-z-]+\.service: (Main process exited, code=(exited|killed|dumped), status=[^0]|Failed with result|Start request repeated|Scheduled restart job)`),
		regexp.MustCompile(`banger-vsock-agent: .*(unavailable|bind:|listen:|accept:)`),
		// banger-vsock-agent-supervise (sysvinit, busybox) restarting it.
		regexp.MustCompile(`banger-vsock-agent exited with status`),
	}
	// Lines that fail the test before the shutdown: a service going away.
	bootOnlyFailureREs = []*regexp.Regexp{
		regexp.MustCompile(`banger-[a-z-]+\.service: Deactivated successfully`),
		regexp.MustCompile(`Stopped .*banger`),
		regexp.MustCompile(`banger-vsock-agent: stopped`),
	}
	// Lines after which waiting longer is pointless.
	fatalREs = []*regexp.Regexp{
		regexp.MustCompile(`Kernel panic`),
		regexp.MustCompile(`Start request repeated`),
		regexp.MustCompile(`Failed to start .*banger`),
		regexp.MustCompile(`Dependency failed for .*banger`),
		regexp.MustCompile(`You are in emergency mode|Give root password for maintenance`),
	}
)

// bootEnv is what every guest's subtest shares.
type bootEnv struct {
	tools    map[string]string
	cache    string
	script   string // build-rootfs.sh
	agent    string // the agent binary
	work     string
	settle   time.Duration
	forward  bool
	builder  string
	summaryM sync.Mutex
	summary  []string
}

// requireBootHost skips t unless the boot tests are asked for and can
// run here (root, amd64, the tools); it returns the tools' paths and the
// fixture cache directory.
func requireBootHost(t *testing.T) (tools map[string]string, cache string) {
	if os.Getenv(envEnable) != "1" {
		t.Skipf("opt-in end-to-end boot test: set %s=1 (needs root, debootstrap, qemu-system-x86_64, e2fsprogs, kmod and network access to Debian's archive; see test/boot/README.md)", envEnable)
	}
	if os.Geteuid() != 0 {
		t.Skip("the boot test needs root (debootstrap, chroot): sudo env BANGER_BOOT_TEST=1 go test ...")
	}
	if runtime.GOARCH != "amd64" {
		t.Skipf("the boot test builds amd64 guests and runs qemu-system-x86_64 with TCG; GOARCH=%s", runtime.GOARCH)
	}
	tools = map[string]string{}
	for _, tool := range []struct{ name, pkg string }{
		{"qemu-system-x86_64", "qemu-system-x86"},
		{"debootstrap", "debootstrap"},
		{"e2fsck", "e2fsprogs"},
		{"mkfs.ext4", "e2fsprogs"},
		{"debugfs", "e2fsprogs"},
		{"depmod", "kmod"},
	} {
		p, err := exec.LookPath(tool.name)
		if err != nil {
			t.Skipf("%s not installed: apt-get install %s", tool.name, tool.pkg)
		}
		tools[tool.name] = p
	}
	cache = os.Getenv(envCache)
	if cache == "" {
		cache = defaultCache
	}
	return tools, cache
}

// buildFixture runs build-rootfs.sh GUEST (script) with the cache
// directory, its output logged line by line.
func buildFixture(t *testing.T, script, cache, guest string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	build := exec.CommandContext(ctx, "bash", script, guest)
	build.Env = append(os.Environ(), envCache+"="+cache)
	lw := &lineLogger{t: t}
	build.Stdout, build.Stderr = lw, lw
	err := build.Run()
	lw.flush()
	require.NoError(t, err, "build-rootfs.sh %s", guest)
}

// TestBoot boots one guest per init system (subtests: systemd, sysvinit,
// openrc, busybox).
func TestBoot(t *testing.T) {
	env := &bootEnv{}
	env.tools, env.cache = requireBootHost(t)
	env.settle = 15 * time.Second
	if s := os.Getenv(envSettle); s != "" {
		d, err := time.ParseDuration(s)
		require.NoError(t, err, "%s=%q", envSettle, s)
		env.settle = d
	}
	env.forward = os.Getenv(envForward) != "0"
	env.builder = os.Getenv(envBuilder)
	if env.builder == "" {
		env.builder = "buildext4"
	}
	require.Contains(t, []string{"buildext4", "mkfs"}, env.builder, "%s: want buildext4 or mkfs", envBuilder)
	script, err := filepath.Abs("build-rootfs.sh")
	require.NoError(t, err)
	env.script = script
	require.NoError(t, os.RemoveAll(filepath.Join(env.cache, "last-run")))
	env.work = t.TempDir()

	// The agent, as banger ships it, once for every guest.
	env.agent = filepath.Join(env.work, "banger-vsock-agent")
	buildAgent(t, env.agent)

	start := time.Now()
	for _, g := range guests {
		t.Run(g.name, func(t *testing.T) { bootGuest(t, env, g) })
	}
	if len(env.summary) > 0 {
		summary := fmt.Sprintf("boot summary (qemu TCG; time from qemu's start to the bootstrap's line / the agent's line), total %s:\n  %s",
			time.Since(start).Round(time.Second), strings.Join(env.summary, "\n  "))
		t.Log(summary)
		_ = os.WriteFile(filepath.Join(env.cache, "last-run", "summary.txt"), []byte(summary+"\n"), 0o644)
	}
}

// bootGuest builds, injects, boots and checks one guest.
func bootGuest(t *testing.T, env *bootEnv, g guest) {
	// The summary line, also for a guest that failed before its boot.
	res := &bootResult{}
	defer func() {
		verdict := "ok"
		if t.Failed() {
			verdict = "FAILED"
		}
		line := fmt.Sprintf("%-8s %-6s bootstrap %s, agent %s; qemu ran %.1fs", g.name, verdict, res.at(evBootstrap), res.at(evAgent), res.wall.Seconds())
		if res.wall == 0 {
			line = fmt.Sprintf("%-8s %-6s not booted", g.name, verdict)
		}
		env.summaryM.Lock()
		env.summary = append(env.summary, line)
		env.summaryM.Unlock()
	}()
	// 1. The fixture: kernel and the guest's tree, tar layer, mkfs image.
	t0 := time.Now()
	buildFixture(t, env.script, env.cache, g.name)
	t.Logf("fixture %s ready in %s (cache %s)", g.name, time.Since(t0).Round(time.Second), env.cache)

	gdir := filepath.Join(env.cache, g.name)
	run := filepath.Join(env.cache, "last-run", g.name)
	require.NoError(t, os.MkdirAll(run, 0o755))
	work := t.TempDir()
	imgDir := work
	if os.Getenv(envKeep) == "1" {
		imgDir = run
	}
	img := filepath.Join(imgDir, "rootfs.ext4")
	e2fsck := env.tools["e2fsck"]

	// 2. The ext4 image.
	t0 = time.Now()
	switch env.builder {
	case "buildext4":
		tarPath := filepath.Join(gdir, "rootfs.tar")
		var warnings []string
		im, stats, err := imagepull.BuildExt4(context.Background(), img, []imagepull.LayerSource{{
			Digest: "boot-" + g.name,
			Open:   func() (io.ReadCloser, error) { return os.Open(tarPath) },
		}}, imagepull.BuildOptions{
			Size:  imageSize,
			Label: "rootfs",
			Seed:  []byte("banger-boot-test-" + g.name),
			Time:  time.Now(),
			Warnf: func(format string, args ...any) { warnings = append(warnings, fmt.Sprintf(format, args...)) },
		})
		require.NoError(t, err, "imagepull.BuildExt4")
		require.NoError(t, im.Close(), "commit the built image")
		for i, w := range warnings {
			if i == 20 {
				t.Logf("BuildExt4: ... %d more warnings", len(warnings)-20)
				break
			}
			t.Logf("BuildExt4 warning: %s", w)
		}
		t.Logf("imagepull.BuildExt4: %d entries (%d files, %d dirs, %d symlinks, %d hard links, %d nodes, %d xattrs), %d MiB of files, image %d MiB, in %s",
			stats.Entries, stats.Files, stats.Dirs, stats.Symlinks, stats.Hardlinks, stats.Nodes, stats.Xattrs, stats.FileBytes>>20, stats.Size>>20, time.Since(t0).Round(time.Millisecond))
	case "mkfs":
		out, err := exec.Command("cp", "--sparse=always", filepath.Join(gdir, "rootfs-mkfs.ext4"), img).CombinedOutput()
		require.NoError(t, err, "copy the mkfs image: %s", out)
		t.Logf("image: copy of %s (mkfs.ext4 -d)", filepath.Join(gdir, "rootfs-mkfs.ext4"))
	}
	fsck(t, e2fsck, img, "-fn", "the built image")

	// 3. The init the injector will find.
	im, err := ext4edit.Open(img, &ext4edit.Options{ReadOnly: true})
	require.NoError(t, err, "ext4edit.Open the built image read-only")
	found, derr := imagepull.DetectInit(im)
	require.NoError(t, im.Close())
	require.NoError(t, derr, "imagepull.DetectInit")
	require.Equal(t, g.init, found, "imagepull.DetectInit on the %s guest", g.name)
	t.Logf("imagepull.DetectInit: %s", found)

	// 4. Our injection, pure Go, with the init detected.
	t0 = time.Now()
	require.NoError(t, imagepull.InjectGuestAgentsFile(img, imagepull.InjectOptions{AgentPath: env.agent, Init: imagepull.InitAuto}),
		"imagepull.InjectGuestAgentsFile")
	t.Logf("imagepull.InjectGuestAgentsFile (init auto) in %s", time.Since(t0).Round(time.Millisecond))
	fsck(t, e2fsck, img, "-fn", "the injected image")

	// 5. Boot.
	res = boot(t, env, g, run, work, img)

	// 6. The filesystem after the guest used it.
	if res.cleanShutdown {
		fsck(t, e2fsck, img, "-fn", "the image after a clean shutdown")
	} else {
		code, out := fsckRun(e2fsck, img, "-fy")
		t.Logf("e2fsck -fy after killing qemu: exit %d\n%s", code, out)
		if code >= 4 {
			t.Errorf("e2fsck -fy after killing qemu: exit %d (uncorrected errors)", code)
		}
	}

	// 7. systemd: the guest's journal, read back from the image with
	// ext4edit.
	if g.journal {
		checkJournal(t, img, work, res)
	}

	// 8. The closing note.
	report := res.report(g)
	t.Log("\n" + report)
	_ = os.WriteFile(filepath.Join(run, "report.txt"), []byte(report), 0o644)
	t.Logf("console log: %s (timed: %s)", filepath.Join(run, "console.log"), filepath.Join(run, "console.timed.log"))
	if t.Failed() {
		t.Logf("the last %d console lines of the %s guest:\n%s", len(res.tail), g.name, strings.Join(res.tail, "\n"))
	}
}

// bootResult is what one boot showed.
type bootResult struct {
	events        []*bootEvent
	failures      []string
	cleanShutdown bool
	killed        bool
	vsockDevice   bool
	cmdline       string
	journal       []string // notes from the journal read-back
	wall          time.Duration
	tail          []string // the last console lines
}

func (r *bootResult) event(name string) *bootEvent {
	for _, e := range r.events {
		if e.name == name {
			return e
		}
	}
	return nil
}

// at tells when the event's line came, from qemu's start.
func (r *bootResult) at(name string) string {
	if e := r.event(name); e != nil && e.host > 0 {
		return fmt.Sprintf("+%.1fs", e.host.Seconds())
	}
	return "not seen"
}

func (r *bootResult) report(g guest) string {
	var b strings.Builder
	fmt.Fprintf(&b, "boot test report, %s guest (qemu TCG, -smp 2 -m 1024; vsock device: %v)\n", g.name, r.vsockDevice)
	fmt.Fprintf(&b, "kernel command line: %s\n", r.cmdline)
	fmt.Fprintf(&b, "%-36s %10s %12s  %s\n", "event", "host", "guest clock", "console line")
	for _, e := range r.events {
		host, kern := "-", "-"
		if e.host > 0 {
			host = fmt.Sprintf("+%.1fs", e.host.Seconds())
		}
		if e.kernel != "" {
			kern = "[" + e.kernel + "]"
		}
		line := e.line
		if line == "" {
			line = "(not seen)"
		}
		fmt.Fprintf(&b, "%-36s %10s %12s  %s\n", e.name, host, kern, line)
	}
	for _, j := range r.journal {
		fmt.Fprintf(&b, "journal: %s\n", j)
	}
	fmt.Fprintf(&b, "qemu ran %.1fs; clean shutdown: %v; killed: %v\n", r.wall.Seconds(), r.cleanShutdown, r.killed)
	if len(r.failures) == 0 {
		b.WriteString("failures: none\n")
	}
	for _, f := range r.failures {
		fmt.Fprintf(&b, "FAILURE: %s\n", f)
	}
	return b.String()
}

func boot(t *testing.T, env *bootEnv, g guest, run, work, img string) *bootResult {
	t.Helper()
	res := &bootResult{}
	args := []string{
		"console=ttyS0", "root=/dev/vda", "rootfstype=ext4", "rw",
		// Firecracker's virtio-mmio NIC is eth0; under qemu's PCI the
		// predictable name would be ens3.
		"net.ifnames=0",
		"panic=-1", // with -no-reboot: a panic ends qemu at once
		"banger.iface=" + guestIface, "banger.ip=" + guestAddr, "banger.gw=" + guestGW, "banger.dns=" + guestDNS,
	}
	if g.journal && env.forward {
		// The journal on the console too, to see (and time) every
		// unit's messages there.
		args = append(args, "systemd.journald.forward_to_console=1")
	}
	res.cmdline = strings.Join(args, " ")
	kernel := filepath.Join(env.cache, "kernel")
	qmpSock := filepath.Join(work, "qmp.sock")
	qargs := []string{
		"-accel", "tcg", "-m", "1024", "-smp", "2",
		"-display", "none", "-vga", "none", "-monitor", "none", "-parallel", "none",
		"-no-reboot",
		"-kernel", filepath.Join(kernel, "vmlinuz"),
		"-initrd", filepath.Join(kernel, "initrd.img"),
		"-append", res.cmdline,
		"-drive", "file=" + img + ",format=raw,if=virtio",
		// Restricted user networking: the guest reaches qemu's slirp
		// (10.0.2.2, 10.0.2.3) and nothing beyond the host.
		"-nic", "user,restrict=on,model=virtio-net-pci",
		"-serial", "stdio",
		"-qmp", "unix:" + qmpSock + ",server=on,wait=off",
	}
	if _, err := os.Stat("/dev/vhost-vsock"); err == nil {
		res.vsockDevice = true
		qargs = append(qargs, "-device", "vhost-vsock-pci,guest-cid=3")
	} else {
		t.Logf("no /dev/vhost-vsock on the host: the guest gets no virtio-vsock device")
	}

	ev := func(name, re string, required bool) {
		res.events = append(res.events, &bootEvent{name: name, re: regexp.MustCompile(re), required: required})
	}
	ev(evBootstrap, `banger-network: configured `+regexp.QuoteMeta(guestIface+" "+guestAddr)+`$`, true)
	// The agent's one status line: the systemd unit sends it to the
	// console (StandardError=journal+console), the sysvinit script and
	// busybox's inittab entry run the supervising loop on the console,
	// OpenRC's supervise-daemon logs it there (error_log).
	ev(evAgent, `banger-vsock-agent: listening on vsock port `+agentPort+`$`, true)
	for _, e := range g.events {
		ev(e.name, e.re, e.required)
	}
	ev("shutdown", g.haltLine, false)
	failures := append(append([]*regexp.Regexp(nil), failureREs...), g.failures...)

	conLog, err := os.Create(filepath.Join(run, "console.log"))
	require.NoError(t, err)
	defer conLog.Close()
	timedLog, err := os.Create(filepath.Join(run, "console.timed.log"))
	require.NoError(t, err)
	defer timedLog.Close()
	var qemuErr bytes.Buffer

	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	cmd := exec.Command(env.tools["qemu-system-x86_64"], qargs...)
	cmd.Stdout = pw
	cmd.Stderr = &qemuErr
	t.Logf("qemu: %s %s", cmd.Path, strings.Join(qargs, " "))
	start := time.Now()
	require.NoError(t, cmd.Start(), "start qemu")
	pw.Close()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	lines := make(chan consoleLine, 4096)
	go func() {
		defer close(lines)
		br := bufio.NewReaderSize(pr, 64<<10)
		for {
			raw, err := br.ReadBytes('\n')
			if len(raw) > 0 {
				at := time.Since(start)
				conLog.Write(raw)
				text := strings.ReplaceAll(ansiRE.ReplaceAllString(string(raw), ""), "\r", "")
				text = strings.TrimRight(text, "\n")
				fmt.Fprintf(timedLog, "%8.3f | %s\n", at.Seconds(), text)
				lines <- consoleLine{at: at, text: text}
			}
			if err != nil {
				pr.Close()
				return
			}
		}
	}()

	shuttingDown := false
	var settleC, fatalC, shutdownC <-chan time.Time
	bootC := time.After(bootTimeout)
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		res.failures = append(res.failures, msg)
		t.Errorf("%s", msg)
	}
	shutdown := func(why string) {
		if shuttingDown {
			return
		}
		shuttingDown = true
		var err error
		switch g.shutdown {
		case acpiPowerdown:
			t.Logf("+%.1fs: shutting down (%s): QMP system_powerdown", time.Since(start).Seconds(), why)
			err = qmp(qmpSock, `{"execute":"system_powerdown"}`)
		case ctrlAltDel:
			t.Logf("+%.1fs: shutting down (%s): QMP send-key ctrl-alt-delete", time.Since(start).Seconds(), why)
			err = qmp(qmpSock, `{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"ctrl"},{"type":"qcode","data":"alt"},{"type":"qcode","data":"delete"}]}}`)
		}
		if err != nil {
			t.Logf("QMP: %v; killing qemu", err)
			res.killed = true
			_ = cmd.Process.Kill()
			return
		}
		shutdownC = time.After(shutdownTimeout)
	}
	allSeen := func() bool {
		for _, e := range res.events {
			if e.required && e.host == 0 {
				return false
			}
		}
		return true
	}
loop:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break loop
			}
			res.tail = append(res.tail, fmt.Sprintf("%8.3f | %s", l.at.Seconds(), l.text))
			if len(res.tail) > consoleTail {
				res.tail = res.tail[len(res.tail)-consoleTail:]
			}
			for _, e := range res.events {
				if !e.re.MatchString(l.text) {
					continue
				}
				if e.host == 0 {
					e.host, e.line = l.at, l.text
					t.Logf("+%.1fs: %s: %s", l.at.Seconds(), e.name, l.text)
				}
				if m := kstampRE.FindStringSubmatch(l.text); m != nil && e.kernel == "" {
					e.kernel = m[1]
				}
			}
			if m := netLineRE.FindStringSubmatch(l.text); m != nil && !strings.HasPrefix(m[1], "configured "+guestIface+" "+guestAddr) {
				fail("+%.1fs: unexpected network bootstrap line: %s", l.at.Seconds(), l.text)
			}
			for _, re := range failures {
				if re.MatchString(l.text) {
					fail("+%.1fs: console: %s", l.at.Seconds(), l.text)
					break
				}
			}
			if !shuttingDown {
				for _, re := range bootOnlyFailureREs {
					if re.MatchString(l.text) {
						fail("+%.1fs: a banger service stopped before the shutdown: %s", l.at.Seconds(), l.text)
						break
					}
				}
				for _, re := range fatalREs {
					if re.MatchString(l.text) && fatalC == nil {
						fatalC = time.After(5 * time.Second)
					}
				}
				if settleC == nil && allSeen() {
					t.Logf("+%.1fs: every awaited line seen; watching for %s that the services stay up", l.at.Seconds(), env.settle)
					settleC = time.After(env.settle)
				}
			}
		case <-settleC:
			settleC = nil
			shutdown("services up")
		case <-fatalC:
			fatalC = nil
			shutdown("fatal console line")
		case <-bootC:
			bootC = nil
			if !shuttingDown {
				var missing []string
				for _, e := range res.events {
					if e.required && e.host == 0 {
						missing = append(missing, e.name)
					}
				}
				if len(missing) > 0 {
					fail("boot timeout (%s): not seen: %s", bootTimeout, strings.Join(missing, ", "))
				}
				shutdown("boot timeout")
			}
		case <-shutdownC:
			shutdownC = nil
			t.Logf("no shutdown within %s: killing qemu", shutdownTimeout)
			res.killed = true
			_ = cmd.Process.Kill()
		}
	}
	werr := cmd.Wait()
	res.wall = time.Since(start)
	if s := strings.TrimSpace(qemuErr.String()); s != "" {
		t.Logf("qemu stderr: %s", s)
	}
	if !shuttingDown {
		fail("qemu exited by itself after %.1fs (%v): the guest halted, rebooted or panicked", res.wall.Seconds(), werr)
	} else if !res.killed {
		if werr != nil {
			fail("qemu exited with %v after the shutdown request", werr)
		}
		if e := res.event("shutdown"); e.host == 0 {
			fail("qemu exited without the kernel's %q", g.haltLine)
		} else {
			res.cleanShutdown = werr == nil
		}
	}
	return res
}

// qmp sends one command over the QMP socket and waits for its answer.
func qmp(sock, command string) error {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	dec := json.NewDecoder(c)
	var greeting map[string]json.RawMessage
	if err := dec.Decode(&greeting); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	for _, cmd := range []string{`{"execute":"qmp_capabilities"}`, command} {
		if _, err := fmt.Fprintln(c, cmd); err != nil {
			return err
		}
		for {
			var m map[string]json.RawMessage
			if err := dec.Decode(&m); err != nil {
				return fmt.Errorf("%s: %w", cmd, err)
			}
			if _, ok := m["return"]; ok {
				break
			}
			if e, ok := m["error"]; ok {
				return fmt.Errorf("%s: %s", cmd, e)
			}
			// an event: read on
		}
	}
	return nil
}

// buildAgent builds cmd/banger-vsock-agent as banger ships it: static,
// linux/amd64.
func buildAgent(t *testing.T, out string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not found on PATH: the boot test builds the guest agent: %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, "./cmd/banger-vsock-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/banger-vsock-agent: %v\n%s", err, b)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("agent: %s (%d KiB, CGO_ENABLED=0 linux/amd64)", out, st.Size()>>10)
}

func fsckRun(e2fsck, img, flags string) (int, string) {
	cmd := exec.Command(e2fsck, flags, img)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	return -1, err.Error() + "\n" + string(out)
}

// fsck requires a clean e2fsck.
func fsck(t *testing.T, e2fsck, img, flags, what string) {
	t.Helper()
	code, out := fsckRun(e2fsck, img, flags)
	if code != 0 {
		t.Fatalf("e2fsck %s on %s: exit %d\n%s", flags, what, code, out)
	}
	summary := strings.TrimSpace(out)
	if i := strings.LastIndex(summary, "\n"); i >= 0 {
		summary = summary[i+1:]
	}
	t.Logf("e2fsck %s on %s: clean (%s)", flags, what, summary)
}

// checkJournal copies /var/log/journal out of the image with ext4edit and
// has the host's journalctl show the banger units.
func checkJournal(t *testing.T, img, work string, res *bootResult) {
	t.Helper()
	im, err := ext4edit.Open(img, &ext4edit.Options{ReadOnly: true})
	if err != nil {
		t.Errorf("ext4edit.Open the booted image read-only: %v", err)
		return
	}
	dst := filepath.Join(work, "journal")
	n := 0
	err = fs.WalkDir(im.FS(), "var/log/journal", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out := filepath.Join(dst, filepath.FromSlash(strings.TrimPrefix(p, "var/log/journal")))
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		if !d.Type().IsRegular() || path.Ext(p) != ".journal" {
			return nil
		}
		b, err := fs.ReadFile(im.FS(), p)
		if err != nil {
			return err
		}
		n++
		return os.WriteFile(out, b, 0o644)
	})
	if cerr := im.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Errorf("read the guest journal back with ext4edit: %v", err)
		return
	}
	if n == 0 {
		res.journal = append(res.journal, "no journal files in /var/log/journal")
		t.Logf("no journal files in the image's /var/log/journal")
		return
	}
	jc, err := exec.LookPath("journalctl")
	if err != nil {
		t.Logf("journalctl not installed: %d journal files copied to %s, not read", n, dst)
		return
	}
	out, err := exec.Command(jc, "-D", dst, "--no-pager", "-o", "short-monotonic",
		"-u", "banger-network.service", "-u", "banger-vsock-agent.service").CombinedOutput()
	if err != nil {
		t.Errorf("journalctl: %v\n%s", err, out)
		return
	}
	t.Logf("guest journal, banger units (journalctl -o short-monotonic):\n%s", out)
	for _, want := range []string{
		"banger-network: configured " + guestIface + " " + guestAddr,
		"banger-vsock-agent: listening on vsock port " + strconv.Itoa(guestagent.DefaultPort),
		"banger-vsock-agent: stopped",
	} {
		found := ""
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, want) {
				found = l
				break
			}
		}
		if found == "" {
			if want == "banger-vsock-agent: stopped" && !res.cleanShutdown {
				continue
			}
			res.journal = append(res.journal, "MISSING "+want)
			res.failures = append(res.failures, "journal lacks "+want)
			t.Errorf("the guest journal lacks %q", want)
			continue
		}
		res.journal = append(res.journal, found)
	}
	if errs, err := exec.Command(jc, "-D", dst, "--no-pager", "-o", "short-monotonic", "-p", "err").CombinedOutput(); err == nil {
		t.Logf("guest journal, priority err and worse:\n%s", errs)
	}
}

// lineLogger sends a command's output to t.Log line by line.
type lineLogger struct {
	t      *testing.T
	prefix string
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.t.Log(l.prefix + strings.TrimRight(string(l.buf[:i]), "\r"))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func (l *lineLogger) flush() {
	if len(l.buf) > 0 {
		l.t.Log(l.prefix + string(l.buf))
		l.buf = nil
	}
}
