package verity

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// veritysetup is the judge: cryptsetup's own tool must accept our trees
// and make the same ones.
func veritysetup(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("veritysetup")
	if err != nil {
		for _, d := range []string{"/usr/sbin", "/sbin"} {
			if _, err := os.Stat(filepath.Join(d, "veritysetup")); err == nil {
				return filepath.Join(d, "veritysetup")
			}
		}
		t.Skip("veritysetup not installed (apt-get install cryptsetup-bin): it judges the hash trees")
	}
	return p
}

// writeData makes a file of n blocks: pseudo-random blocks with runs of
// zero blocks (holes) among them.
func writeData(t testing.TB, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	r := rand.New(rand.NewPCG(uint64(n), 7))
	b := make([]byte, BlockSize)
	for i := int64(0); i < n; i++ {
		if r.IntN(4) == 0 {
			continue // a hole: zeros
		}
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		_, err := f.WriteAt(b, i*BlockSize)
		require.NoError(t, err)
	}
	require.NoError(t, f.Truncate(n*BlockSize))
}

var rootRE = regexp.MustCompile(`(?m)^Root hash:\s+([0-9a-f]+)`)

func TestFormatMatchesVeritysetup(t *testing.T) {
	vs := veritysetup(t)
	salt, _ := hex.DecodeString("5eed00112233445566778899aabbccddeeff00112233445566778899aabbccdd")
	uuid := [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	for _, tc := range []struct {
		name   string
		blocks int64
	}{
		{"one block (the root is its hash)", 1},
		{"two blocks", 2},
		{"one hash block exactly full", hashesPerBlock},
		{"one past a full hash block", hashesPerBlock + 1},
		{"two levels exactly full", hashesPerBlock * hashesPerBlock},
		{"three levels", hashesPerBlock*hashesPerBlock + 1},
		{"several chunks and a partial one", 3*chunkBlocks + 77},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ours, theirs := filepath.Join(dir, "ours.img"), filepath.Join(dir, "theirs.img")
			writeData(t, ours, tc.blocks)
			writeData(t, theirs, tc.blocks)
			dataSize := tc.blocks * BlockSize

			f, err := os.OpenFile(ours, os.O_RDWR, 0)
			require.NoError(t, err)
			p, err := Format(f, dataSize, &Options{Salt: salt, UUID: &uuid})
			require.NoError(t, err)
			require.NoError(t, f.Close())

			out, err := exec.Command(vs, "format", "--hash-offset="+strconv.FormatInt(dataSize, 10),
				"--data-blocks="+strconv.FormatInt(tc.blocks, 10), "--salt="+hex.EncodeToString(salt),
				"--uuid="+p.UUIDString(), theirs, theirs).CombinedOutput()
			require.NoError(t, err, "%s", out)
			m := rootRE.FindSubmatch(out)
			require.NotNil(t, m, "veritysetup format printed no root hash:\n%s", out)
			require.Equal(t, string(m[1]), p.RootHashHex(), "root hash")

			a, err := os.ReadFile(ours)
			require.NoError(t, err)
			b, err := os.ReadFile(theirs)
			require.NoError(t, err)
			require.Equal(t, len(b), len(a), "file sizes")
			require.True(t, bytes.Equal(a, b), "our superblock and tree differ from veritysetup's")

			out, err = exec.Command(vs, "verify", "--hash-offset="+strconv.FormatInt(dataSize, 10), ours, ours, p.RootHashHex()).CombinedOutput()
			require.NoError(t, err, "veritysetup verify: %s", out)

			r, err := os.Open(ours)
			require.NoError(t, err)
			defer r.Close()
			got, err := Verify(r, dataSize, p.RootHash)
			require.NoError(t, err)
			require.Equal(t, tc.blocks, int64(got.DataBlocks))
			require.Equal(t, salt, got.Salt)
			require.Equal(t, uuid, got.UUID)
		})
	}
}

