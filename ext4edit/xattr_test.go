package ext4edit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// xattrNormalize returns what the decoders give back for entries the
// encoders wrote: Value never nil for inline values, ValueSize filled,
// Hash computed (EA-inode entries unchanged).
func xattrNormalize(in []xattrEntry) []xattrEntry {
	out := make([]xattrEntry, len(in))
	for i, e := range in {
		if e.ValueInum == 0 {
			e.Value = append([]byte{}, e.Value...)
			e.ValueSize = uint32(len(e.Value))
		} else {
			e.Value = nil
		}
		e.Hash = xattrEntryHash(e)
		out[i] = e
	}
	return out
}

// xattrSortedNames sorts names into the kernel's block order.
func xattrSortedNames(in []xattrEntry) []string {
	ents := make([]xattrLayoutEnt, len(in))
	for i, e := range in {
		idx, s := splitXattrName(e.Name)
		ents[i] = xattrLayoutEnt{e: e, index: idx, suffix: s}
	}
	slices.SortStableFunc(ents, func(a, b xattrLayoutEnt) int {
		if xattrLess(a, b) {
			return -1
		}
		if xattrLess(b, a) {
			return 1
		}
		return 0
	})
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.e.Name
	}
	return names
}

func xattrNames(in []xattrEntry) []string {
	names := make([]string, len(in))
	for i, e := range in {
		names[i] = e.Name
	}
	return names
}

func TestXattrSplitJoinName(t *testing.T) {
	tests := []struct {
		full   string
		index  uint8
		suffix string
	}{
		{"user.foo", 1, "foo"},
		{"user.", 1, ""},
		{"system.posix_acl_access", 2, ""},
		{"system.posix_acl_default", 3, ""},
		{"trusted.x", 4, "x"},
		{"security.capability", 6, "capability"},
		{"security.selinux", 6, "selinux"},
		{"system.data", 7, "data"},
		{"system.richacl", 8, ""},
		{"system.posix_acl_accessx", 7, "posix_acl_accessx"},
		{"foo.bar", 0, "foo.bar"},
		{"userfoo", 0, "userfoo"},
		{"ext4.index9.c", 9, "c"},
		{"ext4.index5.lov", 5, "lov"},
		{"ext4.index0.user.x", 0, "user.x"},
		{"ext4.index256.x", 0, "ext4.index256.x"},
		{"ext4.index09.x", 0, "ext4.index09.x"},
		{"ext4.index.x", 0, "ext4.index.x"},
	}
	for _, tc := range tests {
		t.Run(tc.full, func(t *testing.T) {
			idx, s := splitXattrName(tc.full)
			require.Equal(t, tc.index, idx)
			require.Equal(t, tc.suffix, s)
		})
	}

	// joinXattrName of the canonical names gives them back.
	for _, full := range []string{"user.foo", "system.posix_acl_access", "system.posix_acl_default",
		"trusted.x", "security.capability", "system.data", "system.richacl", "foo.bar", "ext4.index9.c"} {
		require.Equal(t, full, joinXattrName(splitXattrName(full)), full)
	}

	// Every on-disk (index, name) pair survives decode (join) and
	// re-encode (split) unchanged.
	suffixes := []string{"", "a", "data", "posix_acl_access", "posix_acl_default", "richacl",
		"user.x", "system.posix_acl_access", "ext4.index3.q", "ext4.index0.", "\xff\x00z"}
	for i := 0; i < 256; i++ {
		for _, s := range suffixes {
			full := joinXattrName(uint8(i), s)
			gi, gs := splitXattrName(full)
			require.Equal(t, uint8(i), gi, "join(%d,%q)=%q", i, s, full)
			require.Equal(t, s, gs, "join(%d,%q)=%q", i, s, full)
		}
	}
}

func TestXattrHashKnownAnswers(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  uint32
	}{
		{"", "", 0},
		{"a", "", 0x61},
		{"ab", "", 0xc42},       // (0x61<<5) ^ 0x62
		{"a", "\x01", 0x610001}, // (0x61<<16) ^ 1
		{"a", "\x01\x02\x03\x04", 0x610001 ^ 0x04030200},
		{"\xff", "", 0xff},                    // unsigned char; signed would be 0xffffffff
		{"\x80", "", 0x80},                    // unsigned char; signed would be 0xffffff80
		{"", "\x01\x00\x00\x00\x02", 0x10002}, // padded word 0x00000002 after rotl16(1)
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q=%q", tc.name, tc.value), func(t *testing.T) {
			require.Equal(t, tc.want, xattrHashEntry([]byte(tc.name), []byte(tc.value)))
		})
	}
	// Name rotation: 7 chars push the first one through the 32-bit wrap.
	var h uint32
	for _, c := range []byte("abcdefg") {
		h = (h<<5 | h>>27) ^ uint32(c)
	}
	require.Equal(t, h, xattrHashEntry([]byte("abcdefg"), nil))

	require.Equal(t, xattrHashEntry([]byte("foo"), []byte("bar")),
		xattrEntryHash(xattrEntry{Name: "user.foo", Value: []byte("bar")}), "hash covers the suffix only")
	require.Equal(t, uint32(0xdeadbeef),
		xattrEntryHash(xattrEntry{Name: "user.foo", ValueInum: 13, ValueSize: 9000, Hash: 0xdeadbeef}))

	rehash := []struct {
		in   []uint32
		want uint32
	}{
		{nil, 0},
		{[]uint32{1}, 1},
		{[]uint32{1, 2}, 0x10002},
		{[]uint32{0x12345678, 1}, 0x56781235},
		{[]uint32{1, 0, 2}, 0},
	}
	for _, tc := range rehash {
		require.Equal(t, tc.want, xattrRehash(tc.in), "%x", tc.in)
	}
}

