//go:build linux

package boot

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/imagepull"
	"github.com/banger/ext4kit/internal/testimg"
)

// TestBootVerity boots a dm-verity sealed rootfs: the busybox guest,
// built by imagepull.BuildExt4 (auto size), given the guest agents, sealed
// with imagepull.SealVerity, opened at boot from image.json's
// kernel_cmdline, and booted; then the same image with one byte of
// /bin/busybox flipped, which the kernel must refuse.
//
// Debian's kernel has dm-mod and dm-verity as modules, and dm-mod.create
// is only read by a kernel with both built in (CONFIG_DM_INIT), so the
// guest boots a small initramfs whose /init (test/boot/verityinit) loads
// the modules and makes the mapping from the command line's dm-mod.create
// with the ioctls dmsetup uses, the table exactly as the kernel's dm-init
// would get it; then it mounts /dev/dm-0 read-only and runs its
// /sbin/init. The kernel's dm-verity target is the judge: the sealed root
// must boot to the agent, the tampered one must fail with dm-verity's
// corruption message.
func TestBootVerity(t *testing.T) {
	tools, cache := requireBootHost(t)
	script, err := filepath.Abs("build-rootfs.sh")
	require.NoError(t, err)
	buildFixture(t, script, cache, "busybox")

	work := t.TempDir()
	agent := filepath.Join(work, "banger-vsock-agent")
	buildAgent(t, agent)
	initBin := filepath.Join(work, "verityinit")
	buildVerityInit(t, initBin)

	// The sealed image: auto-sized build, agents, seal.
	img := filepath.Join(work, "rootfs.ext4")
	tarPath := filepath.Join(cache, "busybox", "rootfs.tar")
	im, _, err := imagepull.BuildExt4(context.Background(), img, []imagepull.LayerSource{{
		Digest: "boot-verity",
		Open:   func() (io.ReadCloser, error) { return os.Open(tarPath) },
	}}, imagepull.BuildOptions{Label: "rootfs", Seed: []byte("banger-boot-test-verity"), Time: time.Now()})
	require.NoError(t, err, "imagepull.BuildExt4")
	require.NoError(t, im.Close())
	require.NoError(t, imagepull.InjectGuestAgentsFile(img, imagepull.InjectOptions{AgentPath: agent, Init: imagepull.InitBusybox}))
	fsck(t, tools["e2fsck"], img, "-fn", "the injected image")
	meta, err := imagepull.SealVerity(img, nil)
	require.NoError(t, err, "imagepull.SealVerity")
	_, err = imagepull.CheckVerity(img, meta.RootHash)
	require.NoError(t, err, "imagepull.CheckVerity on the sealed image")
	t.Logf("sealed: root hash %s, %d data blocks, hash tree at byte %d; kernel_cmdline %s", meta.RootHash, meta.DataBlocks, meta.HashOffset, meta.KernelCmdline)

	// The tampered copy: one byte of /bin/busybox's first block (its ELF
	// header, read by the first exec) flipped; the hash tree unchanged.
	tampered := filepath.Join(work, "tampered.ext4")
	testimg.CopySparse(t, img, tampered)
	blocks := testimg.DebugfsBlocks(t, img, "/bin/busybox")
	require.NotEmpty(t, blocks, "/bin/busybox's blocks")
	f, err := os.OpenFile(tampered, os.O_RDWR, 0)
	require.NoError(t, err)
	b := make([]byte, 1)
	off := int64(blocks[0])*int64(meta.DataBlockSize) + 200
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	b[0] ^= 0x40
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	_, err = imagepull.CheckVerity(tampered, meta.RootHash)
	require.Error(t, err, "CheckVerity must see the flipped byte")

	kernelDir := filepath.Join(cache, "kernel")
	initrd := filepath.Join(work, "verity-initrd.cpio")
	writeVerityInitramfs(t, kernelDir, initBin, initrd)

	vsock := false
	if _, err := os.Stat("/dev/vhost-vsock"); err == nil {
		vsock = true
	}
	cmdline := "console=ttyS0 panic=-1 loglevel=6 " + meta.KernelCmdline
	run := filepath.Join(cache, "last-run", "verity")
	require.NoError(t, os.MkdirAll(run, 0o755))

	t.Run("sealed", func(t *testing.T) {
		want := []*regexp.Regexp{
			regexp.MustCompile(`verityinit: created "vroot" \(verity, \d+ sectors, read-only true\) as /dev/dm-0`),
			regexp.MustCompile(`verityinit: mounted /dev/dm-0 read-only as the root`),
			regexp.MustCompile(`rcS: busybox guest up`),
			// The agent, run by the inittab entry the injector wrote,
			// from the verity root (it listens through the guest's
			// vsock loopback where the host has no vhost-vsock).
			regexp.MustCompile(`banger-vsock-agent: listening on vsock port ` + agentPort + `$`),
		}
		fail := []*regexp.Regexp{
			regexp.MustCompile(`verityinit: FAILED`),
			regexp.MustCompile(`device-mapper: verity.*(corrupted|error)`),
			regexp.MustCompile(`Kernel panic`),
			regexp.MustCompile(`EXT4-fs error`),
			regexp.MustCompile(`banger-vsock-agent exited with status`),
		}
		seen, lines, wall := bootVerity(t, tools["qemu-system-x86_64"], kernelDir, initrd, img, cmdline, vsock, want, fail, filepath.Join(run, "sealed.console.log"))
		for _, re := range want {
			if _, ok := seen[re.String()]; !ok {
				t.Errorf("the sealed guest never printed %q", re)
			}
		}
		for _, re := range fail {
			if l, ok := seen[re.String()]; ok {
				t.Errorf("the sealed guest printed %q", l)
			}
		}
		if t.Failed() {
			t.Logf("console (last %d lines):\n%s", consoleTail, tail(lines, consoleTail))
		} else {
			t.Logf("the sealed root booted to the agent in %.1f s (qemu TCG)", wall.Seconds())
		}
	})

	t.Run("tampered", func(t *testing.T) {
		corrupt := regexp.MustCompile(`device-mapper: verity: [0-9:]+: data block \d+ is corrupted`)
		failed := regexp.MustCompile(`verityinit: FAILED`)
		booted := regexp.MustCompile(`rcS: busybox guest up`)
		seen, lines, _ := bootVerity(t, tools["qemu-system-x86_64"], kernelDir, initrd, tampered, cmdline, vsock,
			[]*regexp.Regexp{corrupt, failed}, []*regexp.Regexp{booted}, filepath.Join(run, "tampered.console.log"))
		if l, ok := seen[booted.String()]; ok {
			t.Errorf("the tampered root booted: %q", l)
		}
		if _, ok := seen[corrupt.String()]; !ok {
			t.Errorf("no dm-verity corruption message for the flipped byte")
		}
		if _, ok := seen[failed.String()]; !ok {
			t.Errorf("the guest's init ran from the tampered root (no verityinit failure)")
		}
		if t.Failed() {
			t.Logf("console (last %d lines):\n%s", consoleTail, tail(lines, consoleTail))
		} else {
			t.Logf("refused: %s", seen[corrupt.String()])
		}
	})
}

