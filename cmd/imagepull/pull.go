package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/banger/ext4kit/imagepull"
)

const pullUsage = `usage: imagepull pull [--platform OS/ARCH[/VARIANT]] [--size N] [--max-size N] [--boot-artifacts] [--no-agent] [--agent PATH] SOURCE OUTDIR

SOURCE is a registry reference (docker.io/library/debian:bookworm), oci:DIR[:TAG]
(an OCI image layout) or docker-archive:FILE[:TAG] (a docker save tarball).
OUTDIR receives rootfs.ext4, image.json and, with --boot-artifacts, kernel and
initrd. --size takes bytes or a K/M/G/T suffix (binary); without it the size
is estimated from the layers, up to --max-size (default 64G: a few-KiB
hostile layer cannot claim a huge image; raise it for larger images).
`

// pullMemoryLimit is the Go heap's soft limit during `pull` (unless
// GOMEMLIMIT says otherwise).
const pullMemoryLimit = 96 << 20

// pullFinalize is the finalize phase `pull` runs unless --no-agent.
var pullFinalize = func(agent string) imagepull.FinalizeStep {
	return imagepull.DefaultFinalize(nil, imagepull.InjectOptions{AgentPath: agent})
}

// pull runs `imagepull pull ARGS`; main dispatches "pull" here.
func pull(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("pull", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, pullUsage) }
	platform := fl.String("platform", "", "platform to pick from a multi-platform image (default linux/GOARCH)")
	sizeStr := fl.String("size", "", "image size (bytes, or with a K/M/G/T suffix); default: estimated from the layers")
	maxSizeStr := fl.String("max-size", "", "ceiling for the estimated size (default 64G)")
	boot := fl.Bool("boot-artifacts", false, "copy the image's kernel and initrd (from /boot) into OUTDIR")
	noAgent := fl.Bool("no-agent", false, "do not install the banger guest agents")
	agent := fl.String("agent", "", "banger-vsock-agent binary to install (default: next to this executable)")
	var pos []string
	for {
		if err := fl.Parse(args); err != nil {
			return 2
		}
		if fl.NArg() == 0 {
			break
		}
		pos = append(pos, fl.Arg(0))
		args = fl.Args()[1:]
	}
	if len(pos) != 2 {
		fmt.Fprintf(stderr, "imagepull pull: want SOURCE and OUTDIR, got %d arguments\n%s", len(pos), pullUsage)
		return 2
	}
	opts := imagepull.PullOptions{
		BootArtifacts: *boot,
		Warnf:         func(f string, a ...any) { fmt.Fprintf(stderr, "imagepull pull: warning: "+f+"\n", a...) },
		Logf:          func(f string, a ...any) { fmt.Fprintf(stderr, "imagepull pull: "+f+"\n", a...) },
	}
	if *platform != "" {
		p, err := imagepull.ParsePlatform(*platform)
		if err != nil {
			fmt.Fprintf(stderr, "imagepull pull: --platform: %v\n", err)
			return 2
		}
		opts.Platform = p
	}
	if *sizeStr != "" {
		n, err := parseSize(*sizeStr)
		if err != nil {
			fmt.Fprintf(stderr, "imagepull pull: --size: %v\n", err)
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
	if !*noAgent {
		opts.Finalize = pullFinalize(*agent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// A build's live heap is tens of MiB; without a limit the GC lets
		// garbage double it. Stay near the pipeline's 128 MiB budget.
		debug.SetMemoryLimit(pullMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := imagepull.Pull(ctx, pos[0], pos[1], opts)
	if err != nil {
		fmt.Fprintf(stderr, "imagepull pull: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s (%s, %d MiB, %d layers)\n", res.Rootfs, describe(res.Metadata), res.Metadata.Platform, res.Metadata.Rootfs.Size>>20, len(res.Metadata.Layers))
	return 0
}

func describe(m *imagepull.ImageMetadata) string {
	if m.ManifestDigest != "" {
		return m.ManifestDigest
	}
	return "config " + m.ConfigDigest
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
