package guestassets

import (
	"bufio"
	"bytes"
	"embed"
	"io/fs"
	"path"
	"strings"
)

// The per-init assets live in initfiles/, not files/: files/ is the
// systemd set, whose listing TestManifest pins to Files().
//
//go:embed initfiles
var initFiles embed.FS

// Init names an init system the assets can be installed for.
type Init string

// The init systems, by the value imagepull.InitSystem and the CLI's
// --init use.
const (
	Systemd  Init = "systemd"
	Sysvinit Init = "sysvinit"
	OpenRC   Init = "openrc"
	Busybox  Init = "busybox"
)

// Inits lists every init system FilesFor knows.
func Inits() []Init { return []Init{Systemd, Sysvinit, OpenRC, Busybox} }

// Paths of the non-systemd assets.
const (
	// InitDir holds sysv-rc's and OpenRC's service scripts.
	InitDir = "/etc/init.d"
	// The script names in InitDir (and in the rc links and runlevels),
	// and the scripts.
	NetworkScriptName, AgentScriptName = "banger-network", AgentName
	NetworkScriptPath, AgentScriptPath = InitDir + "/" + NetworkScriptName, InitDir + "/" + AgentScriptName
	// SupervisePath restarts the agent after a delay under sysvinit,
	// whose rc scripts have no respawn, and busybox init, whose respawn
	// has no delay.
	SupervisePath = "/usr/local/libexec/banger-vsock-agent-supervise"
	// RunlevelDir is the OpenRC runlevel both services are added to, the
	// way `rc-update add NAME default` does.
	RunlevelDir = "/etc/runlevels/default"
	// BusyboxSysinitPath is the busybox init sysinit entry: it loads the
	// vsock modules and runs the network bootstrap.
	BusyboxSysinitPath = "/usr/local/libexec/banger-busybox-sysinit"
	// InittabPath is busybox init's (and sysvinit's) table.
	InittabPath = "/etc/inittab"
	// ModulesPath lists modules to load at boot for kmod's /etc/init.d/kmod
	// (sysv-rc) and OpenRC's modules service.
	ModulesPath = "/etc/modules"
	// DependStartPath and DependStopPath are the makefiles insserv writes
	// for sysv-rc's makefile-style concurrent boot: where they exist,
	// /etc/init.d/rc has startpar run the rcN.d scripts, and startpar runs
	// only the scripts they name (its makefile parser drops the others).
	DependStartPath = InitDir + "/.depend.start"
	DependStopPath  = InitDir + "/.depend.stop"
)

// Append is a text file the injector adds lines to instead of replacing:
// every line of Lines that the file does not already hold (as a whole
// line, byte for byte) is appended in order, after a newline if the file
// does not end with one; the existing bytes, mode and owner are kept. A
// missing file is created (Mode, root:root) with Default followed by
// Lines, unless IfExists is set: then it stays missing. Appending twice is
// appending once.
type Append struct {
	Path     string
	Mode     fs.FileMode
	Lines    []byte // newline-terminated lines
	Default  []byte // the content a missing file starts with
	IfExists bool   // only add to a file that exists
}

func initEmbedded(name string) []byte {
	b, err := initFiles.ReadFile("initfiles/" + name)
	if err != nil {
		panic("guestassets: missing embedded file " + name) // a build defect
	}
	return b
}

// FilesFor returns the regular files installed for init, the agent binary
// first; Systemd gives exactly Files(). An unknown init gives nil.
func FilesFor(init Init) []File {
	agent := File{Path: AgentPath, Mode: 0o755, Companion: true}
	bootstrap := File{Path: NetworkBootstrapPath, Mode: 0o755, Data: NetworkBootstrap()}
	switch init {
	case Systemd:
		return Files()
	case Sysvinit:
		return []File{
			agent, bootstrap,
			{Path: SupervisePath, Mode: 0o755, Data: AgentSupervise()},
			{Path: NetworkScriptPath, Mode: 0o755, Data: SysvinitNetworkScript()},
			{Path: AgentScriptPath, Mode: 0o755, Data: SysvinitAgentScript()},
		}
	case OpenRC:
		return []File{
			agent, bootstrap,
			{Path: NetworkScriptPath, Mode: 0o755, Data: OpenRCNetworkScript()},
			{Path: AgentScriptPath, Mode: 0o755, Data: OpenRCAgentScript()},
		}
	case Busybox:
		return []File{
			agent, bootstrap,
			{Path: SupervisePath, Mode: 0o755, Data: AgentSupervise()},
			{Path: BusyboxSysinitPath, Mode: 0o755, Data: BusyboxSysinit()},
		}
	}
	return nil
}

