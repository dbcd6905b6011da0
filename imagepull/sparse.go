package imagepull

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/banger/ext4kit/ext4edit"
)

// Sparse entries are copied without archive/tar's sparse reader: it fills
// every hole with zeros in Read (about 10 s per TiB a layer merely
// declares), and it exposes no sparse map to skip them by. So the layer
// stream records the bytes tar reads while Next parses an entry's headers
// (the tape); for a sparse entry the map is parsed from that record (or,
// for the GNU PAX 0.x formats, taken from the PAX records archive/tar
// returns), checked against what archive/tar made of the same bytes, and
// the data fragments are read from the stream straight into the image
// file, its holes left as holes. tar.Reader keeps no state between entries
// that matters (global headers are returned as entries), so a new one
// continues at the next header.
//
// Any disagreement between the two parsers fails the entry: a file another
// tool would read differently, or a stream read out of step with its
// headers, is worse than a refused layer.

// tarBlock is the tar record size: headers, sparse extension blocks and
// the PAX 1.0 sparse map come in whole blocks, and data is padded to one.
const tarBlock = 512

// tapeMax is how many recorded bytes the tape holds before it walks the
// headers seen so far and drops those before the next one. archive/tar
// caps each special header (PAX, GNU long name and link) and each sparse
// map at 1 MiB, so the entry's header with its map or extension blocks
// always fits; a longer chain of special headers only makes it walk.
const tapeMax = 5 << 19 // 2.5 MiB

// tape records the bytes archive/tar reads while Next parses one header
// chain, and walks that chain to its entry's header: it starts at the
// chain's first block (the stream is block aligned there: the previous
// entry's data was read whole, so Next skips only its padding) and keeps
// the bytes from the header block the walk is at.
type tape struct {
	buf []byte // the bytes at stream offsets [start, start+len(buf))
	// start is the stream offset of buf[0]; end that of the next byte
	// read. Before start (padding, walked-over headers) bytes are not
	// kept: buf is then empty and start > end.
	start, end int64
	// next is the offset of the header block the walk looks at next; hdr
	// that of the entry's own header once found (-1 before).
	next, hdr int64
	err       error
}

// reset starts a record at stream offset n, where Next begins reading.
func (t *tape) reset(n int64) {
	t.buf = t.buf[:0]
	t.end, t.hdr, t.err = n, -1, nil
	t.start = n
	if r := n % tarBlock; r != 0 {
		t.start = n + tarBlock - r // the padding is no header's
	}
	t.next = t.start
}

