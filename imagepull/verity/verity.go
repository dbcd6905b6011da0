// Package verity seals an image with a dm-verity hash tree that
// cryptsetup's veritysetup and the kernel's dm-verity target accept:
// format version 1, sha256, 4096-byte data and hash blocks, a salt, and
// the verity superblock at the start of the hash area. The tree goes in
// the same file, right after the data (hash_offset = the data's size),
// which is how imagepull lays out a sealed rootfs.ext4.
//
// Format writes the superblock and the tree and returns the root hash;
// Verify recomputes every level from the data and compares it with what
// the file holds, then the root. Both hash with every CPU and read in
// large sequential chunks; a block of zeros (a hole of a sparse image)
// costs no hashing, its digest is computed once.
package verity

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
)

const (
	// BlockSize is the data and hash block size.
	BlockSize = 4096
	// Algorithm is the hash algorithm.
	Algorithm = "sha256"
	// digestSize is sha256's digest size; hashesPerBlock digests fill a
	// hash block (version 1 pads digests to a power of two: 32 already is).
	digestSize     = sha256.Size
	hashesPerBlock = BlockSize / digestSize
)

var (
	// ErrNoSuperblock: there is no verity superblock where one was looked for.
	ErrNoSuperblock = errors.New("no dm-verity superblock")
	// ErrMismatch: the data or the tree does not match the root hash.
	ErrMismatch = errors.New("dm-verity verification failed")
)

// Params describe a sealed image: what image.json records and the kernel
// needs to open it.
type Params struct {
	RootHash      []byte
	Salt          []byte
	UUID          [16]byte
	HashOffset    int64 // byte offset of the superblock: the data's size
	DataBlocks    uint64
	DataBlockSize uint32
	HashBlockSize uint32
	Algorithm     string
}

// Options for Format. The zero value derives the salt and the UUID from
// the data, so equal data gives equal bytes and an equal root hash.
type Options struct {
	// Salt, when not nil, is used as given (at most 256 bytes; an empty,
	// non-nil salt means none).
	Salt []byte
	// UUID, when not nil, goes into the superblock as given.
	UUID *[16]byte
}

// File is what Format writes the tree into.
type File interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
}

// Format seals the first dataSize bytes of f (a multiple of BlockSize,
// not zero): it writes the superblock at dataSize and the hash tree after
// it, cuts f to the tree's end, and returns the parameters. It does not
// sync f.
func Format(f File, dataSize int64, opts *Options) (*Params, error) {
	if opts == nil {
		opts = &Options{}
	}
	if dataSize <= 0 || dataSize%BlockSize != 0 {
		return nil, fmt.Errorf("verity: data size %d is not a positive multiple of %d", dataSize, BlockSize)
	}
	p := &Params{HashOffset: dataSize, DataBlocks: uint64(dataSize / BlockSize), DataBlockSize: BlockSize, HashBlockSize: BlockSize, Algorithm: Algorithm}
	if opts.Salt != nil {
		p.Salt = append([]byte{}, opts.Salt...)
	} else {
		salt, err := deriveSalt(f, dataSize)
		if err != nil {
			return nil, err
		}
		p.Salt = salt
	}
	if opts.UUID != nil {
		p.UUID = *opts.UUID
	} else {
		p.UUID = deriveUUID(p.Salt)
	}
	sb, err := encodeSuperblock(p)
	if err != nil {
		return nil, err
	}
	t := newTree(p)
	// The tree's space first: a disk that is full fails here, before any
	// hashing, and the superblock goes last, so a file cut short never
	// carries a superblock over a partial tree.
	if err := f.Truncate(t.end * BlockSize); err != nil {
		return nil, err
	}
	root, err := t.build(f, false)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, BlockSize)
	copy(hdr, sb)
	if _, err := f.WriteAt(hdr, p.HashOffset); err != nil {
		return nil, err
	}
	p.RootHash = root
	return p, nil
}

// ReadParams reads the superblock at hashOffset (the data's size).
func ReadParams(r io.ReaderAt, hashOffset int64) (*Params, error) {
	if hashOffset <= 0 || hashOffset%BlockSize != 0 {
		return nil, fmt.Errorf("verity: hash offset %d is not a positive multiple of %d", hashOffset, BlockSize)
	}
	b := make([]byte, SuperblockSize)
	if _, err := r.ReadAt(b, hashOffset); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w at byte %d (the file ends there)", ErrNoSuperblock, hashOffset)
		}
		return nil, err
	}
	return decodeSuperblock(b, hashOffset)
}

