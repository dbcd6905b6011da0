package ext4edit

// Inline data (inline_data feature): small files and directories keep
// their bytes in i_block (60 bytes) and the "system.data" attribute. We
// read them; writing inline inodes is refused (ErrUnsupportedFeature).

const inlineXattr = "system.data"

// readInline returns the inline bytes of in: i_block then system.data.
func (img *Image) readInline(in *inode) ([]byte, error) {
	out := append([]byte(nil), in.iblock()...)
	v, ok, err := img.getXattr(in, inlineXattr)
	if err != nil {
		return nil, err
	}
	if ok {
		out = append(out, v...)
	}
	return out, nil
}

// inlineDirIter lists an inline directory: i_block starts with the parent
// inode number (the ".." entry), then entries fill the rest of i_block and
// the system.data value.
func (img *Image) inlineDirIter(dir *inode, fn func(name []byte, ino uint32, ft uint8) bool) error {
	ib := dir.iblock()
	if !fn([]byte("."), dir.ino, ftDir) || !fn([]byte(".."), le32(ib, 0), ftDir) {
		return nil
	}
	regions := [][]byte{ib[4:]}
	v, ok, err := img.getXattr(dir, inlineXattr)
	if err != nil {
		return err
	}
	if ok && len(v) > 0 {
		regions = append(regions, v)
	}
	for i, r := range regions {
		ents, err := img.parseEntries(dir, dirWhere{inline: true, n: uint64(i)}, r)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.ino != 0 && !fn(e.name, e.ino, e.ft) {
				return nil
			}
		}
	}
	return nil
}
