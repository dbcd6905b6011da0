package ext4edit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// testSeed is s_hash_seed for UUID 67452301-0123-4567-89ab-cdeffedcba98:
// the superblock stores the UUID bytes and the kernel reads them as
// little-endian words.
var testSeed = [4]uint32{0x01234567, 0x67452301, 0xefcdab89, 0x98badcfe}

const testSeedUUID = "67452301-0123-4567-89ab-cdeffedcba98"

// TestDxHashKnownAnswers pins values taken from e2fsprogs 1.47.0
// (debugfs dx_hash), so the hashes are checked even without debugfs.
func TestDxHashKnownAnswers(t *testing.T) {
	hi := []byte("a\xe9\xff\x80b") // bytes >= 0x80: signed and unsigned differ
	tests := []struct {
		name         string
		in           []byte
		version      uint8
		seed         [4]uint32
		major, minor uint32
	}{
		{"legacy hello", []byte("hello"), hashLegacy, [4]uint32{}, 0x32252546, 0},
		{"half_md4 hello", []byte("hello"), hashHalfMD4, [4]uint32{}, 0x1746da32, 0x420013b5},
		{"tea hello", []byte("hello"), hashTea, [4]uint32{}, 0x6f5bb1a8, 0x231917c2},
		{"legacy_unsigned hello", []byte("hello"), hashLegacyUnsigned, [4]uint32{}, 0x32252546, 0},
		{"half_md4_unsigned hello", []byte("hello"), hashHalfMD4Unsigned, [4]uint32{}, 0x1746da32, 0x420013b5},
		{"tea_unsigned hello", []byte("hello"), hashTeaUnsigned, [4]uint32{}, 0x6f5bb1a8, 0x231917c2},

		{"legacy high", hi, hashLegacy, [4]uint32{}, 0xbe00f472, 0},
		{"legacy_unsigned high", hi, hashLegacyUnsigned, [4]uint32{}, 0x01e43872, 0},
		{"half_md4 high", hi, hashHalfMD4, [4]uint32{}, 0x19c4c912, 0x24794bcd},
		{"half_md4_unsigned high", hi, hashHalfMD4Unsigned, [4]uint32{}, 0x0bab1486, 0x0835befc},
		{"tea high", hi, hashTea, [4]uint32{}, 0x38ad9ec6, 0x63468a2c},
		{"tea_unsigned high", hi, hashTeaUnsigned, [4]uint32{}, 0xc0190a0c, 0xc7069c70},

		{"legacy seeded ignores seed", hi, hashLegacy, testSeed, 0xbe00f472, 0},
		{"half_md4 seeded high", hi, hashHalfMD4, testSeed, 0x2c14de7e, 0x105e301b},
		{"half_md4_unsigned seeded high", hi, hashHalfMD4Unsigned, testSeed, 0xe12964d8, 0xfb8f8554},
		{"tea seeded high", hi, hashTea, testSeed, 0xd70cc0bc, 0x154f6128},
		{"tea_unsigned seeded high", hi, hashTeaUnsigned, testSeed, 0x665cfd26, 0x7f8d6dce},
		{"half_md4 seeded lost+found", []byte("lost+found"), hashHalfMD4, testSeed, 0xf08e4b0e, 0x794727a1},
		{"tea seeded 1 byte", []byte("a"), hashTea, testSeed, 0xf73dab86, 0x1cf0313d},
		{"half_md4 1 byte", []byte("a"), hashHalfMD4, [4]uint32{}, 0xd5fa7d7a, 0xacb48187},

		// The kernel loops while len > 0, so an empty name returns the
		// (default) seed words untouched.
		{"half_md4 empty", nil, hashHalfMD4, [4]uint32{}, 0xefcdab88, 0x98badcfe},
		{"tea empty", nil, hashTea, [4]uint32{}, 0x67452300, 0xefcdab89},

		// "UaRnfj" has legacy hash 0xfffffffe (debugfs prints that), which
		// is EXT4_HTREE_EOF_32BIT<<1; the kernel moves it down one step.
		{"legacy EOF fixup", []byte("UaRnfj"), hashLegacy, [4]uint32{}, 0xfffffffc, 0},
		{"legacy_unsigned EOF fixup", []byte("UaRnfj"), hashLegacyUnsigned, [4]uint32{}, 0xfffffffc, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			major, minor, err := dxHash(tc.in, tc.version, tc.seed)
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("%#08x/%#08x", tc.major, tc.minor),
				fmt.Sprintf("%#08x/%#08x", major, minor))
		})
	}
}

func TestDxHashUnsupported(t *testing.T) {
	for _, v := range []uint8{hashSiphash, 7, 255} {
		_, _, err := dxHash([]byte("x"), v, [4]uint32{})
		require.ErrorIs(t, err, ErrUnsupportedFeature, "version %d", v)
	}
}