// SymlinksFor returns the links that enable the services for init;
// Systemd gives exactly Symlinks(), Busybox none (its inittab entries are
// Appends).
//
// sysv-rc: the links `update-rc.d NAME defaults` makes, relative
// ("../init.d/NAME"). With insserv, sequence numbers come from the LSB
// dependency depth; banger-vsock-agent Requires-Start banger-network, so
// the network is S01 and the agent S02 in runlevels 2-5, and on the way
// down the dependent stops first: the agent K01, the network K02 in 0, 1
// and 6. Scripts run in name order, so S01banger-network also starts
// before the image's other S01 services that want the network (ssh).
//
// OpenRC: `rc-update add NAME default`, absolute links to /etc/init.d.
func SymlinksFor(init Init) []Symlink {
	switch init {
	case Systemd:
		return Symlinks()
	case Sysvinit:
		var out []Symlink
		for _, lvl := range []string{"2", "3", "4", "5"} {
			out = append(out,
				Symlink{Path: "/etc/rc" + lvl + ".d/S01" + NetworkScriptName, Target: "../init.d/" + NetworkScriptName},
				Symlink{Path: "/etc/rc" + lvl + ".d/S02" + AgentScriptName, Target: "../init.d/" + AgentScriptName})
		}
		for _, lvl := range []string{"0", "1", "6"} {
			out = append(out,
				Symlink{Path: "/etc/rc" + lvl + ".d/K01" + AgentScriptName, Target: "../init.d/" + AgentScriptName},
				Symlink{Path: "/etc/rc" + lvl + ".d/K02" + NetworkScriptName, Target: "../init.d/" + NetworkScriptName})
		}
		return out
	case OpenRC:
		return []Symlink{
			{Path: path.Join(RunlevelDir, NetworkScriptName), Target: NetworkScriptPath},
			{Path: path.Join(RunlevelDir, AgentScriptName), Target: AgentScriptPath},
		}
	}
	return nil
}

// AppendsFor returns the files init's assets add lines to: /etc/modules
// for sysv-rc and OpenRC (their module services read it; systemd has
// ModulesLoadPath, busybox's sysinit script loads the modules itself);
// for sysv-rc also insserv's startpar makefiles, where they exist, so
// that a makefile-style boot starts and stops our scripts (the same order
// as SymlinksFor; insserv, when it runs again, writes them from the
// scripts' LSB headers); /etc/inittab for busybox (a sysinit and a
// respawn entry; a missing inittab is created with busybox init's
// built-in defaults, which it only uses when there is none).
func AppendsFor(init Init) []Append {
	switch init {
	case Sysvinit, OpenRC:
		var lines []byte
		for _, m := range ModuleNames() {
			lines = append(lines, m+"\n"...)
		}
		out := []Append{{Path: ModulesPath, Mode: 0o644, Lines: lines}}
		if init == Sysvinit {
			out = append(out,
				Append{Path: DependStartPath, Mode: 0o644, Lines: SysvinitDependStart(), IfExists: true},
				Append{Path: DependStopPath, Mode: 0o644, Lines: SysvinitDependStop(), IfExists: true})
		}
		return out
	case Busybox:
		return []Append{{Path: InittabPath, Mode: 0o644, Lines: BusyboxInittabEntries(), Default: BusyboxInittabDefault()}}
	}
	return nil
}

// ModuleNames are the kernel modules of ModulesLoad(), one per
// non-comment line.
func ModuleNames() []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(ModulesLoad()))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, ";") {
			out = append(out, l)
		}
	}
	return out
}

// SysvinitNetworkScript is /etc/init.d/banger-network for sysv-rc.
func SysvinitNetworkScript() []byte { return initEmbedded("sysvinit-banger-network") }

// SysvinitAgentScript is /etc/init.d/banger-vsock-agent for sysv-rc.
func SysvinitAgentScript() []byte { return initEmbedded("sysvinit-banger-vsock-agent") }

// SysvinitDependStart are the lines added to insserv's .depend.start:
// both scripts as startpar targets, the agent after the network.
func SysvinitDependStart() []byte { return initEmbedded("sysvinit-depend-start") }

// SysvinitDependStop are the lines added to insserv's .depend.stop: the
// agent stops before the network.
func SysvinitDependStop() []byte { return initEmbedded("sysvinit-depend-stop") }

// AgentSupervise is the restart loop sysv-rc's agent script and busybox's
// inittab run.
func AgentSupervise() []byte { return initEmbedded("banger-vsock-agent-supervise") }

// OpenRCNetworkScript is /etc/init.d/banger-network for OpenRC.
func OpenRCNetworkScript() []byte { return initEmbedded("openrc-banger-network") }

// OpenRCAgentScript is /etc/init.d/banger-vsock-agent for OpenRC.
func OpenRCAgentScript() []byte { return initEmbedded("openrc-banger-vsock-agent") }

// BusyboxSysinit is the script busybox init runs as a sysinit entry.
func BusyboxSysinit() []byte { return initEmbedded("busybox-sysinit") }

// BusyboxInittabEntries are the inittab lines added for busybox init.
func BusyboxInittabEntries() []byte { return initEmbedded("busybox-inittab-banger") }

// BusyboxInittabDefault is busybox init's built-in table, written when the
// image has no /etc/inittab (busybox init then used these defaults, and
// would no longer once our entries exist).
func BusyboxInittabDefault() []byte { return initEmbedded("busybox-inittab-default") }
