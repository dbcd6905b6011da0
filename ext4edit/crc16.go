package ext4edit

// crc16Table is the byte-at-a-time table for the reflected form (0xA001) of
// the CRC-16/ARC polynomial x^16 + x^15 + x^2 + 1 (0x8005).
var crc16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// crc16 updates crc with p. It is Linux lib/crc16.c (and e2fsprogs'
// ext2fs_crc16), which ext4 uses for group-descriptor checksums on
// filesystems with uninit_bg (gdt_csum) but not metadata_csum. Like the
// kernel function it applies no initial or final inversion: ext4 starts
// from ^uint16(0) and stores the result as is, so the caller supplies the
// initial value. With crc == 0 this is CRC-16/ARC.
func crc16(crc uint16, p []byte) uint16 {
	for _, b := range p {
		crc = crc>>8 ^ crc16Table[byte(crc)^b]
	}
	return crc
}