// bootVerity boots img read-only with the verity initramfs and reads the
// console until every line of want has been seen or one of stop, qemu
// exits, or bootTimeout passes; it returns the first line matching each
// pattern seen (by pattern), all lines, and qemu's wall time.
func bootVerity(t *testing.T, qemu, kernelDir, initrd, img, cmdline string, vsock bool, want, stop []*regexp.Regexp, logPath string) (map[string]string, []string, time.Duration) {
	args := []string{
		"-accel", "tcg", "-m", "512", "-smp", "2",
		"-display", "none", "-vga", "none", "-monitor", "none", "-parallel", "none",
		"-no-reboot",
		"-kernel", filepath.Join(kernelDir, "vmlinuz"),
		"-initrd", initrd,
		"-append", cmdline,
		"-drive", "file=" + img + ",format=raw,if=virtio,readonly=on",
		"-nic", "none",
		"-serial", "stdio",
	}
	if vsock {
		args = append(args, "-device", "vhost-vsock-pci,guest-cid=4")
	}
	cmd := exec.Command(qemu, args...)
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	cmd.Stdout = pw
	var qerr bytes.Buffer
	cmd.Stderr = &qerr
	t.Logf("qemu: %s %s", qemu, strings.Join(args, " "))
	start := time.Now()
	require.NoError(t, cmd.Start())
	pw.Close()
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		pr.Close()
	}()
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- strings.TrimRight(ansiRE.ReplaceAllString(sc.Text(), ""), "\r")
		}
	}()
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	defer logf.Close()
	seen := map[string]string{}
	var all []string
	timeout := time.After(bootTimeout)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				if qerr.Len() > 0 {
					t.Logf("qemu stderr: %s", qerr.String())
				}
				return seen, all, time.Since(start)
			}
			all = append(all, l)
			fmt.Fprintln(logf, l)
			done := false
			for _, re := range append(append([]*regexp.Regexp(nil), want...), stop...) {
				if _, ok := seen[re.String()]; !ok && re.MatchString(l) {
					seen[re.String()] = l
				}
			}
			for _, re := range stop {
				if _, ok := seen[re.String()]; ok {
					done = true
				}
			}
			complete := true
			for _, re := range want {
				if _, ok := seen[re.String()]; !ok {
					complete = false
				}
			}
			if done || complete {
				wall := time.Since(start)
				return seen, append(all, drain(lines, logf)...), wall
			}
		case <-timeout:
			t.Errorf("qemu ran %s without the awaited lines", bootTimeout)
			return seen, all, time.Since(start)
		}
	}
}