// add records p, the next bytes read.
func (t *tape) add(p []byte) {
	off := t.end
	t.end += int64(len(p))
	if t.err != nil {
		return
	}
	if skip := t.start - off; skip > 0 {
		if skip >= int64(len(p)) {
			return
		}
		p = p[skip:]
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > tapeMax {
		t.walk()
		t.trim()
		if len(t.buf) > tapeMax {
			// More than archive/tar reads after an entry's header: the
			// walk and archive/tar already disagree.
			t.err = errors.New("header chain does not match what archive/tar read")
			t.buf = t.buf[:0]
		}
	}
}

// at is the n recorded bytes at stream offset off, false when they are
// not all on the tape.
func (t *tape) at(off, n int64) ([]byte, bool) {
	if off < t.start || n < 0 || off > t.end-n || t.start > t.end {
		return nil, false
	}
	i := off - t.start
	return t.buf[i : i+n], true
}

// walk moves over the special headers (PAX 'x' and 'g', GNU long name 'L'
// and long link 'K') and their data, as archive/tar's Next does, until the
// entry's own header.
func (t *tape) walk() {
	for t.hdr < 0 && t.err == nil {
		blk, ok := t.at(t.next, tarBlock)
		if !ok {
			return
		}
		if !validChecksum(blk) {
			// archive/tar read no such header here.
			t.err = fmt.Errorf("block at offset %d is not a header", t.next)
			return
		}
		switch blk[156] {
		case tar.TypeXHeader, tar.TypeXGlobalHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
			size, ok := parseNumeric(blk[124:136])
			if !ok || size < 0 {
				t.err = fmt.Errorf("special header at offset %d: bad size field", t.next)
				return
			}
			next, ok := addBlocks(t.next, tarBlock, size)
			if !ok {
				t.err = fmt.Errorf("special header at offset %d: size %d past any stream", t.next, size)
				return
			}
			t.next = next
		default:
			t.hdr = t.next
		}
	}
}

// trim drops the bytes before the header block the walk is at.
func (t *tape) trim() {
	keep := t.next
	if t.hdr >= 0 {
		keep = t.hdr
	}
	if keep <= t.start {
		return
	}
	if keep >= t.start+int64(len(t.buf)) {
		t.buf = t.buf[:0]
	} else {
		t.buf = t.buf[:copy(t.buf, t.buf[keep-t.start:])]
	}
	t.start = keep
}

// validChecksum says whether a header block's checksum field holds the
// sum of its bytes (the field counted as spaces), unsigned or signed, as
// archive/tar checks it.
func validChecksum(blk []byte) bool {
	want, ok := parseOctalField(blk[148:156])
	if !ok {
		return false
	}
	var u, s int64
	for i, c := range blk {
		if i >= 148 && i < 156 {
			c = ' '
		}
		u += int64(c)
		s += int64(int8(c))
	}
	return want == u || want == s
}

// addBlocks is off+hdr+size rounded up to whole blocks, false on overflow.
func addBlocks(off, hdr, size int64) (int64, bool) {
	if size < 0 || size > math.MaxInt64-tarBlock {
		return 0, false
	}
	r := (size + tarBlock - 1) / tarBlock * tarBlock
	if off < 0 || off > math.MaxInt64-hdr || off+hdr > math.MaxInt64-r {
		return 0, false
	}
	return off + hdr + r, true
}

// padding is how many bytes follow n bytes of data to the next block.
func padding(n int64) int64 { return -n & (tarBlock - 1) }

// parseNumeric reads a tar number field as archive/tar does: base-256
// when the first byte's top bit is set, otherwise octal between leading
// and trailing NULs and spaces, up to the first NUL. Like archive/tar it
// may return a negative number; false is archive/tar's ErrHeader.
func parseNumeric(b []byte) (int64, bool) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		var inv byte // two's complement: invert a negative number's bytes
		if b[0]&0x40 != 0 {
			inv = 0xff
		}
		var x uint64
		for i, c := range b {
			c ^= inv
			if i == 0 {
				c &= 0x7f
			}
			if x>>56 > 0 {
				return 0, false
			}
			x = x<<8 | uint64(c)
		}
		if x>>63 > 0 {
			return 0, false
		}
		if inv == 0xff {
			return ^int64(x), true
		}
		return int64(x), true
	}
	return parseOctalField(b)
}

// parseOctalField is archive/tar's parseOctal.
func parseOctalField(b []byte) (int64, bool) {
	b = bytes.Trim(b, " \x00")
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if len(b) == 0 {
		return 0, true
	}
	x, err := strconv.ParseUint(string(b), 8, 64)
	if err != nil {
		return 0, false
	}
	return int64(x), true
}

// Sparse formats, as archive/tar tells them apart.
const (
	sparseNone  = iota
	sparseOld   // old GNU: type 'S', the map in the header and extension blocks
	sparsePAX0  // GNU PAX 0.0 and 0.1: the map in PAX records
	sparsePAX10 // GNU PAX 1.0: the map in blocks ahead of the data
)

// PAX records of the GNU sparse formats.
const (
	paxSparseMajor    = "GNU.sparse.major"
	paxSparseMinor    = "GNU.sparse.minor"
	paxSparseMap      = "GNU.sparse.map"
	paxSparseSize     = "GNU.sparse.size"
	paxSparseRealSize = "GNU.sparse.realsize"
)

// sparseKind says whether archive/tar's Next returned hdr as a sparse
// entry, and of which format: its handleSparseFile's decision, made from
// the same header.
func sparseKind(hdr *tar.Header) int {
	switch hdr.Typeflag {
	case tar.TypeGNUSparse:
		return sparseOld
	case tar.TypeXGlobalHeader:
		return sparseNone // returned before any sparse handling
	}
	major, minor := hdr.PAXRecords[paxSparseMajor], hdr.PAXRecords[paxSparseMinor]
	switch {
	case major == "0" && (minor == "0" || minor == "1"):
		return sparsePAX0
	case major == "1" && minor == "0":
		return sparsePAX10
	case major != "" || minor != "":
		return sparseNone // a version archive/tar does not know: plain data
	case hdr.PAXRecords[paxSparseMap] != "":
		return sparsePAX0
	}
	return sparseNone
}

