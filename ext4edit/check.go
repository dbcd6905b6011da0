package ext4edit

import (
	"errors"
	"fmt"
	"strings"
)

// CheckOptions say where the filesystem is in the file. The zero value
// checks the whole file.
type CheckOptions struct {
	// Offset is the byte offset of the filesystem inside the file.
	Offset int64
	// Partition selects a 1-based partition of a GPT or MBR disk image; it
	// overrides Offset.
	Partition int
}

// ProblemKind names a class of problem, stable for tests and tools to match
// (the values are short snake_case words, e.g. "block_bitmap_differs").
type ProblemKind string

// Problem is one inconsistency the checker found.
type Problem struct {
	// Kind is the class of problem.
	Kind ProblemKind `json:"kind"`
	// Structure names what is wrong: "superblock", "group 3", "inode 12",
	// "block 1234", "journal".
	Structure string `json:"structure"`
	// Path is the in-image path where the problem can be named ("" if not).
	Path string `json:"path,omitempty"`
	// Message is one line saying what is wrong.
	Message string `json:"message"`
}

func (p Problem) String() string {
	s := p.Structure
	if p.Path != "" {
		s += " (" + p.Path + ")"
	}
	return fmt.Sprintf("%s: %s: %s", s, p.Kind, p.Message)
}

// CheckReport is the checker's verdict on one image.
type CheckReport struct {
	// Clean is true when no problem was found.
	Clean bool `json:"clean"`
	// Problems lists every problem found, in the order the passes found
	// them.
	Problems []Problem `json:"problems"`
	// NeedsRecovery says the journal held transactions that were never
	// checkpointed: the image was checked as it reads after replay (the
	// file was not written).
	NeedsRecovery bool `json:"needs_recovery,omitempty"`
	// Notes say how the image was read where that is not the plain way
	// (a backup superblock, a journal replayed in memory).
	Notes []string `json:"notes,omitempty"`
	// NotChecked lists the features and structures present in the image
	// that the checker does not verify.
	NotChecked []string `json:"not_checked,omitempty"`
	// Inodes, Directories, Files count what was checked.
	Inodes      uint64 `json:"inodes_in_use"`
	Directories uint64 `json:"directories"`
	Files       uint64 `json:"regular_files"`
	BlocksUsed  uint64 `json:"blocks_in_use"`
	Blocks      uint64 `json:"blocks"`

	more int // problems past maxProblems
}

// ErrNotChecked wraps the reason an image could not be checked at all
// (unreadable superblock, an incompat feature whose layout the checker
// cannot read). Check returns it (with ErrCorrupt or ErrUnsupportedFeature
// where those apply) and no report.
var ErrNotChecked = errors.New("ext4 image could not be checked")

// Check reads the filesystem in the image file at path and reports the
// inconsistencies e2fsck -fn finds in its passes 1 to 5 (see
// CheckReport.NotChecked for what it does not look at). It never writes
// to the file: the image is opened read-only, and one whose journal needs
// recovery is checked as it reads after replay (an in-memory overlay),
// which the report says.
//
// A filesystem whose superblock or descriptor table cannot be read at all
// is reported as one problem; an incompat feature whose layout is unknown
// is an error wrapping ErrNotChecked (with ErrUnsupportedFeature).
func Check(path string, opts *CheckOptions) (*CheckReport, error) {
	if opts == nil {
		opts = &CheckOptions{}
	}
	img, err := Open(path, &Options{ReadOnly: true, NoLock: true, Offset: opts.Offset, Partition: opts.Partition})
	var note string
	var journalErr error
	if errors.Is(err, ErrNeedsRecovery) {
		// The journal cannot be replayed (a logged block failing its
		// checksum, a bad revoke record): check the filesystem as it is
		// on disk, as e2fsck -n does (the kernel would refuse to mount
		// it; e2fsck -fy abandons the bad transaction and goes on).
		rimg, rerr := Open(path, &Options{ReadOnly: true, NoLock: true, Offset: opts.Offset, Partition: opts.Partition, skipReplay: true})
		if rerr == nil {
			// A log that cannot be replayed is e2fsck -n's business only
			// when the journal's own superblock is bad.
			if _, jerr := rimg.openJournal(); jerr != nil {
				journalErr = jerr
			}
			img, note = rimg, fmt.Sprintf("the journal needs recovery but cannot be replayed (%v): checked as the filesystem is on disk, without the replay, as e2fsck -n does; the kernel would refuse to mount it until e2fsck runs", err)
			err = nil
		}
	}
	switch {
	case err == nil && !descLocationsOK(img):
		if bimg, at, berr := openBackup(path, opts); berr == nil {
			img.Close()
			img, note = bimg, fmt.Sprintf("the primary descriptor table places a bitmap or inode table where it cannot be; checked with the backup superblock and table at block %d, as e2fsck does", at)
		}
	case err != nil && backupCandidate(err):
		if bimg, at, berr := openBackup(path, opts); berr == nil {
			img, err, note = bimg, nil, fmt.Sprintf("the primary superblock is unusable (%v); checked with the backup at block %d, as e2fsck does", err, at)
		}
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrUnsupportedFeature):
			return nil, fmt.Errorf("%w: %w", ErrNotChecked, err)
		case errors.Is(err, ErrCorrupt):
			rep := &CheckReport{}
			p := Problem{Kind: KindUnreadable, Structure: "superblock", Message: err.Error()}
			if strings.Contains(err.Error(), "group ") {
				p.Kind, p.Structure = KindGroupDesc, "group descriptors"
			}
			rep.add(p)
			return rep.finish(), nil
		}
		return nil, fmt.Errorf("%w: %w", ErrNotChecked, err)
	}
	defer img.Close()
	c := newChecker(img)
	if journalErr != nil {
		c.problem(KindJournal, "journal", "", "%v", journalErr)
	}
	if note != "" {
		c.rep.Notes = append(c.rep.Notes, note)
		c.fromBackup = true
	}
	c.run()
	return c.rep.finish(), nil
}
