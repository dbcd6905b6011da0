package imagepull

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull/verity"
	"github.com/banger/ext4kit/internal/filelock"
)

// VerityDevice is the block device a sealed rootfs is attached as in the
// guest (Firecracker's first virtio disk): the kernel command line that
// image.json records opens the verity mapping on it.
const VerityDevice = "/dev/vda"

// VerityMetadata is image.json's "verity" object: what dm-verity needs to
// open a sealed rootfs.ext4, whose hash tree follows the filesystem in
// the same file (hash_offset is the filesystem's size).
type VerityMetadata struct {
	RootHash      string `json:"root_hash"`
	Salt          string `json:"salt"`
	HashOffset    int64  `json:"hash_offset"`
	DataBlocks    uint64 `json:"data_blocks"`
	DataBlockSize uint32 `json:"data_block_size"`
	HashBlockSize uint32 `json:"hash_block_size"`
	Algorithm     string `json:"algorithm"`
	UUID          string `json:"uuid"`
	// KernelCmdline opens the mapping at boot on VerityDevice and mounts
	// it as the root (kernels with dm-verity and CONFIG_DM_INIT built in).
	KernelCmdline string `json:"kernel_cmdline"`
}

func verityMetadata(p *verity.Params) *VerityMetadata {
	salt := hex.EncodeToString(p.Salt)
	return &VerityMetadata{
		RootHash: p.RootHashHex(), Salt: salt, HashOffset: p.HashOffset, DataBlocks: p.DataBlocks,
		DataBlockSize: p.DataBlockSize, HashBlockSize: p.HashBlockSize, Algorithm: p.Algorithm,
		UUID: p.UUIDString(), KernelCmdline: p.KernelCmdline(VerityDevice),
	}
}

// SealVerity appends a dm-verity hash tree to the ext4 image file at path,
// right after its filesystem (replacing one already there), and returns
// what image.json records. opts nil derives the salt and UUID from the
// image, so sealing equal images gives equal bytes. The image is locked
// while it is sealed, and synced. Later edits of the image refuse
// (ext4edit.ErrVeritySealed) unless they drop the tree.
func SealVerity(path string, opts *verity.Options) (*VerityMetadata, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := filelock.Lock(f, true); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer filelock.Unlock(f)
	size, err := filesystemSize(path)
	if err != nil {
		return nil, err
	}
	return sealVerityFile(f, size, opts)
}

// CheckVerity recomputes the hash tree of the sealed image at path from
// its filesystem and compares it, level by level, with the tree in the
// file and with rootHash (hex). A mismatch wraps verity.ErrMismatch.
func CheckVerity(path, rootHash string) (*VerityMetadata, error) {
	want, err := hex.DecodeString(rootHash)
	if err != nil || len(want) != 32 {
		return nil, fmt.Errorf("root hash %q: want 64 hex digits", rootHash)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := filelock.Lock(f, false); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer filelock.Unlock(f)
	size, err := filesystemSize(path)
	if err != nil {
		return nil, err
	}
	p, err := verity.Verify(f, size, want)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return verityMetadata(p), nil
}

// filesystemSize is the size of the ext4 filesystem in the image file at
// path (its caller holds the file's lock, so ext4edit takes none).
func filesystemSize(path string) (int64, error) {
	img, err := ext4edit.Open(path, &ext4edit.Options{ReadOnly: true, NoLock: true})
	if err != nil {
		return 0, err
	}
	defer img.Close()
	return img.Size(), nil
}

// sealVerityFile seals the first fsSize bytes of f and syncs it.
func sealVerityFile(f *os.File, fsSize int64, opts *verity.Options) (*VerityMetadata, error) {
	p, err := verity.Format(f, fsSize, opts)
	if err != nil {
		return nil, fmt.Errorf("dm-verity: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	return verityMetadata(p), nil
}

// sealTemp seals Pull's committed temporary image, reopened by name
// without following a symlink and checked to be the file Pull created.
func sealTemp(tmpPath string, built os.FileInfo, fsSize int64, opts *verity.Options) (*VerityMetadata, error) {
	f, err := openNoFollow(tmpPath, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !os.SameFile(fi, built) {
		return nil, errors.New(tmpPath + ": replaced while the pull ran")
	}
	return sealVerityFile(f, fsSize, opts)
}