// sparseFrag is one data fragment of a sparse file: n bytes at offset off.
type sparseFrag struct{ off, n int64 }

// sparseData is a sparse entry being copied.
type sparseData struct {
	frags []sparseFrag
	size  int64 // the file's size, holes included
	left  int64 // data bytes not yet read from the stream
	pad   int64 // padding after the data
}

// sparseMap parses the map of the sparse entry archive/tar just returned
// as hdr, of the given kind, from the tape of its header chain, and checks
// it against hdr: archive/tar must have stopped reading exactly where the
// map ends, and the map must describe exactly the data that follows.
func (t *tape) sparseMap(hdr *tar.Header, kind int) (*sparseData, error) {
	if t.err != nil {
		return nil, fmt.Errorf("sparse entry: %w", t.err)
	}
	t.walk()
	blk, ok := t.at(t.hdr, tarBlock)
	if t.hdr < 0 || !ok || !validChecksum(blk) {
		return nil, errors.New("sparse entry: its header is not where archive/tar read it")
	}
	bad := func(format string, args ...any) (*sparseData, error) {
		return nil, fmt.Errorf("sparse entry: "+format, args...)
	}
	// The data section's size: what handleRegularFile took, before the
	// sparse size replaced hdr.Size.
	phys, ok := parseNumeric(blk[124:136])
	if v := hdr.PAXRecords["size"]; v != "" {
		phys, ok = atoi64(v)
	}
	if !ok || phys < 0 {
		return bad("bad data size")
	}
	section := phys
	// The walk must have found the header archive/tar returned (which
	// turns an old '\x00' type into a regular file's).
	if typ := blk[156]; typ != hdr.Typeflag && (typ != 0 || hdr.Typeflag != tar.TypeReg) || (kind == sparseOld) != (typ == tar.TypeGNUSparse) {
		return bad("header type %q, archive/tar returned %q", typ, hdr.Typeflag)
	}
	pos := t.hdr + tarBlock // where the next block after what was parsed starts
	var frags []sparseFrag
	var size int64
	switch kind {
	case sparseOld:
		if string(blk[257:265]) != "ustar  \x00" {
			return bad("type 'S' header not in the GNU format")
		}
		if size, ok = parseNumeric(blk[483:495]); !ok {
			return bad("bad real size field")
		}
		// Four entries in the header, 21 in each extension block, each
		// block's flag after its entries; an entry whose offset starts
		// with NUL ends its block's list (GNU and BSD tar's rule, and
		// archive/tar's).
		entries, ext := blk[386:386+4*24], blk[482]
		for {
			for i := 0; i+24 <= len(entries); i += 24 {
				e := entries[i : i+24]
				if e[0] == 0 {
					break
				}
				off, ok1 := parseNumeric(e[:12])
				n, ok2 := parseNumeric(e[12:24])
				if !ok1 || !ok2 {
					return bad("bad map entry in block at offset %d", pos-tarBlock)
				}
				frags = append(frags, sparseFrag{off, n})
			}
			if ext == 0 {
				break
			}
			eb, ok := t.at(pos, tarBlock)
			if !ok {
				return bad("header says an extension block follows at offset %d, but archive/tar read none", pos)
			}
			pos += tarBlock
			entries, ext = eb[:21*24], eb[21*24]
		}
	case sparsePAX0:
		if pos != t.end {
			return bad("archive/tar read %d bytes past the header", t.end-pos)
		}
		m := hdr.PAXRecords[paxSparseMap]
		var nums []string
		if m != "" {
			nums = strings.Split(m, ",")
		}
		if len(nums)%2 != 0 {
			return bad("%s holds an odd count of numbers", paxSparseMap)
		}
		for i := 0; i < len(nums); i += 2 {
			off, ok1 := atoi64(nums[i])
			n, ok2 := atoi64(nums[i+1])
			if !ok1 || !ok2 {
				return bad("bad number in %s entry %d", paxSparseMap, i/2)
			}
			frags = append(frags, sparseFrag{off, n})
		}
	case sparsePAX10:
		// Decimal numbers, each ending in a newline: the count, then an
		// offset and a length per fragment, in whole blocks, archive/tar
		// reading only as many blocks as the newlines it needs.
		var m []byte // the map blocks read so far
		lines := 0   // newlines in m
		feed := func(need int64) bool {
			for int64(lines) < need {
				b, ok := t.at(pos, tarBlock)
				if !ok {
					return false
				}
				pos += tarBlock
				m = append(m, b...)
				lines += bytes.Count(b, []byte{'\n'})
			}
			return true
		}
		token := func() string {
			i := bytes.IndexByte(m, '\n')
			s := string(m[:i])
			m = m[i+1:]
			return s
		}
		if !feed(1) {
			return bad("map count runs past what archive/tar read")
		}
		count, ok := atoi64(token())
		// Every number takes at least two bytes of a map held on the tape:
		// a larger count is a lie, and 2*count+1 then cannot overflow.
		if !ok || count < 0 || count > int64(len(t.buf)) {
			return bad("bad map count")
		}
		if !feed(1 + 2*count) {
			return bad("map of %d fragments runs past what archive/tar read", count)
		}
		for i := int64(0); i < count; i++ {
			off, ok1 := atoi64(token())
			n, ok2 := atoi64(token())
			if !ok1 || !ok2 {
				return bad("bad number in map entry %d", i)
			}
			frags = append(frags, sparseFrag{off, n})
		}
		mapBytes := pos - (t.hdr + tarBlock)
		if phys < mapBytes {
			return bad("map of %d bytes larger than the data section (%d bytes)", mapBytes, phys)
		}
		phys -= mapBytes
	}
	if kind != sparseOld {
		// archive/tar takes the size from these records, in this order,
		// else keeps the data section's (map blocks included).
		size, ok = int64(0), true
		switch {
		case hdr.PAXRecords[paxSparseSize] != "":
			size, ok = atoi64(hdr.PAXRecords[paxSparseSize])
		case hdr.PAXRecords[paxSparseRealSize] != "":
			size, ok = atoi64(hdr.PAXRecords[paxSparseRealSize])
		default:
			size = section
		}
		if !ok {
			return bad("bad size record")
		}
	}
	if pos != t.end {
		return bad("map ends at stream offset %d, archive/tar read to %d", pos, t.end)
	}
	if size != hdr.Size || size < 0 {
		return bad("size %d, archive/tar says %d", size, hdr.Size)
	}
	// The data must be exactly the fragments, in order, inside the file.
	var prev, sum int64
	for i, f := range frags {
		switch {
		case f.off < 0 || f.n < 0:
			return bad("fragment %d: negative offset %d or length %d", i, f.off, f.n)
		case f.off > math.MaxInt64-f.n || f.off+f.n > size:
			return bad("fragment %d (%d bytes at %d) ends past the file's size %d", i, f.n, f.off, size)
		case f.off < prev:
			return bad("fragment %d (at %d) overlaps or precedes the one before (ending at %d)", i, f.off, prev)
		case f.n > phys-sum:
			return bad("fragments hold more than the %d data bytes", phys)
		}
		prev, sum = f.off+f.n, sum+f.n
	}
	if sum != phys {
		return bad("fragments hold %d bytes, the data section %d", sum, phys)
	}
	return &sparseData{frags: frags, size: size, left: phys, pad: padding(phys)}, nil
}