// drain reads what the console prints in the next second, for the report.
func drain(lines <-chan string, logf io.Writer) []string {
	var out []string
	deadline := time.After(time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return out
			}
			fmt.Fprintln(logf, l)
			out = append(out, l)
		case <-deadline:
			return out
		}
	}
}

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// buildVerityInit builds test/boot/verityinit, static, for the guest.
func buildVerityInit(t *testing.T, out string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./verityinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./verityinit: %v\n%s", err, b)
	}
}

// verityModules are what the verity initramfs loads (with their
// dependencies, from the kernel's modules.dep, dependencies first): the
// virtio disk, ext4 and its crc32c, and dm-verity.
var verityModules = []string{"virtio_pci", "virtio_blk", "crc32c_generic", "ext4", "dm_verity"}

// writeVerityInitramfs writes a newc cpio archive: /init (verityinit),
// /dev/console, the modules under /m and their load order in /modules.
func writeVerityInitramfs(t *testing.T, kernelDir, initBin, out string) {
	t.Helper()
	verB, err := os.ReadFile(filepath.Join(kernelDir, "kernel-version"))
	require.NoError(t, err)
	ver := strings.TrimSpace(string(verB))
	modDir := filepath.Join(kernelDir, "rootfs", "lib", "modules", ver)
	depB, err := os.ReadFile(filepath.Join(modDir, "modules.dep"))
	require.NoError(t, err)
	builtinB, _ := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	norm := func(p string) string {
		// dm-verity.ko, dm-verity.ko.xz: dm_verity (names have no dots).
		base, _, _ := strings.Cut(filepath.Base(p), ".")
		return strings.ReplaceAll(base, "-", "_")
	}
	deps := map[string][]string{} // module path -> dependency paths
	byName := map[string]string{}
	for _, l := range strings.Split(string(depB), "\n") {
		mod, rest, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		byName[norm(mod)] = mod
	}
	builtin := map[string]bool{}
	for _, l := range strings.Split(string(builtinB), "\n") {
		if l != "" {
			builtin[norm(l)] = true
		}
	}
	var order []string
	loaded := map[string]bool{}
	var load func(mod string)
	load = func(mod string) {
		if loaded[mod] {
			return
		}
		loaded[mod] = true
		d := deps[mod]
		for i := len(d) - 1; i >= 0; i-- {
			load(d[i])
		}
		order = append(order, mod)
	}
	for _, name := range verityModules {
		mod, ok := byName[name]
		if !ok {
			require.True(t, builtin[name], "module %s neither in modules.dep nor built in (kernel %s)", name, ver)
			continue
		}
		load(mod)
	}
	var buf bytes.Buffer
	w := &cpioWriter{w: &buf}
	for _, d := range []string{"dev", "proc", "sys", "m", "newroot"} {
		w.add(t, d, 0o040755, nil, 0, 0)
	}
	w.add(t, "dev/console", 0o020600, nil, 5, 1)
	initData, err := os.ReadFile(initBin)
	require.NoError(t, err)
	w.add(t, "init", 0o100755, initData, 0, 0)
	var list []string
	for i, mod := range order {
		data, err := os.ReadFile(filepath.Join(modDir, mod))
		require.NoError(t, err)
		p := fmt.Sprintf("m/%02d-%s", i, filepath.Base(mod))
		w.add(t, p, 0o100644, data, 0, 0)
		list = append(list, "/"+p)
	}
	w.add(t, "modules", 0o100644, []byte(strings.Join(list, "\n")+"\n"), 0, 0)
	w.trailer(t)
	require.NoError(t, os.WriteFile(out, buf.Bytes(), 0o644))
	names := make([]string, len(order))
	for i, m := range order {
		names[i] = norm(m)
	}
	t.Logf("verity initramfs: %d KiB, kernel %s, modules %s", buf.Len()>>10, ver, strings.Join(names, " "))
}

// cpioWriter writes the "newc" cpio format the kernel unpacks as an
// initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
type cpioWriter struct {
	w   io.Writer
	ino int
}

func (c *cpioWriter) add(t *testing.T, name string, mode uint32, data []byte, rmaj, rmin uint32) {
	t.Helper()
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(name)+1, 0)
	pad := func(n int) []byte { return make([]byte, (4-n%4)%4) }
	_, err := io.WriteString(c.w, hdr+name+"\x00")
	require.NoError(t, err)
	_, err = c.w.Write(pad(len(hdr) + len(name) + 1))
	require.NoError(t, err)
	_, err = c.w.Write(data)
	require.NoError(t, err)
	_, err = c.w.Write(pad(len(data)))
	require.NoError(t, err)
}

func (c *cpioWriter) trailer(t *testing.T) {
	c.add(t, "TRAILER!!!", 0, nil, 0, 0)
}