var xattrRoundTripCases = []struct {
	name    string
	entries []xattrEntry
}{
	{"single", []xattrEntry{{Name: "user.small", Value: []byte("hello")}}},
	{"empty value", []xattrEntry{{Name: "system.data", Value: []byte{}}, {Name: "user.e", Value: nil}}},
	{"all prefixes", []xattrEntry{
		{Name: "user.foo", Value: []byte("1")},
		{Name: "trusted.overlay.opaque", Value: []byte("y")},
		{Name: "security.capability", Value: []byte{1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{Name: "system.posix_acl_access", Value: []byte{2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff}},
		{Name: "system.posix_acl_default", Value: []byte{2, 0, 0, 0}},
		{Name: "system.richacl", Value: []byte("r")},
		{Name: "system.data", Value: []byte("inline")},
		{Name: "unknown.prefix", Value: []byte("zero index")},
		{Name: "ext4.index9.c", Value: []byte("fscrypt context")},
	}},
	{"paddings", []xattrEntry{
		{Name: "user.p1", Value: []byte("1")},
		{Name: "user.p2", Value: []byte("12")},
		{Name: "user.p3", Value: []byte("123")},
		{Name: "user.p4", Value: []byte("1234")},
		{Name: "user.p5", Value: []byte("12345")},
		{Name: "user.abcd", Value: []byte("x")},
		{Name: "user.abcdefgh", Value: []byte("y")},
	}},
	{"high bytes", []xattrEntry{{Name: "user.\xe9t\xe9", Value: []byte{0xff, 0x80, 0, 0x7f, 0xfe}}}},
	{"ea_inode", []xattrEntry{
		{Name: "user.big", ValueInum: 13, ValueSize: 70000, Hash: 0x12345678},
		{Name: "user.small", Value: []byte("v")},
	}},
	{"long name", []xattrEntry{{Name: "user." + strings.Repeat("n", 255), Value: []byte("v")}}},
}

func TestXattrInodeRoundTrip(t *testing.T) {
	for _, tc := range xattrRoundTripCases {
		t.Run(tc.name, func(t *testing.T) {
			area, err := encodeInodeXattrs(tc.entries, 1024)
			require.NoError(t, err)
			require.Len(t, area, 1024)
			require.Equal(t, uint32(xattrMagic), binary.LittleEndian.Uint32(area))
			got, err := decodeInodeXattrs(area)
			require.NoError(t, err)
			// In-inode entries keep the caller's order.
			require.Equal(t, xattrNormalize(tc.entries), got)
			again, err := encodeInodeXattrs(got, 1024)
			require.NoError(t, err)
			require.Equal(t, area, again)
		})
	}
}

func TestXattrBlockRoundTrip(t *testing.T) {
	for _, tc := range xattrRoundTripCases {
		for _, bs := range []int{1024, 4096, 65536} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, bs), func(t *testing.T) {
				in := slices.Clone(tc.entries)
				block, err := encodeXattrBlock(in, 7, bs)
				require.NoError(t, err)
				require.Equal(t, tc.entries, in, "caller's slice is not reordered")
				require.Len(t, block, bs)
				require.Equal(t, uint32(xattrMagic), binary.LittleEndian.Uint32(block[0:]))
				require.Equal(t, uint32(7), binary.LittleEndian.Uint32(block[4:]))
				require.Equal(t, uint32(1), binary.LittleEndian.Uint32(block[8:]))
				require.Zero(t, binary.LittleEndian.Uint32(block[16:]), "h_checksum left to the caller")
				require.Equal(t, make([]byte, 12), block[20:32], "h_reserved")

				got, refcount, err := decodeXattrBlock(block)
				require.NoError(t, err)
				require.Equal(t, uint32(7), refcount)
				require.Equal(t, xattrSortedNames(tc.entries), xattrNames(got))
				want := xattrNormalize(tc.entries)
				for _, g := range got {
					i := slices.IndexFunc(want, func(w xattrEntry) bool { return w.Name == g.Name })
					require.GreaterOrEqual(t, i, 0)
					require.Equal(t, want[i], g)
				}
				var hashes []uint32
				for _, g := range got {
					hashes = append(hashes, g.Hash)
				}
				require.Equal(t, xattrRehash(hashes), binary.LittleEndian.Uint32(block[12:]))

				again, err := encodeXattrBlock(got, 7, bs)
				require.NoError(t, err)
				require.Equal(t, block, again)
			})
		}
	}
}

func TestXattrBlockSorting(t *testing.T) {
	in := []xattrEntry{
		{Name: "security.c", Value: []byte("6")},
		{Name: "trusted.x", Value: []byte("4")},
		{Name: "system.posix_acl_access", Value: []byte("2")},
		{Name: "user.aa", Value: []byte("1c")},
		{Name: "user.b", Value: []byte("1b")},
		{Name: "user.a", Value: []byte("1a")},
		{Name: "zzz", Value: []byte("0")},
		{Name: "system.data", Value: []byte("7")},
		{Name: "user.B", Value: []byte("1B")},
	}
	block, err := encodeXattrBlock(in, 1, 1024)
	require.NoError(t, err)
	got, _, err := decodeXattrBlock(block)
	require.NoError(t, err)
	require.Equal(t, []string{"zzz", "user.B", "user.a", "user.b", "user.aa",
		"system.posix_acl_access", "trusted.x", "security.c", "system.data"}, xattrNames(got))
	// Values are placed from the block end downward in entry order.
	prev := len(block)
	pos := xattrHdrSize
	for range got {
		offs := int(binary.LittleEndian.Uint16(block[pos+xattrEntValueOffs:]))
		require.Less(t, offs, prev)
		prev = offs
		pos += xattrEntryLen(int(block[pos]))
	}
}

