package ext4edit

import (
	"encoding/binary"
	"hash/crc32"
)

// castagnoli is crc32c, the checksum of metadata_csum.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32cRaw is the kernel's crc32c_le(seed, p): the raw register with no
// pre/post inversion. hash/crc32 inverts on entry and exit, so undo both.
// ext4 seeds the first call with ^0 and stores the raw result.
func crc32cRaw(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, p)
}

// crc32cU32 is crc32cRaw over v's four little-endian bytes, a byte at a
// time through the table: a buffer handed to crc32.Update escapes to the
// heap, and open checksums every group descriptor (8192 of them in 1 TiB).
func crc32cU32(seed, v uint32) uint32 {
	c := seed
	for i := 0; i < 4; i++ {
		c = castagnoli[byte(c)^byte(v>>(8*i))] ^ c>>8
	}
	return c
}

// Little-endian field helpers over raw on-disk buffers. Every caller passes
// offsets that are constants of the structure it decodes, and buffers whose
// length the structure's reader has already checked.
func le16(b []byte, off int) uint16     { return binary.LittleEndian.Uint16(b[off:]) }
func le32(b []byte, off int) uint32     { return binary.LittleEndian.Uint32(b[off:]) }
func put16(b []byte, off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
func put32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
