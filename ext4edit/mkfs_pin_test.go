package ext4edit_test

import (
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
)

// TestMkfsPinnedDigest pins the bytes Mkfs writes for fixed options: a
// refactor of the layout code must leave every image byte-identical. A
// deliberate format change updates the digests (and says why in its
// commit).
func TestMkfsPinnedDigest(t *testing.T) {
	base := ext4edit.MkfsOptions{Seed: []byte("sha256:pinned"), Time: time.Unix(1700000000, 0)}
	with := func(f func(o *ext4edit.MkfsOptions)) ext4edit.MkfsOptions {
		o := base
		f(&o)
		return o
	}
	cases := []struct {
		name string
		size int64
		opts ext4edit.MkfsOptions
		want string
	}{
		{"64M-default", 64 << 20, base, "3fb6409418fc5e6f22c413cb3c95c1c7f1abaf53f7ca74f4f6c6fc56a21dcf44"},
		{"20M-1k-last-group", 20 << 20, with(func(o *ext4edit.MkfsOptions) { o.BlockSize = 1024 }), "9686d78181b76e4b1844918bc3b65cac1d72afce3c88b3ff150c491d6650440f"},
		{"200M-1k-many-groups", 200 << 20, with(func(o *ext4edit.MkfsOptions) { o.BlockSize = 1024; o.Label = "many" }), "b6ad7a60f04d0ce8431fc45696cad47fab7ea6c8e2cfe2f6a2400e0b002534f9"},
		{"300M-2k", 300 << 20, with(func(o *ext4edit.MkfsOptions) { o.BlockSize = 2048 }), "37e718397f04ab6d47bca290deb5886c600742e0f75cbc8d4d03761d69738776"},
		{"512M-64k", 512 << 20, with(func(o *ext4edit.MkfsOptions) { o.BlockSize = 65536 }), "072c4db004984a31ec1b760d43201de70ad3abd448f97a97eb91cafe863fe568"},
		{"64M-128-byte-inodes", 64 << 20, with(func(o *ext4edit.MkfsOptions) { o.InodeSize = 128 }), "08c94eb8cf9c53179d86fdb98398f635aa5d5edbc05a42ca2052453ed5f2e5a1"},
		{"64M-no-journal-0%", 64 << 20, with(func(o *ext4edit.MkfsOptions) { o.NoJournal = true; o.ReservedPercent = 100 }), "d76c261b20d631365b0c37f1ed8067d94466ebd940d11c97cfe58bd59dc45ee6"},
		{"1G-ratio", 1 << 30, with(func(o *ext4edit.MkfsOptions) { o.InodeRatio = 65536; o.JournalBlocks = 2048 }), "abc56a2feaa14710b1d98782ee493fedee639cbc839adfa42c4aef84c6fd976c"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "img")
			im, err := ext4edit.Mkfs(p, c.size, &c.opts)
			require.NoError(t, err)
			require.NoError(t, im.Close())
			sum := fileSHA(t, p)
			require.Equal(t, c.want, hex.EncodeToString(sum[:]), "Mkfs output changed")
		})
	}
}
