package ext4edit

// Directory entries (struct ext4_dir_entry_2), packed in directory blocks:
const (
	deInode    = 0 // __le32 inode (0 = unused entry)
	deRecLen   = 4 // __le16 rec_len: distance to the next entry
	deNameLen  = 6 // __u8 name_len (a __le16 without the filetype feature)
	deFileType = 7 // __u8 file_type (filetype feature)
	deName     = 8 // name, not NUL-terminated, padded to 4 bytes

	// With metadata_csum every leaf block ends with struct
	// ext4_dir_entry_tail: a fake 12-byte entry {0, rec_len 12, 0, 0xDE}
	// whose last 4 bytes are the crc32c of the block before it.
	dirTailSize = 12
	dirTailFT   = 0xDE

	maxNameLen = 255
)

// File type codes of file_type.
const (
	ftUnknown = 0
	ftReg     = 1
	ftDir     = 2
	ftChr     = 3
	ftBlk     = 4
	ftFifo    = 5
	ftSock    = 6
	ftSymlink = 7
)

func fileTypeOf(mode uint16) uint8 {
	switch mode & sIFMT {
	case sIFREG:
		return ftReg
	case sIFDIR:
		return ftDir
	case sIFCHR:
		return ftChr
	case sIFBLK:
		return ftBlk
	case sIFIFO:
		return ftFifo
	case sIFSOCK:
		return ftSock
	case sIFLNK:
		return ftSymlink
	}
	return ftUnknown
}

// direntSize is the space an entry with an n-byte name needs.
func direntSize(n int) int { return (deName + n + 3) &^ 3 }
