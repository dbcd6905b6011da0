package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/banger/ext4kit/imagepull"
	"github.com/banger/ext4kit/imagepull/verity"
)

const verityUsage = `usage: imagepull verity [--salt HEX] IMAGE
       imagepull verity --check IMAGE ROOT_HASH

The first form seals IMAGE (an ext4 image file) with a dm-verity hash tree
appended right after its filesystem, replacing one already there, and prints
the JSON object image.json's "verity" holds: root_hash, salt, hash_offset,
data_blocks, data_block_size, hash_block_size, algorithm, uuid and
kernel_cmdline. The salt defaults to one derived from the image (equal images,
equal bytes). Later edits of IMAGE are refused until the tree is dropped
(ext4edit -w -drop-verity, or -resize ... -drop-verity).

--check recomputes the tree from IMAGE's filesystem and compares every level
and the root with ROOT_HASH: exit 0 when they match, 1 when not (the message
names the first block that differs).
`

// verityCmd runs `imagepull verity ARGS`.
func verityCmd(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("verity", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, verityUsage) }
	salt := fl.String("salt", "", "salt in `HEX` (default: derived from the image)")
	check := fl.Bool("check", false, "verify IMAGE against ROOT_HASH instead of sealing it")
	pos, err := positionals(fl, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	var m *imagepull.VerityMetadata
	switch {
	case *check && len(pos) == 2 && *salt == "":
		m, err = imagepull.CheckVerity(pos[0], pos[1])
		if err != nil {
			fmt.Fprintf(stderr, "imagepull verity --check: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "imagepull verity: %s matches root hash %s\n", pos[0], m.RootHash)
		return 0
	case !*check && len(pos) == 1:
		opts, perr := verityOptions(*salt)
		if perr != nil {
			fmt.Fprintf(stderr, "imagepull verity: --salt: %v\n", perr)
			return 2
		}
		m, err = imagepull.SealVerity(pos[0], opts)
		if err != nil {
			fmt.Fprintf(stderr, "imagepull verity: %v\n", err)
			return 1
		}
	default:
		fmt.Fprint(stderr, verityUsage)
		return 2
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "imagepull verity: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(append(b, '\n')); err != nil {
		fmt.Fprintf(stderr, "imagepull verity: %v\n", err)
		return 1
	}
	return 0
}

// verityOptions parses a --salt value: "" derives the salt from the image.
func verityOptions(saltHex string) (*verity.Options, error) {
	if saltHex == "" {
		return &verity.Options{}, nil
	}
	salt, err := hex.DecodeString(saltHex)
	if err != nil {
		return nil, fmt.Errorf("%q is not hex", saltHex)
	}
	if len(salt) > 256 {
		return nil, fmt.Errorf("%d bytes: at most 256", len(salt))
	}
	return &verity.Options{Salt: salt}, nil
}
