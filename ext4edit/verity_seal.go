package ext4edit

import (
	"errors"
	"fmt"
	"io"
)

// ErrVeritySealed: the image carries a dm-verity hash tree right after
// the filesystem (imagepull pull --verity, imagepull verity). Any edit
// would change blocks the tree covers and the kernel would refuse the
// image at boot, so writes are refused; Options.DropVerity removes the
// tree first, explicitly.
var ErrVeritySealed = errors.New("ext4 image is sealed with a dm-verity hash tree")

// veritySignature opens the verity superblock veritysetup (and
// imagepull/verity) write at the start of the hash area.
const veritySignature = "verity\x00\x00"

// checkVeritySeal looks for a verity superblock at the byte right after
// the filesystem's last block, where a sealed image keeps it. Found, it
// refuses writes, or with drop removes it (and the tree, when the file
// is the filesystem alone: no offset, no partition) before anything else is written.
func (img *Image) checkVeritySeal(drop bool) error {
	end := img.off + img.bytes()
	var sig [len(veritySignature)]byte
	if _, err := img.dev.ReadAt(sig[:], end); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		return err
	}
	if string(sig[:]) != veritySignature {
		return nil
	}
	if !drop {
		img.sealed = fmt.Errorf("%w at byte %d (set Options.DropVerity, or ext4edit -drop-verity, to remove it and edit)", ErrVeritySealed, end)
		img.writeRefusal = img.writePolicy()
		return nil
	}
	// The superblock first: once it is gone the tree is only bytes
	// nobody reads, whatever happens to the truncation.
	if _, err := img.dev.WriteAt(make([]byte, 4096), end); err != nil {
		return err
	}
	if img.off == 0 && img.opts.Partition == 0 {
		if err := img.f.Truncate(end); err != nil {
			return err
		}
	}
	return img.dev.Sync()
}
