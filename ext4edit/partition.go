package ext4edit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
)

// partitionOffset reads the GPT or MBR partition table of the disk image in f
// and returns the byte offset and size of the 1-based partition n (numbered
// as Linux numbers them: GPT entry slot n, or MBR primary entry n).
//
// The table is read with ReadAt through a private section reader, so the
// file offset of f is left alone and f is not closed. A GPT is tried first
// (512-byte, then 4096-byte logical sectors, each with go-diskfs's fallback
// to the backup GPT); an MBR is used only when no GPT is found. Logical
// partitions inside an MBR extended partition (5 and up) are not supported.
//
// The errors are plain errors; the caller wraps them.
func partitionOffset(f *os.File, n int) (offset, size int64, err error) {
	if n < 1 {
		return 0, 0, fmt.Errorf("invalid partition number %d: partitions are numbered from 1", n)
	}
	diskSize, err := diskSizeOf(f)
	if err != nil {
		return 0, 0, err
	}
	const sector = 512
	if diskSize < 2*sector {
		return 0, 0, fmt.Errorf("no partition table: the image is only %d bytes", diskSize)
	}
	disk := &diskReader{SectionReader: io.NewSectionReader(f, 0, diskSize), f: f}

	// Read sector 0 ourselves so a real I/O error is reported as such and
	// not as "no partition table".
	sector0 := make([]byte, sector)
	if _, err := f.ReadAt(sector0, 0); err != nil {
		return 0, 0, fmt.Errorf("reading partition table: %w", err)
	}

	var gptErr error
	for _, lbs := range []int{512, 4096} {
		if diskSize < 2*int64(lbs) {
			break
		}
		t, err := gpt.Read(disk, lbs, lbs)
		if err == nil {
			return gptPartition(t, n, diskSize)
		}
		if gptErr == nil {
			gptErr = err
		}
	}

	if hasMBRSignature(sector0) && mbrHasType(sector0, byte(mbr.GPTProtective)) {
		return 0, 0, fmt.Errorf("the image has a protective MBR but its GPT cannot be read: %v", gptErr)
	}
	if !hasMBRSignature(sector0) {
		return 0, 0, errors.New("no partition table: the image has neither a GPT nor an MBR")
	}
	t, err := mbr.Read(disk, sector, sector)
	if err != nil {
		return 0, 0, fmt.Errorf("no partition table: the MBR signature is present but the table is invalid: %v", err)
	}
	return mbrPartition(t, n, diskSize)
}

// gptPartition picks partition n (the entry slot number) out of a GPT.
func gptPartition(t *gpt.Table, n int, diskSize int64) (int64, int64, error) {
	var numbers []int
	var found *gpt.Partition
	for _, p := range t.Partitions {
		if p == nil {
			continue
		}
		numbers = append(numbers, p.Index)
		if p.Index == n {
			found = p
		}
	}
	if found == nil {
		return 0, 0, notFoundErr("GPT", n, numbers)
	}
	if found.End < found.Start {
		return 0, 0, fmt.Errorf("GPT partition %d is invalid: it ends at sector %d before it starts at sector %d", n, found.End, found.Start)
	}
	lbs := uint64(t.LogicalSectorSize)
	if lbs == 0 {
		lbs = 512
	}
	// Guard the int64 conversions against absurd sector numbers.
	if found.End >= uint64(1<<62)/lbs {
		return 0, 0, fmt.Errorf("GPT partition %d is invalid: end sector %d is out of range", n, found.End)
	}
	offset := int64(found.Start * lbs)
	size := int64((found.End - found.Start + 1) * lbs)
	return checkExtent("GPT", n, offset, size, diskSize)
}

// mbrPartition picks primary partition n out of an MBR.
func mbrPartition(t *mbr.Table, n int, diskSize int64) (int64, int64, error) {
	var numbers []int
	var found *mbr.Partition
	for _, p := range t.Partitions {
		if p == nil {
			continue
		}
		// Linux ignores entries with no sectors, whatever their type.
		if p.Size != 0 {
			numbers = append(numbers, p.Index)
		}
		if p.Index == n {
			found = p
		}
	}
	if found == nil || (found.Size == 0 && found.Type == mbr.Empty) {
		err := notFoundErr("MBR", n, numbers)
		if n > 4 {
			err = fmt.Errorf("%w; logical partitions (5 and up) inside an extended partition are not supported", err)
		}
		return 0, 0, err
	}
	switch found.Type {
	case mbr.ExtendedCHS, mbr.ExtendedLBA, mbr.LinuxExtended:
		return 0, 0, fmt.Errorf("MBR partition %d is an extended partition (a container for logical partitions), not a filesystem; logical partitions are not supported", n)
	}
	offset := int64(found.Start) * 512
	size := int64(found.Size) * 512
	return checkExtent("MBR", n, offset, size, diskSize)
}

func checkExtent(table string, n int, offset, size, diskSize int64) (int64, int64, error) {
	if size == 0 {
		return 0, 0, fmt.Errorf("%s partition %d has size 0", table, n)
	}
	if offset+size > diskSize {
		return 0, 0, fmt.Errorf("%s partition %d (bytes %d to %d) extends past the end of the %d-byte image", table, n, offset, offset+size, diskSize)
	}
	return offset, size, nil
}

func notFoundErr(table string, n int, numbers []int) error {
	switch len(numbers) {
	case 0:
		return fmt.Errorf("partition %d not found: the %s partition table has no partitions", n, table)
	case 1:
		return fmt.Errorf("partition %d not found: the %s partition table has 1 partition (number %d)", n, table, numbers[0])
	}
	s := make([]string, len(numbers))
	for i, v := range numbers {
		s[i] = strconv.Itoa(v)
	}
	return fmt.Errorf("partition %d not found: the %s partition table has %d partitions (numbers %s)", n, table, len(numbers), strings.Join(s, ", "))
}

func hasMBRSignature(sector0 []byte) bool {
	return len(sector0) >= 512 && sector0[510] == 0x55 && sector0[511] == 0xAA
}

// mbrHasType reports whether one of the four primary MBR entries has type t.
func mbrHasType(sector0 []byte, t byte) bool {
	for i := 0; i < 4; i++ {
		if sector0[446+16*i+4] == t {
			return true
		}
	}
	return false
}

// diskSizeOf returns the size of a regular image file or, for a block
// device, the size found by seeking to its end (the file offset is
// restored).
func diskSizeOf(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Mode().IsRegular() {
		return fi.Size(), nil
	}
	cur, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, fmt.Errorf("cannot determine the size of %s: %w", f.Name(), err)
	}
	end, err := f.Seek(0, io.SeekEnd)
	if _, err2 := f.Seek(cur, io.SeekStart); err == nil {
		err = err2
	}
	if err != nil {
		return 0, fmt.Errorf("cannot determine the size of %s: %w", f.Name(), err)
	}
	return end, nil
}

// diskReader adapts an image file to go-diskfs's backend.File with its own
// read offset, so go-diskfs's Seek calls do not move f's offset, and Close
// does not close f.
type diskReader struct {
	*io.SectionReader
	f *os.File
}

func (d *diskReader) Stat() (fs.FileInfo, error) { return d.f.Stat() }
func (d *diskReader) Close() error               { return nil }
