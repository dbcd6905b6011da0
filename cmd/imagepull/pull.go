package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/banger/ext4kit/imagepull"
	"github.com/banger/ext4kit/internal/paths"
)

const pullUsage = `usage: imagepull pull [--platform OS/ARCH[/VARIANT]] [--size auto|SIZE] [--max-size SIZE]
                     [--kernel-from-image] [--no-agents] [--agent PATH] [--init INIT]
                     [--verity [--verity-salt HEX]] [--cache DIR [--cache-max SIZE]]
                     [--insecure] [--json] SOURCE OUTDIR

SOURCE is a registry reference (docker.io/library/debian:bookworm), oci:DIR[:TAG]
(an OCI image layout) or docker-archive:FILE[:TAG] (a docker save tarball).
OUTDIR receives rootfs.ext4, image.json and, with --kernel-from-image, kernel and
initrd (mode 0644 less the umask).

  --platform OS/ARCH[/VARIANT]  platform to pick from a multi-platform image
                                (default linux/GOARCH)
  --size auto|SIZE              image size: bytes or a K/M/G/T suffix (binary,
                                512M, 1.5G); auto (the default) reads the layers
                                once into a sparse image of --max-size, then cuts
                                it to the content plus a headroom of 1/32 of the
                                content and 16 MiB (and the journal)
  --max-size SIZE               ceiling for auto (default 64G: a few-KiB hostile
                                layer cannot claim a huge image; raise it for
                                larger images)
  --kernel-from-image           copy the image's kernel and initrd (from /boot)
                                into OUTDIR (alias: --boot-artifacts)
  --no-agents                   do not install the banger guest agents
                                (alias: --no-agent)
  --agent PATH                  banger-vsock-agent binary to install (default:
                                next to this executable)
  --init INIT                   init system to install the agents for: auto
                                (detect; fail if the image has none), systemd,
                                sysvinit, openrc or busybox (default: detect,
                                systemd if none is found); image.json records it
  --verity                      seal rootfs.ext4 with a dm-verity hash tree after
                                the filesystem (veritysetup's format 1, sha256, 4
                                KiB blocks); image.json's "verity" records the
                                root hash, salt, offsets and the kernel command
                                line that opens it; edits of the sealed image are
                                refused (ext4edit -drop-verity removes the tree)
  --verity-salt HEX             the tree's salt (default: derived from the image,
                                so equal pulls give equal bytes)
  --cache DIR                   keep the finished image in DIR under its manifest
                                digest and these options (agent binary, assets,
                                init, size, verity, platform); a later pull of
                                the same image resolves the manifest only and
                                publishes from DIR (a reflink where the host
                                filesystem can) without reading a layer
  --cache-max SIZE              after a pull fills DIR, remove its least
                                recently used images until it holds at most SIZE
  --insecure                    reach SOURCE's registry (that host only) over
                                plain HTTP or TLS without certificate checks
  --json                        print one JSON object (outputs, digests) on
                                stdout; logs stay on stderr

Progress (bytes per layer, the build's entries and bytes) is drawn on stderr
when it is a terminal.
`

// pullMemoryLimit is the Go heap's soft limit during `pull` (unless
// GOMEMLIMIT says otherwise).
const pullMemoryLimit = 96 << 20

// pullFinalize is the finalize phase `pull` runs unless --no-agents.
var pullFinalize = func(agent string) imagepull.FinalizeStep {
	return pullFinalizeFor(agent, "")
}

// pullFinalizeFor is pullFinalize for an --init choice.
func pullFinalizeFor(agent string, init imagepull.InitSystem) imagepull.FinalizeStep {
	return imagepull.DefaultFinalize(nil, imagepull.InjectOptions{AgentPath: agent, Init: init})
}

// pullJSON is what --json prints: the outputs and the digests.
type pullJSON struct {
	Rootfs         string          `json:"rootfs"`
	Metadata       string          `json:"metadata"` // OUTDIR/image.json
	Kernel         string          `json:"kernel,omitempty"`
	Initrd         string          `json:"initrd,omitempty"`
	Source         string          `json:"source"`
	Kind           string          `json:"kind"`
	Reference      string          `json:"reference,omitempty"`
	Platform       string          `json:"platform"`
	IndexDigest    string          `json:"indexDigest,omitempty"`
	ManifestDigest string          `json:"manifestDigest,omitempty"` // "" for docker-archive
	ConfigDigest   string          `json:"configDigest"`
	Layers         []pullJSONLayer `json:"layers"`
	Size           int64           `json:"size"` // of rootfs.ext4, bytes
	SizeEstimated  bool            `json:"sizeEstimated"`
	AgentsInjected bool            `json:"agentsInjected"`
	Init           string          `json:"init,omitempty"` // the agents' init system
	// Cached: published from --cache without reading a layer.
	Cached bool `json:"cached,omitempty"`
	// Verity is image.json's "verity" object when --verity sealed the image.
	Verity *imagepull.VerityMetadata `json:"verity,omitempty"`
}