// TestFlippedByteFailsVerification flips one byte in the data, in each
// level of the tree and in the superblock's fields: our Verify and
// veritysetup's must both refuse.
func TestFlippedByteFailsVerification(t *testing.T) {
	vs := veritysetup(t)
	const blocks = hashesPerBlock*hashesPerBlock + 5 // three levels
	dir := t.TempDir()
	pristine := filepath.Join(dir, "pristine.img")
	writeData(t, pristine, blocks)
	f, err := os.OpenFile(pristine, os.O_RDWR, 0)
	require.NoError(t, err)
	p, err := Format(f, blocks*BlockSize, nil)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	tr := newTree(p)
	require.Equal(t, 3, tr.levels)
	orig, err := os.ReadFile(pristine)
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		at   int64
	}{
		{"first data byte", 0},
		{"a data block in the middle", 9000*BlockSize + 123},
		{"a hole (zero block) in the data", holeOffset(t, orig, blocks)},
		{"last data byte", blocks*BlockSize - 1},
		{"level 0, first hash", tr.levelStart[0] * BlockSize},
		{"level 0, padding after the last hash", tr.levelStart[0]*BlockSize + tr.levelSize[0]*BlockSize - 1},
		{"level 1", tr.levelStart[1]*BlockSize + 40},
		{"top level", tr.levelStart[2]*BlockSize + 3},
		{"superblock salt", p.HashOffset + sbSalt},
		{"superblock data block count", p.HashOffset + sbDataBlocks},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := append([]byte(nil), orig...)
			bad[tc.at] ^= 0x40
			path := filepath.Join(t.TempDir(), "bad.img")
			require.NoError(t, os.WriteFile(path, bad, 0o644))
			r, err := os.Open(path)
			require.NoError(t, err)
			defer r.Close()
			_, err = Verify(r, p.HashOffset, p.RootHash)
			require.Error(t, err)
			if tc.at < p.HashOffset || tc.at >= p.HashOffset+BlockSize {
				require.True(t, errors.Is(err, ErrMismatch), "want ErrMismatch, got %v", err)
			}
			out, err := exec.Command(vs, "verify", "--hash-offset="+strconv.FormatInt(p.HashOffset, 10), path, path, p.RootHashHex()).CombinedOutput()
			require.Error(t, err, "veritysetup verify accepted a flipped byte at %d:\n%s", tc.at, out)
		})
	}
}

func holeOffset(t *testing.T, b []byte, blocks int64) int64 {
	for i := int64(1); i < blocks; i++ {
		if allZero(b[i*BlockSize : (i+1)*BlockSize]) {
			return i*BlockSize + 100
		}
	}
	t.Fatal("no zero block in the test data")
	return 0
}

// TestDerivedSaltIsDeterministic: with no salt or UUID given, equal data
// gives byte-identical output, and different data a different salt.
func TestDerivedSaltIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	var outs [3][]byte
	var params [3]*Params
	for i := range outs {
		path := filepath.Join(dir, strconv.Itoa(i))
		writeData(t, path, 300)
		if i == 2 {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			require.NoError(t, err)
			_, err = f.WriteAt([]byte{1}, 4096*5+9)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		require.NoError(t, err)
		params[i], err = Format(f, 300*BlockSize, nil)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		outs[i], err = os.ReadFile(path)
		require.NoError(t, err)
	}
	require.True(t, bytes.Equal(outs[0], outs[1]), "two formats of equal data differ")
	require.Equal(t, params[0].RootHash, params[1].RootHash)
	require.NotEqual(t, params[0].Salt, params[2].Salt)
	require.NotEqual(t, params[0].RootHash, params[2].RootHash)
	require.Len(t, params[0].Salt, 32)
	require.Equal(t, byte(0x40), params[0].UUID[6]&0xf0, "UUID version 4")
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d")
	writeData(t, path, 10)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	for _, size := range []int64{0, -4096, 4095, 4097} {
		_, err := Format(f, size, nil)
		require.Error(t, err, "data size %d", size)
	}
	_, err = Format(f, 10*BlockSize, &Options{Salt: make([]byte, 257)})
	require.Error(t, err)
	// No superblock where one is looked for.
	_, err = Verify(f, 10*BlockSize, make([]byte, 32))
	require.ErrorIs(t, err, ErrNoSuperblock)
	_, err = ReadParams(f, 5*BlockSize)
	require.ErrorIs(t, err, ErrNoSuperblock)
	_, err = ReadParams(f, 100)
	require.Error(t, err)
	// A superblock claiming more data blocks than lie before it.
	p, err := Format(f, 10*BlockSize, nil)
	require.NoError(t, err)
	sb := make([]byte, 8)
	le.PutUint64(sb, 11)
	_, err = f.WriteAt(sb, p.HashOffset+sbDataBlocks)
	require.NoError(t, err)
	_, err = ReadParams(f, p.HashOffset)
	require.ErrorContains(t, err, "do not fit")
}

func TestKernelCmdline(t *testing.T) {
	p := &Params{RootHash: bytes.Repeat([]byte{0xab}, 32), Salt: []byte{1, 2}, HashOffset: 1 << 30, DataBlocks: 1 << 18,
		DataBlockSize: BlockSize, HashBlockSize: BlockSize, Algorithm: Algorithm}
	require.Equal(t, `dm-mod.create="vroot,,,ro,0 2097152 verity 1 /dev/vda /dev/vda 4096 4096 262144 262145 sha256 `+
		hex.EncodeToString(p.RootHash)+` 0102" root=/dev/dm-0 ro`, p.KernelCmdline("/dev/vda"))
}
