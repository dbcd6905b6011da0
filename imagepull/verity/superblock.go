package verity

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// The verity superblock, as cryptsetup's veritysetup writes it (format
// version 1) at the hash area's start: 512 bytes, little-endian, padded
// with zeros to a whole hash block. The tree starts at the next hash
// block. Offsets and sizes (bytes):
//
//	0    8   signature      "verity\0\0"
//	8    4   version        1
//	12   4   hash_type      1: the salt goes before the hashed block
//	16   16  uuid
//	32   32  algorithm      "sha256", NUL padded
//	64   4   data_block_size
//	68   4   hash_block_size
//	72   8   data_blocks
//	80   2   salt_size      at most 256
//	82   6   padding
//	88   256 salt           salt_size bytes used, the rest zero
//	344  168 padding
const (
	sbSignature     = 0
	sbVersion       = 8
	sbHashType      = 12
	sbUUID          = 16
	sbAlgorithm     = 32
	sbDataBlockSize = 64
	sbHashBlockSize = 68
	sbDataBlocks    = 72
	sbSaltSize      = 80
	sbSalt          = 88
	// SuperblockSize is the superblock's size on disk.
	SuperblockSize = 512
	maxSaltSize    = 256
	algorithmSize  = 32
)

// Signature is the superblock's first eight bytes.
const Signature = "verity\x00\x00"

var le = binary.LittleEndian

// encodeSuperblock lays p out as a superblock.
func encodeSuperblock(p *Params) ([]byte, error) {
	if len(p.Salt) > maxSaltSize {
		return nil, fmt.Errorf("verity: salt of %d bytes: at most %d", len(p.Salt), maxSaltSize)
	}
	b := make([]byte, SuperblockSize)
	copy(b[sbSignature:], Signature)
	le.PutUint32(b[sbVersion:], 1)
	le.PutUint32(b[sbHashType:], 1)
	copy(b[sbUUID:], p.UUID[:])
	copy(b[sbAlgorithm:sbAlgorithm+algorithmSize], p.Algorithm)
	le.PutUint32(b[sbDataBlockSize:], p.DataBlockSize)
	le.PutUint32(b[sbHashBlockSize:], p.HashBlockSize)
	le.PutUint64(b[sbDataBlocks:], p.DataBlocks)
	le.PutUint16(b[sbSaltSize:], uint16(len(p.Salt)))
	copy(b[sbSalt:], p.Salt)
	return b, nil
}

// decodeSuperblock reads a superblock found at hashOffset. It accepts
// only what this package writes: version 1, hash type 1, sha256, 4 KiB
// blocks; anything else is an error naming the field.
func decodeSuperblock(b []byte, hashOffset int64) (*Params, error) {
	if len(b) < SuperblockSize || string(b[sbSignature:sbSignature+8]) != Signature {
		return nil, fmt.Errorf("%w at byte %d", ErrNoSuperblock, hashOffset)
	}
	if v := le.Uint32(b[sbVersion:]); v != 1 {
		return nil, fmt.Errorf("verity superblock: version %d (want 1)", v)
	}
	if t := le.Uint32(b[sbHashType:]); t != 1 {
		return nil, fmt.Errorf("verity superblock: hash type %d (want 1)", t)
	}
	alg := string(bytes.TrimRight(b[sbAlgorithm:sbAlgorithm+algorithmSize], "\x00"))
	if alg != Algorithm {
		return nil, fmt.Errorf("verity superblock: algorithm %q (want %s)", alg, Algorithm)
	}
	p := &Params{Algorithm: alg, HashOffset: hashOffset}
	p.DataBlockSize = le.Uint32(b[sbDataBlockSize:])
	p.HashBlockSize = le.Uint32(b[sbHashBlockSize:])
	if p.DataBlockSize != BlockSize || p.HashBlockSize != BlockSize {
		return nil, fmt.Errorf("verity superblock: block sizes %d/%d (want %d)", p.DataBlockSize, p.HashBlockSize, BlockSize)
	}
	p.DataBlocks = le.Uint64(b[sbDataBlocks:])
	if p.DataBlocks == 0 || p.DataBlocks > uint64(hashOffset)/BlockSize {
		return nil, fmt.Errorf("verity superblock: %d data blocks do not fit before the hash area at byte %d", p.DataBlocks, hashOffset)
	}
	n := int(le.Uint16(b[sbSaltSize:]))
	if n > maxSaltSize {
		return nil, fmt.Errorf("verity superblock: salt size %d (at most %d)", n, maxSaltSize)
	}
	p.Salt = append([]byte(nil), b[sbSalt:sbSalt+n]...)
	copy(p.UUID[:], b[sbUUID:sbUUID+16])
	return p, nil
}