type pullJSONLayer struct {
	Digest string `json:"digest,omitempty"`
	DiffID string `json:"diffID"`
	Size   int64  `json:"size"`
}

// pull runs `imagepull pull ARGS`; main dispatches "pull" here.
func pull(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("pull", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, pullUsage) }
	platform := fl.String("platform", "", "platform to pick from a multi-platform image (default linux/GOARCH)")
	sizeStr := fl.String("size", "auto", "image size (bytes, or with a K/M/G/T suffix), or auto: estimated from the layers")
	maxSizeStr := fl.String("max-size", "", "ceiling for the estimated size (default 64G)")
	var boot, noAgents bool
	for _, n := range []string{"kernel-from-image", "boot-artifacts"} {
		fl.BoolVar(&boot, n, false, "copy the image's kernel and initrd (from /boot) into OUTDIR")
	}
	for _, n := range []string{"no-agents", "no-agent"} {
		fl.BoolVar(&noAgents, n, false, "do not install the banger guest agents")
	}
	agent := fl.String("agent", "", "banger-vsock-agent binary to install (default: next to this executable)")
	var initSys imagepull.InitSystem
	fl.Func("init", initFlagUsage, initFlag(&initSys))
	sealVerity := fl.Bool("verity", false, "seal rootfs.ext4 with a dm-verity hash tree")
	veritySalt := fl.String("verity-salt", "", "dm-verity salt in `HEX` (default: derived from the image)")
	cacheDir := fl.String("cache", "", "pull cache `DIR`")
	cacheMax := fl.String("cache-max", "", "pull cache size limit (bytes or K/M/G/T)")
	insecure := fl.Bool("insecure", false, "plain HTTP and unverified TLS for SOURCE's registry only")
	asJSON := fl.Bool("json", false, "print one JSON object with the outputs and digests on stdout")
	pos, err := positionals(fl, args)
	if err != nil {
		return 2
	}
	if len(pos) != 2 {
		fmt.Fprintf(stderr, "imagepull pull: want SOURCE and OUTDIR, got %d arguments\n%s", len(pos), pullUsage)
		return 2
	}
	// Logs go to stderr, above the progress bars when they are drawn.
	var logw io.Writer = stderr
	var view *progressView
	if isTerminal(stderr) {
		view = newProgressView(stderr)
		logw = view
	}
	finish := func() {
		if view != nil {
			view.finish()
			view = nil
		}
	}
	defer finish()
	opts := imagepull.PullOptions{
		BootArtifacts: boot,
		Insecure:      *insecure,
		Warnf:         func(f string, a ...any) { fmt.Fprintf(logw, "imagepull pull: warning: "+f+"\n", a...) },
		Logf:          func(f string, a ...any) { fmt.Fprintf(logw, "imagepull pull: "+f+"\n", a...) },
	}
	if view != nil {
		opts.Progress = view.event
	}
	if *platform != "" {
		p, err := imagepull.ParsePlatform(*platform)
		if err != nil {
			fmt.Fprintf(stderr, "imagepull pull: --platform: %v\n", err)
			return 2
		}
		opts.Platform = p
	}
	if s := strings.TrimSpace(*sizeStr); !strings.EqualFold(s, "auto") {
		n, err := parseSize(s)
		if err != nil {
			fmt.Fprintf(stderr, "imagepull pull: --size: %v (want auto, bytes, or a K/M/G/T suffix)\n", err)
			return 2
		}
		opts.Size = n
	}
	if *maxSizeStr != "" {
		n, err := parseSize(*maxSizeStr)
		if err != nil {
			fmt.Fprintf(stderr, "imagepull pull: --max-size: %v\n", err)
			return 2
		}
		opts.MaxSize = n
	}
	switch {
	case noAgents && initSys != "":
		fmt.Fprintf(stderr, "imagepull pull: --init and --no-agents contradict each other\n")
		return 2
	case noAgents:
	case initSys == "":
		opts.Finalize = pullFinalize(*agent)
	default:
		opts.Finalize = pullFinalizeFor(*agent, initSys)
	}
	if *veritySalt != "" && !*sealVerity {
		fmt.Fprintf(stderr, "imagepull pull: --verity-salt needs --verity\n")
		return 2
	}
	if *sealVerity {
		vo, err := verityOptions(*veritySalt)
		if err != nil {
			fmt.Fprintf(stderr, "imagepull pull: --verity-salt: %v\n", err)
			return 2
		}
		opts.Verity = vo
	}
	if *cacheMax != "" && *cacheDir == "" {
		fmt.Fprintf(stderr, "imagepull pull: --cache-max needs --cache\n")
		return 2
	}
	if *cacheDir != "" {
		opts.Cache = &imagepull.Cache{Dir: *cacheDir}
		if *cacheMax != "" {
			n, err := parseSize(*cacheMax)
			if err != nil {
				fmt.Fprintf(stderr, "imagepull pull: --cache-max: %v\n", err)
				return 2
			}
			opts.Cache.MaxBytes = n
		}
		if !noAgents {
			id, err := imagepull.InjectOptions{AgentPath: *agent, Init: initSys}.FinalizeID()
			if err != nil {
				fmt.Fprintf(stderr, "imagepull pull: %v\n", err)
				return 1
			}
			opts.FinalizeID = id
		}
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// A build's live heap is tens of MiB; without a limit the GC lets
		// garbage double it. Stay near the pipeline's 128 MiB budget.
		debug.SetMemoryLimit(pullMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	source, outdir := pos[0], pos[1]
	res, err := imagepull.Pull(ctx, source, outdir, opts)
	finish() // the bars end before the result is printed
	if err != nil {
		fmt.Fprintf(stderr, "imagepull pull: %v\n", err)
		return 1
	}
	m := res.Metadata
	if *asJSON {
		out := pullJSON{
			Rootfs:         res.Rootfs,
			Metadata:       filepath.Join(outdir, imagepull.MetadataName),
			Source:         m.Source,
			Kind:           m.Kind,
			Reference:      m.Reference,
			Platform:       m.Platform,
			IndexDigest:    m.IndexDigest,
			ManifestDigest: m.ManifestDigest,
			ConfigDigest:   m.ConfigDigest,
			Layers:         []pullJSONLayer{},
			Size:           m.Rootfs.Size,
			SizeEstimated:  m.Rootfs.SizeEstimated,
			AgentsInjected: opts.Finalize != nil,
			Init:           m.Init,
			Verity:         m.Verity,
			Cached:         res.Cached,
		}
		if m.Kernel != nil {
			out.Kernel = filepath.Join(outdir, m.Kernel.File)
		}
		if m.Initrd != nil {
			out.Initrd = filepath.Join(outdir, m.Initrd.File)
		}
		for _, l := range m.Layers {
			out.Layers = append(out.Layers, pullJSONLayer{Digest: l.Digest, DiffID: l.DiffID, Size: l.Size})
		}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			fmt.Fprintf(stderr, "imagepull pull: %v\n", err)
			return 1
		}
		if _, err := stdout.Write(append(b, '\n')); err != nil {
			fmt.Fprintf(stderr, "imagepull pull: writing the result: %v\n", err)
			return 1
		}
		return 0
	}
	agents := "guest agents installed"
	if m.Init != "" {
		agents += " for " + m.Init
	}
	if opts.Finalize == nil {
		agents = "no guest agents"
	}
	fmt.Fprintf(stdout, "%s: %s (%s, %d MiB, %d layers, %s)\n", res.Rootfs, describe(m), m.Platform, m.Rootfs.Size>>20, len(m.Layers), agents)
	for _, a := range []*imagepull.BootArtifact{m.Kernel, m.Initrd} {
		if a != nil {
			fmt.Fprintf(stdout, "%s: %s from the image\n", filepath.Join(outdir, a.File), a.ImagePath)
		}
	}
	if v := m.Verity; v != nil {
		fmt.Fprintf(stdout, "dm-verity: root hash %s, tree at byte %d (kernel command line in image.json)\n", v.RootHash, v.HashOffset)
	}
	q := shellQuote(res.Rootfs)
	fmt.Fprintf(stdout, "inspect: %s -R 'ls -l /' %s\n", ext4editCommand(), q)
	fmt.Fprintf(stdout, "check:   e2fsck -fn %s\n", q)
	return 0
}

func describe(m *imagepull.ImageMetadata) string {
	if m.ManifestDigest != "" {
		return m.ManifestDigest
	}
	return "config " + m.ConfigDigest
}

// shellQuote quotes s for a POSIX shell when it needs it, so the inspect
// hint can be pasted as it is.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:,@%=", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// parseSize parses "1073741824", "512M", "2G", "1.5G" (binary units).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B")
	t = strings.TrimSuffix(t, "I")
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil && n > 0 && n <= (1<<62)/mult {
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(f * float64(mult)), nil
}

// ext4editCommand is how to run the ext4edit built beside this imagepull
// (go build -o bin/ ./cmd/... puts them together), or plain "ext4edit"
// when there is none, for a PATH lookup.
func ext4editCommand() string {
	name := "ext4edit"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	p, err := paths.CompanionBinaryPath(name)
	if err != nil {
		return "ext4edit"
	}
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return "ext4edit"
	}
	return shellQuote(p)
}
