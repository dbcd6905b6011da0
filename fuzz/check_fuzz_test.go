package fuzz

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/banger/ext4kit/ext4edit"
)

// FuzzCheck runs ext4edit.Check on any bytes as an image (the sparse
// encoding of FuzzOpenWalk, whose seed images it starts from): a report or
// an error wrapping ErrNotChecked, never a panic or a hang, and a report
// whose verdict matches its problems.
func FuzzCheck(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(sparseMagic))
	// FuzzOpenWalk's seeds are real images (made by mkfs.ext4 and the
	// editor, some corrupted): the checker's seeds too.
	seeds, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzOpenWalk", "*"))
	for _, s := range seeds {
		if b, err := readCorpusFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		name := scratchFile(t)
		if _, err := writeImage(name, data); err != nil {
			t.Fatal(err)
		}
		guard(t, "check", inputTimeout, func() error {
			rep, err := ext4edit.Check(name, nil)
			if err != nil {
				if !errors.Is(err, ext4edit.ErrNotChecked) {
					return fmt.Errorf("Check failed without ErrNotChecked: %v", err)
				}
				return nil
			}
			if rep.Clean != (len(rep.Problems) == 0) {
				return fmt.Errorf("report clean=%v with %d problems", rep.Clean, len(rep.Problems))
			}
			return nil
		})
	})
}

// readCorpusFile decodes a "go test fuzz v1" file holding one []byte
// (the form gen_seeds_test.go writes: []byte("...") with Go quoting).
func readCorpusFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := strings.TrimSpace(string(b))
	s, ok := strings.CutPrefix(s, "go test fuzz v1\n[]byte(")
	if !ok || !strings.HasSuffix(s, ")") {
		return nil, fmt.Errorf("%s: not a one-[]byte corpus file", path)
	}
	q, err := strconv.Unquote(strings.TrimSuffix(s, ")"))
	if err != nil {
		return nil, err
	}
	return []byte(q), nil
}
