//go:build linux

// Package boot holds the opt-in end-to-end boot test (see README.md): a
// Debian bookworm rootfs made by debootstrap (build-rootfs.sh), turned
// into an ext4 image by imagepull.BuildExt4, given banger's guest assets by
// imagepull.InjectGuestAgentsFile, booted under qemu, and judged by its
// serial console, its journal and e2fsck.
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
	"testing"
	"time"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull"
	"github.com/banger/ext4kit/imagepull/guestagent"
)

// Settings, all from the environment.
const (
	envEnable  = "BANGER_BOOT_TEST"    // 1 runs the test
	envCache   = "BANGER_BOOT_CACHE"   // build-rootfs.sh's cache directory
	envBuilder = "BANGER_BOOT_BUILDER" // buildext4 (default) or mkfs
	envSettle  = "BANGER_BOOT_SETTLE"  // how long both units must stay up (Go duration, default 15s)
	envForward = "BANGER_BOOT_FORWARD" // 0: no systemd.journald.forward_to_console=1
	envKeep    = "BANGER_BOOT_KEEP"    // 1: keep the booted image in the cache's last-run/

	defaultCache    = "/var/tmp/banger-boot-cache"
	buildTimeout    = 25 * time.Minute
	bootTimeout     = 5 * time.Minute
	shutdownTimeout = 2 * time.Minute
	imageSize       = 2 << 30

	// qemu user networking's own addresses (the guest, the gateway and the
	// DNS forwarder of its slirp); with restrict=on nothing leaves the host.
	guestIface = "eth0"
	guestAddr  = "10.0.2.15/24"
	guestGW    = "10.0.2.2"
	guestDNS   = "10.0.2.3"
)

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
	// Lines that fail the test whenever they appear.
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
	}
	// Lines that fail the test before the power-off: a unit going away.
	bootOnlyFailureREs = []*regexp.Regexp{
		regexp.MustCompile(`banger-[a-z-]+\.service: Deactivated successfully`),
		regexp.MustCompile(`Stopped .*banger`),
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

func TestBootDebian(t *testing.T) {
	if os.Getenv(envEnable) != "1" {
		t.Skipf("opt-in end-to-end boot test: set %s=1 (needs root, debootstrap, qemu-system-x86_64, e2fsprogs and network access to deb.debian.org; see test/boot/README.md)", envEnable)
	}
	if os.Geteuid() != 0 {
		t.Skip("the boot test needs root (debootstrap, chroot): sudo env BANGER_BOOT_TEST=1 go test ...")
	}
	if runtime.GOARCH != "amd64" {
		t.Skipf("the boot test builds an amd64 guest and runs qemu-system-x86_64 with TCG; GOARCH=%s", runtime.GOARCH)
	}
	tools := map[string]string{}
	for _, tool := range []string{"qemu-system-x86_64", "debootstrap", "e2fsck", "mkfs.ext4"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s not installed (apt-get install qemu-system-x86 debootstrap e2fsprogs)", tool)
		}
		tools[tool] = p
	}
	cache := os.Getenv(envCache)
	if cache == "" {
		cache = defaultCache
	}
	settle := 15 * time.Second
	if s := os.Getenv(envSettle); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s=%q: %v", envSettle, s, err)
		}
		settle = d
	}
	forward := os.Getenv(envForward) != "0"
	builder := os.Getenv(envBuilder)
	if builder == "" {
		builder = "buildext4"
	}
	if builder != "buildext4" && builder != "mkfs" {
		t.Fatalf("%s=%q: want buildext4 or mkfs", envBuilder, builder)
	}

	// 1. The fixture: debootstrap tree, tar layer, mkfs image, kernel.
	script, err := filepath.Abs("build-rootfs.sh")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	build := exec.CommandContext(ctx, "bash", script)
	build.Env = append(os.Environ(), envCache+"="+cache)
	lw := &lineLogger{t: t, prefix: ""}
	build.Stdout, build.Stderr = lw, lw
	if err := build.Run(); err != nil {
		lw.flush()
		t.Fatalf("build-rootfs.sh: %v", err)
	}
	lw.flush()
	t.Logf("fixture ready in %s (cache %s)", time.Since(t0).Round(time.Second), cache)

	run := filepath.Join(cache, "last-run")
	if err := os.RemoveAll(run); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	imgDir := work
	if os.Getenv(envKeep) == "1" {
		imgDir = run
	}
	img := filepath.Join(imgDir, "rootfs.ext4")

	// 2. The agent, as banger ships it.
	agent := filepath.Join(work, "banger-vsock-agent")
	buildAgent(t, agent)

	// 3. The ext4 image.
	t0 = time.Now()
	switch builder {
	case "buildext4":
		tarPath := filepath.Join(cache, "rootfs.tar")
		var warnings []string
		im, stats, err := imagepull.BuildExt4(context.Background(), img, []imagepull.LayerSource{{
			Digest: "debootstrap-bookworm",
			Open:   func() (io.ReadCloser, error) { return os.Open(tarPath) },
		}}, imagepull.BuildOptions{
			Size:  imageSize,
			Label: "rootfs",
			Seed:  []byte("banger-boot-test"),
			Time:  time.Now(),
			Warnf: func(format string, args ...any) { warnings = append(warnings, fmt.Sprintf(format, args...)) },
		})
		if err != nil {
			t.Fatalf("imagepull.BuildExt4: %v", err)
		}
		if err := im.Close(); err != nil {
			t.Fatalf("commit the built image: %v", err)
		}
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
		out, err := exec.Command("cp", "--sparse=always", filepath.Join(cache, "rootfs-mkfs.ext4"), img).CombinedOutput()
		if err != nil {
			t.Fatalf("copy the mkfs image: %v: %s", err, out)
		}
		t.Logf("image: copy of %s (mkfs.ext4 -d)", filepath.Join(cache, "rootfs-mkfs.ext4"))
	}
	fsck(t, tools["e2fsck"], img, "-fn", "the built image")

	// 4. Our injection, pure Go.
	t0 = time.Now()
	if err := imagepull.InjectGuestAgentsFile(img, imagepull.InjectOptions{AgentPath: agent}); err != nil {
		t.Fatalf("imagepull.InjectGuestAgentsFile: %v", err)
	}
	t.Logf("imagepull.InjectGuestAgentsFile in %s", time.Since(t0).Round(time.Millisecond))
	fsck(t, tools["e2fsck"], img, "-fn", "the injected image")

	// 5. Boot.
	res := boot(t, tools["qemu-system-x86_64"], cache, run, work, img, settle, forward)

	// 6. The filesystem after the guest used it.
	if res.cleanPowerOff {
		fsck(t, tools["e2fsck"], img, "-fn", "the image after a clean power-off")
	} else {
		code, out := fsckRun(tools["e2fsck"], img, "-fy")
		t.Logf("e2fsck -fy after killing qemu: exit %d\n%s", code, out)
		if code >= 4 {
			t.Errorf("e2fsck -fy after killing qemu: exit %d (uncorrected errors)", code)
		}
	}

	// 7. The guest's journal, read back from the image with ext4edit.
	checkJournal(t, img, work, res)

	// 8. The closing note.
	report := res.report()
	t.Log("\n" + report)
	_ = os.WriteFile(filepath.Join(run, "report.txt"), []byte(report), 0o644)
	t.Logf("console log: %s (timed: %s)", filepath.Join(run, "console.log"), filepath.Join(run, "console.timed.log"))
}

