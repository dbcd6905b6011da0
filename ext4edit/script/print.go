package script

import (
	"fmt"
	"io"
	"time"

	"github.com/banger/ext4kit/ext4edit"
)

// File type bits of i_mode.
const (
	sIFMT   = 0o170000
	sIFSOCK = 0o140000
	sIFLNK  = 0o120000
	sIFREG  = 0o100000
	sIFBLK  = 0o060000
	sIFDIR  = 0o040000
	sIFCHR  = 0o020000
	sIFIFO  = 0o010000
)

// typeName is debugfs's stat "Type:" word for an i_mode.
func typeName(mode uint16) string {
	switch mode & sIFMT {
	case sIFDIR:
		return "directory"
	case sIFREG:
		return "regular"
	case sIFLNK:
		return "symlink"
	case sIFBLK:
		return "block special"
	case sIFCHR:
		return "character special"
	case sIFIFO:
		return "FIFO"
	case sIFSOCK:
		return "socket"
	}
	return "bad type"
}

// direntType is the file type code a directory entry stores for an i_mode
// (what debugfs's ls -l shows in parentheses).
func direntType(mode uint16) int {
	switch mode & sIFMT {
	case sIFREG:
		return 1
	case sIFDIR:
		return 2
	case sIFCHR:
		return 3
	case sIFBLK:
		return 4
	case sIFIFO:
		return 5
	case sIFSOCK:
		return 6
	case sIFLNK:
		return 7
	}
	return 0
}

// isFastSymlink reports a symlink whose target lives in the inode, the
// case where debugfs's stat prints "Fast link dest".
func isFastSymlink(ii *ext4edit.InodeInfo) bool {
	return ii.Mode&sIFMT == sIFLNK && ii.Blocks == 0
}

// writeStat prints an inode the way debugfs's stat does, for the fields the
// editor exposes. target is the fast symlink's destination, if any.
func writeStat(w io.Writer, ii *ext4edit.InodeInfo, target string) {
	fmt.Fprintf(w, "Inode: %d   Type: %s    Mode:  0%03o   Flags: 0x%x\n", ii.Ino, typeName(ii.Mode), ii.Mode&0o7777, ii.Flags)
	fmt.Fprintf(w, "Generation: %d\n", ii.Generation)
	fmt.Fprintf(w, "User: %5d   Group: %5d   Size: %d\n", ii.UID, ii.GID, ii.Size)
	fmt.Fprintf(w, "Links: %d   Blockcount: %d\n", ii.LinksCount, ii.Blocks)
	writeTime(w, " ctime", ii.Ctime)
	writeTime(w, " atime", ii.Atime)
	writeTime(w, " mtime", ii.Mtime)
	if !ii.Crtime.IsZero() {
		writeTime(w, "crtime", ii.Crtime)
	}
	switch ii.Mode & sIFMT {
	case sIFLNK:
		if isFastSymlink(ii) {
			fmt.Fprintf(w, "Fast link dest: \"%s\"\n", target)
		}
	case sIFCHR, sIFBLK:
		fmt.Fprintf(w, "Device major/minor number: %02d:%02d (hex %02x:%02x)\n", ii.Major, ii.Minor, ii.Major, ii.Minor)
	}
}

// writeTime prints one timestamp as debugfs does: the on-disk seconds and
// extra word (nanoseconds << 2 | epoch bits), then the local time.
func writeTime(w io.Writer, label string, t time.Time) {
	sec := t.Unix()
	lo := uint32(sec)
	epoch := uint32((sec-int64(int32(lo)))>>32) & 3
	extra := uint32(t.Nanosecond())<<2 | epoch
	fmt.Fprintf(w, "%s: 0x%08x:%08x -- %s\n", label, lo, extra, t.Local().Format("Mon Jan _2 15:04:05 2006"))
}

type dirEntry struct {
	name string
	ii   *ext4edit.InodeInfo
}

type listFormat int

const (
	lsShort     listFormat = iota
	lsLong                 // ls -l
	lsParseable            // ls -p
)

// writeList prints directory entries in debugfs's ls formats, with the
// blank line debugfs ends a listing with. The short format leaves out the
// record length debugfs shows, which the editor does not expose.
func writeList(w io.Writer, list []dirEntry, format listFormat) {
	col := 0
	for _, e := range list {
		ii := e.ii
		switch format {
		case lsParseable:
			fmt.Fprintf(w, "/%d/%06o/%d/%d/%s/", ii.Ino, ii.Mode, ii.UID, ii.GID, e.name)
			if ii.Mode&sIFMT == sIFDIR {
				fmt.Fprint(w, "/\n")
			} else {
				fmt.Fprintf(w, "%d/\n", ii.Size)
			}
		case lsLong:
			mt := ii.Mtime.Local()
			date := fmt.Sprintf("%2d-%s-%4d %02d:%02d", mt.Day(), mt.Month().String()[:3], mt.Year(), mt.Hour(), mt.Minute())
			fmt.Fprintf(w, " %6d  %6o (%d)  %5d  %5d   %5d %s %s\n",
				ii.Ino, ii.Mode, direntType(ii.Mode), ii.UID, ii.GID, ii.Size, date, e.name)
		default:
			item := fmt.Sprintf(" %d  %s   ", ii.Ino, e.name)
			if col > 0 && col+len(item) > 80 {
				fmt.Fprintln(w)
				col = 0
			}
			fmt.Fprint(w, item)
			col += len(item)
		}
	}
	fmt.Fprintln(w) // ends the short listing's last row; a blank line after the others
}