func TestXattrPadding(t *testing.T) {
	entries := []xattrEntry{{Name: "user.abc", Value: []byte("abcde")}, {Name: "user.abcd", Value: []byte("z")}}

	block, err := encodeXattrBlock(entries, 1, 1024)
	require.NoError(t, err)
	// Entry 1 "abc": 16+3 -> 20 bytes at 32; entry 2 "abcd": 16+4 -> 20 bytes at 52; terminator at 72.
	require.Equal(t, byte(3), block[32])
	require.Equal(t, []byte("abc\x00"), block[48:52])
	require.Equal(t, byte(4), block[52])
	require.Equal(t, []byte("abcd"), block[68:72])
	require.Equal(t, []byte{0, 0, 0, 0}, block[72:76])
	// "abcde" occupies 8 bytes at 1016, "z" 4 bytes at 1012.
	require.Equal(t, uint16(1016), binary.LittleEndian.Uint16(block[32+2:]))
	require.Equal(t, uint32(5), binary.LittleEndian.Uint32(block[32+8:]))
	require.Equal(t, []byte("abcde\x00\x00\x00"), block[1016:1024])
	require.Equal(t, uint16(1012), binary.LittleEndian.Uint16(block[52+2:]))
	require.Equal(t, []byte("z\x00\x00\x00"), block[1012:1016])
	require.Equal(t, make([]byte, 1012-76), block[76:1012])

	area, err := encodeInodeXattrs(entries, 96)
	require.NoError(t, err)
	// Same entry layout after the 4-byte magic; offsets relative to area[4].
	require.Equal(t, byte(3), area[4])
	require.Equal(t, uint16(96-8-4), binary.LittleEndian.Uint16(area[4+2:]))
	require.Equal(t, []byte("abcde\x00\x00\x00"), area[88:96])
	require.Equal(t, uint16(96-12-4), binary.LittleEndian.Uint16(area[24+2:]))
	require.Equal(t, []byte("z\x00\x00\x00"), area[84:88])
	// Every in-inode entry gets its e_hash.
	require.Equal(t, xattrHashEntry([]byte("abc"), []byte("abcde")), binary.LittleEndian.Uint32(area[4+12:]))

	// ea_inode entry: offs 0, inum, size and hash preserved, no value bytes.
	block, err = encodeXattrBlock([]xattrEntry{{Name: "user.h", ValueInum: 99, ValueSize: 5000, Hash: 0xabcdef01, Value: []byte("ignored")}}, 1, 1024)
	require.NoError(t, err)
	require.Equal(t, uint16(0), binary.LittleEndian.Uint16(block[32+2:]))
	require.Equal(t, uint32(99), binary.LittleEndian.Uint32(block[32+4:]))
	require.Equal(t, uint32(5000), binary.LittleEndian.Uint32(block[32+8:]))
	require.Equal(t, uint32(0xabcdef01), binary.LittleEndian.Uint32(block[32+12:]))
	require.Equal(t, uint32(0xabcdef01), binary.LittleEndian.Uint32(block[12:]))
	require.Equal(t, make([]byte, 1024-56), block[56:])
}

func TestXattrEmptyAndNoFit(t *testing.T) {
	area, err := encodeInodeXattrs(nil, 96)
	require.NoError(t, err)
	require.Equal(t, make([]byte, 96), area)
	got, err := decodeInodeXattrs(area)
	require.NoError(t, err)
	require.Nil(t, got)
	area, err = encodeInodeXattrs(nil, 0)
	require.NoError(t, err)
	require.Empty(t, area)

	one := func(n int) []xattrEntry {
		return []xattrEntry{{Name: "user.a", Value: bytes.Repeat([]byte{'v'}, n)}}
	}
	tests := []struct {
		name   string
		encode func() ([]byte, error)
		fits   bool
	}{
		// header 32 + entry 20 + terminator 4 = 56, 968 bytes left.
		{"block exact", func() ([]byte, error) { return encodeXattrBlock(one(968), 1, 1024) }, true},
		{"block padded fits", func() ([]byte, error) { return encodeXattrBlock(one(965), 1, 1024) }, true},
		{"block padded over", func() ([]byte, error) { return encodeXattrBlock(one(969), 1, 1024) }, false},
		{"block huge", func() ([]byte, error) { return encodeXattrBlock(one(5000), 1, 4096) }, false},
		{"block many names", func() ([]byte, error) {
			var es []xattrEntry
			for i := 0; i < 60; i++ {
				es = append(es, xattrEntry{Name: fmt.Sprintf("user.%02d", i)})
			}
			return encodeXattrBlock(es, 1, 1024)
		}, false},
		// magic 4 + entry 20 + terminator 4 = 28, 68 bytes left.
		{"inode exact", func() ([]byte, error) { return encodeInodeXattrs(one(68), 96) }, true},
		{"inode over", func() ([]byte, error) { return encodeInodeXattrs(one(69), 96) }, false},
		{"inode zero area", func() ([]byte, error) { return encodeInodeXattrs(one(0), 0) }, false},
		{"inode no room for terminator", func() ([]byte, error) { return encodeInodeXattrs(one(0), 24) }, false},
		{"inode names only", func() ([]byte, error) { return encodeInodeXattrs(one(0), 28) }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.encode()
			if tc.fits {
				require.NoError(t, err)
				require.NotNil(t, b)
				return
			}
			require.ErrorIs(t, err, ErrNoSpace)
			require.Nil(t, b)
		})
	}
}

