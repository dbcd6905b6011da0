package imagepull

import (
	"archive/tar"
	"context"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull/guestassets"
	"github.com/banger/ext4kit/internal/testimg"
	"github.com/stretchr/testify/require"
)

// distroLayer makes one tar layer from a spec like hostTree's: "dir/" a
// directory, "name" -> "-> target" a symlink, else a file (0755 under a
// bin or sbin directory or when it starts with "#!", 0644 otherwise).
// Parents come first, as a real layer has them.
func distroLayer(t testing.TB, spec map[string]string) []byte {
	t.Helper()
	dirs := map[string]bool{}
	var names []string
	for k := range spec {
		names = append(names, k)
		for d := path.Dir(strings.TrimSuffix(k, "/")); d != "."; d = path.Dir(d) {
			dirs[d+"/"] = true
		}
	}
	for d := range dirs {
		if _, ok := spec[d]; !ok {
			names = append(names, d)
		}
	}
	sort.Strings(names)
	var ents []testimg.TarEntry
	for _, n := range names {
		v := spec[n]
		switch {
		case strings.HasSuffix(n, "/"):
			ents = append(ents, testimg.TarEntry{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: n, Mode: 0o755}})
		case strings.HasPrefix(v, "-> "):
			ents = append(ents, testimg.TarEntry{Hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: n, Linkname: v[3:], Mode: 0o777}})
		default:
			e := testimg.File(n, v)
			if strings.Contains("/"+path.Dir(n)+"/", "bin/") || strings.HasPrefix(v, "#!") {
				e.Hdr.Mode = 0o755
			}
			ents = append(ents, e)
		}
	}
	return testimg.TarOf(t, ents...)
}

// distroImage builds a 32 MiB image from spec with BuildExt4, committed.
func distroImage(t testing.TB, spec map[string]string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "root.img")
	img, _, err := BuildExt4(context.Background(), p, memLayers(distroLayer(t, spec)), BuildOptions{Size: 32 << 20})
	require.NoError(t, err)
	require.NoError(t, img.Close())
	return p
}

const (
	sysvInittab = "# /etc/inittab: init(8) configuration.\n" +
		"id:2:initdefault:\n" +
		"si::sysinit:/etc/init.d/rcS\n" +
		"l2:2:wait:/etc/init.d/rc 2\n" +
		"1:2345:respawn:/sbin/getty 38400 tty1\n"
	debianOpenRCInittab = "id:2:initdefault:\n" +
		"si::sysinit:/sbin/openrc sysinit\n" +
		"rc::bootwait:/sbin/openrc boot\n" +
		"l2:2:wait:/sbin/openrc default\n"
	alpineInittab = "::sysinit:/sbin/openrc sysinit\n" +
		"::sysinit:/sbin/openrc boot\n" +
		"::wait:/sbin/openrc default\n" +
		"tty1::respawn:/sbin/getty 38400 tty1\n" +
		"::shutdown:/sbin/openrc shutdown\n"
	busyboxInittabText = "::sysinit:/etc/init.d/rcS\n::askfirst:-/bin/sh" // no final newline
	// insserv's makefiles for startpar, as Debian's sysv-rc boots with.
	dependStart = "TARGETS = procps udev ssh rc.local\n" +
		"INTERACTIVE = udev\n" +
		"ssh: procps\n" +
		"rc.local: procps udev ssh\n"
	dependStop = "TARGETS = ssh udev sendsigs umountfs halt reboot\n" +
		"sendsigs: ssh\n" +
		"umountfs: sendsigs udev\n" +
		"halt: umountfs\n" +
		"reboot: umountfs" // no final newline
)

