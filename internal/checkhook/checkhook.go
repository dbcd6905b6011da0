// Package checkhook makes every image the tests judge with e2fsck
// (testimg.Fsck, RequireClean) a test of ext4edit.Check too: a test
// package imports it for its side effect,
//
//	import _ "github.com/banger/ext4kit/internal/checkhook"
//
// (ext4edit's own tests, which cannot import it, set the hook themselves).
package checkhook

import (
	"errors"
	"fmt"
	"strings"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

func init() { testimg.CheckHook = Run }

// Run checks img with ext4edit.Check: clean, the problems one per line,
// or why it could not check.
func Run(img string) (bool, string, error) {
	rep, err := ext4edit.Check(img, nil)
	if errors.Is(err, ext4edit.ErrUnsupportedFeature) {
		return false, "", fmt.Errorf("%w: %w", testimg.ErrCheckUnsupported, err)
	}
	if err != nil {
		return false, "", err
	}
	var lines []string
	for _, p := range rep.Problems {
		lines = append(lines, p.String())
	}
	return rep.Clean, strings.Join(lines, "\n"), nil
}
