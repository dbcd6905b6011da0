package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/banger/ext4kit/imagepull"
)

const cloneUsage = `usage: imagepull clone [--size SIZE] SRC DST

Copies the ext4 image SRC to DST for one VM, then resizes DST's filesystem to
SIZE (bytes, or with a K/M/G/T suffix; default: SRC's size). The copy shares
SRC's extents (a reflink) where the host filesystem can (XFS, btrfs), else
copies SRC's data blocks and keeps its holes. Only SRC's filesystem is copied
(not a dm-verity tree after it). SRC never changes; DST appears whole or not
at all.
`

// cloneCmd runs `imagepull clone ARGS`.
func cloneCmd(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("clone", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, cloneUsage) }
	sizeStr := fl.String("size", "", "size of DST's filesystem (default: SRC's)")
	pos, err := positionals(fl, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) != 2 {
		fmt.Fprintf(stderr, "imagepull clone: want SRC and DST, got %d arguments\n%s", len(pos), cloneUsage)
		return 2
	}
	var opts imagepull.CloneOptions
	if *sizeStr != "" {
		n, err := parseSize(*sizeStr)
		if err != nil {
			fmt.Fprintf(stderr, "imagepull clone: --size: %v\n", err)
			return 2
		}
		opts.Size = n
	}
	res, err := imagepull.Clone(pos[0], pos[1], opts)
	if err != nil {
		fmt.Fprintf(stderr, "imagepull clone: %v\n", err)
		return 1
	}
	how := "copied"
	if res.Reflinked {
		how = "reflinked"
	}
	fmt.Fprintf(stdout, "%s: %s from %s, %d -> %d bytes\n", pos[1], how, pos[0], res.SourceSize, res.Size)
	return 0
}