// distros are image trees shaped like the distributions' root
// filesystems, as far as init detection and the injection look.
var distros = []struct {
	name string
	spec map[string]string
	want InitSystem
}{
	{
		name: "debian systemd merged-usr",
		spec: map[string]string{
			"bin": "-> usr/bin", "sbin": "-> usr/sbin", "lib": "-> usr/lib",
			"usr/bin/sh": "dash", "usr/lib/systemd/systemd": "systemd", "usr/lib/systemd/system/": "",
			"usr/sbin/init": "-> ../lib/systemd/systemd", "etc/systemd/system/": "", "etc/os-release": "ID=debian\n",
			// The sysv compatibility scripts systemd images still carry.
			"etc/init.d/": "", "etc/rc2.d/": "",
		},
		want: InitSystemd,
	},
	{
		name: "devuan sysvinit",
		spec: map[string]string{
			"bin/sh": "dash", "sbin/init": "sysvinit", "etc/inittab": sysvInittab,
			"etc/init.d/rc": "#!/bin/sh\n", "etc/init.d/rcS": "#!/bin/sh\n",
			"etc/rcS.d/": "", "etc/rc0.d/": "", "etc/rc1.d/": "", "etc/rc2.d/S01ssh": "-> ../init.d/ssh",
			"etc/rc3.d/": "", "etc/rc4.d/": "", "etc/rc5.d/": "", "etc/rc6.d/": "",
			"etc/modules": "# /etc/modules: kernel modules to load at boot time.\nloop", // no final newline
			// systemd's binary without being init (the systemd package
			// without systemd-sysv).
			"lib/systemd/systemd": "systemd", "lib/systemd/system/": "",
		},
		want: InitSysvinit,
	},
	{
		// bookworm's sysvinit-core + sysv-rc: insserv wrote the
		// .depend files, so /etc/init.d/rc boots makefile-style with
		// startpar, which runs only the scripts they name.
		name: "debian sysvinit with insserv merged-usr",
		spec: map[string]string{
			"bin": "-> usr/bin", "sbin": "-> usr/sbin", "lib": "-> usr/lib",
			"usr/bin/sh": "dash", "usr/sbin/init": "sysvinit", "usr/bin/startpar": "startpar", "etc/inittab": sysvInittab,
			"etc/init.d/rc": "-> /lib/init/rc", "usr/lib/init/rc": "#!/bin/sh\n",
			"etc/init.d/.depend.boot": "TARGETS = udev\n", "etc/init.d/.depend.start": dependStart, "etc/init.d/.depend.stop": dependStop,
			"etc/rcS.d/S01udev": "-> ../init.d/udev", "etc/rc2.d/S01procps": "-> ../init.d/procps", "etc/rc2.d/S02ssh": "-> ../init.d/ssh",
			"etc/rc0.d/K01ssh": "-> ../init.d/ssh", "etc/modules": "# /etc/modules\n",
		},
		want: InitSysvinit,
	},
	{
		name: "debian openrc under sysvinit",
		spec: map[string]string{
			"bin/sh": "dash", "sbin/init": "sysvinit", "sbin/openrc": "openrc", "etc/inittab": debianOpenRCInittab,
			"etc/init.d/": "", "etc/rc2.d/": "",
			"etc/runlevels/boot/": "", "etc/runlevels/default/": "", "etc/runlevels/sysinit/": "", "etc/runlevels/shutdown/": "",
		},
		want: InitOpenRC,
	},
	{
		name: "alpine",
		spec: map[string]string{
			"bin/busybox": "busybox", "bin/sh": "-> /bin/busybox", "sbin/init": "-> /bin/busybox", "sbin/openrc": "openrc",
			"etc/inittab": alpineInittab, "etc/init.d/": "", "etc/modules": "af_packet\nipv6\n",
			"etc/runlevels/boot/": "", "etc/runlevels/default/": "", "etc/runlevels/sysinit/": "", "etc/runlevels/shutdown/": "",
		},
		want: InitOpenRC,
	},
	{
		name: "busybox with inittab",
		spec: map[string]string{
			"bin/busybox": "busybox", "bin/sh": "-> busybox", "sbin/init": "-> ../bin/busybox",
			"etc/inittab": busyboxInittabText, "etc/init.d/rcS": "#!/bin/sh\n",
		},
		want: InitBusybox,
	},
	{
		name: "busybox without inittab",
		spec: map[string]string{"bin/busybox": "busybox", "bin/sh": "-> busybox", "sbin/init": "-> ../bin/busybox"},
		want: InitBusybox,
	},
	{
		name: "systemd without /sbin/init",
		spec: map[string]string{"lib/systemd/systemd": "systemd", "lib/systemd/system/": "", "bin/sh": "dash"},
		want: InitSystemd,
	},
}