func TestXattrInvalidEntries(t *testing.T) {
	tests := []struct {
		name    string
		entries []xattrEntry
	}{
		{"empty name", []xattrEntry{{Name: "", Value: []byte("x")}}},
		{"name too long", []xattrEntry{{Name: "user." + strings.Repeat("n", 256)}}},
		{"duplicate", []xattrEntry{{Name: "user.a"}, {Name: "user.b"}, {Name: "user.a"}}},
		{"duplicate alias", []xattrEntry{{Name: "user.a"}, {Name: "ext4.index1.a"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := encodeXattrBlock(tc.entries, 1, 4096)
			require.ErrorIs(t, err, errXattrInvalid)
			_, err = encodeInodeXattrs(tc.entries, 4096)
			require.ErrorIs(t, err, errXattrInvalid)
		})
	}
	for _, bs := range []int{0, 35, 1022, 1 << 17} {
		_, err := encodeXattrBlock(nil, 1, bs)
		require.Error(t, err, "block size %d", bs)
	}
	for _, as := range []int{-4, 98, 1 << 17} {
		_, err := encodeInodeXattrs([]xattrEntry{{Name: "user.a"}}, as)
		require.Error(t, err, "area size %d", as)
	}
}

// xattrPutEntry writes a raw struct ext4_xattr_entry at pos.
func xattrPutEntry(b []byte, pos int, index uint8, name string, offs uint16, inum, size, hash uint32) int {
	b[pos] = uint8(len(name))
	b[pos+1] = index
	binary.LittleEndian.PutUint16(b[pos+2:], offs)
	binary.LittleEndian.PutUint32(b[pos+4:], inum)
	binary.LittleEndian.PutUint32(b[pos+8:], size)
	binary.LittleEndian.PutUint32(b[pos+12:], hash)
	copy(b[pos+16:], name)
	return pos + xattrEntryLen(len(name))
}

func xattrRawBlock(size int, fill func(b []byte)) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint32(b[0:], xattrMagic)
	binary.LittleEndian.PutUint32(b[4:], 1)
	binary.LittleEndian.PutUint32(b[8:], 1)
	fill(b)
	return b
}

func xattrRawArea(size int, fill func(b []byte)) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint32(b[0:], xattrMagic)
	fill(b)
	return b
}

