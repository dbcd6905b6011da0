package ext4edit

import (
	"fmt"
)

// Journal replay, the way jbd2's recovery (and e2fsck's) does it: a scan
// pass finds the last transaction with a valid commit block, a revoke pass
// collects revoked blocks, a replay pass copies every logged block that
// was not revoked by the same or a later transaction to its home.

type jTag struct {
	blk   uint64
	flags uint32
	csum  uint32
	pos   uint32 // log position of the data block
}

type jTxn struct {
	seq  uint32
	tags []jTag
	// revoked block -> this transaction revokes it
	revokes []uint64
}

// scanLog walks the log from s_start and returns the committed
// transactions in order.
func (j *journal) scanLog() ([]jTxn, error) {
	start := be.Uint32(j.sb[jsStart:])
	if start == 0 {
		return nil, nil
	}
	if start < j.first || start >= j.maxlen {
		return nil, corruptf("journal s_start %d outside the log", start)
	}
	seq := be.Uint32(j.sb[jsSequence:])
	pos := start
	buf := make([]byte, j.img.bs)
	var done []jTxn
	cur := jTxn{seq: seq}
	tb := j.tagBytes()
	// Every log block is visited at most once per lap; one lap is enough.
	for steps := uint32(0); steps < j.maxlen; steps++ {
		p, err := j.phys(pos)
		if err != nil {
			return nil, err
		}
		if err := j.img.readBlock(p, buf); err != nil {
			return nil, err
		}
		if be.Uint32(buf[jhMagic:]) != jMagic || be.Uint32(buf[jhSequence:]) != cur.seq {
			break
		}
		switch be.Uint32(buf[jhBlocktype:]) {
		case jbtDescriptor:
			if !j.blockTailOK(buf) {
				return done, nil
			}
			limit := len(buf)
			if j.csumV23() {
				limit -= 4
			}
			var tags []jTag
			off := jhSize
			for off+tb <= limit {
				t := buf[off:]
				tag := jTag{blk: uint64(be.Uint32(t[0:]))}
				if j.incompat()&jIncompatCsumV3 != 0 {
					tag.flags = be.Uint32(t[4:])
					if j.is64() {
						tag.blk |= uint64(be.Uint32(t[8:])) << 32
					}
					tag.csum = be.Uint32(t[12:])
				} else {
					tag.csum = uint32(be.Uint16(t[4:]))
					tag.flags = uint32(be.Uint16(t[6:]))
					if j.is64() {
						tag.blk |= uint64(be.Uint32(t[8:])) << 32
					}
				}
				off += tb
				if tag.flags&jFlagSameUUID == 0 {
					off += 16
				}
				tags = append(tags, tag)
				if tag.flags&jFlagLastTag != 0 {
					break
				}
			}
			for i := range tags {
				pos = j.next(pos)
				tags[i].pos = pos
			}
			cur.tags = append(cur.tags, tags...)
		case jbtRevoke:
			if !j.blockTailOK(buf) {
				return done, nil
			}
			n := int(be.Uint32(buf[jrCount:]))
			rs := 4
			if j.is64() {
				rs = 8
			}
			if n > len(buf) || n < jrSize {
				return nil, corruptf("journal revoke block at %d has r_count %d", pos, n)
			}
			for off := jrSize; off+rs <= n; off += rs {
				if rs == 8 {
					cur.revokes = append(cur.revokes, be.Uint64(buf[off:]))
				} else {
					cur.revokes = append(cur.revokes, uint64(be.Uint32(buf[off:])))
				}
			}
		case jbtCommit:
			if j.csumV23() && be.Uint32(buf[jcChksum:]) != j.commitCsum(buf) {
				return done, nil
			}
			done = append(done, cur)
			cur = jTxn{seq: cur.seq + 1}
		default:
			return done, nil
		}
		pos = j.next(pos)
	}
	return done, nil
}

// replayLog computes the home contents of every block the committed
// transactions log, honouring revokes.
func (j *journal) replayLog(txns []jTxn) (map[uint64][]byte, []uint64, error) {
	revoked := map[uint64]uint32{}
	for _, t := range txns {
		for _, b := range t.revokes {
			if s, ok := revoked[b]; !ok || int32(t.seq-s) > 0 {
				revoked[b] = t.seq
			}
		}
	}
	out := map[uint64][]byte{}
	var order []uint64
	for _, t := range txns {
		for _, tag := range t.tags {
			if s, ok := revoked[tag.blk]; ok && int32(s-t.seq) >= 0 {
				continue
			}
			if tag.blk >= j.img.blocksCount {
				return nil, nil, corruptf("journal transaction %d logs block %d beyond the filesystem", t.seq, tag.blk)
			}
			p, err := j.phys(tag.pos)
			if err != nil {
				return nil, nil, err
			}
			data := make([]byte, j.img.bs)
			if err := j.img.readBlock(p, data); err != nil {
				return nil, nil, err
			}
			if tag.flags&jFlagEscape != 0 {
				be.PutUint32(data[0:], jMagic)
			}
			if j.incompat()&jIncompatCsumV3 != 0 && j.tagCsum(t.seq, data) != tag.csum {
				return nil, nil, corruptf("journal transaction %d: logged copy of block %d fails its checksum", t.seq, tag.blk)
			}
			if j.incompat()&jIncompatCsumV2 != 0 && uint16(j.tagCsum(t.seq, data)) != uint16(tag.csum) {
				return nil, nil, corruptf("journal transaction %d: logged copy of block %d fails its checksum", t.seq, tag.blk)
			}
			if _, seen := out[tag.blk]; !seen {
				order = append(order, tag.blk)
			}
			out[tag.blk] = data
		}
	}
	return out, order, nil
}

// needsReplay reports whether the journal holds a log.
func (img *Image) needsReplay() bool {
	return img.sb.hasCompat(compatHasJournal) && img.sb.hasIncompat(incompatRecover)
}

// replay recovers the journal. Writable images get the blocks written home
// and the journal emptied; read-only ones keep them as an overlay that
// readBlock consults, so the image file is not touched.
func (img *Image) replay() error {
	j, err := img.openJournal()
	if err != nil {
		return fmt.Errorf("journal replay: %w", err)
	}
	txns, err := j.scanLog()
	if err != nil {
		return fmt.Errorf("journal replay: %w", err)
	}
	blocks, order, err := j.replayLog(txns)
	if err != nil {
		return fmt.Errorf("journal replay: %w", err)
	}
	next := be.Uint32(j.sb[jsSequence:]) + uint32(len(txns)) + 1
	if img.ro || img.writeRefusalBesidesRecovery() != nil {
		img.overlay = blocks
		return nil
	}
	for _, blk := range order {
		if err := img.writeRaw(blk, blocks[blk]); err != nil {
			return err
		}
	}
	if err := img.dev.Sync(); err != nil {
		return err
	}
	return img.emptyJournal(j, next)
}

// writeRefusalBesidesRecovery is writePolicy without the needs_recovery
// rule: features that keep us from writing also keep us from replaying
// into the file (the replay is then done in memory only).
func (img *Image) writeRefusalBesidesRecovery() error {
	saved := img.sb.incompat()
	img.sb.setIncompat(saved &^ incompatRecover)
	err := img.writePolicy()
	img.sb.setIncompat(saved)
	return err
}