func TestDetectInit(t *testing.T) {
	for _, d := range distros {
		t.Run(d.name, func(t *testing.T) {
			img, err := ext4edit.Open(distroImage(t, d.spec), &ext4edit.Options{ReadOnly: true})
			require.NoError(t, err)
			defer img.Close()
			got, err := DetectInit(img)
			require.NoError(t, err)
			require.Equal(t, d.want, got)
		})
	}
	for name, spec := range map[string]map[string]string{
		"nothing":                        {"etc/os-release": "ID=scratch\n", "bin/sh": "sh"},
		"init.d without an init":         {"etc/init.d/": "", "etc/rc2.d/": ""},
		"systemd units but no binary":    {"etc/systemd/system/": "", "lib/systemd/system/": ""},
		"/sbin/init dangling":            {"sbin/init": "-> /lib/systemd/systemd"},
		"openrc without runlevels":       {"sbin/openrc": "openrc"},
		"sysvinit init with busybox tab": {"sbin/init": "init", "etc/init.d/": "", "etc/rc2.d/": "", "etc/inittab": "::askfirst:-/bin/sh\n"},
	} {
		t.Run("none: "+name, func(t *testing.T) {
			img, err := ext4edit.Open(distroImage(t, spec), &ext4edit.Options{ReadOnly: true})
			require.NoError(t, err)
			defer img.Close()
			_, err = DetectInit(img)
			require.ErrorIs(t, err, ErrNoInit)
			for _, m := range []string{"/sbin/init", "/usr/lib/systemd/systemd", "/etc/runlevels", "/sbin/openrc", "--init"} {
				require.Contains(t, err.Error(), m)
			}
		})
	}
}

// expectInitAssets checks, reading img with the editor, what the
// injection for sys must have installed; before is the image's content of
// each appended file before the injection (absent: not in the map).
func expectInitAssets(t *testing.T, img *ext4edit.Image, sys InitSystem, agent string, before map[string][]byte) {
	t.Helper()
	gi := guestassets.Init(sys)
	agentSum := testimg.SHA256File(t, agent)
	for _, f := range guestassets.FilesFor(gi) {
		fi, err := img.Stat(f.Path)
		require.NoError(t, err, f.Path)
		require.True(t, fi.Mode().IsRegular(), f.Path)
		require.Equal(t, f.Mode, fi.Mode().Perm(), f.Path)
		ii := fi.Sys().(*ext4edit.InodeInfo)
		require.Zero(t, ii.UID, f.Path)
		require.Zero(t, ii.GID, f.Path)
		b, err := img.ReadFile(f.Path)
		require.NoError(t, err)
		if f.Companion {
			require.Equal(t, agentSum, sha256Hex(b), f.Path)
		} else {
			require.Equal(t, string(f.Data), string(b), f.Path)
		}
	}
	for _, l := range guestassets.SymlinksFor(gi) {
		target, err := img.Readlink(l.Path)
		require.NoError(t, err, l.Path)
		require.Equal(t, l.Target, target, l.Path)
		fi, err := img.Lstat(l.Path)
		require.NoError(t, err)
		require.Zero(t, fi.Sys().(*ext4edit.InodeInfo).UID, l.Path)
		// The link resolves to the installed script.
		_, err = img.Stat(l.Path)
		require.NoError(t, err, "%s resolves", l.Path)
	}
	for _, a := range guestassets.AppendsFor(gi) {
		old, existed := before[a.Path]
		if a.IfExists && !existed {
			_, err := img.Lstat(a.Path)
			require.ErrorIs(t, err, fs.ErrNotExist, "%s is only added to, never created", a.Path)
			continue
		}
		b, err := img.ReadFile(a.Path)
		require.NoError(t, err, a.Path)
		if existed {
			require.True(t, strings.HasPrefix(string(b), string(old)), "%s keeps its content byte for byte:\n%s", a.Path, b)
		} else {
			require.True(t, strings.HasPrefix(string(b), string(a.Default)), a.Path)
			fi, err := img.Stat(a.Path)
			require.NoError(t, err)
			require.Equal(t, a.Mode, fi.Mode().Perm())
		}
		lines := strings.Split(string(b), "\n")
		for _, l := range strings.Split(strings.TrimSuffix(string(a.Lines), "\n"), "\n") {
			n := 0
			for _, x := range lines {
				if x == l {
					n++
				}
			}
			require.Equal(t, 1, n, "%s holds %q once:\n%s", a.Path, l, b)
		}
		require.True(t, strings.HasSuffix(string(b), "\n"), a.Path)
	}
}