// bootResult is what one boot showed.
type bootResult struct {
	events        []*bootEvent
	failures      []string
	cleanPowerOff bool
	killed        bool
	vsockDevice   bool
	cmdline       string
	journal       []string // notes from the journal read-back
	wall          time.Duration
}

func (r *bootResult) event(name string) *bootEvent {
	for _, e := range r.events {
		if e.name == name {
			return e
		}
	}
	return nil
}

func (r *bootResult) report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "boot test report (qemu TCG, -smp 2 -m 1024; vsock device: %v)\n", r.vsockDevice)
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
	fmt.Fprintf(&b, "qemu ran %.1fs; clean power-off: %v; killed: %v\n", r.wall.Seconds(), r.cleanPowerOff, r.killed)
	if len(r.failures) == 0 {
		b.WriteString("failures: none\n")
	}
	for _, f := range r.failures {
		fmt.Fprintf(&b, "FAILURE: %s\n", f)
	}
	return b.String()
}

func boot(t *testing.T, qemu, cache, run, work, img string, settle time.Duration, forward bool) *bootResult {
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
	if forward {
		// The agent logs to stderr, i.e. the journal only; forward the
		// journal to the console to see (and time) its line there.
		args = append(args, "systemd.journald.forward_to_console=1")
	}
	res.cmdline = strings.Join(args, " ")
	qmpSock := filepath.Join(work, "qmp.sock")
	qargs := []string{
		"-accel", "tcg", "-m", "1024", "-smp", "2",
		"-display", "none", "-vga", "none", "-monitor", "none", "-parallel", "none",
		"-no-reboot",
		"-kernel", filepath.Join(cache, "vmlinuz"),
		"-initrd", filepath.Join(cache, "initrd.img"),
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

	agentPort := strconv.Itoa(guestagent.DefaultPort)
	ev := func(name, re string, required bool) *bootEvent {
		e := &bootEvent{name: name, re: regexp.MustCompile(re), required: required}
		res.events = append(res.events, e)
		return e
	}
	ev("banger-network line", `banger-network: configured `+regexp.QuoteMeta(guestIface+" "+guestAddr)+`$`, true)
	ev("banger-network.service finished", `Finished (.*banger-network\.service|banger guest network bootstrap)`, true)
	ev("banger-vsock-agent.service started", `Started (.*banger-vsock-agent\.service|banger guest vsock agent)`, true)
	ev("banger-vsock-agent line", `banger-vsock-agent: listening on vsock port `+agentPort+`$`, forward)
	ev("multi-user.target reached", `Reached target (.*multi-user\.target|Multi-User System)`, true)
	ev("startup finished", `Startup finished in `, false)
	ev("power-off", `reboot: Power down`, false)

	conLog, err := os.Create(filepath.Join(run, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer conLog.Close()
	timedLog, err := os.Create(filepath.Join(run, "console.timed.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer timedLog.Close()
	var qemuErr bytes.Buffer

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(qemu, qargs...)
	cmd.Stdout = pw
	cmd.Stderr = &qemuErr
	t.Logf("qemu: %s %s", qemu, strings.Join(qargs, " "))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
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
	powerOff := func(why string) {
		if shuttingDown {
			return
		}
		shuttingDown = true
		t.Logf("+%.1fs: powering off (%s): QMP system_powerdown", time.Since(start).Seconds(), why)
		if err := qmpPowerdown(qmpSock); err != nil {
			t.Logf("QMP system_powerdown: %v; killing qemu", err)
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
			for _, re := range failureREs {
				if re.MatchString(l.text) {
					fail("+%.1fs: console: %s", l.at.Seconds(), l.text)
					break
				}
			}
			if !shuttingDown {
				for _, re := range bootOnlyFailureREs {
					if re.MatchString(l.text) {
						fail("+%.1fs: a banger unit stopped before the power-off: %s", l.at.Seconds(), l.text)
						break
					}
				}
				for _, re := range fatalREs {
					if re.MatchString(l.text) && fatalC == nil {
						fatalC = time.After(5 * time.Second)
					}
				}
				if settleC == nil && allSeen() {
					t.Logf("+%.1fs: every awaited line seen; watching for %s that both units stay up", l.at.Seconds(), settle)
					settleC = time.After(settle)
				}
			}
		case <-settleC:
			settleC = nil
			powerOff("both units up")
		case <-fatalC:
			fatalC = nil
			powerOff("fatal console line")
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
				powerOff("boot timeout")
			}
		case <-shutdownC:
			shutdownC = nil
			t.Logf("no power-off within %s: killing qemu", shutdownTimeout)
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
			fail("qemu exited with %v after the power-off", werr)
		}
		if e := res.event("power-off"); e.host == 0 {
			fail("qemu exited without the kernel's \"reboot: Power down\"")
		} else {
			res.cleanPowerOff = werr == nil
		}
	}
	return res
}

// qmpPowerdown presses the ACPI power button (systemd-logind powers off).
func qmpPowerdown(sock string) error {
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
	for _, command := range []string{"qmp_capabilities", "system_powerdown"} {
		if _, err := fmt.Fprintf(c, "{\"execute\":%q}\n", command); err != nil {
			return err
		}
		for {
			var m map[string]json.RawMessage
			if err := dec.Decode(&m); err != nil {
				return fmt.Errorf("%s: %w", command, err)
			}
			if _, ok := m["return"]; ok {
				break
			}
			if e, ok := m["error"]; ok {
				return fmt.Errorf("%s: %s", command, e)
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
			if want == "banger-vsock-agent: stopped" && !res.cleanPowerOff {
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