func TestXattrCorrupt(t *testing.T) {
	good, err := encodeXattrBlock([]xattrEntry{{Name: "user.a", Value: []byte("hello")}}, 1, 1024)
	require.NoError(t, err)
	goodArea, err := encodeInodeXattrs([]xattrEntry{{Name: "user.a", Value: []byte("hello")}}, 96)
	require.NoError(t, err)

	blocks := []struct {
		name  string
		block []byte
	}{
		{"empty", nil},
		{"short header", good[:20]},
		{"header only", good[:32]},
		{"bad magic", xattrRawBlock(1024, func(b []byte) { b[3] = 0xeb })},
		{"h_blocks 0", xattrRawBlock(1024, func(b []byte) { b[8] = 0 })},
		{"h_blocks 2", xattrRawBlock(1024, func(b []byte) { b[8] = 2 })},
		{"truncated entry", good[:40]},
		{"truncated name", good[:52]},
		{"no terminator", good[:52+2]},
		{"name_len past end", xattrRawBlock(64, func(b []byte) { xattrPutEntry(b, 32, 1, "", 60, 0, 0, 0); b[32] = 200 })},
		{"name reaches end", xattrRawBlock(64, func(b []byte) { xattrPutEntry(b, 32, 1, "abcdefghijklmnop", 0, 0, 0, 0) })},
		{"entries fill block", xattrRawBlock(68, func(b []byte) {
			xattrPutEntry(b, xattrPutEntry(b, 32, 1, "a", 0, 0, 0, 0), 1, "", 0, 0, 0, 0)
		})},
		{"value offset past end", xattrRawBlock(1024, func(b []byte) { xattrPutEntry(b, 32, 1, "a", 1024, 0, 4, 0) })},
		{"value size past end", xattrRawBlock(1024, func(b []byte) { xattrPutEntry(b, 32, 1, "a", 1020, 0, 8, 0) })},
		{"value size huge", xattrRawBlock(1024, func(b []byte) { xattrPutEntry(b, 32, 1, "a", 1000, 0, 0xffffffff, 0) })},
		{"value offs 65535", xattrRawBlock(1024, func(b []byte) { xattrPutEntry(b, 32, 1, "a", 0xffff, 0, 1, 0) })},
		{"value in header", xattrRawBlock(1024, func(b []byte) { xattrPutEntry(b, 32, 1, "a", 0, 0, 4, 0) })},
		{"value overlaps entry", xattrRawBlock(1024, func(b []byte) { xattrPutEntry(b, 32, 1, "a", 40, 0, 4, 0) })},
		{"value overlaps terminator", xattrRawBlock(1024, func(b []byte) { xattrPutEntry(b, 32, 1, "a", 52, 0, 4, 0) })},
		{"second entry value overlaps", xattrRawBlock(1024, func(b []byte) {
			p := xattrPutEntry(b, 32, 1, "a", 1016, 0, 8, 0)
			xattrPutEntry(b, p, 1, "b", 36, 0, 4, 0)
		})},
	}
	for _, tc := range blocks {
		t.Run("block/"+tc.name, func(t *testing.T) {
			var entries []xattrEntry
			var err error
			require.NotPanics(t, func() { entries, _, err = decodeXattrBlock(tc.block) })
			require.ErrorIs(t, err, ErrCorrupt)
			require.Nil(t, entries)
		})
	}

	areas := []struct {
		name string
		area []byte
	}{
		{"magic only", goodArea[:4]},
		{"magic and half entry", goodArea[:12]},
		{"truncated name", goodArea[:22]},
		{"no terminator", goodArea[:24]},
		{"name_len past end", xattrRawArea(64, func(b []byte) { xattrPutEntry(b, 4, 1, "", 40, 0, 0, 0); b[4] = 255 })},
		{"value past end", xattrRawArea(64, func(b []byte) { xattrPutEntry(b, 4, 1, "a", 56, 0, 8, 0) })},
		{"value offset past end", xattrRawArea(64, func(b []byte) { xattrPutEntry(b, 4, 1, "a", 64, 0, 1, 0) })},
		// Offsets are relative to the first entry: offs 0 is the entry itself.
		{"value overlaps entry", xattrRawArea(64, func(b []byte) { xattrPutEntry(b, 4, 1, "a", 0, 0, 4, 0) })},
		{"value overlaps terminator", xattrRawArea(64, func(b []byte) { xattrPutEntry(b, 4, 1, "a", 20, 0, 4, 0) })},
	}
	for _, tc := range areas {
		t.Run("inode/"+tc.name, func(t *testing.T) {
			var entries []xattrEntry
			var err error
			require.NotPanics(t, func() { entries, err = decodeInodeXattrs(tc.area) })
			require.ErrorIs(t, err, ErrCorrupt)
			require.Nil(t, entries)
		})
	}

	// Legal edge cases next to the corrupt ones.
	ok := xattrRawArea(64, func(b []byte) { xattrPutEntry(b, 4, 1, "a", 24, 0, 36, 0) }) // value right after terminator, to the end
	es, err := decodeInodeXattrs(ok)
	require.NoError(t, err)
	require.Len(t, es, 1)
	require.Len(t, es[0].Value, 36)
	for _, area := range [][]byte{nil, {0, 0}, make([]byte, 96), {0, 0, 2, 0xeb, 1, 2}} {
		es, err := decodeInodeXattrs(area)
		require.NoError(t, err, "no magic means no attributes")
		require.Nil(t, es)
	}
	// ea_inode entries need no value bytes whatever their size.
	es, _, err = decodeXattrBlock(xattrRawBlock(64, func(b []byte) { xattrPutEntry(b, 32, 1, "a", 0xffff, 12, 0xffffffff, 5) }))
	require.NoError(t, err)
	require.Equal(t, []xattrEntry{{Name: "user.a", ValueInum: 12, ValueSize: 0xffffffff, Hash: 5}}, es)
}

// xattrCheckDecode runs the decoders on arbitrary bytes: no panic, and any
// error wraps ErrCorrupt. Successful decodes re-encode without panicking.
func xattrCheckDecode(t testing.TB, data []byte) {
	t.Helper()
	entries, _, err := decodeXattrBlock(data)
	if err != nil {
		require.ErrorIs(t, err, ErrCorrupt)
	} else if len(data) <= 1<<16 && len(data)%4 == 0 {
		_, _ = encodeXattrBlock(entries, 1, len(data))
	}
	entries, err = decodeInodeXattrs(data)
	if err != nil {
		require.ErrorIs(t, err, ErrCorrupt)
	} else if len(data) <= 1<<16 && len(data)%4 == 0 {
		_, _ = encodeInodeXattrs(entries, len(data))
	}
}

func TestXattrMutationsNeverPanic(t *testing.T) {
	entries := xattrRoundTripCases[2].entries
	block, err := encodeXattrBlock(entries, 1, 1024)
	require.NoError(t, err)
	area, err := encodeInodeXattrs(entries, 512)
	require.NoError(t, err)
	rng := rand.New(rand.NewSource(1))
	for _, base := range [][]byte{block, area} {
		for i := 0; i < 20000; i++ {
			b := bytes.Clone(base)
			for n := rng.Intn(4) + 1; n > 0; n-- {
				// Favor the entry list, where the interesting fields are.
				pos := rng.Intn(min(len(b), 256))
				if rng.Intn(4) == 0 {
					pos = rng.Intn(len(b))
				}
				b[pos] = byte(rng.Intn(256))
			}
			if rng.Intn(8) == 0 {
				b = b[:rng.Intn(len(b)+1)]
			}
			xattrCheckDecode(t, b)
		}
	}
}

func FuzzXattrDecode(f *testing.F) {
	for _, tc := range xattrRoundTripCases {
		if b, err := encodeXattrBlock(tc.entries, 1, 1024); err == nil {
			f.Add(b)
		}
		if b, err := encodeInodeXattrs(tc.entries, 256); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) { xattrCheckDecode(t, data) })
}

// --- real-image judge: debugfs writes, we read; we write, e2fsck judges ---

// xattrCrc32c is the kernel's crc32c_le(seed, p) (no pre/post inversion).
func xattrCrc32c(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, crc32.MakeTable(crc32.Castagnoli), p)
}

