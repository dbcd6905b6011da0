package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/banger/ext4kit/imagepull"
)

// isTerminal says whether w is a terminal with a width: progress is
// drawn only there (a pipe or a file gets the log lines alone, and so
// does a pseudo-terminal nobody sized, where no bar fits).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false
	}
	width, _, err := term.GetSize(int(f.Fd()))
	return err == nil && width > 0
}

// progressView draws a pull's progress on a terminal: a bar per layer
// (bytes read of the blob: downloaded, or read from a layout or archive)
// and a line for the build (entries, bytes of files). Log lines written
// through it go above the bars.
type progressView struct {
	p *mpb.Progress
	// refresh asks for a frame; tick sends to it until stop is closed,
	// and ticked is closed when it no longer does.
	refresh      chan any
	stop, ticked chan struct{}

	mu     sync.Mutex
	layers map[int]*mpb.Bar
	build  *mpb.Bar
	done   bool
	out    io.Writer // the terminal, once the bars are gone

	entries, fileBytes atomic.Int64
}

// The frames are asked for here rather than by mpb's own ticker so that
// finish can ask for a last one: mpb prints lines written through it
// (the logs) at the next frame, and a frame is not otherwise drawn at
// shutdown once the bars are complete.
func newProgressView(w io.Writer) *progressView {
	v := &progressView{refresh: make(chan any), stop: make(chan struct{}), ticked: make(chan struct{}), layers: map[int]*mpb.Bar{}, out: w}
	v.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(32), mpb.WithManualRefresh(v.refresh))
	go v.tick()
	return v
}

func (v *progressView) tick() {
	defer close(v.ticked)
	t := time.NewTicker(150 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			select {
			case v.refresh <- now:
			case <-v.stop:
				return
			}
		case <-v.stop:
			return
		}
	}
}

// event is imagepull.PullOptions.Progress. mpb's bars are safe for
// concurrent use; the map and the build bar are guarded by mu.
func (v *progressView) event(e imagepull.ProgressEvent) {
	switch e.Phase {
	case imagepull.ProgressFetch:
		v.mu.Lock()
		b := v.layers[e.Layer]
		if b == nil && !v.done {
			name := fmt.Sprintf("layer %d/%d %s ", e.Layer, e.Layers, shortDigest(e.Digest))
			b = v.p.AddBar(max(e.Total, 0),
				mpb.PrependDecorators(decor.Name(name)),
				mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f")))
			v.layers[e.Layer] = b
		}
		v.mu.Unlock()
		if b == nil {
			return
		}
		if e.Total < 0 && e.Bytes > 0 {
			b.SetTotal(e.Bytes+1, false) // unknown size: keep the bar short of full
		}
		b.SetCurrent(e.Bytes)
		if e.Done {
			b.SetTotal(-1, true)
		}
	case imagepull.ProgressBuild:
		v.entries.Store(e.Entries)
		v.fileBytes.Store(e.FileBytes)
		v.mu.Lock()
		if v.build == nil && !v.done {
			v.build = v.p.New(0, mpb.SpinnerStyle(),
				mpb.PrependDecorators(decor.Name("build ")),
				mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
					return fmt.Sprintf("%d entries, %.1f MiB of files", v.entries.Load(), float64(v.fileBytes.Load())/(1<<20))
				})))
		}
		b := v.build
		v.mu.Unlock()
		if b != nil && e.Done {
			b.SetTotal(-1, true)
		}
	}
}

// Write puts a log line above the bars (or on the terminal once they are
// gone).
func (v *progressView) Write(p []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.done {
		if n, err := v.p.Write(p); err == nil {
			return n, nil
		}
		// The bars stopped drawing (the terminal went away): the line
		// still goes out.
	}
	return v.out.Write(p)
}

// finish ends the bars (those not complete are aborted, left as drawn)
// and waits for the last frame.
func (v *progressView) finish() {
	v.mu.Lock()
	bars := []*mpb.Bar{v.build}
	for _, b := range v.layers {
		bars = append(bars, b)
	}
	v.done = true
	v.mu.Unlock()
	for _, b := range bars {
		if b != nil && !b.Completed() {
			b.Abort(false)
		}
	}
	close(v.stop)
	<-v.ticked
	v.refresh <- time.Now() // the last frame, with the last log lines
	v.p.Wait()
}

// shortDigest is "sha256:" and the first 12 hex digits, as docker shows.
func shortDigest(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return d
}