// atoi64 parses a decimal number as archive/tar does (strconv.ParseInt).
func atoi64(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// copySparse writes the current sparse entry's data into f: each fragment
// read straight from the stream (through the verifying, cancellable
// reader) at its offset, the gaps as holes, and the file's tail past the
// last fragment a hole too. It returns the file's size.
func (a *applier) copySparse(f *ext4edit.File) (int64, error) {
	sp := a.ts.sp
	f.SetSparse(true)
	var pos int64
	for _, fr := range sp.frags {
		if fr.n == 0 {
			continue
		}
		if err := f.Hole(fr.off - pos); err != nil {
			return pos, err
		}
		pos = fr.off
		for left := fr.n; left > 0; {
			n, err := io.ReadFull(a.ts.raw, a.buf[:min(left, int64(len(a.buf)))])
			sp.left -= int64(n)
			if n > 0 {
				if _, werr := f.Write(a.buf[:n]); werr != nil {
					return pos, werr
				}
				pos += int64(n)
				left -= int64(n)
			}
			if err != nil {
				return pos, sparseReadErr(err)
			}
		}
	}
	if err := f.Hole(sp.size - pos); err != nil {
		return pos, err
	}
	return sp.size, nil
}

// sparseBlocks is how many blocks of b bytes a sparse file of frags
// occupies at most: the blocks its data fragments touch, and the extent
// tree (leaves of 12-byte extents, an index level above them) when the
// inode's four root entries cannot hold them. Blocks of zeros become holes
// (File.SetSparse), so this may count more than the image will use.
func sparseBlocks(frags []sparseFrag, b int64) int64 {
	var blocks, extents int64
	prevLast := int64(-1)
	for _, fr := range frags {
		if fr.n <= 0 {
			continue
		}
		first, last := fr.off/b, (fr.off+fr.n-1)/b
		if first == prevLast {
			first++
		} else {
			extents++
		}
		blocks += last - first + 1
		extents += (last - first) / (32 << 10) // an extent maps at most 32 Ki blocks
		prevLast = last
	}
	if per := (b - 12) / 12; extents > 4 && per > 0 {
		leaves := (extents + per - 1) / per
		blocks += leaves
		if leaves > 4 {
			blocks += (leaves + per - 1) / per
		}
	}
	return blocks
}

// tarStream reads a layer's tar entries as the applier and the sizing
// scan both need them: every read through the cancellable, counting
// stream; a sparse entry's map read off the tape of its headers, its data
// left to be read by the map (never through tar, which would fill the
// holes with zeros); and what the reader of an entry left unread skipped
// before the next header, so that every tape starts at a block boundary.
type tarStream struct {
	raw  *ctxReader
	tr   *tar.Reader
	tape tape
	sp   *sparseData // the current entry's map, nil unless it is sparse
	buf  []byte      // scratch for skipping
}

func newTarStream(raw *ctxReader, buf []byte) *tarStream {
	return &tarStream{raw: raw, tr: tar.NewReader(raw), buf: buf}
}

// next finishes the current entry and reads the next header, recording
// the header chain on the tape. io.EOF at the end of the archive.
func (s *tarStream) next() (*tar.Header, error) {
	if err := s.finish(); err != nil {
		return nil, err
	}
	s.tape.reset(s.raw.n)
	s.raw.tape = &s.tape
	hdr, err := s.tr.Next()
	s.raw.tape = nil
	return hdr, err
}

// readSparseMap sets s.sp to hdr's map when hdr (just returned by next)
// is a sparse entry; an error names what is wrong with the map.
func (s *tarStream) readSparseMap(hdr *tar.Header) error {
	if kind := sparseKind(hdr); kind != sparseNone {
		sp, err := s.tape.sparseMap(hdr, kind)
		if err != nil {
			return err
		}
		s.sp = sp
	}
	return nil
}

// finish skips what is left of the current entry: a sparse entry's data
// by its map and its padding (then a new reader takes the stream at the
// next header: tar read none of it), any other's through tar. An error
// reading through tar stays in tar, whose Next reports it.
func (s *tarStream) finish() error {
	if s.sp != nil {
		sp := s.sp
		s.sp, s.tr = nil, tar.NewReader(s.raw)
		return skipSparse(s.raw, sp, s.buf)
	}
	_, _ = io.CopyBuffer(discardOnly{}, s.tr, s.buf)
	return nil
}

// skipSparse reads what remains of sp's data from r, and its padding,
// leaving r at the next header; buf is scratch space.
func skipSparse(r io.Reader, sp *sparseData, buf []byte) error {
	n := sp.left + sp.pad
	got, err := io.CopyBuffer(discardOnly{}, io.LimitReader(r, n), buf)
	sp.left = 0
	if err == nil && got < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return sparseReadErr(err)
	}
	return nil
}

// sparseReadErr says a sparse entry's data is cut short (the map promised
// more than the stream holds).
func sparseReadErr(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("sparse entry data: %w", err)
}

// discardOnly is io.Discard without its ReadFrom, so that io.CopyBuffer
// reads into the applier's buffer in large reads.
type discardOnly struct{}

func (discardOnly) Write(p []byte) (int, error) { return len(p), nil }
