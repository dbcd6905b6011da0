package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/banger/ext4kit/ext4edit"
)

// resizeTarget is a parsed -resize argument: an absolute size, a growth
// (+SIZE), or the minimum.
type resizeTarget struct {
	bytes    int64
	relative bool // grow by bytes
	min      bool
}

// parseResizeSize reads SIZE as -resize takes it: bytes, or a number with
// a binary K, M, G or T suffix (case-insensitive, an optional trailing B
// or iB), "+SIZE" to grow by that much, or "min".
func parseResizeSize(s string) (resizeTarget, error) {
	var t resizeTarget
	if strings.EqualFold(s, "min") {
		t.min = true
		return t, nil
	}
	num := s
	if strings.HasPrefix(num, "+") {
		t.relative = true
		num = num[1:]
	}
	upper := strings.ToUpper(num)
	upper = strings.TrimSuffix(strings.TrimSuffix(upper, "IB"), "B")
	shift := 0
	if n := len(upper); n > 0 {
		switch upper[n-1] {
		case 'K':
			shift = 10
		case 'M':
			shift = 20
		case 'G':
			shift = 30
		case 'T':
			shift = 40
		}
		if shift != 0 {
			upper = upper[:n-1]
		}
	}
	v, err := strconv.ParseUint(upper, 10, 63)
	if err != nil || upper == "" {
		return t, fmt.Errorf("size %q: want bytes, a number with a K/M/G/T suffix, +SIZE or min", s)
	}
	if v > math.MaxInt64>>shift {
		return t, fmt.Errorf("size %q too large", s)
	}
	t.bytes = int64(v << shift)
	return t, nil
}

// runResize resizes the image file and prints the old and the new size.
// Exit 0 done, 1 failed (the image unchanged), 2 usage.
func runResize(arg, path string, opts *ext4edit.Options, stdout, stderr io.Writer) int {
	t, err := parseResizeSize(arg)
	if err != nil {
		fmt.Fprintln(stderr, "ext4edit: -resize:", err)
		return 2
	}
	img, err := ext4edit.Open(path, opts)
	if err != nil {
		fmt.Fprintln(stderr, "ext4edit:", err)
		return 1
	}
	oldSize := img.Size()
	size := t.bytes
	switch {
	case t.min:
		if size, err = img.MinSize(); err != nil {
			_ = img.Discard()
			fmt.Fprintln(stderr, "ext4edit:", err)
			return 1
		}
	case t.relative:
		if size > math.MaxInt64-oldSize {
			_ = img.Discard()
			fmt.Fprintf(stderr, "ext4edit: -resize: %s past the largest file size\n", arg)
			return 2
		}
		size += oldSize
	}
	if err := img.Resize(size); err != nil {
		_ = img.Discard()
		fmt.Fprintln(stderr, "ext4edit:", err)
		if errors.Is(err, ext4edit.ErrPartialEdit) {
			fmt.Fprintln(stderr, "ext4edit: the resize failed after it started writing: check the image with e2fsck")
		}
		return 1
	}
	newSize := img.Size()
	if err := img.Close(); err != nil {
		fmt.Fprintln(stderr, "ext4edit:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d -> %d bytes (%s -> %s)\n", path, oldSize, newSize, human(oldSize), human(newSize))
	return 0
}

// human is n bytes in the largest binary unit that keeps it whole-ish.
func human(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if f == math.Trunc(f) {
		return fmt.Sprintf("%.0f %s", f, units[i])
	}
	return fmt.Sprintf("%.2f %s", f, units[i])
}
