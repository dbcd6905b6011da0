package ext4edit

import "fmt"

// undoState is what a public operation is rolled back to when it fails
// (mutate): the superblock and the descriptors it changed, how far the
// pending frees reached, the Files it orphaned. Cache blocks keep their
// own undo copies (cache.go).
type undoState struct {
	active bool // an operation with undo is running
	// touched: the running operation changed a block, descriptor or open
	// File (set even without undo, for Options.NoUndo); partial is the
	// ErrPartialEdit a NoUndo operation left when it failed after that.
	touched      bool
	partial      error
	gd           map[uint32]gdUndoRec
	sb           []byte
	pendingFrees int     // len(pending.blocks) when the operation began
	inodeFrees   int     // len(pending.inodes) when the operation began
	orphaned     []*File // Files orphaned by the current operation
}

// mutate runs fn as one operation: on error every in-memory change it made
// is undone, so the image commits as if it never ran.
func (img *Image) mutate(op, name string, fn func() error) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.writable(); err != nil {
		return pathErr(op, name, err)
	}
	if img.opts.NoUndo {
		return pathErr(op, name, img.mutateNoUndo(op, name, fn))
	}
	img.undo.active = true
	img.undo.sb = append(img.undo.sb[:0], img.sb.b...)
	img.undo.pendingFrees = len(img.pending.blocks)
	img.undo.inodeFrees = len(img.pending.inodes)
	err := fn()
	if err != nil {
		img.cache.rollback()
		for g, u := range img.undo.gd {
			copy(img.gd(g).b, u.old)
			if !u.dirty {
				delete(img.dirty.gdt, g)
			}
		}
		copy(img.sb.b, img.undo.sb)
		img.pending.blocks = img.pending.blocks[:img.undo.pendingFrees]
		img.pending.inodes = img.pending.inodes[:img.undo.inodeFrees]
		for _, f := range img.undo.orphaned {
			f.orphaned = false
		}
		img.forgetDirPaths()
		img.forgetAllocHints()
	} else {
		img.cache.endOp()
	}
	clear(img.undo.gd)
	img.undo.orphaned = img.undo.orphaned[:0]
	img.undo.active = false
	return pathErr(op, name, err)
}

// mutateNoUndo runs fn without snapshots (Options.NoUndo). A failure
// after fn changed something leaves the image refusing further edits.
func (img *Image) mutateNoUndo(op, name string, fn func() error) error {
	img.undo.touched = false
	frees, inodeFrees := len(img.pending.blocks), len(img.pending.inodes)
	err := fn()
	if err == nil {
		return nil
	}
	// Caches may describe what fn did before it failed.
	img.forgetDirPaths()
	img.forgetAllocHints()
	if img.undo.touched || len(img.pending.blocks) != frees || len(img.pending.inodes) != inodeFrees {
		img.undo.partial = fmt.Errorf("%w: %s %s: %w", ErrPartialEdit, op, name, err)
		return fmt.Errorf("%w (%w)", err, ErrPartialEdit)
	}
	return err
}

type gdUndoRec struct {
	old   []byte
	dirty bool
}