func TestInjectPerInit(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck", "debugfs")
	agent := testimg.AgentBinary(t)
	for _, d := range distros {
		for _, mode := range []InitSystem{InitAuto, ""} {
			t.Run(d.name+"/"+cmpOr(string(mode), "zero"), func(t *testing.T) {
				imgPath := distroImage(t, d.spec)
				before := map[string][]byte{}
				for _, a := range guestassets.AppendsFor(guestassets.Init(d.want)) {
					if v, ok := d.spec[strings.TrimPrefix(a.Path, "/")]; ok {
						before[a.Path] = []byte(v)
					}
				}
				inject := func() {
					img, err := ext4edit.Open(imgPath, nil)
					require.NoError(t, err)
					require.NoError(t, InjectGuestAgents(img, InjectOptions{AgentPath: agent, Init: mode}))
					require.NoError(t, img.Close())
				}
				inject()
				testimg.RequireClean(t, imgPath)
				img, err := ext4edit.Open(imgPath, &ext4edit.Options{ReadOnly: true})
				require.NoError(t, err)
				expectInitAssets(t, img, d.want, agent, before)
				first := listTree(t, img)
				require.NoError(t, img.Close())

				// debugfs agrees on a script and, for sysv-rc and OpenRC,
				// one enable link.
				for _, f := range guestassets.FilesFor(guestassets.Init(d.want))[1:2] {
					require.Equal(t, string(f.Data), string(testimg.Cat(t, imgPath, f.Path)))
				}
				if ls := guestassets.SymlinksFor(guestassets.Init(d.want)); len(ls) > 0 {
					st := testimg.DebugfsStat(t, imgPath, ls[0].Path)
					require.Equal(t, "symlink", st.Type)
					require.Equal(t, ls[0].Target, st.FastLink)
				}

				inject()
				testimg.RequireClean(t, imgPath)
				require.Equal(t, first, listImage(t, imgPath), "a second injection changes nothing")
			})
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestInjectBusyboxInittab pins the busybox inittab texts exactly.
func TestInjectBusyboxInittab(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck")
	agent := testimg.AgentBinary(t)
	ours := "::sysinit:/usr/local/libexec/banger-busybox-sysinit\n::respawn:/usr/local/libexec/banger-vsock-agent-supervise\n"
	require.Equal(t, ours, string(guestassets.BusyboxInittabEntries()))
	for _, tc := range []struct {
		name, inittab, want string
	}{
		{name: "none", want: string(guestassets.BusyboxInittabDefault()) + ours},
		{name: "no final newline", inittab: busyboxInittabText, want: busyboxInittabText + "\n" + ours},
		{name: "one entry already there", inittab: "::respawn:/usr/local/libexec/banger-vsock-agent-supervise\n", want: "::respawn:/usr/local/libexec/banger-vsock-agent-supervise\n::sysinit:/usr/local/libexec/banger-busybox-sysinit\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := map[string]string{"bin/busybox": "busybox", "sbin/init": "-> ../bin/busybox"}
			if tc.inittab != "" {
				spec["etc/inittab"] = tc.inittab
			}
			imgPath := distroImage(t, spec)
			for i := 0; i < 2; i++ {
				require.NoError(t, InjectGuestAgentsFile(imgPath, InjectOptions{AgentPath: agent, Init: InitAuto}))
				require.Equal(t, tc.want, string(testimg.Cat(t, imgPath, "/etc/inittab")))
			}
			st := testimg.DebugfsStat(t, imgPath, "/etc/inittab")
			require.Equal(t, uint32(0o644), st.Mode)
			require.Zero(t, st.UID)
			testimg.RequireClean(t, imgPath)
		})
	}
	// The built-in defaults as busybox init's parse_inittab has them.
	def := string(guestassets.BusyboxInittabDefault())
	for _, l := range []string{"::sysinit:/etc/init.d/rcS\n", "::askfirst:-/bin/sh\n", "tty2::askfirst:-/bin/sh\n", "tty3::askfirst:-/bin/sh\n", "tty4::askfirst:-/bin/sh\n", "::ctrlaltdel:/sbin/reboot\n", "::shutdown:/bin/umount -a -r\n", "::shutdown:/sbin/swapoff -a\n", "::restart:/sbin/init\n"} {
		require.Contains(t, def, l)
	}
}

// TestInjectNoInit: auto (and the zero value, which is auto) on an image
// with no init fails before writing; naming the init installs it anyway.
func TestInjectNoInit(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck")
	agent := testimg.AgentBinary(t)
	spec := map[string]string{"etc/os-release": "ID=scratch\n", "bin/sh": "sh"}
	imgPath := distroImage(t, spec)
	sum := testimg.SHA256File(t, imgPath)
	for _, auto := range []InitSystem{InitAuto, ""} {
		err := InjectGuestAgentsFile(imgPath, InjectOptions{AgentPath: agent, Init: auto})
		require.ErrorIs(t, err, ErrNoInit)
		require.True(t, strings.HasPrefix(err.Error(), "inject guest agents: no init system found: looked for /sbin/init"), err.Error())
		require.Equal(t, sum, testimg.SHA256File(t, imgPath), "the image is byte-identical after the rejection")
	}

	for _, sys := range InitSystems() {
		t.Run(string(sys), func(t *testing.T) {
			p := distroImage(t, spec)
			require.NoError(t, InjectGuestAgentsFile(p, InjectOptions{AgentPath: agent, Init: sys}))
			testimg.RequireClean(t, p)
			img, err := ext4edit.Open(p, &ext4edit.Options{ReadOnly: true})
			require.NoError(t, err)
			defer img.Close()
			expectInitAssets(t, img, sys, agent, nil)
		})
	}

	// An override wins over detection too.
	p := distroImage(t, distros[0].spec)
	require.NoError(t, InjectGuestAgentsFile(p, InjectOptions{AgentPath: agent, Init: InitBusybox}))
	require.Equal(t, string(guestassets.BusyboxInittabDefault())+string(guestassets.BusyboxInittabEntries()), string(testimg.Cat(t, p, "/etc/inittab")))
	require.False(t, testimg.DebugfsExists(t, p, guestassets.NetworkUnitPath))

	for _, bad := range []InitSystem{"upstart", " systemd", "OpenRC"} {
		sum := testimg.SHA256File(t, p)
		err := InjectGuestAgentsFile(p, InjectOptions{AgentPath: agent, Init: bad})
		require.ErrorContains(t, err, fmt.Sprintf("unknown init system %q", bad))
		require.Equal(t, sum, testimg.SHA256File(t, p))
	}
}

func TestParseInitSystem(t *testing.T) {
	for in, want := range map[string]InitSystem{"": "", "auto": InitAuto, "AUTO": InitAuto, "systemd": InitSystemd, "sysvinit": InitSysvinit, "OpenRC": InitOpenRC, " busybox ": InitBusybox} {
		got, err := ParseInitSystem(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"upstart", "runit", "s6", "sysv"} {
		_, err := ParseInitSystem(in)
		require.ErrorContains(t, err, "want auto, systemd, sysvinit, openrc or busybox")
	}
}

func TestAppended(t *testing.T) {
	a := guestassets.Append{Lines: []byte("a\nb\n"), Default: []byte("# d\n")}
	for _, tc := range []struct {
		name    string
		cur     string
		exists  bool
		want    string
		changed bool
	}{
		{name: "missing", want: "# d\na\nb\n", changed: true},
		{name: "empty", exists: true, want: "a\nb\n", changed: true},
		{name: "no final newline", cur: "x", exists: true, want: "x\na\nb\n", changed: true},
		{name: "one there", cur: "b\nx\n", exists: true, want: "b\nx\na\n", changed: true},
		{name: "both there", cur: "x\na\nb\n", exists: true, want: "x\na\nb\n"},
		{name: "a prefix is not the line", cur: "ab\n b\n", exists: true, want: "ab\n b\na\nb\n", changed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := appended(a, []byte(tc.cur), tc.exists)
			require.Equal(t, tc.want, string(got))
			require.Equal(t, tc.changed, changed)
			again, changed := appended(a, got, true)
			require.False(t, changed)
			require.Equal(t, string(got), string(again))
		})
	}
}

// TestInjectAppendRejects: an obstacle where a line-edited file goes is
// found before any write.
func TestInjectAppendRejects(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck")
	agent := testimg.AgentBinary(t)
	base := map[string]string{"bin/busybox": "busybox", "sbin/init": "-> ../bin/busybox"}
	for name, extra := range map[string]map[string]string{
		"inittab is a directory":        {"etc/inittab/": ""},
		"inittab is a dangling symlink": {"etc/inittab": "-> /nonexistent/inittab"},
	} {
		t.Run(name, func(t *testing.T) {
			spec := map[string]string{}
			for k, v := range base {
				spec[k] = v
			}
			for k, v := range extra {
				spec[k] = v
			}
			p := distroImage(t, spec)
			sum := testimg.SHA256File(t, p)
			err := InjectGuestAgentsFile(p, InjectOptions{AgentPath: agent, Init: InitAuto})
			require.Error(t, err)
			require.Contains(t, err.Error(), "/etc/inittab")
			require.Equal(t, sum, testimg.SHA256File(t, p))
		})
	}
}

// TestRealpath resolves inside the image, "/.." staying at the root.
func TestRealpath(t *testing.T) {
	img, err := ext4edit.Open(distroImage(t, map[string]string{
		"usr/bin/busybox": "bb", "bin": "-> usr/bin", "sbin/init": "-> ../../../bin/busybox",
		"loop/a": "-> b", "loop/b": "-> a",
	}), &ext4edit.Options{ReadOnly: true})
	require.NoError(t, err)
	defer img.Close()
	got, err := realpath(img, "/sbin/init")
	require.NoError(t, err)
	require.Equal(t, "/usr/bin/busybox", got)
	_, err = realpath(img, "/loop/a")
	require.ErrorContains(t, err, "too many levels")
	_, ok := resolveFile(img, "/sbin")
	require.False(t, ok)
}

// TestPullRecordsInit: image.json's init is what the Finalize step's
// injection installed for, empty without one, and Pull leaves nothing
// registered behind.
func TestPullRecordsInit(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck")
	agent := testimg.AgentBinary(t)
	layer := distroLayer(t, distros[1].spec) // devuan sysvinit
	src := "oci:" + testimg.RawOCILayout(t, []testimg.RawLayer{{Blob: testimg.Gzip(t, layer), Tar: layer}}, nil)
	for _, tc := range []struct {
		name     string
		finalize FinalizeStep
		want     string
	}{
		{name: "default finalize", finalize: DefaultFinalize(nil, InjectOptions{AgentPath: agent}), want: "sysvinit"},
		{name: "own steps, forced", finalize: func(img *ext4edit.Image) error {
			return Finalize(img, GuestAgentsStep(InjectOptions{AgentPath: agent, Init: InitOpenRC}))
		}, want: "openrc"},
		{name: "no injection", finalize: func(img *ext4edit.Image) error { return nil }},
		{name: "no finalize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			res, err := Pull(context.Background(), src, out, PullOptions{Size: 32 << 20, Finalize: tc.finalize})
			require.NoError(t, err)
			require.Equal(t, tc.want, res.Metadata.Init)
			require.Equal(t, tc.want, readMeta(t, out).Init)
			testimg.RequireClean(t, res.Rootfs)
			n := 0
			initReports.Range(func(any, any) bool { n++; return true })
			require.Zero(t, n, "Pull unregisters its image")
		})
	}
	// An injection outside Pull registers nothing.
	p := distroImage(t, distros[1].spec)
	require.NoError(t, InjectGuestAgentsFile(p, InjectOptions{AgentPath: agent}))
	initReports.Range(func(k, _ any) bool { t.Errorf("stored %v", k); return true })
}

// TestInjectSysvinitDepend pins what insserv's makefiles become: startpar
// runs only the scripts they name, so both are added where the files
// exist (bookworm's sysv-rc boots makefile-style), and nothing is
// created where they do not.
func TestInjectSysvinitDepend(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck", "debugfs")
	agent := testimg.AgentBinary(t)
	for _, d := range distros {
		if d.want != InitSysvinit {
			continue
		}
		t.Run(d.name, func(t *testing.T) {
			imgPath := distroImage(t, d.spec)
			for i := 0; i < 2; i++ {
				require.NoError(t, InjectGuestAgentsFile(imgPath, InjectOptions{AgentPath: agent, Init: InitAuto}))
			}
			testimg.RequireClean(t, imgPath)
			for p, want := range map[string]string{
				guestassets.DependStartPath: dependStart + string(guestassets.SysvinitDependStart()),
				guestassets.DependStopPath:  dependStop + "\n" + string(guestassets.SysvinitDependStop()),
			} {
				if _, ok := d.spec[strings.TrimPrefix(p, "/")]; !ok {
					require.False(t, testimg.DebugfsExists(t, imgPath, p), "%s created", p)
					continue
				}
				require.Equal(t, want, string(testimg.Cat(t, imgPath, p)))
			}
		})
	}
}
