package ext4edit

import "math/bits"

// Directory-index (htree) name hashes.
//
// An htree directory is only usable by the kernel if every name sits in the
// leaf block whose hash range covers it, so these functions must agree with
// the kernel bit for bit. The reference is Linux fs/ext4/hash.c
// (ext4fs_dirhash); e2fsprogs lib/ext2fs/dirhash.c implements the same
// algorithms and is what debugfs's dx_hash command (used by the tests) runs.
//
// Why there are signed and unsigned variants: the original code fed the name
// through plain `char`, whose signedness differs between architectures
// (signed on x86, unsigned on ARM/PowerPC), so names with bytes >= 0x80
// hashed differently depending on where the directory was created. The fix
// was to make the signedness explicit and record in the superblock
// (EXT2_FLAGS_{SIGNED,UNSIGNED}_HASH in s_flags) which one the filesystem
// uses. On disk, s_def_hash_version and dx_root_info.hash_version only hold
// 0..2 (or 6); on an unsigned-hash filesystem the kernel adds 3 to a legacy,
// half-MD4 or TEA version after reading it. Callers must do the same; dxHash
// takes the adjusted version.

// Hash versions as stored in s_def_hash_version / dx_root_info.hash_version,
// plus the in-memory unsigned variants (see above).
const (
	hashLegacy          = 0
	hashHalfMD4         = 1
	hashTea             = 2
	hashLegacyUnsigned  = 3
	hashHalfMD4Unsigned = 4
	hashTeaUnsigned     = 5
	hashSiphash         = 6
)

// htreeEOF32 is EXT4_HTREE_EOF_32BIT. readdir on htree directories uses the
// (major) hash as the directory position and reserves this value, shifted
// into hash space, as the end-of-directory cookie; the kernel therefore
// never lets a real name hash to it. e2fsprogs does not apply this fixup.
const htreeEOF32 = 0x7fffffff

// dxDefaultSeed is used when s_hash_seed is all zero (filesystems created
// before the seed existed). These are the MD4 initial chaining values.
var dxDefaultSeed = [4]uint32{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476}

// dxHash returns the major (bit 0 cleared) and minor hash of name.
// seed is s_hash_seed as four little-endian uint32; an all-zero seed selects
// the default seed. Unknown versions and siphash (only valid on casefolded
// directories, which this package does not implement) return an error
// wrapping ErrUnsupportedFeature.
func dxHash(name []byte, version uint8, seed [4]uint32) (major, minor uint32, err error) {
	buf := dxDefaultSeed
	if seed != [4]uint32{} {
		buf = seed
	}

	var hash uint32
	switch version {
	case hashLegacy, hashLegacyUnsigned:
		// The legacy hash ignores the seed and has no minor hash.
		hash = dxHackHash(name, version == hashLegacyUnsigned)
	case hashHalfMD4, hashHalfMD4Unsigned:
		unsigned := version == hashHalfMD4Unsigned
		var in [8]uint32
		// The kernel loops "while (len > 0)", so an empty name leaves the
		// seed untouched rather than hashing one padding block.
		for p := name; len(p) > 0; p = p[min(32, len(p)):] {
			str2hashbuf(p, in[:], unsigned)
			halfMD4Transform(&buf, &in)
		}
		hash, minor = buf[1], buf[2]
	case hashTea, hashTeaUnsigned:
		unsigned := version == hashTeaUnsigned
		var in [4]uint32
		for p := name; len(p) > 0; p = p[min(16, len(p)):] {
			str2hashbuf(p, in[:], unsigned)
			teaTransform(&buf, &in)
		}
		hash, minor = buf[0], buf[1]
	case hashSiphash:
		return 0, 0, unsupportedf("directory hash siphash (casefold)")
	default:
		return 0, 0, unsupportedf("directory hash version %d", version)
	}

	// Bit 0 of a stored hash is the "continued" flag on index entries
	// (a collision chain spills into the next leaf), so real hashes never
	// carry it.
	hash &^= 1
	if hash == htreeEOF32<<1 {
		hash = (htreeEOF32 - 1) << 1
	}
	return hash, minor, nil
}

// nameChar widens one name byte the way C would widen a (signed or
// unsigned) char to int and then to __u32.
func nameChar(b byte, unsigned bool) uint32 {
	if unsigned {
		return uint32(b)
	}
	return uint32(int32(int8(b)))
}

// dxHackHash is the original ext3 htree hash (dx_hack_hash), kept for
// filesystems that were created with it.
func dxHackHash(name []byte, unsigned bool) uint32 {
	hash0, hash1 := uint32(0x12a3fe2d), uint32(0x37abe8f9)
	for _, b := range name {
		hash := hash1 + (hash0 ^ nameChar(b, unsigned)*7152373)
		if hash&0x80000000 != 0 {
			hash -= 0x7fffffff
		}
		hash1, hash0 = hash0, hash
	}
	return hash0 << 1
}

