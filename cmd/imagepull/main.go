// Command imagepull finalizes ext4 root filesystems for banger microVMs:
//
//	imagepull inject [--agent PATH] [--allow-arch-mismatch] [--init auto|systemd|sysvinit|openrc|busybox] IMAGE
//	imagepull apply-ownership --layer FILE [--layer FILE ...] IMAGE
//	imagepull pull [--platform OS/ARCH[/VARIANT]] [--size auto|SIZE] [--max-size SIZE] [--kernel-from-image] [--no-agents] [--agent PATH] [--init INIT] [--verity [--verity-salt HEX]] [--insecure] [--json] SOURCE OUTDIR
//	imagepull verity [--salt HEX] IMAGE
//	imagepull verity --check IMAGE ROOT_HASH
//	imagepull clone [--size SIZE] SRC DST
//
// inject installs the guest assets (network bootstrap, vsock agent, and
// what starts them at boot for the image's init: systemd units,
// sysv-rc or OpenRC scripts, or busybox inittab entries) into IMAGE;
// --init names the init instead of detecting it (auto detects and fails
// when the image has none; without --init an image with none gets the
// systemd units). The agent binary defaults to banger-vsock-agent next
// to this executable. apply-ownership sets the
// owners and modes recorded in the layer tar files (lowest first, gzip or
// plain, OCI whiteouts honoured) on IMAGE's paths. pull makes
// OUTDIR/rootfs.ext4 and OUTDIR/image.json from an image (see
// `imagepull pull --help`: --no-agents and --kernel-from-image, with the
// aliases --no-agent and --boot-artifacts; --verity seals the image with
// a dm-verity hash tree; --insecure; --json); it draws its progress on
// stderr when that is a terminal. verity seals an existing image, or with
// --check verifies one against a root hash. clone copies an image for one
// VM (a reflink where the host can) and grows the copy.
//
// Exit status: 0 done, 1 the operation failed (the message says why), 2
// usage error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull"
)

const usage = `usage:
  imagepull inject [--agent PATH] [--allow-arch-mismatch] [--init auto|systemd|sysvinit|openrc|busybox] IMAGE
  imagepull apply-ownership --layer FILE [--layer FILE ...] IMAGE
  imagepull pull [--platform OS/ARCH[/VARIANT]] [--size auto|SIZE] [--max-size SIZE] [--kernel-from-image] [--no-agents] [--agent PATH] [--init INIT] [--verity [--verity-salt HEX]] [--insecure] [--json] SOURCE OUTDIR
  imagepull verity [--salt HEX] IMAGE
  imagepull verity --check IMAGE ROOT_HASH
  imagepull clone [--size SIZE] SRC DST
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "inject":
		return inject(args[1:], stdout, stderr)
	case "pull":
		return pull(args[1:], stdout, stderr)
	case "clone":
		return cloneCmd(args[1:], stdout, stderr)
	case "verity":
		return verityCmd(args[1:], stdout, stderr)
	case "apply-ownership":
		return applyOwnership(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "imagepull: unknown command %q\n%s", args[0], usage)
	return 2
}

// positionals parses flags placed anywhere among the arguments (flag
// stops at the first positional one) and returns the positional ones.
func positionals(fl *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fl.Parse(args); err != nil {
			return nil, err
		}
		if fl.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fl.Arg(0))
		args = fl.Args()[1:]
	}
}

// parse is positionals for commands that take exactly one IMAGE.
func parse(fl *flag.FlagSet, args []string, stderr io.Writer) (string, bool) {
	pos, err := positionals(fl, args)
	if err != nil {
		return "", false
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "imagepull %s: want exactly one IMAGE, got %d arguments\n%s", fl.Name(), len(pos), usage)
		return "", false
	}
	return pos[0], true
}

func inject(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("inject", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var opts imagepull.InjectOptions
	fl.StringVar(&opts.AgentPath, "agent", "", "banger-vsock-agent binary to install (default: next to this executable)")
	fl.BoolVar(&opts.AllowArchMismatch, "allow-arch-mismatch", false, "install the agent even if it is not built for the image's architecture")
	fl.Func("init", initFlagUsage, initFlag(&opts.Init))
	image, ok := parse(fl, args, stderr)
	if !ok {
		return 2
	}
	if err := imagepull.InjectGuestAgentsFile(image, opts); err != nil {
		fmt.Fprintf(stderr, "imagepull inject: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "imagepull inject: guest agents installed in %s\n", image)
	return 0
}

func applyOwnership(args []string, stdout, stderr io.Writer) (code int) {
	fl := flag.NewFlagSet("apply-ownership", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var layers []string
	fl.Func("layer", "layer tar `FILE` (gzip or plain), lowest first; repeat for each layer", func(s string) error {
		layers = append(layers, s)
		return nil
	})
	image, ok := parse(fl, args, stderr)
	if !ok {
		return 2
	}
	if len(layers) == 0 {
		fmt.Fprintf(stderr, "imagepull apply-ownership: at least one --layer is needed\n%s", usage)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "imagepull apply-ownership: %v\n", err)
		return 1
	}
	var readers []io.Reader
	for _, l := range layers {
		f, err := os.Open(l)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		readers = append(readers, f)
	}
	table, err := imagepull.OwnershipFromLayers(readers...)
	if err != nil {
		return fail(err)
	}
	img, err := ext4edit.Open(image, nil)
	if err != nil {
		return fail(err)
	}
	// Present paths are applied and committed even when some are missing;
	// the missing ones are reported and the status is 1.
	aerr := imagepull.ApplyOwnership(img, table)
	if err := img.Close(); err != nil {
		return fail(errors.Join(aerr, err))
	}
	if aerr != nil {
		return fail(aerr)
	}
	fmt.Fprintf(stdout, "imagepull apply-ownership: %d paths checked in %s\n", len(table), image)
	return 0
}

// initFlagUsage describes --init for inject and pull.
const initFlagUsage = "init system to install for: auto (detect; fail if none is found), systemd, sysvinit, openrc or busybox (default: detect, systemd if none is found)"

// initFlag parses --init into *dst.
func initFlag(dst *imagepull.InitSystem) func(string) error {
	return func(v string) error {
		sys, err := imagepull.ParseInitSystem(v)
		if err != nil {
			return err
		}
		if sys == "" {
			return errors.New("empty value (want auto, systemd, sysvinit, openrc or busybox)")
		}
		*dst = sys
		return nil
	}
}
