package ext4edit

// On-disk codec for ext4 extended attributes (fs/ext4/xattr.h).
//
// Everything here is a pure function over byte slices: the caller reads and
// writes inodes and blocks, computes the crc32c of whole attribute blocks
// (h_checksum) and allocates/frees blocks and EA inodes.
//
// Two containers hold attributes:
//
//   - The in-inode ("ibody") area: the bytes of a large inode after
//     EXT4_GOOD_OLD_INODE_SIZE (128) + i_extra_isize up to the inode size.
//     It starts with struct ext4_xattr_ibody_header (just h_magic), followed
//     by the entry list. e_value_offs is relative to the first entry (the
//     byte just after h_magic).
//   - An attribute block (i_file_acl): struct ext4_xattr_header (32 bytes)
//     followed by the entry list. e_value_offs is relative to the block start.
//
// In both, entries grow upward from the start, the list ends with four zero
// bytes (IS_LAST_ENTRY), and values are stored padded to EXT4_XATTR_PAD (4)
// bytes, growing downward from the end of the container.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// xattrEntry is one extended attribute with its full name ("user.foo",
// "security.capability", "system.posix_acl_access", "trusted.x",
// "system.data" ...).
type xattrEntry struct {
	Name  string
	Value []byte
	// ValueInum is e_value_inum: non-zero when the value lives in an EA
	// inode (ea_inode feature); Value is then nil and the entry must be
	// preserved as-is (ValueSize and Hash are written back unchanged).
	ValueInum uint32
	// ValueSize is e_value_size. The decoders always fill it; the encoders
	// only use it for ValueInum entries (otherwise len(Value) is written).
	ValueSize uint32
	// Hash is e_hash as read. The encoders recompute it for ordinary
	// entries and write it back unchanged for ValueInum entries.
	Hash uint32
}

// xattrPrefixes maps e_name_index to its name prefix. Indexes 2, 3 and 8
// name a single attribute (stored with an empty e_name).
var xattrPrefixes = [...]string{
	1: "user.",
	2: "system.posix_acl_access",
	3: "system.posix_acl_default",
	4: "trusted.",
	// 5: EXT4_XATTR_INDEX_LUSTRE, no prefix
	6: "security.",
	7: "system.",
	8: "system.richacl",
	// 9: EXT4_XATTR_INDEX_ENCRYPTION ("c"), 10: EXT4_XATTR_INDEX_HURD: no prefix
}

// xattrFullNameIndex reports whether index names exactly one attribute
// whose full name is the prefix itself.
func xattrFullNameIndex(index uint8) bool { return index == 2 || index == 3 || index == 8 }

// splitXattrName maps a full attribute name to (e_name_index, e_name) the
// way the kernel and e2fsprogs do: 1 "user.", 2 "system.posix_acl_access"
// (empty suffix), 3 "system.posix_acl_default" (empty suffix), 4
// "trusted.", 6 "security.", 7 "system.", 8 "system.richacl" (empty
// suffix); a name with no known prefix is stored whole under index 0.
//
// Additionally "ext4.index<N>.<suffix>" (N decimal 0..255, no leading
// zeros) maps to (N, suffix). joinXattrName produces this spelling for
// on-disk entries that have no canonical full name (Lustre index 5, the
// fscrypt context under index 9, junk), so that decoding and re-encoding
// any entry preserves its e_name_index and e_name exactly.
func splitXattrName(full string) (index uint8, suffix string) {
	if rest, ok := strings.CutPrefix(full, xattrAliasPrefix); ok {
		if dot := strings.IndexByte(rest, '.'); dot > 0 {
			num := rest[:dot]
			if n, err := strconv.ParseUint(num, 10, 8); err == nil && strconv.FormatUint(n, 10) == num {
				return uint8(n), rest[dot+1:]
			}
		}
	}
	for _, i := range []uint8{2, 3, 8} {
		if full == xattrPrefixes[i] {
			return i, ""
		}
	}
	for _, i := range []uint8{1, 4, 6, 7} {
		if s, ok := strings.CutPrefix(full, xattrPrefixes[i]); ok {
			return i, s
		}
	}
	return 0, full
}