// Verify reads the superblock at hashOffset, recomputes every level of
// the tree from the data, compares each with the file's, and the root
// with rootHash. A mismatch wraps ErrMismatch and names the level and
// block. It returns the parameters found.
func Verify(r io.ReaderAt, hashOffset int64, rootHash []byte) (*Params, error) {
	p, err := ReadParams(r, hashOffset)
	if err != nil {
		return nil, err
	}
	t := newTree(p)
	root, err := t.build(readOnly{r}, true)
	if err != nil {
		return p, err
	}
	p.RootHash = root
	if len(rootHash) != digestSize || string(root) != string(rootHash) {
		return p, fmt.Errorf("%w: root hash %x, expected %x", ErrMismatch, root, rootHash)
	}
	return p, nil
}

// readOnly lets Verify run the tree code over a reader; nothing writes.
type readOnly struct{ io.ReaderAt }

func (readOnly) WriteAt([]byte, int64) (int, error) { return 0, os.ErrPermission }

// RootHashHex, SaltHex and UUIDString format p's fields as veritysetup
// prints them.
func (p *Params) RootHashHex() string { return hex.EncodeToString(p.RootHash) }
func (p *Params) SaltHex() string {
	if len(p.Salt) == 0 {
		return "-"
	}
	return hex.EncodeToString(p.Salt)
}
func (p *Params) UUIDString() string {
	u := p.UUID
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// HashStartBlock is where the tree starts, in hash blocks from the start
// of the hash device (the same file): past the superblock's block.
func (p *Params) HashStartBlock() uint64 { return uint64(p.HashOffset)/uint64(p.HashBlockSize) + 1 }

// Table is the dm-verity target line for device dev (data and hash on the
// same device), as dmsetup and dm-mod.create take it.
func (p *Params) Table(dev string) string {
	return fmt.Sprintf("0 %d verity 1 %s %s %d %d %d %d %s %s %s",
		p.DataBlocks*uint64(p.DataBlockSize)/512, dev, dev, p.DataBlockSize, p.HashBlockSize,
		p.DataBlocks, p.HashStartBlock(), p.Algorithm, p.RootHashHex(), p.SaltHex())
}

// KernelCmdline is the kernel command-line fragment that opens the sealed
// root on dev read-only at boot (kernels with dm-verity and
// CONFIG_DM_INIT built in) and mounts it as the root: dm-mod.create
// names the mapping "vroot", which the kernel makes /dev/dm-0.
func (p *Params) KernelCmdline(dev string) string {
	return fmt.Sprintf(`dm-mod.create="vroot,,,ro,%s" root=/dev/dm-0 ro`, p.Table(dev))
}

// tree is the hash tree's geometry: the levels' places in hash blocks
// from the start of the file, level 0 (hashes of data blocks) last, the
// top level (one block) first, as veritysetup lays them out.
type tree struct {
	p          *Params
	levels     int
	levelStart []int64 // in blocks
	levelSize  []int64 // in blocks
	end        int64   // first block past the tree
}

func newTree(p *Params) *tree {
	t := &tree{p: p}
	// As many levels as it takes for one block to hold the top level's
	// hashes: none for a single data block, whose hash is the root.
	for n := p.DataBlocks; n > 1; n = (n + hashesPerBlock - 1) / hashesPerBlock {
		t.levels++
	}
	t.levelStart = make([]int64, t.levels)
	t.levelSize = make([]int64, t.levels)
	pos := int64(p.HashStartBlock())
	for i := t.levels - 1; i >= 0; i-- {
		n := p.DataBlocks
		for range i + 1 {
			n = (n + hashesPerBlock - 1) / hashesPerBlock
		}
		t.levelStart[i], t.levelSize[i] = pos, int64(n)
		pos += int64(n)
	}
	t.end = pos
	return t
}

// build hashes the data into level 0, each level into the next, and the
// top block into the root. With check it compares each level's blocks
// with the file's instead of writing them.
func (t *tree) build(f interface {
	io.ReaderAt
	io.WriterAt
}, check bool) ([]byte, error) {
	src, n := int64(0), int64(t.p.DataBlocks)
	for i := 0; i < t.levels; i++ {
		if err := t.hashLevel(f, src, n, t.levelStart[i], i, check); err != nil {
			return nil, err
		}
		src, n = t.levelStart[i], t.levelSize[i]
	}
	blk := make([]byte, BlockSize)
	if _, err := f.ReadAt(blk, src*BlockSize); err != nil {
		return nil, fmt.Errorf("verity: reading block %d: %w", src, err)
	}
	return t.digest(sha256.New(), blk), nil
}

// chunkBlocks is how many source blocks a worker reads at once: whole hash
// blocks' worth (a multiple of hashesPerBlock), 4 MiB.
const chunkBlocks = 8 * hashesPerBlock

// hashLevel hashes n blocks from block src into hash blocks from block
// dst (level lvl), with every CPU, each worker a chunk at a time.
func (t *tree) hashLevel(f interface {
	io.ReaderAt
	io.WriterAt
}, src, n, dst int64, lvl int, check bool) error {
	chunks := (n + chunkBlocks - 1) / chunkBlocks
	workers := min(int64(runtime.GOMAXPROCS(0)), chunks)
	zero := t.digest(sha256.New(), make([]byte, BlockSize))
	var next atomic.Int64
	var failed atomic.Bool
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			in := make([]byte, chunkBlocks*BlockSize)
			out := make([]byte, chunkBlocks/hashesPerBlock*BlockSize)
			disk := make([]byte, len(out))
			h := sha256.New()
			for !failed.Load() {
				c := next.Add(1) - 1
				if c >= chunks {
					return
				}
				first := c * chunkBlocks
				k := min(chunkBlocks, n-first)
				if _, err := f.ReadAt(in[:k*BlockSize], (src+first)*BlockSize); err != nil {
					errs[w] = fmt.Errorf("verity: reading blocks %d-%d: %w", src+first, src+first+k-1, err)
					failed.Store(true)
					return
				}
				outBlocks := (k + hashesPerBlock - 1) / hashesPerBlock
				o := out[:outBlocks*BlockSize]
				clear(o)
				for j := range k {
					b := in[j*BlockSize : (j+1)*BlockSize]
					d := o[j*digestSize : (j+1)*digestSize]
					if allZero(b) {
						copy(d, zero)
					} else {
						copy(d, t.digest(h, b))
					}
				}
				at := (dst + first/hashesPerBlock) * BlockSize
				if check {
					d := disk[:len(o)]
					if _, err := f.ReadAt(d, at); err != nil {
						errs[w] = fmt.Errorf("verity: reading level %d at byte %d: %w", lvl, at, err)
						failed.Store(true)
						return
					}
					if string(d) != string(o) {
						for b := int64(0); b < outBlocks; b++ {
							if string(d[b*BlockSize:(b+1)*BlockSize]) != string(o[b*BlockSize:(b+1)*BlockSize]) {
								errs[w] = fmt.Errorf("%w: hash block %d of level %d (file block %d) does not match blocks %d-%d below it",
									ErrMismatch, first/hashesPerBlock+b, lvl, dst+first/hashesPerBlock+b,
									src+first+b*hashesPerBlock, src+min(first+(b+1)*hashesPerBlock, n)-1)
								break
							}
						}
						failed.Store(true)
						return
					}
				} else if _, err := f.WriteAt(o, at); err != nil {
					errs[w] = fmt.Errorf("verity: writing level %d: %w", lvl, err)
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// digest is sha256(salt || b) (hash type 1).
func (t *tree) digest(h interface {
	io.Writer
	Sum([]byte) []byte
	Reset()
}, b []byte) []byte {
	h.Reset()
	h.Write(t.p.Salt)
	h.Write(b)
	return h.Sum(nil)
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if le.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// saltSeedBytes is how much of the data the derived salt covers: the
// head of the image, where an ext4 image keeps its superblock (with its
// UUID and write time) and group descriptors (with every group's free
// counts and bitmap checksums), which change with any change of content.
const saltSeedBytes = 1 << 20

// deriveSalt is sha256 over a label, the data's size and its first MiB:
// deterministic for equal images, distinct for distinct ones in practice,
// and read before the tree so the data is hashed once.
func deriveSalt(r io.ReaderAt, dataSize int64) ([]byte, error) {
	h := sha256.New()
	h.Write([]byte("banger dm-verity salt v1\x00"))
	var sz [8]byte
	le.PutUint64(sz[:], uint64(dataSize))
	h.Write(sz[:])
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, min(dataSize, saltSeedBytes))); err != nil {
		return nil, fmt.Errorf("verity: reading the data for its salt: %w", err)
	}
	return h.Sum(nil), nil
}

// deriveUUID is a version 4 (random-format) UUID taken from the salt.
func deriveUUID(salt []byte) [16]byte {
	s := sha256.Sum256(append([]byte("banger dm-verity uuid v1\x00"), salt...))
	var u [16]byte
	copy(u[:], s[:16])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}