type xattrTestImage struct {
	t         *testing.T
	path      string
	blockSize int
	inodeSize int
	csumSeed  uint32
	csum      bool
}

func xattrRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %q: %s", name, args, out)
	return string(out)
}

func (im *xattrTestImage) debugfs(write bool, cmd string) string {
	im.t.Helper()
	if write {
		return xattrRun(im.t, "debugfs", "-w", "-R", cmd, im.path)
	}
	return xattrRun(im.t, "debugfs", "-R", cmd, im.path)
}

func newXattrTestImage(t *testing.T, features string) *xattrTestImage {
	for _, tool := range []string{"mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("real-image xattr test needs %s (e2fsprogs), not found in PATH: %v", tool, err)
		}
	}
	dir := t.TempDir()
	im := &xattrTestImage{t: t, path: filepath.Join(dir, "img")}
	args := []string{"-q", "-F", "-I", "256", "-b", "4096"}
	if features != "" {
		args = append(args, "-O", features)
	}
	xattrRun(t, "mkfs.ext4", append(args, im.path, "16M")...)
	img, err := os.ReadFile(im.path)
	require.NoError(t, err)
	sb := img[1024:2048]
	im.blockSize = 1024 << binary.LittleEndian.Uint32(sb[0x18:])
	im.inodeSize = int(binary.LittleEndian.Uint16(sb[0x58:]))
	require.Equal(t, 4096, im.blockSize)
	require.Equal(t, 256, im.inodeSize)
	im.csum = binary.LittleEndian.Uint32(sb[0x64:])&0x400 != 0 // RO_COMPAT_METADATA_CSUM
	if binary.LittleEndian.Uint32(sb[0x60:])&0x2000 != 0 {     // INCOMPAT_CSUM_SEED
		im.csumSeed = binary.LittleEndian.Uint32(sb[0x270:])
	} else {
		im.csumSeed = xattrCrc32c(^uint32(0), sb[0x68:0x78])
	}
	hostFile := filepath.Join(dir, "content")
	require.NoError(t, os.WriteFile(hostFile, []byte("content\n"), 0o644))
	im.debugfs(true, "write "+hostFile+" f")
	return im
}

var (
	xattrImapRE    = regexp.MustCompile(`Inode (\d+) is part of block group \d+\s+located at block (\d+), offset (0x[0-9a-fA-F]+)`)
	xattrFileACLRE = regexp.MustCompile(`File ACL: (\d+)`)
)

// locate returns the inode number, its byte offset in the image and the
// xattr block number (0 if none) of /f.
func (im *xattrTestImage) locate() (ino uint32, inodeOff int64, aclBlock int64) {
	im.t.Helper()
	m := xattrImapRE.FindStringSubmatch(im.debugfs(false, "imap /f"))
	require.NotNil(im.t, m, "cannot parse debugfs imap output")
	n, _ := strconv.ParseUint(m[1], 10, 32)
	blk, _ := strconv.ParseInt(m[2], 10, 64)
	off, _ := strconv.ParseInt(m[3], 0, 64)
	a := xattrFileACLRE.FindStringSubmatch(im.debugfs(false, "stat /f"))
	require.NotNil(im.t, a, "cannot parse debugfs stat output")
	acl, _ := strconv.ParseInt(a[1], 10, 64)
	return uint32(n), blk*int64(im.blockSize) + off, acl
}

func (im *xattrTestImage) read(off int64, n int) []byte {
	im.t.Helper()
	f, err := os.Open(im.path)
	require.NoError(im.t, err)
	defer f.Close()
	b := make([]byte, n)
	_, err = f.ReadAt(b, off)
	require.NoError(im.t, err)
	return b
}

func (im *xattrTestImage) write(off int64, b []byte) {
	im.t.Helper()
	f, err := os.OpenFile(im.path, os.O_RDWR, 0)
	require.NoError(im.t, err)
	_, err = f.WriteAt(b, off)
	require.NoError(im.t, err)
	require.NoError(im.t, f.Close())
}

// blockCsum is ext4_xattr_block_csum.
func (im *xattrTestImage) blockCsum(blk int64, block []byte) uint32 {
	var nr [8]byte
	binary.LittleEndian.PutUint64(nr[:], uint64(blk))
	c := xattrCrc32c(im.csumSeed, nr[:])
	c = xattrCrc32c(c, block[:xattrHdrChecksum])
	c = xattrCrc32c(c, []byte{0, 0, 0, 0})
	return xattrCrc32c(c, block[xattrHdrChecksum+4:])
}

// inodeCsum is ext4_inode_csum for a 256-byte inode (i_checksum_lo at
// 0x7C, i_checksum_hi at 0x82 taken as zero).
func (im *xattrTestImage) inodeCsum(ino uint32, inode []byte) uint32 {
	var w [4]byte
	binary.LittleEndian.PutUint32(w[:], ino)
	c := xattrCrc32c(im.csumSeed, w[:])
	c = xattrCrc32c(c, inode[0x64:0x68]) // i_generation
	b := bytes.Clone(inode)
	b[0x7c], b[0x7d], b[0x82], b[0x83] = 0, 0, 0, 0
	return xattrCrc32c(c, b)
}

func (im *xattrTestImage) storedInodeCsum(inode []byte) uint32 {
	return uint32(binary.LittleEndian.Uint16(inode[0x7c:])) | uint32(binary.LittleEndian.Uint16(inode[0x82:]))<<16
}