// str2hashbuf packs up to 4*len(buf) bytes of msg big-endian-ish into buf,
// filling the unused space with a pattern made from the *remaining* length
// of the whole name (len(msg)), not just this chunk's. That makes names
// that are prefixes of each other hash differently, and is why msg must be
// the full tail of the name, not a chunk.
func str2hashbuf(msg []byte, buf []uint32, unsigned bool) {
	pad := uint32(len(msg)) | uint32(len(msg))<<8
	pad |= pad << 16

	n := min(len(msg), 4*len(buf))
	val := pad
	j := 0
	for i := 0; i < n; i++ {
		if i%4 == 0 {
			val = pad
		}
		// Addition, not OR: a sign-extended byte borrows into the
		// already-shifted bytes, and the hash depends on that.
		val = nameChar(msg[i], unsigned) + val<<8
		if i%4 == 3 {
			buf[j] = val
			j++
			val = pad
		}
	}
	if j < len(buf) {
		buf[j] = val
		j++
	}
	for ; j < len(buf); j++ {
		buf[j] = pad
	}
}

// halfMD4Transform is the kernel's cut-down MD4 (three rounds of eight
// steps over an 8-word block), chosen in 2002 as a fast hash that is hard
// to attack with colliding names.
func halfMD4Transform(buf *[4]uint32, in *[8]uint32) {
	const (
		k1 = 0
		k2 = 013240474631 // sqrt(2) * 2^30, as in MD4
		k3 = 015666365641 // sqrt(3) * 2^30, as in MD4
	)
	f := func(x, y, z uint32) uint32 { return z ^ (x & (y ^ z)) }
	g := func(x, y, z uint32) uint32 { return (x & y) + ((x ^ y) & z) }
	h := func(x, y, z uint32) uint32 { return x ^ y ^ z }

	a, b, c, d := buf[0], buf[1], buf[2], buf[3]

	a = bits.RotateLeft32(a+f(b, c, d)+in[0]+k1, 3)
	d = bits.RotateLeft32(d+f(a, b, c)+in[1]+k1, 7)
	c = bits.RotateLeft32(c+f(d, a, b)+in[2]+k1, 11)
	b = bits.RotateLeft32(b+f(c, d, a)+in[3]+k1, 19)
	a = bits.RotateLeft32(a+f(b, c, d)+in[4]+k1, 3)
	d = bits.RotateLeft32(d+f(a, b, c)+in[5]+k1, 7)
	c = bits.RotateLeft32(c+f(d, a, b)+in[6]+k1, 11)
	b = bits.RotateLeft32(b+f(c, d, a)+in[7]+k1, 19)

	a = bits.RotateLeft32(a+g(b, c, d)+in[1]+k2, 3)
	d = bits.RotateLeft32(d+g(a, b, c)+in[3]+k2, 5)
	c = bits.RotateLeft32(c+g(d, a, b)+in[5]+k2, 9)
	b = bits.RotateLeft32(b+g(c, d, a)+in[7]+k2, 13)
	a = bits.RotateLeft32(a+g(b, c, d)+in[0]+k2, 3)
	d = bits.RotateLeft32(d+g(a, b, c)+in[2]+k2, 5)
	c = bits.RotateLeft32(c+g(d, a, b)+in[4]+k2, 9)
	b = bits.RotateLeft32(b+g(c, d, a)+in[6]+k2, 13)

	a = bits.RotateLeft32(a+h(b, c, d)+in[3]+k3, 3)
	d = bits.RotateLeft32(d+h(a, b, c)+in[7]+k3, 9)
	c = bits.RotateLeft32(c+h(d, a, b)+in[2]+k3, 11)
	b = bits.RotateLeft32(b+h(c, d, a)+in[6]+k3, 15)
	a = bits.RotateLeft32(a+h(b, c, d)+in[1]+k3, 3)
	d = bits.RotateLeft32(d+h(a, b, c)+in[5]+k3, 9)
	c = bits.RotateLeft32(c+h(d, a, b)+in[0]+k3, 11)
	b = bits.RotateLeft32(b+h(c, d, a)+in[4]+k3, 15)

	buf[0] += a
	buf[1] += b
	buf[2] += c
	buf[3] += d
}

// teaTransform runs 16 TEA cycles keyed by the 4-word block and adds the
// result back into buf (a Davies-Meyer compression function built from TEA,
// per Jeremy Fitzhardinge's keyed hash that ext3 adopted).
func teaTransform(buf *[4]uint32, in *[4]uint32) {
	const delta = 0x9E3779B9
	var sum uint32
	b0, b1 := buf[0], buf[1]
	a, b, c, d := in[0], in[1], in[2], in[3]
	for range 16 {
		sum += delta
		b0 += ((b1 << 4) + a) ^ (b1 + sum) ^ ((b1 >> 5) + b)
		b1 += ((b0 << 4) + c) ^ (b0 + sum) ^ ((b0 >> 5) + d)
	}
	buf[0] += b0
	buf[1] += b1
}