// joinXattrName is the inverse of splitXattrName: for every (index,
// suffix), splitXattrName(joinXattrName(index, suffix)) == (index, suffix).
// Pairs without a canonical full name (unknown index, a non-empty suffix
// under index 2/3/8, an index-0 name that looks prefixed, ...) are spelled
// "ext4.index<N>.<suffix>".
func joinXattrName(index uint8, suffix string) string {
	var full string
	switch {
	case xattrFullNameIndex(index):
		full = xattrPrefixes[index] + suffix
	case index == 0:
		full = suffix
	case int(index) < len(xattrPrefixes) && xattrPrefixes[index] != "":
		full = xattrPrefixes[index] + suffix
	default:
		return xattrAliasName(index, suffix)
	}
	if i, s := splitXattrName(full); i != index || s != suffix {
		return xattrAliasName(index, suffix)
	}
	return full
}

func xattrAliasName(index uint8, suffix string) string {
	return xattrAliasPrefix + strconv.Itoa(int(index)) + "." + suffix
}

// xattrHashEntry is ext4_xattr_hash_entry: name bytes (e_name, i.e. the
// suffix without prefix), then the value as little-endian 32-bit words,
// zero padded to EXT4_XATTR_PAD.
//
// Name bytes are hashed as unsigned char. The kernel before 6.2 used plain
// (signed on x86) char; since 6.2 it hashes unsigned and also accepts the
// signed variant (ext4_xattr_hash_entry_signed), and e2fsck (1.47) accepts
// either. The two only differ for name bytes >= 0x80.
func xattrHashEntry(name []byte, value []byte) uint32 {
	return xattrHash(name, value, false)
}

// xattrHash is xattrHashEntry with the name's bytes taken as signed char
// when signed (ext4_xattr_hash_entry_signed).
func xattrHash(name []byte, value []byte, signed bool) uint32 {
	var hash uint32
	for _, c := range name {
		v := uint32(c)
		if signed {
			v = uint32(int32(int8(c)))
		}
		hash = (hash << xattrNameHashShift) ^ (hash >> (32 - xattrNameHashShift)) ^ v
	}
	for i := 0; i < len(value); i += 4 {
		var w [4]byte
		copy(w[:], value[i:])
		hash = (hash << xattrValueHashShift) ^ (hash >> (32 - xattrValueHashShift)) ^
			binary.LittleEndian.Uint32(w[:])
	}
	return hash
}

// xattrEntryHash computes e_hash for e the kernel's way. For an EA-inode
// entry the kernel hashes the name with the EA inode's crc32c hash as the
// single value word; that hash lives in the EA inode, so e.Hash (as read)
// is returned unchanged.
func xattrEntryHash(e xattrEntry) uint32 { return xattrEntryHashAs(e, false) }

// xattrEntryHashSigned is xattrEntryHash with the name's bytes taken as
// signed char, as kernels before 6.2 hashed them on x86 (e2fsck accepts
// either).
func xattrEntryHashSigned(e xattrEntry) uint32 { return xattrEntryHashAs(e, true) }

func xattrEntryHashAs(e xattrEntry, signed bool) uint32 {
	if e.ValueInum != 0 {
		return e.Hash
	}
	_, suffix := splitXattrName(e.Name)
	return xattrHash([]byte(suffix), e.Value, signed)
}

// xattrRehash is ext4_xattr_rehash: h_hash over the e_hash of all entries
// in on-disk order; any entry with e_hash 0 makes the block hash 0 (such a
// block is never shared).
func xattrRehash(hashes []uint32) uint32 {
	var hash uint32
	for _, h := range hashes {
		if h == 0 {
			return 0
		}
		hash = (hash << xattrBlockHashShift) ^ (hash >> (32 - xattrBlockHashShift)) ^ h
	}
	return hash
}

// xattrEntryLen is EXT4_XATTR_LEN(name_len): entry header plus name,
// padded to 4 bytes.
func xattrEntryLen(nameLen int) int { return (xattrEntSize + nameLen + xattrPad - 1) &^ (xattrPad - 1) }