// writeInodeArea replaces the xattr area of inode ino (fixing its checksum).
func (im *xattrTestImage) writeInodeArea(ino uint32, inodeOff int64, area []byte) {
	inode := im.read(inodeOff, im.inodeSize)
	extra := int(binary.LittleEndian.Uint16(inode[0x80:]))
	copy(inode[128+extra:], area)
	if im.csum {
		c := im.inodeCsum(ino, inode)
		binary.LittleEndian.PutUint16(inode[0x7c:], uint16(c))
		binary.LittleEndian.PutUint16(inode[0x82:], uint16(c>>16))
	}
	im.write(inodeOff, inode)
}

func (im *xattrTestImage) writeBlock(blk int64, block []byte) {
	block = bytes.Clone(block)
	if im.csum {
		binary.LittleEndian.PutUint32(block[xattrHdrChecksum:], im.blockCsum(blk, block))
	}
	im.write(blk*int64(im.blockSize), block)
}

func (im *xattrTestImage) fsck() {
	im.t.Helper()
	if _, err := exec.LookPath("e2fsck"); err != nil {
		im.t.Logf("e2fsck not found, skipping the fsck judge")
		return
	}
	out, err := exec.Command("e2fsck", "-fn", im.path).CombinedOutput()
	require.NoError(im.t, err, "e2fsck -fn rejects the image:\n%s", out)
}

// xattrClearHashes zeroes e_hash of every entry in a list (for comparing
// with e2fsprogs, which leaves in-inode hashes 0).
func xattrClearHashes(buf []byte, first int) []byte {
	b := bytes.Clone(buf)
	for pos := first; pos+4 <= len(b) && binary.LittleEndian.Uint32(b[pos:]) != 0; pos += xattrEntryLen(int(b[pos])) {
		copy(b[pos+xattrEntHash:pos+xattrEntHash+4], []byte{0, 0, 0, 0})
	}
	return b
}