func TestDxHashProperties(t *testing.T) {
	name := []byte("some-file.txt")
	for v := uint8(hashLegacy); v <= hashTeaUnsigned; v++ {
		major, _, err := dxHash(name, v, [4]uint32{})
		require.NoError(t, err)
		require.Zero(t, major&1, "version %d: bit 0 must be clear", v)

		// An all-zero seed means the default seed.
		m2, n2, err := dxHash(name, v, dxDefaultSeed)
		require.NoError(t, err)
		m1, n1, _ := dxHash(name, v, [4]uint32{})
		require.Equal(t, [2]uint32{m1, n1}, [2]uint32{m2, n2}, "version %d", v)
	}
}

// dirhashNames returns names that exercise the interesting paths: 1 byte,
// bytes >= 0x80, the 16/32-byte chunk boundaries of TEA/half-MD4, and the
// 255-byte maximum. Bytes that debugfs's command parser would treat
// specially (whitespace, quotes, backslash) are avoided.
func dirhashNames() [][]byte {
	names := [][]byte{
		[]byte("a"), []byte("\x80"), []byte("\xff"), []byte("."), []byte(".."),
		[]byte("hello"), []byte("lost+found"), []byte("a\xe9\xff\x80b"),
		[]byte("héllo-wörld.txt"), []byte("日本語のファイル名"),
		[]byte("UaRnfj"), // legacy hash hits the EOF fixup
	}
	for _, n := range []int{3, 4, 5, 15, 16, 17, 31, 32, 33, 63, 64, 65, 128, 254, 255} {
		names = append(names, bytes.Repeat([]byte("x"), n))
		hi := make([]byte, n)
		for i := range hi {
			hi[i] = byte(0x80 + (i*37)%0x80) // all >= 0x80
		}
		names = append(names, hi)
	}
	// A 255-byte name mixing ASCII and high bytes.
	mixed := make([]byte, 0, 255)
	for i := 0; len(mixed) < 255; i++ {
		b := byte(0x21 + (i*101)%0xde) // 0x21..0xfe
		if b == '"' || b == '\'' || b == '\\' || b == '#' {
			continue
		}
		mixed = append(mixed, b)
	}
	return append(names, mixed)
}

func seedUUID(seed [4]uint32) string {
	var b [16]byte
	for i, w := range seed {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

var dxHashOut = regexp.MustCompile(`is 0x([0-9a-f]+) \(minor 0x([0-9a-f]+)\)\n?$`)

// TestDxHashDebugfs compares every algorithm against e2fsprogs' debugfs.
// debugfs needs no image for dx_hash. Its -h option only knows the names
// legacy/half_md4/tea, so versions are passed as numbers (3..5 select the
// unsigned variants). Unlike the kernel, e2fsprogs does not apply the
// EXT4_HTREE_EOF_32BIT fixup, so that one value is mapped before comparing.
func TestDxHashDebugfs(t *testing.T) {
	debugfs, err := exec.LookPath("debugfs")
	if err != nil {
		t.Skip("debugfs (e2fsprogs) not on PATH; skipping comparison with the reference implementation")
	}
	require.Equal(t, testSeedUUID, seedUUID(testSeed))
	seeds := [][4]uint32{{}, testSeed, {0, 0, 0, 1}}
	algs := []string{"legacy", "half_md4", "tea", "legacy_unsigned", "half_md4_unsigned", "tea_unsigned"}
	for v, alg := range algs {
		for si, seed := range seeds {
			for _, name := range dirhashNames() {
				t.Run(fmt.Sprintf("%s/seed%d/%q", alg, si, name), func(t *testing.T) {
					cmd := fmt.Sprintf("dx_hash -h %d -s %s %s", v, seedUUID(seed), name)
					out, err := exec.Command(debugfs, "-R", cmd).Output()
					require.NoError(t, err)
					m := dxHashOut.FindSubmatch(out)
					require.NotNil(t, m, "unexpected debugfs output %q", out)
					wantMajor, err := strconv.ParseUint(string(m[1]), 16, 32)
					require.NoError(t, err)
					wantMinor, err := strconv.ParseUint(string(m[2]), 16, 32)
					require.NoError(t, err)
					if wantMajor == htreeEOF32<<1 {
						wantMajor = (htreeEOF32 - 1) << 1
					}

					major, minor, err := dxHash(name, uint8(v), seed)
					require.NoError(t, err)
					require.Equal(t, fmt.Sprintf("%#08x/%#08x", wantMajor, wantMinor),
						fmt.Sprintf("%#08x/%#08x", major, minor))
				})
			}
		}
	}
}