// xattrValueLen is EXT4_XATTR_SIZE(size): value size padded to 4 bytes.
func xattrValueLen(size int) int { return (size + xattrPad - 1) &^ (xattrPad - 1) }

// decodeXattrEntries walks the entry list of a container. buf is the whole
// container, entries start at first, e_value_offs values are relative to
// valueBase. what names the container in errors.
func decodeXattrEntries(buf []byte, first, valueBase int, what string) ([]xattrEntry, error) {
	end := len(buf)
	// Pass 1: walk the names up to the terminating zero word. Every entry
	// advances pos by at least 16 bytes, so the loop ends.
	type rawEnt struct {
		pos  int
		name []byte
	}
	var raws []rawEnt
	pos := first
	for {
		if pos+4 > end {
			return nil, corruptf("%s: xattr entry list at offset %d runs past the end (%d bytes) without terminator", what, pos, end)
		}
		if binary.LittleEndian.Uint32(buf[pos:]) == 0 {
			break
		}
		if pos+xattrEntSize > end {
			return nil, corruptf("%s: xattr entry at offset %d truncated (%d bytes)", what, pos, end)
		}
		nameLen := int(buf[pos+xattrEntNameLen])
		next := pos + xattrEntryLen(nameLen)
		// The kernel requires next < end (room for at least the
		// terminator, which is 4-byte aligned like every entry).
		if next+4 > end {
			return nil, corruptf("%s: xattr entry at offset %d: name (len %d) out of bounds", what, pos, nameLen)
		}
		raws = append(raws, rawEnt{pos: pos, name: buf[pos+xattrEntName : pos+xattrEntName+nameLen]})
		pos = next
	}
	listEnd := pos + 4 // values must start at or after the terminator's end

	// Pass 2: values.
	entries := make([]xattrEntry, 0, len(raws))
	for _, r := range raws {
		p := r.pos
		index := buf[p+xattrEntNameIndex]
		offs := int(binary.LittleEndian.Uint16(buf[p+xattrEntValueOffs:]))
		inum := binary.LittleEndian.Uint32(buf[p+xattrEntValueInum:])
		size := binary.LittleEndian.Uint32(buf[p+xattrEntValueSize:])
		e := xattrEntry{
			Name:      joinXattrName(index, string(r.name)),
			ValueInum: inum,
			ValueSize: size,
			Hash:      binary.LittleEndian.Uint32(buf[p+xattrEntHash:]),
		}
		if inum == 0 {
			e.Value = []byte{}
			if size != 0 {
				start := valueBase + offs
				if start < listEnd {
					return nil, corruptf("%s: xattr %q value at offset %d overlaps the entry list (ends at %d)", what, e.Name, start, listEnd)
				}
				if start > end || uint64(size) > uint64(end-start) {
					return nil, corruptf("%s: xattr %q value (offset %d, size %d) past end of area (%d bytes)", what, e.Name, start, size, end)
				}
				e.Value = bytes.Clone(buf[start : start+int(size)])
			}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// decodeInodeXattrs decodes the in-inode xattr area (the inode bytes from
// 128+i_extra_isize to the inode size). Layout:
//
//	0: __le32 h_magic (struct ext4_xattr_ibody_header), 0xEA020000
//	4: first struct ext4_xattr_entry; e_value_offs are relative to here
//
// An area without the magic holds no attributes: (nil, nil). Entries are
// returned in on-disk order.
func decodeInodeXattrs(area []byte) ([]xattrEntry, error) {
	if len(area) < xattrIbodyHdrSize || binary.LittleEndian.Uint32(area) != xattrMagic {
		return nil, nil
	}
	return decodeXattrEntries(area, xattrIbodyHdrSize, xattrIbodyHdrSize, "in-inode xattr area")
}

// decodeXattrBlock decodes an attribute block (one fs block). Layout:
//
//	0:  struct ext4_xattr_header (32 bytes, see xattrHdr* offsets)
//	32: first struct ext4_xattr_entry; e_value_offs are relative to offset 0
//
// h_magic must be 0xEA020000 and h_blocks 1. Neither h_hash, h_checksum
// nor the entry hashes are verified here (the caller checks h_checksum).
// Entries are returned in on-disk order.
func decodeXattrBlock(block []byte) (entries []xattrEntry, refcount uint32, err error) {
	if len(block) < xattrHdrSize+4 {
		return nil, 0, corruptf("xattr block too short (%d bytes)", len(block))
	}
	if m := binary.LittleEndian.Uint32(block[xattrHdrMagic:]); m != xattrMagic {
		return nil, 0, corruptf("xattr block: bad magic %#x", m)
	}
	if b := binary.LittleEndian.Uint32(block[xattrHdrBlocks:]); b != 1 {
		return nil, 0, corruptf("xattr block: h_blocks %d, want 1", b)
	}
	refcount = binary.LittleEndian.Uint32(block[xattrHdrRefcount:])
	entries, err = decodeXattrEntries(block, xattrHdrSize, 0, "xattr block")
	if err != nil {
		return nil, 0, err
	}
	return entries, refcount, nil
}

// errXattrInvalid reports a caller-supplied entry that cannot be stored.
var errXattrInvalid = errors.New("invalid extended attribute")

// xattrLayoutEnt is an entry ready to be laid out.
type xattrLayoutEnt struct {
	e      xattrEntry
	index  uint8
	suffix string
}

// prepareXattrEntries validates entries, splits their names and returns
// the total bytes needed for the entry list (including the terminator)
// and for the values.
func prepareXattrEntries(entries []xattrEntry) ([]xattrLayoutEnt, int, int, error) {
	out := make([]xattrLayoutEnt, 0, len(entries))
	seen := make(map[string]bool, len(entries))
	listLen, valLen := 4, 0
	for _, e := range entries {
		index, suffix := splitXattrName(e.Name)
		if len(suffix) > xattrMaxNameLen {
			return nil, 0, 0, fmt.Errorf("%w: name %q too long", errXattrInvalid, e.Name)
		}
		// An index-0 entry with an empty name and e_value_offs 0 would
		// start with a zero word and read back as the list terminator.
		if index == 0 && suffix == "" {
			return nil, 0, 0, fmt.Errorf("%w: empty name", errXattrInvalid)
		}
		key := string([]byte{index}) + suffix
		if seen[key] {
			return nil, 0, 0, fmt.Errorf("%w: duplicate name %q", errXattrInvalid, e.Name)
		}
		seen[key] = true
		if e.ValueInum == 0 {
			if uint64(len(e.Value)) > 1<<32-1 {
				// e_value_size is 32 bits; no container holds it anyway.
				return nil, 0, 0, fmt.Errorf("%w: value of %q is %d bytes", ErrXattrTooLarge, e.Name, len(e.Value))
			}
			valLen += xattrValueLen(len(e.Value))
		}
		listLen += xattrEntryLen(len(suffix))
		out = append(out, xattrLayoutEnt{e: e, index: index, suffix: suffix})
	}
	return out, listLen, valLen, nil
}

// layoutXattrEntries writes ents into buf starting at first, values from
// the end of buf downward in entry order (as e2fsprogs does), e_value_offs
// relative to valueBase. Space must have been checked. It returns the
// e_hash written for each entry.
func layoutXattrEntries(buf []byte, ents []xattrLayoutEnt, first, valueBase int) []uint32 {
	hashes := make([]uint32, len(ents))
	pos, valEnd := first, len(buf)
	for i, le := range ents {
		e := le.e
		buf[pos+xattrEntNameLen] = uint8(len(le.suffix))
		buf[pos+xattrEntNameIndex] = le.index
		copy(buf[pos+xattrEntName:], le.suffix)
		var hash uint32
		if e.ValueInum != 0 {
			// EA inode: e_value_offs 0, no value bytes here, keep size and hash.
			binary.LittleEndian.PutUint32(buf[pos+xattrEntValueInum:], e.ValueInum)
			binary.LittleEndian.PutUint32(buf[pos+xattrEntValueSize:], e.ValueSize)
			hash = e.Hash
		} else {
			if len(e.Value) > 0 {
				valEnd -= xattrValueLen(len(e.Value))
				copy(buf[valEnd:], e.Value) // padding stays zero
				binary.LittleEndian.PutUint16(buf[pos+xattrEntValueOffs:], uint16(valEnd-valueBase))
			}
			binary.LittleEndian.PutUint32(buf[pos+xattrEntValueSize:], uint32(len(e.Value)))
			hash = xattrHashEntry([]byte(le.suffix), e.Value)
		}
		binary.LittleEndian.PutUint32(buf[pos+xattrEntHash:], hash)
		hashes[i] = hash
		pos += xattrEntryLen(len(le.suffix))
	}
	// The terminating zero word is already zero.
	return hashes
}

// encodeInodeXattrs builds an in-inode xattr area of exactly areaSize bytes
// (inode size - 128 - i_extra_isize). Entries keep the caller's order (the
// kernel does not sort in-inode entries); each gets its e_hash computed
// (e2fsck accepts 0 or the correct hash). No entries gives an all-zero
// area without magic. If the entries do not fit, the error wraps
// ErrNoSpace.
func encodeInodeXattrs(entries []xattrEntry, areaSize int) ([]byte, error) {
	if areaSize < 0 || areaSize%xattrPad != 0 || areaSize > 1<<16 {
		return nil, fmt.Errorf("%w: in-inode xattr area size %d", errXattrInvalid, areaSize)
	}
	area := make([]byte, areaSize)
	if len(entries) == 0 {
		return area, nil
	}
	ents, listLen, valLen, err := prepareXattrEntries(entries)
	if err != nil {
		return nil, err
	}
	if need := xattrIbodyHdrSize + listLen + valLen; need > areaSize {
		return nil, fmt.Errorf("%w: in-inode xattrs need %d bytes, area has %d", ErrNoSpace, need, areaSize)
	}
	binary.LittleEndian.PutUint32(area, xattrMagic)
	layoutXattrEntries(area, ents, xattrIbodyHdrSize, xattrIbodyHdrSize)
	return area, nil
}

// xattrLess is the kernel's block order (ext4_xattr_find_entry with
// sorted=1): e_name_index, then e_name_len, then memcmp of e_name.
func xattrLess(a, b xattrLayoutEnt) bool {
	if a.index != b.index {
		return a.index < b.index
	}
	if len(a.suffix) != len(b.suffix) {
		return len(a.suffix) < len(b.suffix)
	}
	return a.suffix < b.suffix
}

// encodeXattrBlock lays out entries in a zeroed block of blockSize bytes:
// header {h_magic, h_refcount=refcount, h_blocks=1, h_hash}, entries from
// offset 32 sorted as the kernel keeps them, values from the block end
// downward. It computes every e_hash (EA-inode entries keep theirs) and
// h_hash; h_checksum stays zero for the caller to fill in (it needs the
// block number). The caller's slice is not reordered. If the entries do
// not fit, the error wraps ErrNoSpace.
func encodeXattrBlock(entries []xattrEntry, refcount uint32, blockSize int) ([]byte, error) {
	if blockSize < xattrHdrSize+4 || blockSize%xattrPad != 0 || blockSize > 1<<16 {
		return nil, fmt.Errorf("%w: xattr block size %d", errXattrInvalid, blockSize)
	}
	ents, listLen, valLen, err := prepareXattrEntries(entries)
	if err != nil {
		return nil, err
	}
	if need := xattrHdrSize + listLen + valLen; need > blockSize {
		return nil, fmt.Errorf("%w: xattrs need %d bytes, block has %d", ErrNoSpace, need, blockSize)
	}
	sort.SliceStable(ents, func(i, j int) bool { return xattrLess(ents[i], ents[j]) })
	block := make([]byte, blockSize)
	binary.LittleEndian.PutUint32(block[xattrHdrMagic:], xattrMagic)
	binary.LittleEndian.PutUint32(block[xattrHdrRefcount:], refcount)
	binary.LittleEndian.PutUint32(block[xattrHdrBlocks:], 1)
	hashes := layoutXattrEntries(block, ents, xattrHdrSize, 0)
	binary.LittleEndian.PutUint32(block[xattrHdrHash:], xattrRehash(hashes))
	return block, nil
}
