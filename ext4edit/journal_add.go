package ext4edit

import (
	"fmt"
	"io/fs"
)

// AddJournal gives a filesystem without one an internal jbd2 journal of
// blocks blocks (0: the size mke2fs gives a filesystem this size,
// DefaultJournalBlocks), as `tune2fs -j` does: contiguous blocks near the
// middle of the filesystem, an empty jbd2 v2 superblock, has_journal. It
// is one operation; the journal is used from the next commit on. A
// filesystem too small for mke2fs to journal (under 2048 blocks) is left
// without one when blocks is 0.
func (img *Image) AddJournal(blocks uint32) error {
	return img.mutate("addjournal", "/", func() error {
		if img.sb.hasCompat(compatHasJournal) {
			return fmt.Errorf("%w: the filesystem has a journal already", fs.ErrExist)
		}
		var uuid [16]byte
		copy(uuid[:], img.sb.uuid())
		if blocks == 0 && DefaultJournalBlocks(img.blocksCount) == 0 {
			return nil
		}
		if err := img.mkJournal(blocks, uuid); err != nil {
			return err
		}
		img.sb.setCompat(img.sb.compat() | compatHasJournal)
		return nil
	})
}