func xattrPattern(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func TestXattrDebugfsImage(t *testing.T) {
	im := newXattrTestImage(t, "")
	dir := filepath.Dir(im.path)
	want := map[string][]byte{
		"user.small":       []byte("hello"),
		"user.x":           []byte("12345678"),
		"user.big":         xattrPattern(2000, 1),
		"trusted.zz":       xattrPattern(700, 2),
		"security.a":       xattrPattern(333, 3),
		"user.ab":          xattrPattern(701, 4),
		"trusted.\xe9high": xattrPattern(5, 5), // name byte >= 0x80: unsigned hash
	}
	order := []string{"user.small", "user.big", "trusted.zz", "security.a", "user.ab", "user.x", "trusted.\xe9high"}
	for i, name := range order {
		if name == "user.small" {
			im.debugfs(true, "ea_set /f user.small hello")
			continue
		}
		host := filepath.Join(dir, fmt.Sprintf("v%d", i))
		require.NoError(t, os.WriteFile(host, want[name], 0o644))
		im.debugfs(true, fmt.Sprintf("ea_set -f %s /f %s", host, name))
	}
	ino, inodeOff, aclBlk := im.locate()
	require.NotZero(t, aclBlk, "the large values must have gone to an xattr block")

	inode := im.read(inodeOff, im.inodeSize)
	extra := int(binary.LittleEndian.Uint16(inode[0x80:]))
	area := inode[128+extra:]
	block := im.read(aclBlk*int64(im.blockSize), im.blockSize)
	if im.csum {
		require.Equal(t, im.storedInodeCsum(inode), im.inodeCsum(ino, inode), "test inode checksum helper")
		require.Equal(t, binary.LittleEndian.Uint32(block[xattrHdrChecksum:]), im.blockCsum(aclBlk, block), "test block checksum helper")
	}

	inEntries, err := decodeInodeXattrs(area)
	require.NoError(t, err)
	require.NotEmpty(t, inEntries, "debugfs puts small attributes in the inode")
	blkEntries, refcount, err := decodeXattrBlock(block)
	require.NoError(t, err)
	require.Equal(t, uint32(1), refcount)
	require.NotEmpty(t, blkEntries)

	got := map[string][]byte{}
	for _, e := range append(slices.Clone(inEntries), blkEntries...) {
		require.Zero(t, e.ValueInum)
		require.NotContains(t, got, e.Name)
		got[e.Name] = e.Value
	}
	require.Equal(t, want, got)

	// In-inode: e2fsprogs leaves e_hash 0 (the kernel does too); e2fsck
	// accepts 0 or the right hash. Our layout matches byte for byte apart
	// from the hashes we fill in.
	for _, e := range inEntries {
		if e.Hash != 0 {
			require.Equal(t, xattrEntryHash(e), e.Hash, e.Name)
		}
	}
	ourArea, err := encodeInodeXattrs(inEntries, len(area))
	require.NoError(t, err)
	require.Equal(t, xattrClearHashes(area, 4), xattrClearHashes(ourArea, 4))
	for i, e := range xattrNormalize(inEntries) {
		got, _ := decodeInodeXattrs(ourArea)
		require.Equal(t, e.Hash, got[i].Hash)
		require.NotZero(t, got[i].Hash)
	}

	// Block: e2fsprogs computed every e_hash; ours must agree, the order is
	// the kernel's, and the whole block matches except h_hash (e2fsprogs
	// 1.47 leaves it 0; if it is set it must match) and h_checksum.
	for _, e := range blkEntries {
		require.Equal(t, e.Hash, xattrEntryHash(e), "e_hash of %q", e.Name)
	}
	require.Equal(t, xattrSortedNames(blkEntries), xattrNames(blkEntries), "debugfs keeps block entries sorted")
	ourBlock, err := encodeXattrBlock(blkEntries, refcount, im.blockSize)
	require.NoError(t, err)
	ourEntries, _, err := decodeXattrBlock(ourBlock)
	require.NoError(t, err)
	require.Equal(t, blkEntries, ourEntries)
	if h := binary.LittleEndian.Uint32(block[xattrHdrHash:]); h != 0 {
		require.Equal(t, h, binary.LittleEndian.Uint32(ourBlock[xattrHdrHash:]), "h_hash")
	}
	require.NotZero(t, binary.LittleEndian.Uint32(ourBlock[xattrHdrHash:]))
	cmpTheirs, cmpOurs := bytes.Clone(block), bytes.Clone(ourBlock)
	for _, b := range [][]byte{cmpTheirs, cmpOurs} {
		copy(b[xattrHdrHash:xattrHdrChecksum+4], make([]byte, 8))
	}
	require.Equal(t, cmpTheirs, cmpOurs, "entries and values laid out as e2fsprogs does")

	// Write our encodings back and let e2fsck and debugfs judge them.
	im.writeInodeArea(ino, inodeOff, ourArea)
	im.writeBlock(aclBlk, ourBlock)
	im.fsck()

	// A different layout: everything moves to the block, the inode area
	// is cleared. e2fsck must accept it and debugfs must read every value.
	all := append(slices.Clone(inEntries), blkEntries...)
	allBlock, err := encodeXattrBlock(all, 1, im.blockSize)
	require.NoError(t, err)
	emptyArea, err := encodeInodeXattrs(nil, len(area))
	require.NoError(t, err)
	im.writeInodeArea(ino, inodeOff, emptyArea)
	im.writeBlock(aclBlk, allBlock)
	im.fsck()
	for i, name := range order {
		out := filepath.Join(dir, fmt.Sprintf("out%d", i))
		im.debugfs(false, fmt.Sprintf("ea_get -f %s /f %s", out, name))
		v, err := os.ReadFile(out)
		require.NoError(t, err)
		require.Equal(t, want[name], v, name)
	}
	_, inodeOff2, aclBlk2 := im.locate()
	require.Equal(t, inodeOff, inodeOff2)
	require.Equal(t, aclBlk, aclBlk2)
	inode = im.read(inodeOff, im.inodeSize)
	es, err := decodeInodeXattrs(inode[128+extra:])
	require.NoError(t, err)
	require.Nil(t, es)
}

// TestXattrDebugfsEAInode checks that an EA-inode entry written by
// e2fsprogs (ea_inode feature, value larger than a block) is decoded with
// its e_value_inum, e_value_size and e_hash and re-encoded unchanged.
func TestXattrDebugfsEAInode(t *testing.T) {
	im := newXattrTestImage(t, "ea_inode")
	dir := filepath.Dir(im.path)
	// debugfs ea_set -f reads at most one block of the host file; a
	// block-sized value does not fit in a block with its header, so with
	// ea_inode e2fsprogs moves it to an EA inode.
	huge := xattrPattern(im.blockSize, 9)
	host := filepath.Join(dir, "huge")
	require.NoError(t, os.WriteFile(host, huge, 0o644))
	im.debugfs(true, "ea_set /f user.small hello")
	im.debugfs(true, "ea_set -f "+host+" /f user.huge")

	_, inodeOff, aclBlk := im.locate()
	inode := im.read(inodeOff, im.inodeSize)
	extra := int(binary.LittleEndian.Uint16(inode[0x80:]))
	area := inode[128+extra:]
	var all []xattrEntry
	es, err := decodeInodeXattrs(area)
	require.NoError(t, err)
	all = append(all, es...)
	if aclBlk != 0 {
		bes, _, err := decodeXattrBlock(im.read(aclBlk*int64(im.blockSize), im.blockSize))
		require.NoError(t, err)
		all = append(all, bes...)
	}
	i := slices.IndexFunc(all, func(e xattrEntry) bool { return e.Name == "user.huge" })
	require.GreaterOrEqual(t, i, 0, "user.huge not found in %v", xattrNames(all))
	e := all[i]
	if e.ValueInum == 0 {
		t.Skip("this e2fsprogs stored the large value inline, no EA inode to check")
	}
	require.Nil(t, e.Value)
	require.Equal(t, uint32(len(huge)), e.ValueSize)
	require.NotZero(t, e.Hash)
	require.Equal(t, e.Hash, xattrEntryHash(e))

	// Re-encoding preserves the entry exactly.
	if aclBlk == 0 {
		ourArea, err := encodeInodeXattrs(es, len(area))
		require.NoError(t, err)
		require.Equal(t, xattrClearHashes(area, 4), xattrClearHashes(ourArea, 4))
		again, err := decodeInodeXattrs(ourArea)
		require.NoError(t, err)
		require.Equal(t, e, again[slices.IndexFunc(again, func(x xattrEntry) bool { return x.Name == "user.huge" })])
	}
	block, err := encodeXattrBlock([]xattrEntry{e}, 1, im.blockSize)
	require.NoError(t, err)
	bes, _, err := decodeXattrBlock(block)
	require.NoError(t, err)
	require.Equal(t, []xattrEntry{e}, bes)
	require.Equal(t, e.Hash, binary.LittleEndian.Uint32(block[xattrHdrHash:]))
}
